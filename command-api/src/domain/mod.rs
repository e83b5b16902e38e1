//! The write side's domain: aggregates, their commands and rules, and validated values.
//! Pure and synchronous at heart: no I/O happens in here.

pub mod analytics;
pub mod post;
pub mod project;
pub mod service_status;
pub mod text;
pub mod ticket;
