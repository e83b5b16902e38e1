//! Idempotency records: every statement on `idempotency_keys` (the record the append statement
//! writes as a CTE, the replay lookup, the purge), so the table has one owner
//! (docs/decisions/0003-atomic-idempotency.md, 0017-one-statement-idempotency.md).
//!
//! A record stores what a request committed as an outcome the caller chooses (any serde type:
//! the store knows nothing of HTTP), plus the stream revision it wrote last. A replay reads
//! that event's log position by primary key, so the caller can give back the original
//! consistency token although the position did not exist when the record was written.

use std::time::Duration;

use events::LogPosition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::append::{AppendError, NewEvent};

/// A request's idempotency key: the append that answers the request records it with the
/// outcome, in the same statement, and appends nothing when the key already has a record.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// Whose key it is.
    pub principal: String,
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// What the key is bound to: a hash of the request.
    pub fingerprint: Vec<u8>,
    /// How long an open claim left by an earlier version (which claimed keys before running
    /// the command) may stay incomplete before this key's append takes it over.
    pub lease: Duration,
}

/// A completed record, read back for a repeat of its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed<O> {
    /// The outcome stored when the request completed.
    pub outcome: O,
    /// The log position of the last event the request appended; `START` when it appended
    /// nothing.
    pub position: LogPosition,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    Mismatch,
    /// A request with this key is still running (an open claim, which only an earlier
    /// version writes).
    #[error("a request with this Idempotency-Key is still in progress")]
    InFlight,
    /// The stored outcome is not of the type the caller reads (written by another version).
    #[error("stored idempotency outcome unreadable: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The completion of a key: the outcome to store, serialized. The append that carries it
/// writes it in the statement that appends the events ([`crate::append::append`]).
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    key: &'a IdempotencyKey,
    outcome: Value,
}

impl<'a> Completion<'a> {
    /// Completes `key` with `outcome`.
    ///
    /// # Errors
    ///
    /// The outcome does not serialize.
    pub fn new<O: Serialize>(key: &'a IdempotencyKey, outcome: &O) -> serde_json::Result<Self> {
        Ok(Self {
            key,
            outcome: serde_json::to_value(outcome)?,
        })
    }
}

