//! Chronicle's event contract, shared by the write side, the read side and outside consumers
//! of the RabbitMQ relay: every aggregate's event types, the envelope and its metadata, log
//! positions and consistency tokens, schema versions and upcasting.
//!
//! Pure data and pure functions: no database driver, so a consumer links only this. Storing
//! and reading events is the `event-store` crate's work.

pub mod account;
pub mod analytics;
pub mod envelope;
pub mod login_attempt;
pub mod metadata;
pub mod position;
pub mod post;
pub mod project;
pub mod session;
pub mod status;
pub mod ticket;
pub mod upcast;

pub use envelope::RecordedEvent;
pub use metadata::EventMetadata;
pub use position::{ConsistencyToken, LogPosition};
