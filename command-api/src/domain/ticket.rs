//! The SupportTicket aggregate: open a ticket, move it along its lifecycle.
//!
//! Lifecycle: `open -> in_progress -> resolved -> closed`, and `resolved -> open` (reopen).
//! Every other move, including staying where it is, is refused.

use events::ticket::{AGGREGATE_TYPE, TicketEvent, TicketStatus};
use serde::{Deserialize, Serialize};

use super::Decide;
use super::text::{TextError, checked};

/// The longest address accepted: the limit of a forward path in RFC 5321, less its brackets.
pub const MAX_EMAIL_CHARS: usize = 254;

/// Why an email address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Longer than [`MAX_EMAIL_CHARS`].
    #[error("must be at most 254 characters")]
    TooLong,
    /// Not of the form `local@domain.tld`.
    #[error("must be an email address like name@example.com")]
    Malformed,
}

/// A customer's email address: trimmed, at most 254 characters, `local@domain` where the
/// local part is 1-64 dot-separated atoms of RFC 5322 `atext` and the domain is at least two
/// DNS labels (letters, digits, inner hyphens; 1-63 each).
///
/// Deliberately stricter than RFC 5322 (no quoted local parts, comments or IP literals):
/// those are legal but in practice only typos and abuse use them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates a raw address.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let address = raw.trim();
        if address.chars().count() > MAX_EMAIL_CHARS {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = address.split_once('@').ok_or(EmailError::Malformed)?;
        if is_local_part(local) && is_domain(domain) {
            Ok(Self(address.to_owned()))
        } else {
            Err(EmailError::Malformed)
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_local_part(local: &str) -> bool {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    (1..=64).contains(&local.len())
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A ticket's subject: trimmed, 1 to 200 characters, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// Validates a raw subject.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 200, false).map(Self)
    }
}

/// A ticket's message: trimmed, 1 to 10000 characters, may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(String);

impl Message {
    /// Validates a raw message.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 10_000, true).map(Self)
    }
}

/// What can be asked of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCommand {
    /// Open the ticket.
    Open {
        /// Who to answer; an account may leave it out.
        email: Option<Email>,
        /// What it is about.
        subject: Subject,
        /// The customer's message.
        message: Message,
        /// The account opening it, when not anonymous.
        submitter_id: Option<uuid::Uuid>,
    },
    /// Move the ticket to another status.
    ChangeStatus {
        /// The status to move to.
        to: TicketStatus,
    },
}

/// A ticket rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The ticket does not exist.
    #[error("ticket not found")]
    NotFound,
    /// An open named an id that is taken.
    #[error("a ticket with this id already exists")]
    AlreadyExists,
    /// The lifecycle has no such move.
    #[error("a ticket cannot move from {from} to {to}")]
    ForbiddenMove {
        /// Where the ticket is.
        from: TicketStatus,
        /// Where the command wanted it.
        to: TicketStatus,
    },
    /// A submitter may only reopen or close a resolved ticket (403).
    #[error("a submitter may only reopen or close a resolved ticket")]
    SubmitterMove,
}

/// A ticket's state, as far as its rules need it: its status (`None` before it opens) and
/// who opened it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportTicket {
    status: Option<TicketStatus>,
    /// The account that opened it, if any.
    #[serde(default)]
    submitter: Option<uuid::Uuid>,
}

impl SupportTicket {
    /// Whether `account` may act on this ticket: admins may make any allowed move; its
    /// submitter may see it and move a resolved ticket to `open` or `closed` only (403
    /// otherwise); anyone else is told it does not exist (404). `to` is the move asked for.
    ///
    /// # Errors
    ///
    /// [`TicketError::NotFound`] or [`TicketError::SubmitterMove`].
    pub fn allows(
        &self,
        account: uuid::Uuid,
        admin: bool,
        to: Option<TicketStatus>,
    ) -> Result<(), TicketError> {
        let Some(status) = self.status else {
            return Ok(());
        };
        if admin {
            return Ok(());
        }
        if self.submitter != Some(account) {
            return Err(TicketError::NotFound);
        }
        match to {
            None => Ok(()),
            Some(TicketStatus::Open | TicketStatus::Closed) if status == TicketStatus::Resolved => {
                Ok(())
            }
            Some(_) => Err(TicketError::SubmitterMove),
        }
    }
}

/// Whether the lifecycle allows moving from `from` to `to`.
pub fn can_move(from: TicketStatus, to: TicketStatus) -> bool {
    use TicketStatus as S;
    matches!(
        (from, to),
        (S::Open, S::InProgress)
            | (S::InProgress, S::Resolved)
            | (S::Resolved, S::Closed)
            | (S::Resolved, S::Open)
    )
}

impl Decide for SupportTicket {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;

    fn decide(&self, command: TicketCommand) -> Result<Vec<TicketEvent>, TicketError> {
        match (command, self.status) {
            (TicketCommand::Open { .. }, Some(_)) => Err(TicketError::AlreadyExists),
            (
                TicketCommand::Open {
                    email,
                    subject,
                    message,
                    submitter_id,
                },
                None,
            ) => Ok(vec![TicketEvent::TicketOpened {
                email: email.map(|email| email.0).unwrap_or_default(),
                subject: subject.0,
                message: message.0,
                submitter_id,
            }]),
            (TicketCommand::ChangeStatus { .. }, None) => Err(TicketError::NotFound),
            (TicketCommand::ChangeStatus { to }, Some(from)) if can_move(from, to) => {
                Ok(vec![TicketEvent::TicketStatusChanged { from, to }])
            }
            (TicketCommand::ChangeStatus { to }, Some(from)) => {
                Err(TicketError::ForbiddenMove { from, to })
            }
        }
    }

