//! Events of the SupportTicket aggregate, and the ticket status both sides share.

use std::fmt;
use std::str::FromStr;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// The aggregate type under which ticket streams are stored.
pub const AGGREGATE_TYPE: &str = "SupportTicket";

/// The schema version of every ticket event type.
pub const EVENT_VERSION: &str = "1";

/// Where a ticket stands. Serialized as `open`, `in_progress`, `resolved`, `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// Newly opened, or reopened after a resolution.
    Open,
    /// Someone is working on it.
    InProgress,
    /// A fix or answer was given; may be reopened or closed.
    Resolved,
    /// Finished for good: no further moves.
    Closed,
}

impl TicketStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Open, Self::InProgress, Self::Resolved, Self::Closed];

    /// The wire and column form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::InProgress => "in_progress",
            Self::Resolved => "resolved",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a ticket status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of open, in_progress, resolved, closed")]
pub struct UnknownTicketStatus;

impl FromStr for TicketStatus {
    type Err = UnknownTicketStatus;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or(UnknownTicketStatus)
    }
}

/// Something that happened to a support ticket. Each variant is stored as its own event type,
/// at version [`EVENT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketEvent {
    /// A customer opened a ticket; it starts `open`.
    TicketOpened {
        /// The customer's address (well-formed, at most 254 characters).
        email: String,
        /// Trimmed, 1 to 200 characters.
        subject: String,
        /// Trimmed, 1 to 10000 characters, may span lines.
        message: String,
        /// The account that opened it; absent when opened anonymously (or before accounts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        submitter_id: Option<uuid::Uuid>,
    },
    /// The ticket moved along its lifecycle.
    TicketStatusChanged {
        /// The status it left.
        from: TicketStatus,
        /// The status it is in now.
        to: TicketStatus,
    },
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> String {
        match self {
            Self::TicketOpened { .. } => "TicketOpened",
            Self::TicketStatusChanged { .. } => "TicketStatusChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
