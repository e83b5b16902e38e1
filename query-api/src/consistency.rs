//! Read-your-writes: waiting until a projection has applied the events behind a client's
//! `X-Consistency-Token`.
//!
//! A command answers with a token naming the log position its events reached. A query that
//! sends it back waits, at most `CONSISTENCY_WAIT_MS`, until the projection's checkpoint is at
//! or past that position.
//!
//! A waiter sleeps on the projectors' announcements ([`crate::announced`]): an announcement
//! (`CheckpointMoved`) carries the new checkpoint, so seeing the one that reaches the token
//! costs no query at all. How much it asks the database first depends on the token:
//!
//! - A token naming an aggregate type the projection reads (what the command API issues) must
//!   be reached by the projection's own checkpoint. While the announcements are live
//!   ([`crate::announced::Announced::live`]), the waiter asks nothing up front; it reads the
//!   checkpoint only if no announcement reached the token within [`ANNOUNCED_ONLY_FOR`], which
//!   bounds what an announcement the projector failed to send costs.
//! - Any other token (untyped, or of a type the projection does not read: a client sending
//!   its latest token everywhere) is checked in the database first: the checkpoint, and
//!   whether anything up to the token concerns the projection at all.
//!
//! After that, only a wake-up that does not say what moved (an older projector's bare name, a
//! listener reconnect) sends the waiter back to the database, and since a notification can be
//! lost, it also re-checks every [`FALLBACK_RECHECK`]. A far-future token so costs two queries
//! up front and two per second, not two every 25 ms. No connection is held while waiting.

use std::time::{Duration, Instant};

use crate::checkpoint::{self, Checkpoint};
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::HeaderMap;
use events::{ConsistencyToken, LogPosition};

/// `X-Consistency-Token`.
pub const HEADER: &str = "x-consistency-token";

/// How often a waiter re-reads the checkpoint when no announcement arrives: the bound on the
/// latency a lost notification costs.
pub const FALLBACK_RECHECK: Duration = Duration::from_secs(1);

/// How long a waiter whose token the projection must reach relies on announcements alone
/// before it first reads the checkpoint. Long enough that a loaded system's waits rarely get
/// there (so they add no query), short enough that an announcement the projector failed to
/// send costs a fresh waiter no more than this.
pub const ANNOUNCED_ONLY_FOR: Duration = Duration::from_millis(100);

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

/// Waits until `projection`'s checkpoint reaches `token`'s position, for at most `timeout`.
/// Returns the checkpoint seen. A target already announced costs no query; one already reached
/// but not announced, one primary-key read.
///
/// # Errors
///
/// [`ApiError::ConsistencyTimeout`] when the checkpoint is still behind after `timeout`;
/// [`ApiError::Database`] when a check fails.
pub async fn wait_for(
    state: &AppState,
    projection: &'static str,
    token: &ConsistencyToken,
    timeout: Duration,
) -> Result<Checkpoint, ApiError> {
    let span = tracing::info_span!(
        "consistency.wait",
        projection,
        waited_ms = tracing::field::Empty,
        result = tracing::field::Empty,
    );
    let started = Instant::now();
    let outcome = tracing::Instrument::instrument(
        wait_until(state, projection, token, timeout),
        span.clone(),
    )
    .await;
    span.record(
        "waited_ms",
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    span.record("result", wait_result(&outcome));
    outcome
}

/// The `result` label and span field of a wait's outcome.
fn wait_result<T>(outcome: &Result<T, ApiError>) -> &'static str {
    if outcome.is_ok() {
        "reached"
    } else {
        "timed_out"
    }
}

/// Whether `projection` must move its own checkpoint over `token`'s position: the token names
/// the type of the event there, and the projection reads that type.
fn must_reach(projection: &str, token: &ConsistencyToken) -> bool {
    token.last_type.as_deref().is_some_and(|last_type| {
        let sources = event_store::catalogue::Subscription::named(projection).sources();
        sources.is_empty() || sources.contains(&last_type)
    })
}

