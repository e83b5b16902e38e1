//! The fault suite: real service binaries as child processes, real PostgreSQL and RabbitMQ.
//! Tests marked `needs scripts/faults.sh` restart a database or a broker, so they run only
//! against the second cluster and node that script starts (`scripts/faults.sh` runs them).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on broken set-up")]

mod broker_restart;
mod overload;
mod pool_exhaustion;
mod postgres_restart;
mod projector_kill;
