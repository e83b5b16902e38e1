//! Chronicle's event store on PostgreSQL: appending events, idempotency records (completed by
//! the append that answers them), accounts' rows kept beside the log (credentials, mail
//! tokens, refresh tokens, queued requests, rate-limit counters, the mail outbox), loading aggregates, reading the global log in commit-safe
//! order and single streams, waking readers on append, and the embedded migrations of the
//! whole system.
//!
//! The event contract itself (types, envelope, positions) is the `events` crate; this crate is
//! the one place that knows how it is stored.

pub mod accounts;
pub mod append;
pub mod catalogue;
pub mod checkpoints;
pub mod idempotency;
pub mod load;
pub mod log;
pub mod mail_outbox;
pub mod mfa;
pub mod passkeys;
pub mod rate_limits;
pub mod sessions;
pub mod wake;

pub use append::{AppendError, AppendReceipt, NewEvent, append};
pub use idempotency::IdempotencyKey;
pub use log::LogFilter;

/// The migrations of the whole system (event store and read models), embedded so every binary
/// and test applies the same set.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
