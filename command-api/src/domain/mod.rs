//! The write side's domain: aggregates, their commands and rules, and validated values.
//! Pure and synchronous at heart: no I/O happens in here.

pub mod project;
pub mod text;
