//! Command API tests against the real PostgreSQL: one database per test.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod analytics;
mod authz;
mod bad_input;
mod community_posts;
mod conflicts;
mod frontend;
mod helpers;
mod idempotency;
mod metrics;
mod old_event_versions;
mod openapi;
mod optimistic_concurrency;
mod plumbing;
mod projects;
mod service_status;
mod support_tickets;
mod tracing;
mod two_instances;
mod write_cost;
