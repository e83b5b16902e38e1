//! Plumbing shared by Chronicle's services: settings from the environment, telemetry,
//! problem+json errors, request ids, health and metrics routes, admission control (load
//! shedding), database start-up and graceful shutdown.

pub mod db;
pub mod env;
pub mod http;
pub mod problem;
pub mod shed;
pub mod shutdown;
pub mod telemetry;

pub use problem::Problem;
