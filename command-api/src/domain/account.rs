//! The Account aggregate: registration, verification, password resets and changes. Its state
//! holds no secret: the password hash and mailed tokens live beside the log
//! (event_store::accounts), written in the transaction that appends these events.

use chrono::{DateTime, Utc};
use events::account::{AGGREGATE_TYPE, AccountEvent, DisabledBy, ResetRequestedBy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Decide;

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// A new address registers.
    Register {
        /// The new account's id.
        account_id: Uuid,
        /// The normalized address.
        email: String,
    },
    /// An unverified account registers again (its pending password was replaced).
    RepeatRegistration,
    /// A verification link is mailed.
    RequestVerification {
        /// When the link stops working.
        expires_at: DateTime<Utc>,
    },
    /// The owner followed the verification link.
    VerifyEmail,
    /// A reset link is mailed.
    RequestPasswordReset {
        /// When the link stops working.
        expires_at: DateTime<Utc>,
        /// Who asked.
        by: ResetRequestedBy,
    },
    /// The password was reset through a mailed link.
    ResetPassword {
        /// How many sessions the reset ended.
        sessions_revoked: u32,
    },
    /// The owner changed the password.
    ChangePassword {
        /// How many other sessions the change ended.
        sessions_revoked: u32,
    },
    /// TOTP is switched on (a code of the pending secret was right).
    EnableTotp,
    /// TOTP is switched off.
    DisableTotp {
        /// Who switched it off.
        by: DisabledBy,
    },
    /// A new set of recovery codes replaces the old one.
    GenerateRecoveryCodes {
        /// How many codes the set holds.
        count: u32,
    },
    /// A recovery code was spent.
    UseRecoveryCode {
        /// How many are left after it.
        remaining: u32,
    },
    /// A passkey was registered (its row is written in the same transaction).
    RegisterPasskey {
        /// The credential id, base64url.
        credential_id: String,
        /// The owner's label for it.
        label: String,
    },
    /// A passkey is removed (its row is deleted in the same transaction).
    RemovePasskey {
        /// The credential id, base64url.
        credential_id: String,
    },
    /// A passkey signed in (its counter is updated in the same transaction).
    UsePasskey {
        /// The credential id, base64url.
        credential_id: String,
    },
    /// An admin sets the granted roles (`user` is implied and never listed).
    SetRoles {
        /// The roles granted from now on, each `admin` or `auditor`, without repeats.
        roles: Vec<String>,
    },
    /// An admin disables the account.
    Disable {
        /// The admin's reason, when given.
        reason: Option<String>,
    },
    /// An admin enables the account again.
    Enable,
    /// The bootstrap admin is created, verified, with `admin` granted.
    Bootstrap {
        /// The new account's id.
        account_id: Uuid,
        /// The normalized address.
        email: String,
    },
}

/// An account rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The account does not exist.
    #[error("account not found")]
    NotFound,
    /// A registration named an id that is taken.
    #[error("an account with this id already exists")]
    AlreadyExists,
    /// The address was already verified.
    #[error("the address is already verified")]
    AlreadyVerified,
    /// TOTP is on already.
    #[error("TOTP is already enabled")]
    TotpAlreadyEnabled,
    /// TOTP is off, so there is nothing to switch off and no codes to replace or spend.
    #[error("TOTP is not enabled")]
    TotpNotEnabled,
}

/// An account's state, as far as its rules need it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Whether the stream exists.
    pub registered: bool,
    /// The account's id.
    pub account_id: Option<Uuid>,
    /// Whether the address was proven.
    pub verified: bool,
    /// Granted roles besides `user`.
    pub roles: Vec<String>,
    /// Whether TOTP is on.
    #[serde(default)]
    pub totp_enabled: bool,
    /// Whether an admin disabled it.
    #[serde(default)]
    pub disabled: bool,
}

impl Account {
    fn id(&self) -> Result<Uuid, AccountError> {
        match (self.registered, self.account_id) {
            (true, Some(id)) => Ok(id),
            _ => Err(AccountError::NotFound),
        }
    }

