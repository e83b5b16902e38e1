//! Events of the Project aggregate.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The aggregate type under which project streams are stored.
pub const AGGREGATE_TYPE: &str = "Project";

/// Something that happened to a project. Each variant is stored as its own event type, at
/// version [`EVENT_VERSION`].
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

/// The schema version of every project event type.
pub const EVENT_VERSION: &str = "1";

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
        EVENT_VERSION.to_owned()
    }
}