    fn evolve(&mut self, event: TicketEvent) {
        match event {
            TicketEvent::TicketOpened { submitter_id, .. } => {
                self.status = Some(TicketStatus::Open);
                self.submitter = submitter_id;
            }
            TicketEvent::TicketStatusChanged { to, .. } => self.status = Some(to),
        }
    }
}

impl_aggregate!(SupportTicket);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use events::ticket::TicketStatus as S;

    use super::*;

    type Given = TestFramework<SupportTicket>;

    fn opened() -> TicketEvent {
        TicketEvent::TicketOpened {
            email: "ada@example.com".into(),
            subject: "Login fails".into(),
            message: "Since this morning".into(),
            submitter_id: None,
        }
    }

    fn moved(from: S, to: S) -> TicketEvent {
        TicketEvent::TicketStatusChanged { from, to }
    }

    /// The events that bring a ticket to `status`.
    fn history_to(status: S) -> Vec<TicketEvent> {
        let mut events = vec![opened()];
        let path = [S::Open, S::InProgress, S::Resolved, S::Closed];
        for pair in path.windows(2) {
            if pair[0] == status {
                break;
            }
            events.push(moved(pair[0], pair[1]));
        }
        events
    }

    fn change(to: S) -> TicketCommand {
        TicketCommand::ChangeStatus { to }
    }

    #[test]
    fn a_new_ticket_opens_with_trimmed_values() {
        Given::with(())
            .given_no_previous_events()
            .when(TicketCommand::Open {
                email: Some(Email::parse(" ada@example.com ").expect("valid")),
                subject: Subject::parse("  Login fails ").expect("valid"),
                message: Message::parse("Since this morning\n").expect("valid"),
                submitter_id: None,
            })
            .then_expect_events(vec![opened()]);
    }

    #[test]
    fn a_ticket_cannot_be_opened_twice() {
        Given::with(())
            .given(vec![opened()])
            .when(TicketCommand::Open {
                email: Some(Email::parse("b@example.com").expect("valid")),
                subject: Subject::parse("again").expect("valid"),
                message: Message::parse("again").expect("valid"),
                submitter_id: None,
            })
            .then_expect_error(TicketError::AlreadyExists);
    }

    #[test]
    fn a_missing_ticket_cannot_change_status() {
        Given::with(())
            .given_no_previous_events()
            .when(change(S::InProgress))
            .then_expect_error(TicketError::NotFound);
    }

    #[test]
    fn a_ticket_moves_forward_one_step_at_a_time() {
        for (from, to) in [
            (S::Open, S::InProgress),
            (S::InProgress, S::Resolved),
            (S::Resolved, S::Closed),
        ] {
            Given::with(())
                .given(history_to(from))
                .when(change(to))
                .then_expect_events(vec![moved(from, to)]);
        }
    }

    #[test]
    fn a_resolved_ticket_can_be_reopened() {
        Given::with(())
            .given(history_to(S::Resolved))
            .when(change(S::Open))
            .then_expect_events(vec![moved(S::Resolved, S::Open)]);
    }

    #[test]
    fn a_reopened_ticket_goes_through_the_lifecycle_again() {
        let mut history = history_to(S::Resolved);
        history.push(moved(S::Resolved, S::Open));
        Given::with(())
            .given(history)
            .when(change(S::InProgress))
            .then_expect_events(vec![moved(S::Open, S::InProgress)]);
    }

    #[test]
    fn a_closed_ticket_cannot_be_closed_again() {
        Given::with(())
            .given(history_to(S::Closed))
            .when(change(S::Closed))
            .then_expect_error(TicketError::ForbiddenMove {
                from: S::Closed,
                to: S::Closed,
            });
    }

    #[test]
    fn every_move_outside_the_lifecycle_is_refused() {
        let allowed = [
            (S::Open, S::InProgress),
            (S::InProgress, S::Resolved),
            (S::Resolved, S::Closed),
            (S::Resolved, S::Open),
        ];
        for from in S::ALL {
            for to in S::ALL {
                if allowed.contains(&(from, to)) {
                    continue;
                }
                Given::with(())
                    .given(history_to(from))
                    .when(change(to))
                    .then_expect_error(TicketError::ForbiddenMove { from, to });
            }
        }
    }

    #[test]
    fn well_formed_addresses_are_accepted() {
        for raw in [
            "ada@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'brien@ex-ample.org",
        ] {
            assert!(Email::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for raw in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@exa mple.com",
            "a..b@example.com",
            ".ada@example.com",
            "ada@-example.com",
            "ada@example..com",
            "ada\0@example.com",
            "ada\n@example.com",
        ] {
            assert_eq!(Email::parse(raw), Err(EmailError::Malformed), "{raw:?}");
        }
    }

    #[test]
    fn addresses_are_at_most_254_characters() {
        let domain = format!(
            "{}.{}.{}.{}.com",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(45)
        );
        let fits = format!("{}@{domain}", "x".repeat(254 - 1 - domain.len()));
        assert_eq!(fits.len(), 254);
        assert!(Email::parse(&fits).is_ok());
        assert_eq!(Email::parse(&format!("x{fits}")), Err(EmailError::TooLong));
    }

    #[test]
    fn subjects_and_messages_have_their_lengths() {
        assert!(Subject::parse(" ").is_err());
        assert!(Subject::parse(&"s".repeat(200)).is_ok());
        assert!(Subject::parse(&"s".repeat(201)).is_err());
        assert!(Message::parse(&"m".repeat(10_000)).is_ok());
        assert!(Message::parse(&"m".repeat(10_001)).is_err());
    }
}
