//! Read-your-writes: waiting until a projection has applied the events behind a client's
//! `X-Consistency-Token`.
//!
//! A command answers with a token naming the log position its events reached. A query that
//! sends it back waits, at most `CONSISTENCY_WAIT_MS`, until the projection's checkpoint is at
//! or past that position. Projectors announce checkpoint moves with `NOTIFY` on
//! [`event_store::wake::CHECKPOINTS_CHANNEL`]; since a notification can be lost (listener
//! reconnecting, or sent before we started listening) waiters also re-check on a short
//! interval. No connection is held while waiting: each check borrows one for a single
//! primary-key read.

use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use events::{ConsistencyToken, LogPosition};
use tokio::sync::Notify;

use crate::checkpoint::{self, Checkpoint};
use crate::error::ApiError;

/// `X-Consistency-Token`.
pub const HEADER: &str = "x-consistency-token";

/// How often a waiter re-reads the checkpoint when no notification arrives.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(25);

/// The token the request carries in `X-Consistency-Token`, if any.
///
/// # Errors
///
/// [`ApiError::MalformedConsistencyToken`] when the header is present but is not a token.
pub fn requested_token(headers: &HeaderMap) -> Result<Option<ConsistencyToken>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::MalformedConsistencyToken)?;
    ConsistencyToken::decode(text.trim())
        .map(Some)
        .map_err(|_| ApiError::MalformedConsistencyToken)
}

/// Waits until `projection`'s checkpoint reaches `target`, for at most `timeout`. Returns the
/// checkpoint seen. A target already reached costs one primary-key read.
///
/// # Errors
///
/// [`ApiError::ConsistencyTimeout`] when the checkpoint is still behind after `timeout`;
/// [`ApiError::Database`] when a check fails.
pub async fn wait_for(
    pool: &sqlx::PgPool,
    wake: &Notify,
    projection: &'static str,
    target: LogPosition,
    timeout: Duration,
) -> Result<Checkpoint, ApiError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let outcome = loop {
        // Register for the next notification before reading, so a move that lands between
        // the read and the wait still wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let seen = checkpoint::read(pool, projection).await?;
        if seen.at >= target || nothing_to_apply(pool, projection, seen.at, target).await? {
            break Ok(seen);
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(ApiError::ConsistencyTimeout {
                projection,
                waited_ms: started.elapsed().as_millis(),
            });
        }
        let recheck = (tokio::time::Instant::now() + RECHECK_INTERVAL).min(deadline);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(recheck) => {}
        }
    };
    let outcome_label = if outcome.is_ok() {
        "reached"
    } else {
        "timeout"
    };
    metrics::histogram!("query_consistency_wait_seconds", "projection" => projection, "outcome" => outcome_label)
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// Whether `projection`, at `checkpoint`, already reflects everything up to `target` although
/// its checkpoint is behind it: the token came from a command on another resource (a client
/// sending its latest token everywhere), every transaction up to the token has finished, and
/// none of them appended an event this projection reads. A projection's checkpoint only
/// moves over the events it reads, so without this such a token would never be reached.
async fn nothing_to_apply(
    pool: &sqlx::PgPool,
    projection: &str,
    checkpoint: LogPosition,
    target: LogPosition,
) -> Result<bool, sqlx::Error> {
    let types = event_store::catalogue::Subscription::named(projection).sources();
    if types.is_empty() {
        // A projection reading every event moves its checkpoint over every event.
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT $3::text::xid8 < pg_snapshot_xmin(pg_current_snapshot()) \
            AND NOT EXISTS (SELECT 1 FROM events \
                             WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
                               AND (tx_id, global_position) <= ($3::text::xid8, $4) \
                               AND aggregate_type = ANY($5))",
    )
    .bind(checkpoint.tx_id.to_string())
    .bind(checkpoint.position)
    .bind(target.tx_id.to_string())
    .bind(target.position)
    .bind(types)
    .fetch_one(pool)
    .await
}

/// Honours the request's `X-Consistency-Token` for `projection`: returns `None` at once without
/// one, else waits as [`wait_for`] does, bounded by the state's `consistency_wait`, and returns
/// the checkpoint it saw (so callers need not read it again).
///
/// # Errors
///
/// As [`requested_token`] and [`wait_for`].
pub async fn honour(
    state: &crate::state::AppState,
    headers: &HeaderMap,
    projection: &'static str,
) -> Result<Option<Checkpoint>, ApiError> {
    let Some(token) = requested_token(headers)? else {
        return Ok(None);
    };
    wait_for(
        state.pool(),
        state.checkpoints(),
        projection,
        token.0,
        state.settings().consistency_wait,
    )
    .await
    .map(Some)
}

/// The checkpoint an answer read from `projection` is tagged with: the one the consistency
/// wait saw when the request carries a token, else the one read now. Callers take it *before*
/// reading rows, so a tag never vouches for rows older than itself.
///
/// # Errors
///
/// As [`honour`]; [`ApiError::Database`] when reading the checkpoint fails.
pub async fn tag_checkpoint(
    state: &crate::state::AppState,
    headers: &HeaderMap,
    projection: &'static str,
) -> Result<Checkpoint, ApiError> {
    match honour(state, headers, projection).await? {
        Some(seen) => Ok(seen),
        None => Ok(checkpoint::read(state.pool(), projection).await?),
    }
}
