//! Loading aggregates for the write side: from the stream's latest snapshot and the events
//! after it, with the upcasters of schema evolution applied to every stored event on the way;
//! reading a stream's revision alone; writing snapshots. Every statement on `snapshots` lives
//! here.
//!
//! A snapshot is a cache of the aggregate's state at one revision, never the truth: events
//! after it are always applied on top, a snapshot that no longer deserializes (the state type
//! changed) is ignored and the stream replayed whole, and several rows for one stream only
//! cost a little space (the newest is read). So a load costs the snapshot plus at most the
//! events written since it, whatever the stream's length.

use cqrs_es::Aggregate;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;

/// Events read per statement when loading a stream: what follows a snapshot is fewer than
/// this, so one statement; a stream replayed whole is read in pages of it.
const LOAD_PAGE: i64 = 1000;

/// An aggregate loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state after applying every stored event.
    pub aggregate: A,
    /// The stream revision: how many events the stream holds.
    pub version: i64,
    /// How many events were read and applied (those after the snapshot, if one was used).
    pub replayed: usize,
}

/// What a stream's first and last events say beyond the aggregate's state: what a read model
/// takes from the log rather than from the events' meaning (creation time, last change).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEnds {
    /// The stream revision these ends are read at.
    pub version: i64,
    /// The first event's payload, as stored (not upcast).
    pub first_payload: Value,
    /// When the first event was recorded.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the event at `version` was recorded.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Why a stream could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored event does not deserialize, even after upcasting.
    #[error("stored event does not deserialize: {0}")]
    Event(#[from] serde_json::Error),
}

/// Loads aggregates of type `A`, upcasting old event versions on the way.
pub struct AggregateLoader<A: Aggregate> {
    pool: PgPool,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

/// A stored event as the loader reads it.
#[derive(sqlx::FromRow)]
struct Row {
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Json<Value>,
    metadata: Json<Value>,
}

impl<A: Aggregate> AggregateLoader<A> {
    /// A loader on `pool` applying `upcasters` to stored events.
    pub fn new(pool: PgPool, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        Self {
            pool,
            upcasters,
            _aggregate: std::marker::PhantomData,
        }
    }

    /// The state of `aggregate_id`: its newest snapshot, if readable, and every event after it.
    ///
    /// # Errors
    ///
    /// The database failed, or a stored event does not deserialize as `A::Event` even after
    /// upcasting.
    pub async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, LoadError> {
        // One connection for both statements: one pool checkout (and its liveness check).
        let mut connection = self.pool.acquire().await?;
        let snapshot: Option<(i64, Json<Value>)> = sqlx::query_as(
            "SELECT last_sequence, payload FROM snapshots \
              WHERE aggregate_type = $1 AND aggregate_id = $2 \
              ORDER BY last_sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(&mut *connection)
        .await?;
        let (mut aggregate, mut version) = snapshot
            .and_then(|(sequence, Json(payload))| {
                // Unreadable: the state type changed since it was written; replay instead.
                serde_json::from_value::<A>(payload)
                    .ok()
                    .map(|state| (state, sequence))
            })
            .unwrap_or_else(|| (A::default(), 0));
        // Metadata is read too: an upcaster may take facts from it (ProjectCreated v1's actor).
        // In pages: a stream replayed whole (no snapshot yet) never sits in memory at once
        // (a 100,000-event project took the command API to 576 MiB read in one piece).
        let mut replayed = 0;
        loop {
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT sequence, event_type, event_version, payload, metadata FROM events \
                  WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
                  ORDER BY sequence LIMIT $4",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(version)
            .bind(LOAD_PAGE)
            .fetch_all(&mut *connection)
            .await?;
            let last_page = rows.len() < usize::try_from(LOAD_PAGE).unwrap_or(usize::MAX);
            replayed += rows.len();
            for row in rows {
                let serialized = SerializedEvent::new(
                    aggregate_id.to_owned(),
                    usize::try_from(row.sequence).unwrap_or_default(),
                    A::TYPE.to_owned(),
                    row.event_type,
                    row.event_version,
                    row.payload.0,
                    row.metadata.0,
                );
                let upcast = self.upcasters.iter().fold(serialized, |event, upcaster| {
                    if upcaster.can_upcast(&event.event_type, &event.event_version) {
                        upcaster.upcast(event)
                    } else {
                        event
                    }
                });
                let event: A::Event = serde_json::from_value(upcast.payload)?;
                aggregate.apply(event);
                version = row.sequence;
            }
            if last_page {
                break;
            }
        }
        Ok(Loaded {
            aggregate,
            version,
            replayed,
        })
    }

    /// The revision of `aggregate_id`'s stream (0 when it has no events), read from the
    /// primary key alone: for commands whose decision needs no state.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revision(&self, aggregate_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT coalesce(max(sequence), 0) FROM events \
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_one(&self.pool)
        .await
    }

    /// The first event of `aggregate_id`'s stream and the time of its event at `version`
    /// (`None` when the stream has no such events): two rows by primary key, whatever the
    /// stream's length.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn ends(
        &self,
        aggregate_id: &str,
        version: i64,
    ) -> Result<Option<StreamEnds>, sqlx::Error> {
        let rows: Vec<(i64, Json<Value>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT sequence, payload, recorded_at FROM events \
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence IN (1, $3) \
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(None);
        };
        if first.0 != 1 || last.0 != version {
            return Ok(None);
        }
        Ok(Some(StreamEnds {
            version,
            first_payload: first.1.0.clone(),
            created_at: first.2,
            updated_at: last.2,
        }))
    }

    /// Stores `aggregate` as the state of `aggregate_id` at `version`, replacing older
    /// snapshots. Call it only with the state the events up to `version` produce: loads trust
    /// it and apply only later events.
    ///
    /// # Errors
    ///
    /// The state does not serialize, or the database failed.
    pub async fn save_snapshot(
        &self,
        aggregate_id: &str,
        aggregate: &A,
        version: i64,
    ) -> Result<(), sqlx::Error> {
        let payload = serde_json::to_value(aggregate)
            .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
        // Racing writers may both insert (their revisions differ); the next write removes the
        // older row, and a load reads the newest one either way.
        sqlx::query(
            "WITH older AS ( \
               DELETE FROM snapshots \
                WHERE aggregate_type = $1 AND aggregate_id = $2 AND last_sequence < $3) \
             INSERT INTO snapshots \
                    (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) \
             VALUES ($1, $2, $3, 0, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(version)
        .bind(Json(payload))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
