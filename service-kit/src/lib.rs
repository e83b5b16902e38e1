//! Plumbing shared by Chronicle's services: settings from the environment, telemetry,
//! problem+json errors, request ids, health and metrics routes, admission control (load
//! shedding), request deadlines, the security-event counter, OpenTelemetry tracing and propagation, database start-up, the one
//! start-up path of every binary, and graceful shutdown.

pub mod caller;
pub mod db;
pub mod deadline;
pub mod env;
pub mod frontend;
pub mod http;
pub mod metric_names;
pub mod openapi;
pub mod otel;
pub mod problem;
pub mod read_lane;
pub mod revocation;
pub mod security;
pub mod series;
pub mod shed;
pub mod shutdown;
pub mod sql_metrics;
pub mod startup;
pub mod telemetry;
pub mod token_cache;
pub mod trace_ids;

pub use caller::{AccountCaller, Authenticator, Caller};
pub use problem::Problem;
