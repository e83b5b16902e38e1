//! Idempotency keys: claim a key before running a command, replay the stored answer for a
//! repeat, refuse a key reused for another request or still in flight.
//!
//! The claim is a row with no status; the statement that appends the events completes it with
//! the answer (see `execute`), so "events appended" and "answer stored" commit together. A
//! claim whose owner died before committing expires after a lease and is taken over; the dead
//! attempt appended nothing, so running the command again appends once. The stored answer
//! names the stream revision its request wrote last; a replay reads that event's position to
//! give back the same consistency token.

use std::time::Duration;

use event_store::append::{IdempotencyClaim, StoredAnswer};
use events::{ConsistencyToken, LogPosition};
use service_kit::shutdown::Shutdown;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::execute::TOKEN_FIELD;

/// What a claim attempt found.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours; run the command and complete the claim in its append.
    Owned(IdempotencyClaim),
    /// The key already answered this very request: send that answer again.
    Replay(StoredAnswer),
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
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The request fingerprint: method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finalize().to_vec()
}

/// Whether `key` is 1-255 visible ASCII characters.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// A stored record, with the log position of the stream revision its request appended last.
#[derive(sqlx::FromRow)]
struct StoredRow {
    fingerprint: Vec<u8>,
    status: Option<i16>,
    response_body: Option<sqlx::types::Json<serde_json::Value>>,
    location: Option<String>,
    etag: Option<String>,
    tx_id: Option<i64>,
    position: Option<i64>,
}

impl StoredRow {
    /// The stored answer with its consistency token put back (the start of the log for a
    /// request that appended nothing).
    fn answer(self) -> Option<StoredAnswer> {
        let (status, mut body) = (self.status?, self.response_body?.0);
        let position = match (self.tx_id, self.position) {
            (Some(tx_id), Some(position)) => LogPosition { tx_id, position },
            _ => LogPosition::START,
        };
        if let Some(fields) = body.as_object_mut() {
            fields.insert(
                TOKEN_FIELD.to_owned(),
                ConsistencyToken(position).encode().into(),
            );
        }
        Some(StoredAnswer {
            status: u16::try_from(status).unwrap_or(500),
            body,
            location: self.location,
            etag: self.etag,
        })
    }
}

/// Claims `key` for `principal`, or says why not. `lease` is how long a claim may stay
/// incomplete before another attempt may take it over.
pub async fn claim(
    pool: &PgPool,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Duration,
) -> Result<Claim, IdempotencyError> {
    let owner = Uuid::now_v7();
    let lease_secs = lease.as_secs_f64();
    // Insert a fresh claim, or take over one whose owner is presumed dead; in one statement so
    // two racing attempts cannot both win.
    let claimed: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (principal, key, fingerprint, owner) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (principal, key) DO UPDATE \
            SET owner = EXCLUDED.owner, claimed_at = now() \
          WHERE idempotency_keys.status IS NULL \
            AND idempotency_keys.fingerprint = EXCLUDED.fingerprint \
            AND idempotency_keys.claimed_at < now() - make_interval(secs => $5) \
         RETURNING owner",
    )
    .bind(principal)
    .bind(key)
    .bind(fingerprint)
    .bind(owner)
    .bind(lease_secs)
    .fetch_optional(pool)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Owned(IdempotencyClaim {
            principal: principal.to_owned(),
            key: key.to_owned(),
            owner,
        }));
    }
    let row: Option<StoredRow> = sqlx::query_as(
        "SELECT k.fingerprint, k.status, k.response_body, k.location, k.etag, \
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
        Some(row) if row.fingerprint != fingerprint => Err(IdempotencyError::Mismatch),
        Some(row) => row
            .answer()
            .map(Claim::Replay)
            .ok_or(IdempotencyError::InFlight),
        // Released between our two statements: the key is free again.
        None => Box::pin(claim(pool, principal, key, fingerprint, lease)).await,
    }
}

/// Gives up a claim whose command failed, so the client may retry with the same key; failed
/// requests store nothing.
pub async fn release(pool: &PgPool, claim: &IdempotencyClaim) {
    let result = sqlx::query(
        "DELETE FROM idempotency_keys \
          WHERE principal = $1 AND key = $2 AND owner = $3 AND status IS NULL",
    )
    .bind(&claim.principal)
    .bind(&claim.key)
    .bind(claim.owner)
    .execute(pool)
    .await;
    if let Err(error) = result {
        // The claim then expires after its lease; nothing is lost.
        tracing::warn!(%error, "could not release idempotency claim");
    }
}

/// Deletes answers older than `ttl` (and claims abandoned that long) every `every`, until
/// shutdown.
pub fn spawn_purger(pool: PgPool, ttl: Duration, every: Duration, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            match purge(&pool, ttl).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged expired idempotency records"),
                Err(error) => tracing::warn!(%error, "idempotency purge failed"),
            }
        }
    });
}

/// Deletes idempotency records older than `ttl`; returns how many.
pub async fn purge(pool: &PgPool, ttl: Duration) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys \
          WHERE coalesce(completed_at, claimed_at) < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
