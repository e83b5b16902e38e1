//! Appending to the event store, and loading aggregates through cqrs-es and postgres-es.
//!
//! Loading goes through postgres-es's repository (with the upcasters of schema evolution).
//! Appending is ours: one statement inserts every event of a command and returns their log
//! positions, and the same transaction completes the request's idempotency claim, so a stored
//! answer exists exactly when its events do (docs/decisions/0003-atomic-idempotency.md).

use cqrs_es::persist::{EventUpcaster, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore as _};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::position::LogPosition;

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
    /// The serialized [`crate::EventMetadata`].
    pub metadata: Value,
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The log position of the last event appended.
    pub last: LogPosition,
    /// How many events were appended.
    pub count: usize,
}

/// A request's claim on an idempotency key, completed by the append that answers it.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Whose key it is.
    pub principal: String,
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// Identifies the attempt holding the claim; a takeover replaces it.
    pub owner: Uuid,
}

/// The answer stored for an idempotent request, replayed for its repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `Location` header, for creates.
    pub location: Option<String>,
    /// `ETag` header.
    pub etag: Option<String>,
}

/// Builds the stored answer of a request from what its append wrote.
pub type AnswerFn<'a> = dyn Fn(&AppendReceipt) -> StoredAnswer + Sync + 'a;

/// Why an append did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer took one of the stream revisions first.
    #[error("stream revision already taken")]
    Conflict,
    /// The idempotency claim was taken over by another attempt.
    #[error("idempotency claim lost")]
    ClaimLost,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Appends `events` in one transaction, completing `completion`'s claim with the answer it
/// builds from the receipt, and returns where the events landed.
pub async fn append(
    pool: &PgPool,
    events: &[NewEvent],
    completion: Option<(&IdempotencyClaim, &AnswerFn<'_>)>,
) -> Result<AppendReceipt, AppendError> {
    let Some((claim, answer)) = completion else {
        // One INSERT is atomic on its own: no BEGIN and COMMIT round trips.
        let mut connection = pool.acquire().await?;
        return insert(&mut connection, events).await;
    };
    let mut tx = pool.begin().await?;
    let receipt = append_in(&mut tx, events).await?;
    complete_claim(&mut tx, claim, &answer(&receipt)).await?;
    tx.commit().await.map_err(classify)?;
    Ok(receipt)
}

/// Appends `events` inside the caller's transaction (for batch writers that add rows of their
/// own to the same commit).
pub async fn append_in(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> Result<AppendReceipt, AppendError> {
    insert(tx, events).await
}

/// The one statement that appends `events`.
async fn insert(
    connection: &mut PgConnection,
    events: &[NewEvent],
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
    // One round trip for the whole batch; WITH ORDINALITY keeps positions in input order.
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, \
                             event_version, payload, metadata) \
         SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, \
                e.event_version, e.payload::json, e.metadata::json \
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
                       $6::text[], $7::text[], $8::text[]) \
                WITH ORDINALITY AS e(event_id, aggregate_type, aggregate_id, sequence, \
                                     event_type, event_version, payload, metadata, n) \
          ORDER BY e.n \
         RETURNING tx_id::text::bigint, global_position",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&aggregate_ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&metadata)
    .fetch_all(&mut *connection)
    .await
    .map_err(classify)?;
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

/// Completes a claim with its answer inside the append transaction; fails when the claim was
/// taken over, which rolls the append back.
pub async fn complete_claim(
    tx: &mut Transaction<'_, Postgres>,
    claim: &IdempotencyClaim,
    answer: &StoredAnswer,
) -> Result<(), AppendError> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys \
            SET status = $4, response_body = $5, location = $6, etag = $7, \
                completed_at = now(), owner = NULL \
          WHERE principal = $1 AND key = $2 AND owner = $3 AND status IS NULL",
    )
    .bind(&claim.principal)
    .bind(&claim.key)
    .bind(claim.owner)
    .bind(i16::try_from(answer.status).unwrap_or(i16::MAX))
    .bind(sqlx::types::Json(&answer.body))
    .bind(&answer.location)
    .bind(&answer.etag)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 1 {
        Ok(())
    } else {
        Err(AppendError::ClaimLost)
    }
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

/// An aggregate loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state after applying every stored event.
    pub aggregate: A,
    /// The stream revision: how many events the stream holds.
    pub version: i64,
}

/// Loads aggregates of type `A` with postgres-es, upcasting old event versions on the way.
pub struct AggregateLoader<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
}

impl<A: Aggregate> AggregateLoader<A> {
    /// A loader on `pool` applying `upcasters` to stored events.
    pub fn new(pool: PgPool, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        let repo = PostgresEventRepository::new(pool);
        Self {
            store: PersistedEventStore::new_event_store(repo).with_upcasters(upcasters),
        }
    }

    /// Replays the stream of `aggregate_id` into a fresh aggregate.
    pub async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        Ok(Loaded {
            aggregate: context.aggregate,
            version: i64::try_from(context.current_sequence).unwrap_or(i64::MAX),
        })
    }
}
