//! What the projections share: decoding a recorded event into its typed payload (anything
//! else is poison) and making sure a guarded update found its row.

use cqrs_es::DomainEvent;
use events::RecordedEvent;
use serde::de::DeserializeOwned;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::subscription::ProjectionError;

/// Decodes a recorded event's payload into `E` when its schema version is `version` (`None`:
/// no version of this event type is readable). Other versions and undecodable payloads are
/// poison. The recorded type is not checked; [`decode`] does that too.
pub(crate) fn decode_payload<E: DeserializeOwned>(
    event: &RecordedEvent,
    version: Option<&str>,
) -> Result<E, ProjectionError> {
    if version != Some(event.event_version.as_str()) {
        // The log upcasts every version it knows to the current one (events::upcast);
        // guessing at any other schema would corrupt the model.
        return Err(ProjectionError::poison(format!(
            "unsupported event version {:?} of {}",
            event.event_version, event.event_type
        )));
    }
    // Straight from the stored text into the typed event: nothing in between has a recursion
    // limit to trip on, and a payload past this decoder's limit is this event's poison.
    serde_json::from_str(event.payload.get())
        .map_err(|error| ProjectionError::poison(format!("undecodable payload: {error}")))
}

/// [`decode_payload`], and a payload whose type contradicts the recorded type is poison too.
pub(crate) fn decode<E: DomainEvent + DeserializeOwned>(
    event: &RecordedEvent,
    version: Option<&str>,
) -> Result<E, ProjectionError> {
    let decoded: E = decode_payload(event, version)?;
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

/// A read model of one row per stream, keyed by the stream's UUID in `id` and guarded by the
/// stream revision in `version`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowPerStream {
    /// The table.
    pub table: &'static str,
    /// What a row is, for messages: `project`, `post`.
    pub noun: &'static str,
}

impl RowPerStream {
    /// Checks a guarded update (`... WHERE id = $1 AND version < $v`) of revision `version`.
    ///
    /// An update that touched no row is fine when the row already reflects this revision (a
    /// replay); when the stream has no row at all, the stream contradicts the model, which
    /// must stop the projection rather than be skipped.
    pub(crate) async fn ensure_applied(
        self,
        tx: &mut Transaction<'_, Postgres>,
        id: Uuid,
        version: i64,
        rows_affected: u64,
    ) -> Result<(), ProjectionError> {
        if rows_affected > 0 {
            return Ok(());
        }
        // `table` is a constant of this crate, never input, so formatting it in is safe.
        let select = format!("SELECT version FROM {} WHERE id = $1", self.table);
        let current: Option<i64> = sqlx::query_scalar(&select)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        match current {
            Some(_) => Ok(()),
            None => Err(ProjectionError::poison(format!(
                "{} {id} has no row to apply revision {version} to",
                self.noun
            ))),
        }
    }
}
