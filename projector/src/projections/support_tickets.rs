//! The `support_tickets` read model: one row per ticket with its email, subject, message,
//! current status, timestamps and the stream revision it reflects (for ETags).

use async_trait::async_trait;
use events::RecordedEvent;
use events::ticket::{self, TicketEvent};
use sqlx::{Postgres, Transaction};

use super::decode::{RowPerStream, decode, uuid_id};
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

const ROWS: RowPerStream = RowPerStream {
    table: "support_tickets",
    noun: "ticket",
};

/// Projects `SupportTicket` streams into the `support_tickets` table.
///
/// Exactly-once comes from the engine's checkpoint; the `version < $v` guards additionally make
/// a replayed event a no-op.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupportTicketsProjection;

impl SupportTicketsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::SUPPORT_TICKETS.name;
}

#[async_trait]
impl Projection for SupportTicketsProjection {
    fn model(&self) -> ReadModel {
        catalogue::SUPPORT_TICKETS
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded: TicketEvent = decode(event, Some(ticket::EVENT_VERSION))?;
        let id = uuid_id(event)?;
        let at = event.recorded_at;
        let version = event.version;
        match decoded {
            TicketEvent::TicketOpened {
                email,
                subject,
                message,
                submitter_id,
            } => {
                // An open is revision 1 of its stream; a conflict can only be a replay.
                sqlx::query(
                    "INSERT INTO support_tickets \
                         (id, email, subject, message, status, created_at, updated_at, version, \
                          submitter_id) \
                     VALUES ($1, $2, $3, $4, 'open', $5, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(email)
                .bind(subject)
                .bind(message)
                .bind(at)
                .bind(version)
                .bind(submitter_id)
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
                ROWS.ensure_applied(tx, id, version, updated.rows_affected())
                    .await
            }
        }
    }
}
