//! The status page's read models: `service_status_history` (every report, one row per event)
//! and `service_status_latest` (per service, the report of its newest event).

use async_trait::async_trait;
use events::RecordedEvent;
use events::status::{self, ServiceStatusEvent};
use sqlx::{Postgres, Transaction};

use super::decode::decode;
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

/// Projects `ServiceStatus` streams into `service_status_history` and
/// `service_status_latest`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceStatusProjection;

impl ServiceStatusProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::SERVICE_STATUS.name;
}

#[async_trait]
impl Projection for ServiceStatusProjection {
    fn model(&self) -> ReadModel {
        catalogue::SERVICE_STATUS
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let ServiceStatusEvent::StatusReported {
            status,
            description,
        } = decode(event, Some(status::EVENT_VERSION))?;
        let service_id = &event.aggregate_id;
        // The primary key (service_id, version) makes a replayed event a no-op.
        sqlx::query(
            "INSERT INTO service_status_history \
                 (service_id, version, status, description, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (service_id, version) DO NOTHING",
        )
        .bind(service_id)
        .bind(event.version)
        .bind(status.as_str())
        .bind(&description)
        .bind(event.recorded_at)
        .execute(&mut **tx)
        .await?;
        // "Latest" means the newest event of the stream, by revision: the guard keeps an older
        // revision (a replay) from overwriting a newer one, whatever the clocks say.
        sqlx::query(
            "INSERT INTO service_status_latest \
                 (service_id, status, description, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (service_id) DO UPDATE \
                SET status = EXCLUDED.status, description = EXCLUDED.description, \
                    updated_at = EXCLUDED.updated_at, version = EXCLUDED.version \
              WHERE service_status_latest.version < EXCLUDED.version",
        )
        .bind(service_id)
        .bind(status.as_str())
        .bind(&description)
        .bind(event.recorded_at)
        .bind(event.version)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
