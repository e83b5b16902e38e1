//! Schema evolution: stored events are never rewritten; old versions are upcast when read.
//!
//! Every event type carries a schema version. When an event's shape changes, its version goes
//! up and a pure step function turning the previous version's payload into the new one is
//! registered here ([`REGISTRY`]). The same registry is applied wherever events are read:
//! by cqrs-es when aggregates are loaded ([`for_aggregates`], given to
//! `event_store::load::AggregateLoader`) and by `event_store::log` for projections, the audit API and
//! exports ([`upcast_recorded`]). So every reader only ever sees current versions
//! (docs/decisions/0004-event-versioning.md).

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

use crate::envelope::RecordedEvent;
use crate::project;

/// One step of an event type's history: payloads stored at `from` become payloads of `to`.
///
/// Steps match the stored version exactly (no semantic-version ranges), so a chain
/// `1 -> 2 -> 3` is two steps listed in that order, and what each one sees is certain.
/// Event type names are unique across aggregates, so the type alone identifies the event.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The event type this step applies to.
    pub event_type: &'static str,
    /// The stored version it reads.
    pub from: &'static str,
    /// The version it produces.
    pub to: &'static str,
    /// The pure conversion: `(payload, metadata) -> payload`. The metadata is given because a
    /// new field may be filled from what the envelope already recorded.
    pub step: fn(Value, &Value) -> Value,
}

impl Upcaster {
    /// Whether this step reads events of `event_type` stored at `event_version`.
    pub fn matches(&self, event_type: &str, event_version: &str) -> bool {
        self.event_type == event_type && self.from == event_version
    }
}

impl EventUpcaster for Upcaster {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        self.matches(event_type, event_version)
    }

    fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        SerializedEvent {
            payload: (self.step)(event.payload, &event.metadata),
            event_version: self.to.to_owned(),
            ..event
        }
    }
}

/// Every upcasting step of the system, oldest first within each event type.
pub static REGISTRY: &[Upcaster] = &[Upcaster {
    event_type: "ProjectCreated",
    from: "1",
    to: "2",
    step: project::created_v1_to_v2,
}];

/// The registry as cqrs-es upcasters, for `event_store::load::AggregateLoader`.
pub fn for_aggregates() -> Vec<Box<dyn EventUpcaster>> {
    REGISTRY
        .iter()
        .map(|step| Box::new(*step) as Box<dyn EventUpcaster>)
        .collect()
}

/// Brings a recorded event to its current version with `steps` (in order).
///
/// Only the events a step matches are parsed. When a matched payload does not parse (too
/// deep, say), the event is left as stored, old version and all: its readers then meet a
/// version they do not support and treat it as poison, rather than the whole read failing.
pub fn upcast_with(steps: &[Upcaster], mut event: RecordedEvent) -> RecordedEvent {
    let mut parsed: Option<Value> = None;
    let mut version = event.event_version.clone();
    for step in steps {
        if step.matches(&event.event_type, &version) {
            let payload = match parsed.take() {
                Some(payload) => payload,
                None => match serde_json::from_str(event.payload.get()) {
                    Ok(payload) => payload,
                    Err(_) => return event,
                },
            };
            parsed = Some((step.step)(payload, &event.metadata));
            step.to.clone_into(&mut version);
        }
    }
    let Some(payload) = parsed else {
        return event;
    };
    // A `Value` always serialises; should it not, the event stays as stored (see above).
    if let Ok(raw) = serde_json::value::to_raw_value(&payload) {
        event.payload = raw;
        event.event_version = version;
    }
    event
}

/// Brings a recorded event to its current version with the [`REGISTRY`].
pub fn upcast_recorded(event: RecordedEvent) -> RecordedEvent {
    upcast_with(REGISTRY, event)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn steps_chain_in_registry_order_and_skip_other_versions() {
        fn add_b(mut payload: Value, _: &Value) -> Value {
            payload["b"] = json!(true);
            payload
        }
        fn add_c(mut payload: Value, _: &Value) -> Value {
            payload["c"] = json!(true);
            payload
        }
        let steps = [
            Upcaster {
                event_type: "Thing",
                from: "1",
                to: "2",
                step: add_b,
            },
            Upcaster {
                event_type: "Thing",
                from: "2",
                to: "3",
                step: add_c,
            },
        ];
        let event = RecordedEvent {
            log_position: crate::LogPosition::START,
            position: 1,
            event_id: uuid::Uuid::nil(),
            aggregate_type: "T".into(),
            aggregate_id: "t".into(),
            version: 1,
            event_type: "Thing".into(),
            event_version: "1".into(),
            payload: serde_json::value::to_raw_value(&json!({})).expect("json serialises"),
            metadata: json!({}),
            recorded_at: chrono::Utc::now(),
        };
        let upcast = upcast_with(&steps, event.clone());
        assert_eq!(upcast.event_version, "3");
        let payload: Value = serde_json::from_str(upcast.payload.get()).expect("parses");
        assert_eq!(payload, json!({"b": true, "c": true}));

        let current = RecordedEvent {
            event_version: "3".into(),
            ..event.clone()
        };
        assert_eq!(upcast_with(&steps, current.clone()), current);

        let deep = "[".repeat(200) + &"]".repeat(200);
        let unparsable = RecordedEvent {
            payload: crate::envelope::raw_payload(deep).expect("any depth is kept"),
            ..event
        };
        assert_eq!(
            upcast_with(&steps, unparsable.clone()),
            unparsable,
            "a payload that does not parse stays as stored, at its old version"
        );
    }

    #[test]
    fn cqrs_es_sees_the_same_steps() {
        let stored = SerializedEvent {
            aggregate_id: "p".into(),
            sequence: 1,
            aggregate_type: project::AGGREGATE_TYPE.into(),
            event_type: "ProjectCreated".into(),
            event_version: "1".into(),
            payload: json!({"ProjectCreated": {"name": "A", "description": "", "owner_id": null}}),
            metadata: json!({"actor": "ada"}),
        };
        let upcasters = for_aggregates();
        let step = upcasters
            .iter()
            .find(|u| u.can_upcast("ProjectCreated", "1"))
            .expect("a step for ProjectCreated v1");
        let upcast = step.upcast(stored);
        assert_eq!(upcast.event_version, "2");
        assert_eq!(upcast.payload["ProjectCreated"]["created_by"], "ada");
        assert!(
            !upcasters
                .iter()
                .any(|u| u.can_upcast("ProjectCreated", "2"))
        );
    }
}
