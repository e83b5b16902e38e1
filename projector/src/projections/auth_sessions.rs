//! The `auth_sessions` read model: one row per session (a login and its refresh family) with
//! where and how it was opened, when it was last refreshed, its current generation and when
//! it ended. The client address and user agent come from the login event's metadata.

use async_trait::async_trait;
use events::RecordedEvent;
use events::session::{self, SessionEvent};
use sqlx::{Postgres, Transaction};

use super::decode::{RowPerStream, decode, uuid_id};
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

const ROWS: RowPerStream = RowPerStream {
    table: "auth_sessions",
    noun: "session",
};

/// Projects `Session` streams into the `auth_sessions` table.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthSessionsProjection;

impl AuthSessionsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::AUTH_SESSIONS.name;
}

/// A metadata field as text, when the request recorded one.
fn metadata_text(event: &RecordedEvent, field: &str) -> Option<String> {
    event
        .metadata
        .get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

#[async_trait]
impl Projection for AuthSessionsProjection {
    fn model(&self) -> ReadModel {
        catalogue::AUTH_SESSIONS
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded: SessionEvent = decode(event, Some(session::EVENT_VERSION))?;
        let id = uuid_id(event)?;
        let at = event.recorded_at;
        let version = event.version;
        let updated =
            match decoded {
                SessionEvent::LoginSucceeded {
                    account_id,
                    method,
                    amr,
                    expires_at,
                    refresh_expires_at,
                    ..
                } => {
                    let method = serde_json::to_value(method)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    // A login is revision 1 of its stream; a conflict can only be a replay.
                    sqlx::query(
                        "INSERT INTO auth_sessions \
                         (id, account_id, created_at, last_used_at, expires_at, ip, user_agent, \
                          method, amr, version, refresh_expires_at) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(account_id)
                    .bind(at)
                    .bind(expires_at)
                    .bind(metadata_text(event, "ip"))
                    .bind(metadata_text(event, "user_agent"))
                    .bind(method)
                    .bind(amr)
                    .bind(version)
                    .bind(refresh_expires_at)
                    .execute(&mut **tx)
                    .await?;
                    return Ok(());
                }
                SessionEvent::SessionRefreshed {
                    generation,
                    refresh_expires_at,
                    ..
                } => sqlx::query(
                    "UPDATE auth_sessions SET last_used_at = $2, generation = $4, version = $3, \
                                refresh_expires_at = $5 \
                      WHERE id = $1 AND version < $3",
                )
                .bind(id)
                .bind(at)
                .bind(version)
                .bind(generation)
                .bind(refresh_expires_at)
                .execute(&mut **tx)
                .await?,
                SessionEvent::RefreshReused { .. } => {
                    sqlx::query(
                        "UPDATE auth_sessions SET reuse_detected_at = $2, version = $3 \
                      WHERE id = $1 AND version < $3",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .execute(&mut **tx)
                    .await?
                }
                SessionEvent::SessionRevoked { reason, .. } => sqlx::query(
                    "UPDATE auth_sessions SET revoked_at = $2, revoke_reason = $4, version = $3 \
                      WHERE id = $1 AND version < $3",
                )
                .bind(id)
                .bind(at)
                .bind(version)
                .bind(reason.as_str())
                .execute(&mut **tx)
                .await?,
            };
        ROWS.ensure_applied(tx, id, version, updated.rows_affected())
            .await
    }
}
