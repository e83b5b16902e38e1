//! The audit metadata carried by every event.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Who did what, from where, and why: stored with every event as its `metadata`. Absent
/// values are left out rather than stored as null, since cqrs-es reads metadata back as a map
/// of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The authenticated account id, `anonymous`, or `system` for start-up and background
    /// work.
    pub actor: String,
    /// The session of the access token the request carried; absent for anonymous requests
    /// and in events written before accounts existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<uuid::Uuid>,
    /// The client's IP address as the service saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request's `X-Request-ID`.
    pub request_id: String,
    /// Ties together everything one user action caused, across services.
    pub correlation_id: String,
    /// The id of the command that caused the event.
    pub causation_id: String,
    /// The request's `Idempotency-Key`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The W3C trace context of the server span that wrote the event (the command span), in
    /// the caller's trace when the request carried `traceparent`; absent when untraced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// The flat string map cqrs-es carries as an envelope's metadata.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor".to_owned(), self.actor.clone()),
            ("request_id".to_owned(), self.request_id.clone()),
            ("correlation_id".to_owned(), self.correlation_id.clone()),
            ("causation_id".to_owned(), self.causation_id.clone()),
        ]);
        let optional = [
            ("ip", &self.ip),
            ("user_agent", &self.user_agent),
            ("idempotency_key", &self.idempotency_key),
            ("traceparent", &self.traceparent),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.insert(name.to_owned(), value.clone());
            }
        }
        if let Some(session_id) = self.session_id {
            map.insert("session_id".to_owned(), session_id.to_string());
        }
        map
    }
}
