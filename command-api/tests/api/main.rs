//! Command API tests against the real PostgreSQL: one database per test.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod bad_input;
mod concurrency;
mod helpers;
mod idempotency;
mod projects;
