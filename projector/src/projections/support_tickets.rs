//! The `support_tickets` read model: one row per ticket with its email, subject, message,
//! current status, timestamps and the stream revision it reflects (for ETags).

use async_trait::async_trait;
use cqrs_es::DomainEvent;
use events::RecordedEvent;
use events::ticket::{self, TicketEvent};
use serde::de::DeserializeOwned;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError};

/// Projects `SupportTicket` streams into the `support_tickets` table.
///
/// Exactly-once comes from the engine's checkpoint; the `version < $v` guards additionally make
/// a replayed event a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupportTicketsProjection;

impl SupportTicketsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = "support_tickets";
}

/// Decodes a recorded event of schema `version` into `E`, refusing (as poison) other schema
/// versions, undecodable payloads and payloads whose type contradicts the recorded type.
/// Shared by the wave-1 projections.
pub(crate) fn decode<E: DomainEvent + DeserializeOwned>(
    event: &RecordedEvent,
    version: &str,
) -> Result<E, ProjectionError> {
    if event.event_version != version {
        // No upcaster exists yet; guessing at another schema would corrupt the model.
        return Err(ProjectionError::poison(format!(
            "unsupported event version {:?} of {}",
            event.event_version, event.event_type
        )));
    }
    let decoded: E = serde_json::from_value(event.payload.clone())
        .map_err(|error| ProjectionError::poison(format!("undecodable payload: {error}")))?;
    if decoded.event_type() != event.event_type {
        return Err(ProjectionError::poison(format!(
            "event type {:?} does not match its payload {:?}",
            event.event_type,
            decoded.event_type()
        )));
    }
    Ok(decoded)
}

/// The stream's aggregate id as a UUID; anything else is poison.
pub(crate) fn uuid_id(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|error| {
        ProjectionError::poison(format!(
            "aggregate id {:?} is not a uuid: {error}",
            event.aggregate_id
        ))
    })
}

#[async_trait]
impl Projection for SupportTicketsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[ticket::AGGREGATE_TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["support_tickets"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded: TicketEvent = decode(event, ticket::EVENT_VERSION)?;
        let id = uuid_id(event)?;
        let at = event.recorded_at;
        let version = event.version;
        match decoded {
            TicketEvent::TicketOpened {
                email,
                subject,
                message,
            } => {
                // An open is revision 1 of its stream; a conflict can only be a replay.
                sqlx::query(
                    "INSERT INTO support_tickets \
                         (id, email, subject, message, status, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, 'open', $5, $5, $6) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(email)
                .bind(subject)
                .bind(message)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            TicketEvent::TicketStatusChanged { to, .. } => {
                let updated = sqlx::query(
                    "UPDATE support_tickets SET status = $2, updated_at = $3, version = $4 \
                      WHERE id = $1 AND version < $4",
                )
                .bind(id)
                .bind(to.as_str())
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                if updated.rows_affected() > 0 {
                    return Ok(());
                }
                // Nothing touched: fine for a replay (the row is already at or past this
                // revision); a ticket without a row contradicts the model and must stop the
                // projection rather than be skipped.
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM support_tickets WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?;
                match exists {
                    Some(_) => Ok(()),
                    None => Err(ProjectionError::poison(format!(
                        "ticket {id} has no row to apply revision {version} to"
                    ))),
                }
            }
        }
    }
}
