//! Events of product analytics: one event per ingested batch, in a stream of its own.
//!
//! Analytics is the high-volume path, so no stream is shared between batches: each batch is
//! the new stream `AnalyticsBatch/<uuid v7>` holding a single [`AnalyticsEvent`] that carries
//! the whole batch. Batches of many clients therefore append in parallel without contending
//! on a stream revision, the log grows by one row per batch (not one per tracked event), and
//! the daily projection aggregates a batch in memory before writing it
//! (docs/decisions/0005-analytics-streams.md).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The aggregate type under which analytics batch streams are stored.
pub const AGGREGATE_TYPE: &str = "AnalyticsBatch";

/// The schema version of every analytics event type.
pub const EVENT_VERSION: &str = "1";

/// Something a client tracked, as accepted: validated and with its time settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedEvent {
    /// `[a-z0-9_.:-]{1,100}`.
    pub name: String,
    /// A JSON object of at most 8 KiB serialized; empty when none was given.
    pub properties: Map<String, Value>,
    /// The client's session, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The user, when the client named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When it happened: the client's time (at most 5 minutes ahead of the server), or the
    /// time of ingestion when the client gave none.
    pub occurred_at: DateTime<Utc>,
}

/// Something that happened to an analytics batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnalyticsEvent {
    /// A batch of 1 to 1000 tracked events was accepted.
    AnalyticsBatchIngested {
        /// The tracked events, in the order the client sent them.
        events: Vec<TrackedEvent>,
    },
}

impl DomainEvent for AnalyticsEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AnalyticsBatchIngested { .. } => "AnalyticsBatchIngested",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
