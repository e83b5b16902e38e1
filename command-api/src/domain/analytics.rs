//! The AnalyticsBatch aggregate: one batch of tracked events, ingested once.
//!
//! Each batch is a stream of its own (`AnalyticsBatch/<uuid v7>`), so batches never contend
//! with each other; the only rule left for the aggregate is that a batch is ingested once.
//! The values a batch holds are validated here, field by field, so the HTTP layer can name
//! each invalid field (`events[3].name`).

use chrono::{DateTime, Duration, Utc};
use events::analytics::{AGGREGATE_TYPE, AnalyticsEvent, TrackedEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Decide;
use super::text::{TextError, checked};

/// The most events a batch holds.
pub const MAX_BATCH: usize = 1000;
/// The most bytes an event's properties take, serialized as JSON.
pub const MAX_PROPERTIES_BYTES: usize = 8 * 1024;
/// How deeply an event's properties may nest: the properties object itself is level 1.
pub const MAX_PROPERTIES_DEPTH: usize = 16;
/// The most characters of a session or user id.
pub const MAX_ID_CHARS: usize = 128;
/// How far ahead of the server's clock an event may claim to have happened.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// Why a tracked event's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A name outside `[a-z0-9_.:-]{1,100}`.
    #[error("must be 1 to 100 characters of a-z, 0-9, '_', '.', ':' and '-'")]
    Name,
    /// Properties that are not a JSON object.
    #[error("must be a JSON object")]
    NotAnObject,
    /// Properties over [`MAX_PROPERTIES_BYTES`].
    #[error("must be at most 8192 bytes serialized")]
    TooLarge,
    /// Properties nested deeper than [`MAX_PROPERTIES_DEPTH`].
    #[error("must be nested at most 16 levels deep")]
    TooDeep,
    /// A session or user id that is not valid text.
    #[error(transparent)]
    Text(#[from] TextError),
    /// A time that is not RFC 3339.
    #[error("must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z")]
    NotATimestamp,
    /// A time more than [`MAX_CLOCK_SKEW`] ahead of the server.
    #[error("must not be more than 5 minutes in the future")]
    InTheFuture,
}

/// A tracked event's name: `[a-z0-9_.:-]{1,100}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName(String);

impl EventName {
    /// Validates a raw name (no trimming: a name is an identifier).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b);
        if (1..=100).contains(&raw.len()) && raw.bytes().all(allowed) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::Name)
        }
    }
}

/// A tracked event's properties: a JSON object of at most 8 KiB serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties(Map<String, Value>);

impl Properties {
    /// Validates raw properties.
    pub fn parse(raw: Value) -> Result<Self, ValueError> {
        if !matches!(raw, Value::Object(_)) {
            return Err(ValueError::NotAnObject);
        }
        // Every reader downstream (projector, relay, exports, clients) may walk this value
        // recursively: a bound here keeps any of them from overflowing its stack.
        if depth(&raw) > MAX_PROPERTIES_DEPTH {
            return Err(ValueError::TooDeep);
        }
        let Value::Object(map) = raw else {
            return Err(ValueError::NotAnObject);
        };
        // Strings inside are validated by their size only: properties are opaque to Chronicle.
        let size = serde_json::to_vec(&map).map_or(usize::MAX, |bytes| bytes.len());
        if size > MAX_PROPERTIES_BYTES {
            return Err(ValueError::TooLarge);
        }
        Ok(Self(map))
    }
}

/// How many containers deep `value` nests (a scalar is 0, `{}` is 1), found with an explicit
/// stack: never recursion on client input.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// A session or user id chosen by the client: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    /// Validates a raw id.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        Ok(Self(checked(raw, 1, MAX_ID_CHARS, false)?))
    }
}

/// When a tracked event happened: RFC 3339, not more than 5 minutes after `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccurredAt(DateTime<Utc>);