    /// The id of an account whose TOTP is on.
    fn totp_on(&self) -> Result<Uuid, AccountError> {
        let account_id = self.id()?;
        if !self.totp_enabled {
            return Err(AccountError::TotpNotEnabled);
        }
        Ok(account_id)
    }
}

impl Decide for Account {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Register { account_id, email } => {
                if self.registered {
                    return Err(AccountError::AlreadyExists);
                }
                Ok(vec![AccountEvent::AccountRegistered { account_id, email }])
            }
            AccountCommand::Bootstrap { account_id, email } => {
                if self.registered {
                    return Err(AccountError::AlreadyExists);
                }
                Ok(vec![
                    AccountEvent::AccountRegistered { account_id, email },
                    AccountEvent::EmailVerified { account_id },
                    AccountEvent::RolesChanged {
                        account_id,
                        roles: vec!["admin".to_owned()],
                        previous: Vec::new(),
                    },
                ])
            }
            AccountCommand::RepeatRegistration => {
                let account_id = self.id()?;
                if self.verified {
                    return Err(AccountError::AlreadyVerified);
                }
                Ok(vec![AccountEvent::RegistrationRepeated { account_id }])
            }
            AccountCommand::RequestVerification { expires_at } => {
                let account_id = self.id()?;
                if self.verified {
                    return Err(AccountError::AlreadyVerified);
                }
                Ok(vec![AccountEvent::VerificationRequested {
                    account_id,
                    expires_at,
                }])
            }
            AccountCommand::VerifyEmail => {
                let account_id = self.id()?;
                if self.verified {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::EmailVerified { account_id }])
            }
            AccountCommand::RequestPasswordReset { expires_at, by } => {
                Ok(vec![AccountEvent::PasswordResetRequested {
                    account_id: self.id()?,
                    expires_at,
                    by,
                }])
            }
            AccountCommand::ResetPassword { sessions_revoked } => {
                Ok(vec![AccountEvent::PasswordReset {
                    account_id: self.id()?,
                    sessions_revoked,
                }])
            }
            AccountCommand::EnableTotp => {
                let account_id = self.id()?;
                if self.totp_enabled {
                    return Err(AccountError::TotpAlreadyEnabled);
                }
                Ok(vec![AccountEvent::TotpEnabled { account_id }])
            }
            AccountCommand::DisableTotp { by } => {
                let account_id = self.totp_on()?;
                Ok(vec![AccountEvent::TotpDisabled { account_id, by }])
            }
            AccountCommand::GenerateRecoveryCodes { count } => {
                let account_id = self.totp_on()?;
                Ok(vec![AccountEvent::RecoveryCodesGenerated {
                    account_id,
                    count,
                }])
            }
            AccountCommand::UseRecoveryCode { remaining } => {
                let account_id = self.totp_on()?;
                Ok(vec![AccountEvent::RecoveryCodeUsed {
                    account_id,
                    remaining,
                }])
            }
            // Which passkeys exist is `auth_passkeys`' fact (decision 0016): a registration of
            // a taken id or a removal of an unknown one never reaches the aggregate.
            AccountCommand::RegisterPasskey {
                credential_id,
                label,
            } => Ok(vec![AccountEvent::PasskeyRegistered {
                account_id: self.id()?,
                credential_id,
                label,
            }]),
            AccountCommand::RemovePasskey { credential_id } => {
                Ok(vec![AccountEvent::PasskeyRemoved {
                    account_id: self.id()?,
                    credential_id,
                }])
            }
            AccountCommand::UsePasskey { credential_id } => Ok(vec![AccountEvent::PasskeyUsed {
                account_id: self.id()?,
                credential_id,
            }]),
            AccountCommand::ChangePassword { sessions_revoked } => {
                Ok(vec![AccountEvent::PasswordChanged {
                    account_id: self.id()?,
                    sessions_revoked,
                }])
            }
            AccountCommand::SetRoles { roles } => {
                let account_id = self.id()?;
                // Setting the roles it has changes nothing and records nothing.
                let same = roles.len() == self.roles.len()
                    && roles.iter().all(|role| self.roles.contains(role));
                if same {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::RolesChanged {
                    account_id,
                    roles,
                    previous: self.roles.clone(),
                }])
            }
            AccountCommand::Disable { reason } => {
                let account_id = self.id()?;
                if self.disabled {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::AccountDisabled { account_id, reason }])
            }
            AccountCommand::Enable => {
                let account_id = self.id()?;
                if !self.disabled {
                    return Ok(Vec::new());
                }
                Ok(vec![AccountEvent::AccountEnabled { account_id }])
            }
        }
    }

    fn evolve(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountRegistered { account_id, .. } => {
                self.registered = true;
                self.account_id = Some(account_id);
            }
            AccountEvent::EmailVerified { .. } => self.verified = true,
            AccountEvent::RolesChanged { roles, .. } => self.roles = roles,
            AccountEvent::TotpEnabled { .. } => self.totp_enabled = true,
            AccountEvent::TotpDisabled { .. } => self.totp_enabled = false,
            AccountEvent::AccountDisabled { .. } => self.disabled = true,
            AccountEvent::AccountEnabled { .. } => self.disabled = false,
            _ => {}
        }
    }
}

