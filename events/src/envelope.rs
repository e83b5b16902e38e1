//! The envelope: an event as stored, with its place in the log. Readers of the log, the audit
//! API and consumers of the RabbitMQ relay all see events in this form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::position::LogPosition;

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Where the event stands in the commit-safe order.
    #[serde(skip)]
    pub log_position: LogPosition,
    /// The event's global position.
    pub position: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The stream revision (1-based).
    pub version: i64,
    /// The event's type name.
    pub event_type: String,
    /// The event's schema version.
    pub event_version: String,
    /// The event itself.
    pub payload: Value,
    /// Audit metadata ([`crate::EventMetadata`]).
    pub metadata: Value,
    /// When the event was appended.
    pub recorded_at: DateTime<Utc>,
}
