//! Idempotency records: every statement on `idempotency_keys` (claim, replay lookup, release,
//! purge, and the completion the append statement runs as a CTE), so the table has one owner
//! (docs/decisions/0003-atomic-idempotency.md).
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
use uuid::Uuid;

use crate::append::{AppendError, NewEvent};

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

/// What a claim attempt found.
#[derive(Debug)]
pub enum Claimed<O> {
    /// The key is ours: run the command and complete the claim in its append.
    Owned(IdempotencyClaim),
    /// The key already completed this very request: its stored outcome.
    Replay(Replayed<O>),
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
    /// A request with this key is still running.
    #[error("a request with this Idempotency-Key is still in progress")]
    InFlight,
    /// The stored outcome is not of the type the caller reads (written by another version).
    #[error("stored idempotency outcome unreadable: {0}")]
    Unreadable(#[from] serde_json::Error),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The completion of a claim: the outcome to store, serialized. The append that carries it
/// writes it in the statement that appends the events ([`crate::append::append`]).
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    claim: &'a IdempotencyClaim,
    outcome: Value,
}

impl<'a> Completion<'a> {
    /// Completes `claim` with `outcome`.
    ///
    /// # Errors
    ///
    /// The outcome does not serialize.
    pub fn new<O: Serialize>(claim: &'a IdempotencyClaim, outcome: &O) -> serde_json::Result<Self> {
        Ok(Self {
            claim,
            outcome: serde_json::to_value(outcome)?,
        })
    }
}

/// Claims `key` for `principal`, or reads back its completed outcome, or says why not.
/// `lease` is how long a claim may stay incomplete before another attempt may take it over.
///
/// # Errors
///
/// [`IdempotencyError::Mismatch`] for a key bound to another fingerprint,
/// [`IdempotencyError::InFlight`] for a claim still held, [`IdempotencyError::Unreadable`] for
/// an outcome that is not an `O`, and database failures.
pub async fn claim<O: DeserializeOwned>(
    pool: &PgPool,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Duration,
) -> Result<Claimed<O>, IdempotencyError> {
    // Bounded: the key is free again only when a racing attempt released it between our two
    // statements, which needs that attempt to fail each time.
    for _ in 0..8 {
        let owner = Uuid::now_v7();
        // Insert a fresh claim, or take over one whose owner is presumed dead; in one
        // statement so two racing attempts cannot both win.
        let claimed: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (principal, key, fingerprint, owner) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (principal, key) DO UPDATE \
                SET owner = EXCLUDED.owner, claimed_at = now() \
              WHERE idempotency_keys.completed_at IS NULL \
                AND idempotency_keys.fingerprint = EXCLUDED.fingerprint \
                AND idempotency_keys.claimed_at < now() - make_interval(secs => $5) \
             RETURNING owner",
        )
        .bind(principal)
        .bind(key)
        .bind(fingerprint)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        if claimed.is_some() {
            return Ok(Claimed::Owned(IdempotencyClaim {
                principal: principal.to_owned(),
                key: key.to_owned(),
                owner,
            }));
        }
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
            Some(row) if row.fingerprint != fingerprint => return Err(IdempotencyError::Mismatch),
            Some(row) => return row.replayed().map(Claimed::Replay),
            // Released between our two statements: the key is free again.
            None => {}
        }
    }
    Err(IdempotencyError::InFlight)
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

/// Gives up a claim whose command failed, so the client may retry with the same key; failed
/// requests store nothing. A failure here is logged, not returned: the claim then expires
/// after its lease, and nothing is lost.
pub async fn release(pool: &PgPool, claim: &IdempotencyClaim) {
    let result = sqlx::query(
        "DELETE FROM idempotency_keys \
          WHERE principal = $1 AND key = $2 AND owner = $3 AND completed_at IS NULL",
    )
    .bind(&claim.principal)
    .bind(&claim.key)
    .bind(claim.owner)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not release idempotency claim");
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

/// The CTE the append statement opens with to complete a claim, its parameters numbered from
/// `$first`; the insert guards on `EXISTS (SELECT 1 FROM claim)`. The record names the stream
/// revision the request wrote last (NULL when it wrote nothing).
pub(crate) fn completion_cte(first: usize) -> String {
    let p = |n: usize| first + n;
    format!(
        "WITH claim AS ( \
           UPDATE idempotency_keys \
              SET response_body = ${}, stream_type = ${}, stream_id = ${}, \
                  stream_version = ${}, completed_at = now(), owner = NULL \
            WHERE principal = ${} AND key = ${} AND owner = ${} AND completed_at IS NULL \
           RETURNING 1) ",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
    )
}

/// Binds [`completion_cte`]'s parameters, in its order; `last` is the last event appended.
pub(crate) fn bind_completion<'q, R>(
    query: QueryAs<'q, Postgres, R, PgArguments>,
    completion: &'q Completion<'_>,
    last: Option<&'q NewEvent>,
) -> QueryAs<'q, Postgres, R, PgArguments> {
    query
        .bind(sqlx::types::Json(&completion.outcome))
        .bind(last.map(|event| event.aggregate_type.as_str()))
        .bind(last.map(|event| event.aggregate_id.as_str()))
        .bind(last.map(|event| event.sequence))
        .bind(&completion.claim.principal)
        .bind(&completion.claim.key)
        .bind(completion.claim.owner)
}

/// Completes a claim whose request appended nothing.
///
/// # Errors
///
/// [`AppendError::ClaimLost`] when the claim was taken over; database failures.
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