impl_aggregate!(Account);

#[cfg(test)]
mod tests {
    use super::*;

    fn registered() -> (Account, Uuid) {
        let id = Uuid::now_v7();
        let mut account = Account::default();
        for event in account
            .decide(AccountCommand::Register {
                account_id: id,
                email: "ada@example.com".into(),
            })
            .expect("registers")
        {
            account.evolve(event);
        }
        (account, id)
    }

    #[test]
    fn a_verified_account_cannot_register_again_or_ask_for_another_link() {
        let (mut account, id) = registered();
        account.evolve(AccountEvent::EmailVerified { account_id: id });
        assert_eq!(
            account.decide(AccountCommand::RepeatRegistration),
            Err(AccountError::AlreadyVerified)
        );
        assert_eq!(
            account.decide(AccountCommand::RequestVerification {
                expires_at: Utc::now()
            }),
            Err(AccountError::AlreadyVerified)
        );
        assert_eq!(account.decide(AccountCommand::VerifyEmail), Ok(Vec::new()));
    }

    #[test]
    fn a_passkey_is_recorded_for_a_registered_account_only() {
        let register = || AccountCommand::RegisterPasskey {
            credential_id: "Y3JlZA".to_owned(),
            label: "laptop".to_owned(),
        };
        assert_eq!(
            Account::default().decide(register()),
            Err(AccountError::NotFound)
        );
        let (account, id) = registered();
        assert_eq!(
            account.decide(register()),
            Ok(vec![AccountEvent::PasskeyRegistered {
                account_id: id,
                credential_id: "Y3JlZA".to_owned(),
                label: "laptop".to_owned(),
            }])
        );
        assert_eq!(
            account.decide(AccountCommand::RemovePasskey {
                credential_id: "Y3JlZA".to_owned()
            }),
            Ok(vec![AccountEvent::PasskeyRemoved {
                account_id: id,
                credential_id: "Y3JlZA".to_owned(),
            }])
        );
        assert_eq!(
            Account::default().decide(AccountCommand::UsePasskey {
                credential_id: "Y3JlZA".to_owned()
            }),
            Err(AccountError::NotFound)
        );
        assert_eq!(
            account.decide(AccountCommand::UsePasskey {
                credential_id: "Y3JlZA".to_owned()
            }),
            Ok(vec![AccountEvent::PasskeyUsed {
                account_id: id,
                credential_id: "Y3JlZA".to_owned(),
            }])
        );
    }

    #[test]
    fn an_unknown_account_takes_no_reset() {
        assert_eq!(
            Account::default().decide(AccountCommand::ResetPassword {
                sessions_revoked: 0
            }),
            Err(AccountError::NotFound)
        );
    }

