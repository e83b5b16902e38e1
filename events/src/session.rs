//! Events of the Session aggregate: one stream per login (`Session/{session_id}`), whose
//! refresh tokens form one rotation family (ACCOUNTS.md, "Rotation and reuse").

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The aggregate type under which session streams are stored.
pub const AGGREGATE_TYPE: &str = "Session";

/// The schema version of every session event type.
pub const EVENT_VERSION: &str = "1";

/// How a login proved who it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginMethod {
    /// A password alone.
    #[serde(rename = "password")]
    Password,
    /// A password and a TOTP code.
    #[serde(rename = "password+totp")]
    PasswordTotp,
    /// A password and a recovery code.
    #[serde(rename = "password+recovery_code")]
    PasswordRecoveryCode,
    /// A passkey.
    #[serde(rename = "passkey")]
    Passkey,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// Its owner logged out.
    Logout,
    /// Its owner revoked it from the sessions list.
    User,
    /// Its owner revoked every other session.
    Others,
    /// A spent refresh token of it was presented again.
    RefreshReuse,
    /// The password was reset.
    PasswordReset,
    /// The password was changed from another session.
    PasswordChanged,
    /// A role was removed.
    RolesChanged,
    /// The account was disabled.
    AccountDisabled,
    /// An admin revoked it.
    Admin,
    /// A login beyond the live-session limit pushed it out (least recently used).
    SessionLimit,
    /// It outlived its absolute lifetime.
    Expired,
}

impl RevokeReason {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::User => "user",
            Self::Others => "others",
            Self::RefreshReuse => "refresh_reuse",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::RolesChanged => "roles_changed",
            Self::AccountDisabled => "account_disabled",
            Self::Admin => "admin",
            Self::SessionLimit => "session_limit",
            Self::Expired => "expired",
        }
    }
}

/// Something that happened to a session. Each variant is stored as its own event type, at
/// version [`EVENT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// A login succeeded and opened this session (refresh generation 1).
    LoginSucceeded {
        /// The session.
        session_id: Uuid,
        /// Whose it is.
        account_id: Uuid,
        /// How the login proved itself.
        method: LoginMethod,
        /// The access tokens' `amr`.
        amr: Vec<String>,
        /// When the session ends whatever happens.
        expires_at: DateTime<Utc>,
        /// When its refresh token lapses unless spent first (absent before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_expires_at: Option<DateTime<Utc>>,
    },
    /// A refresh spent the current token and issued the next generation.
    SessionRefreshed {
        /// The session.
        session_id: Uuid,
        /// The generation now current.
        generation: i64,
        /// When the new refresh token lapses unless spent first (absent before it was
        /// recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_expires_at: Option<DateTime<Utc>>,
    },
    /// A spent refresh token was presented again: the session is revoked with it.
    RefreshReused {
        /// The session.
        session_id: Uuid,
        /// Whose it is.
        account_id: Uuid,
        /// The generation of the token presented.
        presented_generation: i64,
        /// The generation that was current.
        current_generation: i64,
    },
    /// The session ended; its refresh and access tokens stop working.
    SessionRevoked {
        /// The session.
        session_id: Uuid,
        /// Whose it was.
        account_id: Uuid,
        /// Why.
        reason: RevokeReason,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::LoginSucceeded { .. } => "LoginSucceeded",
            Self::SessionRefreshed { .. } => "SessionRefreshed",
            Self::RefreshReused { .. } => "RefreshReused",
            Self::SessionRevoked { .. } => "SessionRevoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
