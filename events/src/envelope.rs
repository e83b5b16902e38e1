//! The envelope: an event as stored, with its place in the log. Readers of the log, the audit
//! API and consumers of the RabbitMQ relay all see events in this form.
//!
//! The payload is kept as the JSON text it was stored as ([`RawValue`]), never parsed on the
//! way through: a body that no parser with a recursion limit accepts (nesting deeper than
//! serde_json's 128 levels, say) must not stop the relay or the audit API, which only pass it
//! on. Whoever needs the event's fields decodes `payload.get()` into its own type, and a
//! failure there is that reader's poison event, not the log's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::position::LogPosition;

/// An event as stored, with its place in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The event itself, as the JSON text stored (see the module documentation).
    pub payload: Box<RawValue>,
    /// Audit metadata ([`crate::EventMetadata`]).
    pub metadata: Value,
    /// When the event was appended.
    pub recorded_at: DateTime<Utc>,
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        // Payloads compare as the stored text: the log never re-serialises one.
        self.log_position == other.log_position
            && self.position == other.position
            && self.event_id == other.event_id
            && self.aggregate_type == other.aggregate_type
            && self.aggregate_id == other.aggregate_id
            && self.version == other.version
            && self.event_type == other.event_type
            && self.event_version == other.event_version
            && self.payload.get() == other.payload.get()
            && self.metadata == other.metadata
            && self.recorded_at == other.recorded_at
    }
}

/// Keeps stored JSON text as a [`RawValue`] without parsing it into values: the text is only
/// scanned (iteratively, so any depth is accepted and the stack stays bounded), which is how
/// the log can hand on payloads that no typed reader could decode.
///
/// # Errors
///
/// The text is not JSON.
pub fn raw_payload(text: String) -> Result<Box<RawValue>, serde_json::Error> {
    RawValue::from_string(text)
}

/// The payload `null`.
pub fn null_payload() -> Box<RawValue> {
    // `RawValue::NULL` is the constant; boxed, it is what a payload field holds.
    RawValue::NULL.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_nested_past_any_recursion_limit_is_kept_as_stored() {
        for depth in [200, 100_000] {
            let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            assert!(
                serde_json::from_str::<Value>(&text).is_err(),
                "depth {depth}"
            );
            let raw = raw_payload(text.clone()).expect("any depth is kept");
            assert_eq!(raw.get(), text);
        }
    }
}
