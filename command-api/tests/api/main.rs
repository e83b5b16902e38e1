//! Command API tests against the real PostgreSQL: one database per test.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod analytics;
mod bad_input;
mod community;
mod concurrency;
mod helpers;
mod idempotency;
mod instances;
mod projects;
mod status;
mod support;
mod upcasting;
mod write_cost;