    fn apply(
        account: &mut Account,
        command: AccountCommand,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let events = account.decide(command)?;
        for event in events.clone() {
            account.evolve(event);
        }
        Ok(events)
    }

    #[test]
    fn totp_can_be_enabled_once_and_then_disabled() {
        let (mut account, id) = registered();
        assert_eq!(
            apply(&mut account, AccountCommand::EnableTotp),
            Ok(vec![AccountEvent::TotpEnabled { account_id: id }])
        );
        assert_eq!(
            apply(&mut account, AccountCommand::EnableTotp),
            Err(AccountError::TotpAlreadyEnabled)
        );
        assert_eq!(
            apply(
                &mut account,
                AccountCommand::DisableTotp {
                    by: DisabledBy::Owner
                }
            ),
            Ok(vec![AccountEvent::TotpDisabled {
                account_id: id,
                by: DisabledBy::Owner
            }])
        );
        assert!(!account.totp_enabled);
    }

    #[test]
    fn without_totp_nothing_can_be_disabled_and_no_recovery_codes_exist() {
        let (mut account, _) = registered();
        for command in [
            AccountCommand::DisableTotp {
                by: DisabledBy::Owner,
            },
            AccountCommand::GenerateRecoveryCodes { count: 10 },
            AccountCommand::UseRecoveryCode { remaining: 9 },
        ] {
            assert_eq!(
                apply(&mut account, command),
                Err(AccountError::TotpNotEnabled)
            );
        }
    }

    #[test]
    fn recovery_code_events_carry_counts_only() {
        let (mut account, id) = registered();
        apply(&mut account, AccountCommand::EnableTotp).expect("enables");
        assert_eq!(
            apply(
                &mut account,
                AccountCommand::GenerateRecoveryCodes { count: 10 }
            ),
            Ok(vec![AccountEvent::RecoveryCodesGenerated {
                account_id: id,
                count: 10
            }])
        );
        assert_eq!(
            apply(
                &mut account,
                AccountCommand::UseRecoveryCode { remaining: 9 }
            ),
            Ok(vec![AccountEvent::RecoveryCodeUsed {
                account_id: id,
                remaining: 9
            }])
        );
    }

    #[test]
    fn the_bootstrap_admin_is_verified_with_admin_granted() {
        let id = Uuid::now_v7();
        let events = Account::default()
            .decide(AccountCommand::Bootstrap {
                account_id: id,
                email: "admin@chronicle.test".into(),
            })
            .expect("bootstraps");
        let mut account = Account::default();
        for event in events {
            account.evolve(event);
        }
        assert!(account.verified);
        assert_eq!(account.roles, vec!["admin".to_owned()]);
    }

    #[test]
    fn roles_are_recorded_with_what_they_replace_and_an_unchanged_set_records_nothing() {
        let (mut account, id) = registered();
        let granted = account
            .decide(AccountCommand::SetRoles {
                roles: vec!["admin".into(), "auditor".into()],
            })
            .expect("sets");
        assert_eq!(
            granted,
            [AccountEvent::RolesChanged {
                account_id: id,
                roles: vec!["admin".into(), "auditor".into()],
                previous: Vec::new(),
            }]
        );
        for event in granted {
            account.evolve(event);
        }
        assert_eq!(
            account.decide(AccountCommand::SetRoles {
                roles: vec!["auditor".into(), "admin".into()],
            }),
            Ok(Vec::new())
        );
    }

    #[test]
    fn a_disabled_account_is_disabled_once_and_enabled_once() {
        let (mut account, id) = registered();
        assert_eq!(account.decide(AccountCommand::Enable), Ok(Vec::new()));
        for event in account
            .decide(AccountCommand::Disable { reason: None })
            .expect("disables")
        {
            account.evolve(event);
        }
        assert!(account.disabled);
        assert_eq!(
            account.decide(AccountCommand::Disable { reason: None }),
            Ok(Vec::new())
        );
        assert_eq!(
            account.decide(AccountCommand::Enable),
            Ok(vec![AccountEvent::AccountEnabled { account_id: id }])
        );
    }
}
