//! Chronicle's event contract, shared by the write and read sides: every aggregate's event
//! types, the envelope and its metadata, log positions and consistency tokens, appending to
//! the event store and reading the log in commit-safe order.

pub mod analytics;
pub mod log;
pub mod metadata;
pub mod position;
pub mod post;
pub mod project;
pub mod status;
pub mod store;
pub mod ticket;
pub mod upcast;
pub mod wake;

pub use log::{LogFilter, RecordedEvent};
pub use metadata::EventMetadata;
pub use position::{ConsistencyToken, LogPosition};

/// The migrations of the whole system (event store and read models), embedded so every binary
/// and test applies the same set.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