impl OccurredAt {
    /// Validates a raw timestamp against the server's `now`.
    pub fn parse(raw: &str, now: DateTime<Utc>) -> Result<Self, ValueError> {
        let at = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| ValueError::NotATimestamp)?
            .with_timezone(&Utc);
        if at > now + MAX_CLOCK_SKEW {
            return Err(ValueError::InTheFuture);
        }
        Ok(Self(at))
    }
}

/// One valid tracked event.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// Its name.
    pub name: EventName,
    /// Its properties (empty when none).
    pub properties: Option<Properties>,
    /// The client's session.
    pub session_id: Option<ClientId>,
    /// The user.
    pub user_id: Option<ClientId>,
    /// When it happened.
    pub occurred_at: OccurredAt,
}

impl From<ValidEvent> for TrackedEvent {
    fn from(event: ValidEvent) -> Self {
        Self {
            name: event.name.0,
            properties: event.properties.map(|p| p.0).unwrap_or_default(),
            session_id: event.session_id.map(|id| id.0),
            user_id: event.user_id.map(|id| id.0),
            occurred_at: event.occurred_at.0,
        }
    }
}

/// 1 to [`MAX_BATCH`] valid events.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch(Vec<ValidEvent>);

/// A batch with no events or too many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must hold 1 to 1000 events")]
pub struct BatchSizeError;

impl Batch {
    /// Checks the batch's size.
    pub fn new(events: Vec<ValidEvent>) -> Result<Self, BatchSizeError> {
        if (1..=MAX_BATCH).contains(&events.len()) {
            Ok(Self(events))
        } else {
            Err(BatchSizeError)
        }
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a batch holds at least one event.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What can be asked of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalyticsCommand {
    /// Ingest the batch.
    Ingest(Batch),
}

/// An analytics rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyticsError {
    /// The batch's stream already holds a batch (its id was reused).
    #[error("this batch was already ingested")]
    AlreadyIngested,
}

/// A batch's state: whether it was ingested.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsBatch {
    ingested: bool,
}

impl Decide for AnalyticsBatch {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = AnalyticsCommand;
    type Event = AnalyticsEvent;
    type Error = AnalyticsError;

    fn decide(&self, command: AnalyticsCommand) -> Result<Vec<AnalyticsEvent>, AnalyticsError> {
        match command {
            AnalyticsCommand::Ingest(_) if self.ingested => Err(AnalyticsError::AlreadyIngested),
            AnalyticsCommand::Ingest(Batch(events)) => {
                Ok(vec![AnalyticsEvent::AnalyticsBatchIngested {
                    events: events.into_iter().map(TrackedEvent::from).collect(),
                }])
            }
        }
    }

    fn evolve(&mut self, event: AnalyticsEvent) {
        match event {
            AnalyticsEvent::AnalyticsBatchIngested { .. } => self.ingested = true,
        }
    }
}

