//! Events of the Account aggregate: one stream per account (`Account/{account_id}`), the
//! audit trail of everything that happened to it. No payload ever carries a secret: passwords,
//! their hashes and mail tokens live beside the log (ACCOUNTS.md, "Audit events").

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The aggregate type under which account streams are stored.
pub const AGGREGATE_TYPE: &str = "Account";

/// The schema version of every account event type.
pub const EVENT_VERSION: &str = "1";

/// Who asked for a password reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetRequestedBy {
    /// The account's owner, through `password/forgot`.
    Owner,
    /// An admin, through the admin endpoint.
    Admin,
}

/// Who switched TOTP off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledBy {
    /// The account's owner.
    Owner,
    /// An admin.
    Admin,
}

/// Something that happened to an account. Each variant is stored as its own event type, at
/// version [`EVENT_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// A new address registered; the account is unverified until [`Self::EmailVerified`].
    AccountRegistered {
        /// The account.
        account_id: Uuid,
        /// The normalized address (trimmed, lowercased).
        email: String,
    },
    /// An unverified account registered again: its pending password was replaced.
    RegistrationRepeated {
        /// The account.
        account_id: Uuid,
    },
    /// A verification link was mailed; earlier links died.
    VerificationRequested {
        /// The account.
        account_id: Uuid,
        /// When the link stops working.
        expires_at: DateTime<Utc>,
    },
    /// The owner proved the address.
    EmailVerified {
        /// The account.
        account_id: Uuid,
    },
    /// A reset link was mailed.
    PasswordResetRequested {
        /// The account.
        account_id: Uuid,
        /// When the link stops working.
        expires_at: DateTime<Utc>,
        /// Whether the owner or an admin asked.
        by: ResetRequestedBy,
    },
    /// The password was reset through a mailed link; every session ended.
    PasswordReset {
        /// The account.
        account_id: Uuid,
        /// How many live sessions were revoked.
        sessions_revoked: u32,
    },
    /// The owner changed the password; every other session ended.
    PasswordChanged {
        /// The account.
        account_id: Uuid,
        /// How many live sessions were revoked.
        sessions_revoked: u32,
    },
    /// TOTP was switched on.
    TotpEnabled {
        /// The account.
        account_id: Uuid,
    },
    /// TOTP was switched off.
    TotpDisabled {
        /// The account.
        account_id: Uuid,
        /// Who switched it off.
        by: DisabledBy,
    },
    /// A new set of recovery codes replaced the old one.
    RecoveryCodesGenerated {
        /// The account.
        account_id: Uuid,
        /// How many codes the set holds.
        count: u32,
    },
    /// A recovery code was spent.
    RecoveryCodeUsed {
        /// The account.
        account_id: Uuid,
        /// How many are left.
        remaining: u32,
    },
    /// A passkey was registered.
    PasskeyRegistered {
        /// The account.
        account_id: Uuid,
        /// The credential id, base64url.
        credential_id: String,
        /// The owner's label for it.
        label: String,
    },
    /// A passkey was removed.
    PasskeyRemoved {
        /// The account.
        account_id: Uuid,
        /// The credential id, base64url.
        credential_id: String,
    },
    /// A passkey signed in (appended with the session it opened).
    PasskeyUsed {
        /// The account.
        account_id: Uuid,
        /// The credential id, base64url.
        credential_id: String,
    },
    /// An admin changed the granted roles (`user` is implied and never listed).
    RolesChanged {
        /// The account.
        account_id: Uuid,
        /// The roles now granted.
        roles: Vec<String>,
        /// The roles granted before.
        previous: Vec<String>,
    },
    /// An admin disabled the account; every session ended.
    AccountDisabled {
        /// The account.
        account_id: Uuid,
        /// The admin's reason, when given.
        reason: Option<String>,
    },
    /// An admin enabled the account again.
    AccountEnabled {
        /// The account.
        account_id: Uuid,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountRegistered { .. } => "AccountRegistered",
            Self::RegistrationRepeated { .. } => "RegistrationRepeated",
            Self::VerificationRequested { .. } => "VerificationRequested",
            Self::EmailVerified { .. } => "EmailVerified",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordReset { .. } => "PasswordReset",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::TotpEnabled { .. } => "TotpEnabled",
            Self::TotpDisabled { .. } => "TotpDisabled",
            Self::RecoveryCodesGenerated { .. } => "RecoveryCodesGenerated",
            Self::RecoveryCodeUsed { .. } => "RecoveryCodeUsed",
            Self::PasskeyRegistered { .. } => "PasskeyRegistered",
            Self::PasskeyRemoved { .. } => "PasskeyRemoved",
            Self::PasskeyUsed { .. } => "PasskeyUsed",
            Self::RolesChanged { .. } => "RolesChanged",
            Self::AccountDisabled { .. } => "AccountDisabled",
            Self::AccountEnabled { .. } => "AccountEnabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
