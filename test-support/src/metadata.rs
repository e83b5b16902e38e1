//! The audit metadata test events carry: the real [`EventMetadata`] type, so a test event has
//! exactly the shape the command side stores.

use events::EventMetadata;
use serde_json::Value;

/// The actor of test events unless a test names another.
pub const ACTOR: &str = "tester";

/// Metadata of an event `actor` caused, with fixed request, correlation and causation ids
/// (`req`, `corr`, `cause`) and no optional fields.
pub fn metadata(actor: &str) -> EventMetadata {
    EventMetadata {
        actor: actor.to_owned(),
        request_id: "req".to_owned(),
        correlation_id: "corr".to_owned(),
        causation_id: "cause".to_owned(),
        ..EventMetadata::default()
    }
}

/// [`metadata`] as the JSON stored in the `metadata` column.
pub fn json(actor: &str) -> Value {
    serde_json::to_value(metadata(actor)).expect("metadata serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_metadata_is_the_stored_shape_without_optional_fields() {
        assert_eq!(
            json(ACTOR),
            serde_json::json!({
                "actor": "tester",
                "request_id": "req",
                "correlation_id": "corr",
                "causation_id": "cause",
            })
        );
    }
}