impl_aggregate!(AnalyticsBatch);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;

    type Given = TestFramework<AnalyticsBatch>;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn page_view() -> ValidEvent {
        ValidEvent {
            name: EventName::parse("page.view").expect("valid"),
            properties: Some(Properties::parse(json!({"path": "/"})).expect("valid")),
            session_id: Some(ClientId::parse("s1").expect("valid")),
            user_id: None,
            occurred_at: OccurredAt(at("2026-01-31T12:00:00Z")),
        }
    }

    fn ingested() -> AnalyticsEvent {
        AnalyticsEvent::AnalyticsBatchIngested {
            events: vec![page_view().into()],
        }
    }

    #[test]
    fn a_new_batch_is_ingested_with_its_events_in_order() {
        let mut second = page_view();
        second.name = EventName::parse("signup").expect("valid");
        second.properties = None;
        Given::with(())
            .given_no_previous_events()
            .when(AnalyticsCommand::Ingest(
                Batch::new(vec![page_view(), second]).expect("two events"),
            ))
            .then_expect_events(vec![AnalyticsEvent::AnalyticsBatchIngested {
                events: vec![
                    TrackedEvent {
                        name: "page.view".into(),
                        properties: json!({"path": "/"})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        session_id: Some("s1".into()),
                        user_id: None,
                        occurred_at: at("2026-01-31T12:00:00Z"),
                    },
                    TrackedEvent {
                        name: "signup".into(),
                        properties: Map::new(),
                        session_id: Some("s1".into()),
                        user_id: None,
                        occurred_at: at("2026-01-31T12:00:00Z"),
                    },
                ],
            }]);
    }

    #[test]
    fn a_batch_cannot_be_ingested_twice() {
        Given::with(())
            .given(vec![ingested()])
            .when(AnalyticsCommand::Ingest(
                Batch::new(vec![page_view()]).expect("one event"),
            ))
            .then_expect_error(AnalyticsError::AlreadyIngested);
    }

    #[test]
    fn a_batch_holds_1_to_1000_events() {
        assert_eq!(Batch::new(vec![]), Err(BatchSizeError));
        assert!(Batch::new(vec![page_view(); 1000]).is_ok());
        assert_eq!(Batch::new(vec![page_view(); 1001]), Err(BatchSizeError));
    }

    #[test]
    fn names_are_lowercase_identifiers_of_1_to_100_characters() {
        for good in ["a", "page.view", "checkout:step-2_done", &"n".repeat(100)] {
            assert!(EventName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Page", "with space", "é", "a\0", &"n".repeat(101)] {
            assert_eq!(EventName::parse(bad), Err(ValueError::Name), "{bad:?}");
        }
    }

    #[test]
    fn properties_are_an_object_of_at_most_8_kib() {
        assert_eq!(Properties::parse(json!([1])), Err(ValueError::NotAnObject));
        assert_eq!(Properties::parse(json!("x")), Err(ValueError::NotAnObject));
        // {"k":"…"} is 8 bytes plus the string.
        assert!(Properties::parse(json!({"k": "x".repeat(8192 - 8)})).is_ok());
        assert_eq!(
            Properties::parse(json!({"k": "x".repeat(8192 - 7)})),
            Err(ValueError::TooLarge)
        );
    }

    #[test]
    fn properties_nest_at_most_16_levels() {
        let nested =
            |levels: usize| (1..levels).fold(json!({}), |inner, _| json!({ "d": [inner] }));
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}]})), 4);
        // Each fold adds an object and an array: 8 folds reach 17 levels.
        assert!(Properties::parse(json!({"a": {"b": {"c": 1}}})).is_ok());
        assert_eq!(depth(&nested(9)), 17);
        assert_eq!(Properties::parse(nested(9)), Err(ValueError::TooDeep));
        assert_eq!(depth(&nested(8)), 15);
        assert!(Properties::parse(nested(8)).is_ok());
    }

    #[test]
    fn occurred_at_may_be_at_most_5_minutes_ahead() {
        let now = at("2026-01-31T12:00:00Z");
        assert!(OccurredAt::parse("2026-01-31T12:05:00Z", now).is_ok());
        assert!(OccurredAt::parse("2020-01-01T00:00:00+02:00", now).is_ok());
        assert_eq!(
            OccurredAt::parse("2026-01-31T12:05:01Z", now),
            Err(ValueError::InTheFuture)
        );
        assert_eq!(
            OccurredAt::parse("yesterday", now),
            Err(ValueError::NotATimestamp)
        );
    }

    #[test]
    fn client_ids_are_bounded_text_without_control_characters() {
        assert!(ClientId::parse("session-1").is_ok());
        assert!(ClientId::parse(&"s".repeat(128)).is_ok());
        assert!(ClientId::parse(&"s".repeat(129)).is_err());
        assert!(ClientId::parse("a\u{7}b").is_err());
        assert!(ClientId::parse(" ").is_err());
    }
}
