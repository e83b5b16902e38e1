//! The projector's integration tests, against the real PostgreSQL: one binary, a module per
//! behaviour.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on broken set-up")]

mod analytics_daily;
mod announcements;
mod auth;
mod big_events;
mod bulk;
mod claims;
mod community_posts;
mod dead_letters;
mod deep_payloads;
mod helpers;
mod late_commit;
mod mail;
mod metrics;
mod poison;
mod processes;
mod rebuild;
mod rebuild_fencing;
mod relay;
mod replicas;
mod restarts;
mod service_status;
mod support_tickets;
mod wake;
