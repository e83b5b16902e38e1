//! Events of the Project aggregate.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The aggregate type under which project streams are stored.
pub const AGGREGATE_TYPE: &str = "Project";

/// Something that happened to a project. Each variant is stored as its own event type, at
/// the version [`current_version`] names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectEvent {
    /// A project came into being.
    ProjectCreated {
        /// Trimmed, 1 to 120 characters.
        name: String,
        /// At most 2000 characters; empty when none was given.
        description: String,
        /// The owning user, when the creator named one.
        owner_id: Option<Uuid>,
        /// Who created the project (the command's actor). Since version 2: version-1 events
        /// are upcast with the actor of their metadata ([`created_v1_to_v2`]).
        created_by: String,
    },
    /// A project's name or description changed; absent fields stayed as they were.
    ProjectUpdated {
        /// The new name, when it changed.
        name: Option<String>,
        /// The new description, when it changed.
        description: Option<String>,
    },
    /// A project was archived: it takes no updates until restored.
    ProjectArchived {},
    /// An archived project was restored.
    ProjectRestored {},
}

/// The schema version of the project event types that have not changed since they were
/// introduced (all but `ProjectCreated`).
pub const EVENT_VERSION: &str = "1";

/// The schema version of `ProjectCreated`: version 2 added `created_by`.
pub const PROJECT_CREATED_VERSION: &str = "2";

/// The current schema version of a project event type, `None` for a type that is not one.
/// Readers see only current versions: older ones are upcast on read ([`crate::upcast`]).
pub fn current_version(event_type: &str) -> Option<&'static str> {
    match event_type {
        "ProjectCreated" => Some(PROJECT_CREATED_VERSION),
        "ProjectUpdated" | "ProjectArchived" | "ProjectRestored" => Some(EVENT_VERSION),
        _ => None,
    }
}

/// Upcasts a stored `ProjectCreated` version 1 payload to version 2: the creator was always
/// recorded as the metadata's `actor`, so version 2's `created_by` is filled from there
/// (`anonymous` if the metadata somehow lacks it). A payload that already has the field is
/// left as it is.
pub fn created_v1_to_v2(mut payload: Value, metadata: &Value) -> Value {
    let actor = metadata
        .get("actor")
        .and_then(Value::as_str)
        .unwrap_or("anonymous")
        .to_owned();
    if let Some(Value::Object(fields)) = payload.get_mut("ProjectCreated") {
        fields
            .entry("created_by")
            .or_insert_with(|| Value::String(actor));
    }
    payload
}

impl DomainEvent for ProjectEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProjectCreated { .. } => "ProjectCreated",
            Self::ProjectUpdated { .. } => "ProjectUpdated",
            Self::ProjectArchived {} => "ProjectArchived",
            Self::ProjectRestored {} => "ProjectRestored",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::ProjectCreated { .. } => PROJECT_CREATED_VERSION,
            _ => EVENT_VERSION,
        }
        .to_owned()
    }
}
