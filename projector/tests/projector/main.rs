//! The projector's integration tests, against the real PostgreSQL: one binary, a module per
//! behaviour.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on broken set-up")]

mod late_commit;
mod poison;
mod restarts;
mod support;
mod wake;