/// [`wait_for`]'s loop, inside its span.
async fn wait_until(
    state: &AppState,
    projection: &'static str,
    token: &ConsistencyToken,
    timeout: Duration,
) -> Result<Checkpoint, ApiError> {
    let target = token.position;
    let must_reach = must_reach(projection, token);
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let announced = state.announced();
    let mut ask_database = true;
    let mut fallback = tokio::time::Instant::now();
    let mut first = true;
    let outcome = loop {
        // Register for the next delivery before looking, so one that lands between the look
        // and the wait still wakes us.
        let notified = announced.changed().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let plain_wakes = announced.plain_wakes();

        if let Some(seen) = announced.seen(projection)
            && seen.position >= target
        {
            break Ok(seen);
        }
        if std::mem::take(&mut first) && must_reach && announced.live(projection).is_some() {
            // Taken after registering: a gap from here on wakes us with a plain wake.
            ask_database = false;
            fallback = tokio::time::Instant::now() + ANNOUNCED_ONLY_FOR;
        }
        if ask_database {
            state.count_wait_query();
            let seen = checkpoint::read(state.pool(), projection).await?;
            // A token the projection must reach is never settled without it: the event at
            // its position is one the projection reads.
            if seen.position >= target
                || (!must_reach
                    && nothing_to_apply(state, projection, seen.position, target).await?)
            {
                break Ok(seen);
            }
            fallback = tokio::time::Instant::now() + FALLBACK_RECHECK;
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(ApiError::ConsistencyTimeout {
                projection,
                waited_ms: started.elapsed().as_millis(),
            });
        }
        // The wait holds no connection, so it gives back its admission place meanwhile:
        // waiters must not keep out the requests that need the database (nor, at a high
        // command rate, refuse each other with 503).
        ask_database = service_kit::shed::without_place(async {
            tokio::select! {
                // An announcement that says where the checkpoint is needs no query; only a
                // bare wake-up or a gap does.
                () = &mut notified => announced.plain_wakes() != plain_wakes,
                () = tokio::time::sleep_until(fallback.min(deadline)) => true,
            }
        })
        .await;
    };
    let result = wait_result(&outcome);
    metrics::histogram!(service_kit::metric_names::CONSISTENCY_WAIT_SECONDS, "result" => result)
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// Whether `projection`, at `checkpoint`, already reflects everything up to `target` although
/// its checkpoint is behind it: the token came from a command on another resource (a client
/// sending its latest token everywhere), every transaction up to the token has finished, and
/// none of them appended an event this projection reads. A projection's checkpoint only
/// moves over the events it reads, so without this such a token would never be reached.
async fn nothing_to_apply(
    state: &AppState,
    projection: &str,
    checkpoint: LogPosition,
    target: LogPosition,
) -> Result<bool, sqlx::Error> {
    let types = event_store::catalogue::Subscription::named(projection).sources();
    if types.is_empty() {
        // A projection reading every event moves its checkpoint over every event.
        return Ok(false);
    }
    let (settled, statements) =
        event_store::log::settled_without(state.pool(), types, checkpoint, target).await?;
    for _ in 0..statements {
        state.count_wait_query();
    }
    Ok(settled)
}

/// Honours the request's `X-Consistency-Token` for `projection`: returns `None` at once without
/// one, else waits as [`wait_for`] does, bounded by the state's `consistency_wait`, and returns
/// the checkpoint it saw.
///
/// # Errors
///
/// As [`requested_token`] and [`wait_for`].
pub async fn honour(
    state: &AppState,
    headers: &HeaderMap,
    projection: &'static str,
) -> Result<Option<Checkpoint>, ApiError> {
    let Some(token) = requested_token(headers)? else {
        return Ok(None);
    };
    wait_for(state, projection, &token, state.settings().consistency_wait)
        .await
        .map(Some)
}

/// The checkpoint an answer read from `projection` is tagged with, read from the database
/// after the request's consistency wait (if any). Never the announced one: an announcement of
/// a rebuild swap may still be on its way, and a tag from before it would vouch for the old
/// rows. Callers take it *before* reading rows, so a tag never vouches for rows older than
/// itself.
///
/// # Errors
///
/// As [`honour`]; [`ApiError::Database`] when reading the checkpoint fails.
pub async fn tag_checkpoint(
    state: &AppState,
    headers: &HeaderMap,
    projection: &'static str,
) -> Result<Checkpoint, ApiError> {
    honour(state, headers, projection).await?;
    Ok(checkpoint::read(state.pool(), projection).await?)
}
