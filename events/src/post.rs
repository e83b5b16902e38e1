//! Events of the CommunityPost aggregate.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// The aggregate type under which post streams are stored.
pub const AGGREGATE_TYPE: &str = "CommunityPost";

/// The schema version of every post event type.
pub const EVENT_VERSION: &str = "1";

/// Something that happened to a community post. Each variant is stored as its own event type,
/// at version [`EVENT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostEvent {
    /// A post was published.
    PostPublished {
        /// Trimmed, 1 to 200 characters.
        title: String,
        /// Trimmed, 1 to 20000 characters, may span lines.
        content: String,
        /// Trimmed, 1 to 80 characters.
        author: String,
        /// The account that published it; absent in posts published before accounts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author_id: Option<uuid::Uuid>,
    },
    /// A post's title or content changed; absent fields stayed as they were.
    PostEdited {
        /// The new title, when it changed.
        title: Option<String>,
        /// The new content, when it changed.
        content: Option<String>,
    },
    /// A post was deleted: it takes no further commands and vanishes from reads.
    PostDeleted {},
}

impl DomainEvent for PostEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PostPublished { .. } => "PostPublished",
            Self::PostEdited { .. } => "PostEdited",
            Self::PostDeleted {} => "PostDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
