//! Events of failed logins: each failure is the new stream `LoginAttempt/<uuid v7>` holding a
//! single [`LoginAttemptEvent`], like analytics batches, so failures never contend on a
//! stream revision and an unknown address needs no stream of its own.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::session::LoginMethod;

/// The aggregate type under which login attempts are stored.
pub const AGGREGATE_TYPE: &str = "LoginAttempt";

/// The schema version of every login attempt event type.
pub const EVENT_VERSION: &str = "1";

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Unknown address or wrong password.
    InvalidCredentials,
    /// A wrong second factor.
    MfaFailed,
    /// The right password for an unverified or disabled account.
    UnverifiedOrDisabled,
}

/// A failed login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginAttemptEvent {
    /// A login failed.
    LoginFailed {
        /// The account the address belongs to; `None` for an unknown address.
        account_id: Option<Uuid>,
        /// How the login was tried.
        method: LoginMethod,
        /// Why it failed.
        reason: FailureReason,
    },
}

impl DomainEvent for LoginAttemptEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LoginFailed { .. } => "LoginFailed",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