/// What is stored for `key` of `principal`: `None` when nothing is (the key is unused, or its
/// only attempts failed), the completed outcome when it was bound to `fingerprint`.
///
/// # Errors
///
/// [`IdempotencyError::Mismatch`] for a key bound to another fingerprint,
/// [`IdempotencyError::InFlight`] for an open claim (written by an earlier version),
/// [`IdempotencyError::Unreadable`] for an outcome that is not an `O`, and database failures.
pub async fn lookup<O: DeserializeOwned>(
    pool: &PgPool,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<Replayed<O>>, IdempotencyError> {
    let row: Option<StoredRow> = sqlx::query_as(
        "SELECT k.fingerprint, k.completed_at IS NOT NULL AS completed, k.response_body, \
                e.tx_id::text::bigint AS tx_id, e.global_position AS position \
           FROM idempotency_keys AS k \
           LEFT JOIN events AS e \
             ON e.aggregate_type = k.stream_type AND e.aggregate_id = k.stream_id \
            AND e.sequence = k.stream_version \
          WHERE k.principal = $1 AND k.key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    match row {
        None => Ok(None),
        Some(row) if row.fingerprint != fingerprint => Err(IdempotencyError::Mismatch),
        Some(row) => row.replayed().map(Some),
    }
}

/// A record, with the log position of the stream revision its request appended last.
#[derive(sqlx::FromRow)]
struct StoredRow {
    fingerprint: Vec<u8>,
    completed: bool,
    response_body: Option<sqlx::types::Json<Value>>,
    tx_id: Option<i64>,
    position: Option<i64>,
}

impl StoredRow {
    fn replayed<O: DeserializeOwned>(self) -> Result<Replayed<O>, IdempotencyError> {
        let (true, Some(body)) = (self.completed, self.response_body) else {
            return Err(IdempotencyError::InFlight);
        };
        let position = match (self.tx_id, self.position) {
            (Some(tx_id), Some(position)) => LogPosition { tx_id, position },
            _ => LogPosition::START,
        };
        Ok(Replayed {
            outcome: serde_json::from_value(body.0)?,
            position,
        })
    }
}

/// Deletes records completed more than `ttl` ago, and claims abandoned that long; returns how
/// many.
///
/// # Errors
///
/// The database failed.
pub async fn purge(pool: &PgPool, ttl: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(PURGE)
        .bind(ttl.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// The purge, one arm per index (migration 0020): `coalesce(completed_at, claimed_at)` would
/// be the same rows but could use neither index, so the hourly purge would scan the table.
const PURGE: &str = "DELETE FROM idempotency_keys \
     WHERE completed_at < now() - make_interval(secs => $1) \
        OR (completed_at IS NULL AND claimed_at < now() - make_interval(secs => $1))";

/// The CTE the append statement opens with to record a key, its parameters numbered from
/// `$first`; the insert guards on `EXISTS (SELECT 1 FROM claim)`. The record is written
/// complete, naming the stream revision the request wrote last (NULL when it wrote nothing).
/// When the key has a record already, nothing is written and `claim` is empty, so the events
/// are not appended either; while the transaction that wrote that record is still running,
/// the insert waits for it to end (a unique index's rule), so a repeat in flight never
/// appends beside its first attempt. The one record taken over is an open claim past its
/// lease with the same fingerprint, which only an earlier version leaves behind.
pub(crate) fn completion_cte(first: usize) -> String {
    let p = |n: usize| first + n;
    format!(
        "WITH claim AS ( \
           INSERT INTO idempotency_keys AS k \
                  (principal, key, fingerprint, response_body, stream_type, stream_id, \
                   stream_version, completed_at) \
           VALUES (${}, ${}, ${}, ${}, ${}, ${}, ${}, now()) \
           ON CONFLICT (principal, key) DO UPDATE \
              SET response_body = EXCLUDED.response_body, \
                  stream_type = EXCLUDED.stream_type, stream_id = EXCLUDED.stream_id, \
                  stream_version = EXCLUDED.stream_version, completed_at = now(), \
                  owner = NULL, claimed_at = now() \
            WHERE k.completed_at IS NULL AND k.fingerprint = EXCLUDED.fingerprint \
              AND k.claimed_at < now() - make_interval(secs => ${}) \
           RETURNING 1) ",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
    )
}

/// Binds [`completion_cte`]'s parameters, in its order; `last` is the last event appended.
pub(crate) fn bind_completion<'q, R>(
    query: QueryAs<'q, Postgres, R, PgArguments>,
    completion: &'q Completion<'_>,
    last: Option<&'q NewEvent>,
) -> QueryAs<'q, Postgres, R, PgArguments> {
    query
        .bind(&completion.key.principal)
        .bind(&completion.key.key)
        .bind(&completion.key.fingerprint)
        .bind(sqlx::types::Json(&completion.outcome))
        .bind(last.map(|event| event.aggregate_type.as_str()))
        .bind(last.map(|event| event.aggregate_id.as_str()))
        .bind(last.map(|event| event.sequence))
        .bind(completion.key.lease.as_secs_f64())
}

/// Records the key of a request that appended nothing.
///
/// # Errors
///
/// [`AppendError::ClaimLost`] when the key has a record already; database failures.
pub(crate) async fn complete(
    connection: &mut PgConnection,
    completion: &Completion<'_>,
) -> Result<(), AppendError> {
    let sql = format!("{} SELECT count(*) FROM claim", completion_cte(1));
    let (completed,): (i64,) = bind_completion(sqlx::query_as(&sql), completion, None)
        .fetch_one(&mut *connection)
        .await?;
    if completed == 1 {
        Ok(())
    } else {
        Err(AppendError::ClaimLost)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::PURGE;

    /// The purge's plan, generic as a prepared statement's becomes, on a table of 20 000
    /// records of which a few are due.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn the_purge_is_index_backed(pool: PgPool) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO idempotency_keys (principal, key, fingerprint, claimed_at, completed_at) \
             SELECT 'p', n::text, '\\x00', now(), \
                    CASE WHEN n % 1000 = 0 THEN NULL ELSE now() END \
               FROM generate_series(1, 20000) AS n",
        )
        .execute(&pool)
        .await?;
        let mut connection = pool.acquire().await?;
        for statement in [
            "ANALYZE idempotency_keys",
            "SET plan_cache_mode = force_generic_plan",
            &format!("PREPARE purge(float8) AS {PURGE}"),
        ] {
            sqlx::query(statement).execute(&mut *connection).await?;
        }
        let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE purge(86400)")
            .fetch_all(&mut *connection)
            .await?;
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("idempotency_keys_completed_at_idx"), "{plan}");
        assert!(plan.contains("idempotency_keys_open_claims_idx"), "{plan}");
        Ok(())
    }
}
