//! The Session aggregate: one login, its refresh rotations, reuse and revocation. The refresh
//! tokens themselves live beside the log (event_store::sessions).

use chrono::{DateTime, Utc};
use events::session::{AGGREGATE_TYPE, LoginMethod, RevokeReason, SessionEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Decide;

/// What can be asked of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// A login opens the session.
    Open {
        /// The session's id.
        session_id: Uuid,
        /// Whose it is.
        account_id: Uuid,
        /// How the login proved itself.
        method: LoginMethod,
        /// The access tokens' `amr`.
        amr: Vec<String>,
        /// When the session ends whatever happens.
        expires_at: DateTime<Utc>,
        /// When its first refresh token lapses unless spent.
        refresh_expires_at: DateTime<Utc>,
    },
    /// The current refresh token was spent for the next generation.
    Refresh {
        /// When the next one lapses unless spent.
        refresh_expires_at: DateTime<Utc>,
    },
    /// A spent refresh token of `presented` generation came back: revoke the session.
    DetectReuse {
        /// The generation of the token presented.
        presented: i64,
    },
    /// End the session.
    Revoke {
        /// Why.
        reason: RevokeReason,
    },
}

/// A session rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session does not exist.
    #[error("session not found")]
    NotFound,
    /// The session id is taken.
    #[error("a session with this id already exists")]
    AlreadyExists,
    /// The session was revoked.
    #[error("the session was revoked")]
    Revoked,
}

/// A session's state, as far as its rules need it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id, once opened.
    pub session_id: Option<Uuid>,
    /// Whose it is.
    pub account_id: Option<Uuid>,
    /// The current refresh generation.
    pub generation: i64,
    /// Whether it ended.
    pub revoked: bool,
}

impl Session {
    fn ids(&self) -> Result<(Uuid, Uuid), SessionError> {
        match (self.session_id, self.account_id) {
            (Some(session), Some(account)) => Ok((session, account)),
            _ => Err(SessionError::NotFound),
        }
    }
}

impl Decide for Session {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;

    fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        match command {
            SessionCommand::Open {
                session_id,
                account_id,
                method,
                amr,
                expires_at,
                refresh_expires_at,
            } => {
                if self.session_id.is_some() {
                    return Err(SessionError::AlreadyExists);
                }
                Ok(vec![SessionEvent::LoginSucceeded {
                    session_id,
                    account_id,
                    method,
                    amr,
                    expires_at,
                    refresh_expires_at: Some(refresh_expires_at),
                }])
            }
            SessionCommand::Refresh { refresh_expires_at } => {
                let (session_id, _) = self.ids()?;
                if self.revoked {
                    return Err(SessionError::Revoked);
                }
                Ok(vec![SessionEvent::SessionRefreshed {
                    session_id,
                    generation: self.generation + 1,
                    refresh_expires_at: Some(refresh_expires_at),
                }])
            }
            SessionCommand::DetectReuse { presented } => {
                let (session_id, account_id) = self.ids()?;
                if self.revoked {
                    return Ok(Vec::new());
                }
                Ok(vec![
                    SessionEvent::RefreshReused {
                        session_id,
                        account_id,
                        presented_generation: presented,
                        current_generation: self.generation,
                    },
                    SessionEvent::SessionRevoked {
                        session_id,
                        account_id,
                        reason: RevokeReason::RefreshReuse,
                    },
                ])
            }
            SessionCommand::Revoke { reason } => {
                let (session_id, account_id) = self.ids()?;
                if self.revoked {
                    return Ok(Vec::new());
                }
                Ok(vec![SessionEvent::SessionRevoked {
                    session_id,
                    account_id,
                    reason,
                }])
            }
        }
    }

    fn evolve(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::LoginSucceeded {
                session_id,
                account_id,
                ..
            } => {
                self.session_id = Some(session_id);
                self.account_id = Some(account_id);
                self.generation = 1;
            }
            SessionEvent::SessionRefreshed { generation, .. } => self.generation = generation,
            SessionEvent::RefreshReused { .. } => {}
            SessionEvent::SessionRevoked { .. } => self.revoked = true,
        }
    }
}

impl_aggregate!(Session);

#[cfg(test)]
mod tests {
    use super::*;

    fn opened() -> Session {
        let mut session = Session::default();
        for event in session
            .decide(SessionCommand::Open {
                session_id: Uuid::now_v7(),
                account_id: Uuid::now_v7(),
                method: LoginMethod::Password,
                amr: vec!["pwd".into()],
                expires_at: Utc::now(),
                refresh_expires_at: Utc::now(),
            })
            .expect("opens")
        {
            session.evolve(event);
        }
        session
    }

    #[test]
    fn each_refresh_moves_to_the_next_generation() {
        let mut session = opened();
        let lapses = Utc::now();
        let events = session
            .decide(SessionCommand::Refresh {
                refresh_expires_at: lapses,
            })
            .expect("refreshes");
        assert!(matches!(
            events.as_slice(),
            [SessionEvent::SessionRefreshed { generation: 2, refresh_expires_at: Some(at), .. }]
                if *at == lapses
        ));
        for event in events {
            session.evolve(event);
        }
        assert_eq!(session.generation, 2);
    }

    #[test]
    fn reuse_revokes_the_session_once_and_a_revoked_session_does_not_refresh() {
        let mut session = opened();
        let events = session
            .decide(SessionCommand::DetectReuse { presented: 1 })
            .expect("decides");
        assert_eq!(events.len(), 2);
        for event in events {
            session.evolve(event);
        }
        assert_eq!(
            session.decide(SessionCommand::Refresh {
                refresh_expires_at: Utc::now()
            }),
            Err(SessionError::Revoked)
        );
        assert_eq!(
            session.decide(SessionCommand::Revoke {
                reason: RevokeReason::Logout
            }),
            Ok(Vec::new())
        );
    }
}
