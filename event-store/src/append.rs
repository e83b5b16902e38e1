//! Appending to the event store: one statement inserts every event of a command, returns
//! their log positions and, for a request with an idempotency key, records the key with its
//! outcome, so a stored outcome exists exactly when its events do
//! (docs/decisions/0003-atomic-idempotency.md, 0017-one-statement-idempotency.md).

use std::sync::LazyLock;

use cqrs_es::DomainEvent;
use events::LogPosition;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::idempotency::{self, Completion};

/// An event ready to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event's id (UUID v7), unique across the log.
    pub event_id: Uuid,
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: String,
    /// The stream revision this event takes; the append fails if another event holds it.
    pub sequence: i64,
    /// The event's type name.
    pub event_type: String,
    /// The event's schema version.
    pub event_version: String,
    /// The serialized event.
    pub payload: Value,
    /// The serialized [`events::EventMetadata`].
    pub metadata: Value,
}

impl NewEvent {
    /// `event` at revision `sequence` of the stream (`aggregate_type`, `aggregate_id`), with a
    /// fresh id: the one way the command path and tests turn a domain event into a row.
    ///
    /// # Errors
    ///
    /// The event does not serialize.
    pub fn of<E: DomainEvent>(
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        event: &E,
        metadata: Value,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::from_parts(
            aggregate_type,
            aggregate_id,
            sequence,
            (&event.event_type(), &event.event_version()),
            serde_json::to_value(event)?,
            metadata,
        ))
    }

    /// An event from its stored parts, `(event_type, event_version)` included: for tools and
    /// tests that write what no domain type describes (old schema versions, poison payloads).
    pub fn from_parts(
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        (event_type, event_version): (&str, &str),
        payload: Value,
        metadata: Value,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            event_type: event_type.to_owned(),
            event_version: event_version.to_owned(),
            payload,
            metadata,
        }
    }
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The log position of the last event appended.
    pub last: LogPosition,
    /// How many events were appended.
    pub count: usize,
}

/// Why an append did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer took one of the stream revisions first.
    #[error("stream revision already taken")]
    Conflict,
    /// The idempotency key has a record already: another attempt with the key completed
    /// first (or an earlier version's claim on it is still open).
    #[error("idempotency key already recorded")]
    ClaimLost,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Appends `events` atomically and returns where they landed. With a `completion`, the same
/// statement records the request's idempotency key with its outcome, and appends nothing
/// when the key has a record already ([`AppendError::ClaimLost`]).
pub async fn append(
    pool: &PgPool,
    events: &[NewEvent],
    completion: Option<&Completion<'_>>,
) -> Result<AppendReceipt, AppendError> {
    let mut connection = pool.acquire().await?;
    match completion {
        // A command that changed nothing still has an outcome, and it is still stored.
        Some(completion) if events.is_empty() => {
            idempotency::complete(&mut connection, completion).await?;
            Ok(AppendReceipt {
                last: LogPosition::START,
                count: 0,
            })
        }
        // One statement is atomic on its own: no BEGIN and COMMIT round trips.
        _ => insert(&mut connection, events, completion).await,
    }
}

/// Appends `events` inside the caller's transaction, recording `completion`'s key in the
/// same statement as [`append`] does: for commands that write rows of their own beside the
/// log (credentials, refresh tokens, the mail outbox) which must commit with their events or
/// not at all (docs/decisions/0009-transactional-side-rows.md). The caller begins the
/// transaction, runs its statements before or after this one, and commits; a failure here
/// leaves the transaction to be rolled back.
///
/// # Errors
///
/// As [`append`]; after [`AppendError::Conflict`] the transaction is aborted (PostgreSQL
/// refuses further statements), so the caller must roll back.
pub async fn append_with(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
    completion: Option<&Completion<'_>>,
) -> Result<AppendReceipt, AppendError> {
    match completion {
        Some(completion) if events.is_empty() => {
            idempotency::complete(tx, completion).await?;
            Ok(AppendReceipt {
                last: LogPosition::START,
                count: 0,
            })
        }
        _ if events.is_empty() => Ok(AppendReceipt {
            last: LogPosition::START,
            count: 0,
        }),
        _ => insert(tx, events, completion).await,
    }
}

/// Appends `events` inside the caller's transaction (for batch writers that add rows of their
/// own to the same commit).
pub async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> Result<AppendReceipt, AppendError> {
    insert(tx, events, None).await
}

/// The one statement that appends `events`, and records `completion`'s key when given.
async fn insert(
    connection: &mut PgConnection,
    events: &[NewEvent],
    completion: Option<&Completion<'_>>,
) -> Result<AppendReceipt, AppendError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut aggregate_ids = Vec::with_capacity(events.len());
    let mut sequences = Vec::with_capacity(events.len());
    let mut event_types = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut metadata = Vec::with_capacity(events.len());
    for event in events {
        ids.push(event.event_id);
        types.push(event.aggregate_type.as_str());
        aggregate_ids.push(event.aggregate_id.as_str());
        sequences.push(event.sequence);
        event_types.push(event.event_type.as_str());
        versions.push(event.event_version.as_str());
        payloads.push(event.payload.to_string());
        metadata.push(event.metadata.to_string());
    }
    let sql: &str = if completion.is_some() {
        &COMPLETING_INSERT
    } else {
        &INSERT
    };
    let mut query = sqlx::query_as(sql)
        .bind(&ids)
        .bind(&types)
        .bind(&aggregate_ids)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata);
    if let Some(completion) = completion {
        query = idempotency::bind_completion(query, completion, events.last());
    }
    let rows: Vec<(i64, i64)> = query.fetch_all(&mut *connection).await.map_err(classify)?;
    if completion.is_some() && rows.len() != events.len() {
        return Err(AppendError::ClaimLost);
    }
    let last = rows
        .iter()
        .map(|&(tx_id, position)| LogPosition { tx_id, position })
        .max()
        .unwrap_or_default();
    Ok(AppendReceipt {
        last,
        count: rows.len(),
    })
}

/// The append statement, built once: one round trip for the whole batch; WITH ORDINALITY
/// keeps positions in input order.
static INSERT: LazyLock<String> = LazyLock::new(|| insert_sql(""));

/// The append statement that also records an idempotency key: a data-modifying CTE inserts
/// the record and the insert depends on it, so both land or neither does (the whole
/// statement fails on a revision conflict).
static COMPLETING_INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}{}",
        idempotency::completion_cte(9),
        insert_sql("WHERE EXISTS (SELECT 1 FROM claim) ")
    )
});

fn insert_sql(guard: &str) -> String {
    format!(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
                e.event_version, e.payload::json, e.metadata::json \
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                       $6::text[], $7::text[], $8::text[]) \
                WITH ORDINALITY AS e(event_id, aggregate_type, aggregate_id, sequence, \
                                     event_type, event_version, payload, metadata, n) \
          {guard}\
          ORDER BY e.n \
         RETURNING tx_id::text::bigint, global_position"
    )
}

/// Maps a unique violation on a stream revision to [`AppendError::Conflict`].
fn classify(error: sqlx::Error) -> AppendError {
    match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("events_pkey") => {
            AppendError::Conflict
        }
        _ => AppendError::Database(error),
    }
}
