//! Subscriptions to the global log: one loop, many sinks.
//!
//! A subscription reads a batch after its checkpoint in commit-safe order
//! ([`event_store::log::read_after`]: only transactions older than the oldest one still
//! running), hands it to its [`Sink`], which handles it and moves the checkpoint, and announces
//! the move on [`event_store::wake::CHECKPOINTS_CHANNEL`]. The loop wakes on the append
//! notification ([`event_store::wake::EVENTS_CHANNEL`]), polls as a fallback, re-checks quickly
//! while committed events are held back by an older transaction, and backs off while the
//! sink or the database fails.
//!
//! Two kinds of sink run on it: a read model ([`read_model`]), which applies the batch in one
//! transaction with its checkpoint, and the RabbitMQ relay ([`crate::relay`]), which publishes
//! with confirms and moves its checkpoint only after the broker took the batch. Every statement
//! on the checkpoint and dead-letter tables is in [`event_store::checkpoints`].

mod backoff;
mod projection;
pub mod read_model;
mod skip;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use event_store::LogFilter;
use event_store::wake::CheckpointMoved;
use events::{LogPosition, RecordedEvent};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;
use tracing::Instrument as _;

pub(crate) use backoff::Backoff;
pub(crate) use projection::filter_for;
pub use projection::{
    APPLY_RETRIES, EngineError, Fence, LoopSettings, Projection, ProjectionError, RunOptions,
    Target,
};
pub use read_model::ReadModelSink;
use skip::skip_unrelated;

/// `PROJECTOR_BATCH_BYTES` when unset: 1 MiB. Eight loops (seven projections and the relay)
/// each hold at most one batch of about this much payload, plus its decoded form, so the
/// projector's memory stays within tens of MiB whatever the events weigh; 500 small events
/// are far below it, so it only ever shortens batches of big ones (analytics).
pub const DEFAULT_BATCH_BYTES: i64 = 1024 * 1024;

/// The first delay before re-reading while committed events wait behind an older transaction.
const RECHECK_MIN: Duration = Duration::from_millis(5);

/// The longest delay between re-reads while committed events wait behind an older
/// transaction: the horizon is cluster-wide, so any long transaction (even in another
/// database) holds events back, and its end notifies no one.
const RECHECK_MAX: Duration = Duration::from_millis(250);

/// What a sink did with a batch.
#[derive(Debug)]
pub enum Delivered {
    /// The checkpoint moved past `count` events handled (and any it parked); `moved` is the
    /// announcement to make.
    Moved {
        /// Events handled.
        count: usize,
        /// The announcement, with the new checkpoint.
        moved: CheckpointMoved,
    },
    /// Someone else moved the checkpoint since it was read: go on from there.
    Overtaken(LogPosition),
}

/// Where a subscription delivers what it reads.
#[async_trait]
pub trait Sink: Send {
    /// Why a delivery failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint row the sink moves.
    fn checkpoint(&self) -> &str;

    /// The events the sink reads.
    fn filter(&self) -> &LogFilter;

    /// Nothing beyond this position is delivered.
    fn until(&self) -> Option<LogPosition> {
        None
    }

    /// The backoff bounds while deliveries fail.
    fn retry_bounds(&self) -> (Duration, Duration) {
        (Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Where the subscription starts: the checkpoint, created when the sink allows it.
    async fn start(&mut self, pool: &PgPool) -> Result<LogPosition, Self::Error>;

    /// Makes the sink ready for a batch (connects a broker); called before every read.
    async fn prepare(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Handles `batch`, read after `after`, and moves the checkpoint past it.
    async fn deliver(
        &mut self,
        after: LogPosition,
        batch: &[RecordedEvent],
    ) -> Result<Delivered, Self::Error>;

    /// The error for a failed read of the log.
    fn database_error(&self, error: sqlx::Error) -> Self::Error;

    /// Whether `error` ends the subscription rather than being retried with backoff.
    fn is_final(&self, error: &Self::Error) -> bool;

    /// Called after a delivery failed and before the backoff (record state, drop links).
    async fn interrupted(&mut self, _error: &Self::Error) {}

    /// Called once when the subscription stops.
    async fn close(&mut self) {}
}

/// The pools a subscription uses: the log is read through `read`, everything is written
/// through `write`.
#[derive(Clone, Copy)]
pub struct Pools<'a> {
    /// Checkpoints and read models.
    pub write: &'a PgPool,
    /// The log.
    pub read: &'a PgPool,
}

/// The outcome of one read-and-deliver step.
enum Step {
    /// Nothing to read below the horizon.
    Idle,
    /// `count` events were handled; the checkpoint is now `last`; `full` when the read was
    /// cut by its count or bytes, so more is most likely waiting.
    Delivered {
        count: usize,
        last: LogPosition,
        full: bool,
    },
    /// Someone else moved the checkpoint since it was read; go on from there.
    Overtaken(LogPosition),
}

/// Reads one batch after `checkpoint` and hands it to `sink`; announces the move.
async fn step<S: Sink>(
    pools: Pools<'_>,
    sink: &mut S,
    checkpoint: LogPosition,
    batch_size: i64,
    max_bytes: i64,
) -> Result<Step, S::Error> {
    let mut batch = event_store::log::read_after_within(
        pools.read,
        checkpoint,
        batch_size,
        max_bytes,
        sink.filter(),
    )
    .await
    .map_err(|error| sink.database_error(error))?;
    let bytes: usize = batch.iter().map(|event| event.payload.get().len()).sum();
    let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) >= batch_size
        || i64::try_from(bytes).unwrap_or(i64::MAX) >= max_bytes;
    if let Some(until) = sink.until() {
        // The log is read in order, so everything past the bound is at the end.
        batch.retain(|event| event.log_position <= until);
    }
    if batch.is_empty() {
        return Ok(Step::Idle);
    }
    // The batch's span links to the context each event was written in (its command span). A
    // root: under the subscription's span, which lasts as long as the process, every batch
    // would join one trace that never ends.
    let span = tracing::info_span!(
        parent: None,
        "batch",
        otel.name = %format_args!("{} apply", sink.checkpoint()),
        projection = sink.checkpoint(),
        events = batch.len(),
    );
    service_kit::otel::link_each(
        &span,
        batch
            .iter()
            .filter_map(|event| event.metadata.get("traceparent")?.as_str()),
    );
    match sink.deliver(checkpoint, &batch).instrument(span).await? {
        Delivered::Moved { count, moved } => {
            let last = moved.checkpoint;
            announce(pools.write, &moved).await;
            Ok(Step::Delivered { count, last, full })
        }
        Delivered::Overtaken(position) => Ok(Step::Overtaken(position)),
    }
}

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Events applied by this call.
    pub applied: u64,
    /// The checkpoint afterwards.
    pub checkpoint: LogPosition,
    /// Whether committed events lie beyond the checkpoint that could not be read yet because
    /// an older transaction is still running; calling again later will apply them.
    pub held_back: bool,
}

/// Delivers batches to `sink` until the log below the commit-safe horizon is exhausted (or
/// its bound reached), and reports what it did. Deterministic where [`run`] waits on time.
///
/// # Errors
///
/// The sink's, final or not: nothing is retried here beyond what the sink does itself.
pub async fn drain<S: Sink>(
    write: &PgPool,
    read: &PgPool,
    sink: &mut S,
    batch_size: i64,
) -> Result<CatchUp, S::Error> {
    let pools = Pools { write, read };
    let mut checkpoint = sink.start(write).await?;
    let mut applied = 0_u64;
    loop {
        let read = step(
            pools,
            sink,
            checkpoint,
            batch_size.max(1),
            event_store::log::DEFAULT_MAX_BYTES,
        );
        match read.await? {
            Step::Delivered { count, last, .. } => {
                applied += count as u64;
                checkpoint = last;
            }
            Step::Overtaken(position) => checkpoint = position,
            Step::Idle => break,
        }
    }
    let held_back = match sink.until() {
        Some(until) if checkpoint >= until => false,
        _ => event_store::log::committed_beyond(read, &sink.filter().aggregate_types, checkpoint)
            .await
            .map_err(|error| sink.database_error(error))?,
    };
    Ok(CatchUp {
        applied,
        checkpoint,
        held_back,
    })
}

/// Runs the subscription of `sink` until `shutdown` fires (after finishing the batch in hand)
/// or the sink fails for good.
///
/// `wake` is poked when events are appended ([`event_store::wake::Wakes::register`]); several
/// loops may share it. Failures that are not final are logged, handed to [`Sink::interrupted`] and
/// retried with backoff.
///
/// # Errors
///
/// A final error of the sink ([`Sink::is_final`]).
pub async fn run<S: Sink>(
    pools: Pools<'_>,
    sink: &mut S,
    settings: LoopSettings,
    wake: &Notify,
    shutdown: &Shutdown,
) -> Result<(), S::Error> {
    let outcome = subscribe(pools, sink, settings, wake, shutdown).await;
    sink.close().await;
    outcome
}

async fn subscribe<S: Sink>(
    pools: Pools<'_>,
    sink: &mut S,
    settings: LoopSettings,
    wake: &Notify,
    shutdown: &Shutdown,
) -> Result<(), S::Error> {
    let batch_size = settings.batch_size.max(1);
    let poll_interval = settings.poll_interval.max(RECHECK_MIN);
    let (min, max) = sink.retry_bounds();
    let mut backoff = Backoff::new(min, max);
    let mut recheck = Backoff::new(RECHECK_MIN, poll_interval.min(RECHECK_MAX));
    let mut skipped_at: Option<tokio::time::Instant> = None;

    let mut checkpoint = loop {
        match sink.start(pools.write).await {
            Ok(position) => break position,
            Err(error) if sink.is_final(&error) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "cannot read the checkpoint; retrying");
                let delay = backoff.next_delay();
                tokio::select! {
                    () = shutdown.wait() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    backoff.reset();
    tracing::info!(
        tx_id = checkpoint.tx_id,
        position = checkpoint.position,
        "subscription started"
    );

    loop {
        if shutdown.is_triggered() {
            tracing::info!("subscription stopped");
            return Ok(());
        }
        // Armed before reading: a notification that arrives while the batch is in hand still
        // ends the wait below, so an append is never left for the poll to find.
        let mut notified = pin!(wake.notified());
        notified.as_mut().enable();

        let outcome = match sink.prepare().await {
            Ok(()) => step(pools, sink, checkpoint, batch_size, settings.max_bytes).await,
            Err(error) => Err(error),
        };
        let outcome = match outcome {
            Ok(Step::Delivered { last, full, .. }) => {
                checkpoint = last;
                backoff.reset();
                if full {
                    // A full batch: more is most likely waiting.
                    continue;
                }
                Ok(())
            }
            Ok(Step::Overtaken(position)) => {
                tracing::warn!(
                    tx_id = position.tx_id,
                    position = position.position,
                    "checkpoint moved by another process; continuing from it"
                );
                checkpoint = position;
                continue;
            }
            Ok(Step::Idle) => {
                // At most once per `skip_every`: between skips, the checks after the
                // checkpoint stay per-type index ranges, cheap however much lies between.
                let due = skipped_at.is_none_or(|at| at.elapsed() >= settings.skip_every);
                if due {
                    skipped_at = Some(tokio::time::Instant::now());
                    if let Some(skipped) = skip_unrelated(pools, sink, checkpoint).await {
                        checkpoint = skipped;
                    }
                }
                Ok(())
            }
            Err(error) if sink.is_final(&error) => return Err(error),
            Err(error) => Err(error),
        };

        let wait = match outcome {
            Ok(()) => match event_store::log::committed_beyond(
                pools.read,
                &sink.filter().aggregate_types,
                checkpoint,
            )
            .await
            {
                // Committed events wait behind an older transaction, whose commit may not
                // notify anyone (it need not be an append): look again soon.
                Ok(true) => recheck.next_delay(),
                Ok(false) => {
                    recheck.reset();
                    poll_interval
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot check for held-back events");
                    backoff.next_delay()
                }
            },
            Err(error) => {
                tracing::warn!(%error, "subscription interrupted; retrying from its checkpoint");
                sink.interrupted(&error).await;
                backoff.next_delay()
            }
        };

        tokio::select! {
            biased;
            () = shutdown.wait() => {
                tracing::info!("subscription stopped");
                return Ok(());
            }
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Applies batches of `projection` to its live model until the log below the commit-safe
/// horizon is exhausted, and reports what it did. Failures are handled as in the loop: retried
/// when retryable, then recorded as the projection's `failed` state and returned.
///
/// For tests, tools and rebuilds: deterministic where [`run_projection`] waits on time.
///
/// # Errors
///
/// [`EngineError`].
pub async fn catch_up(
    pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
) -> Result<CatchUp, EngineError> {
    let target = Target::live(projection, false);
    catch_up_target(pool, pool, projection, &target, batch_size).await
}

/// [`catch_up`] for any [`Target`], reading the log through `read` and writing through
/// `write`.
///
/// # Errors
///
/// As [`catch_up`].
pub async fn catch_up_target(
    write: &PgPool,
    read: &PgPool,
    projection: &dyn Projection,
    target: &Target,
    batch_size: i64,
) -> Result<CatchUp, EngineError> {
    let mut sink = ReadModelSink::new(write, projection, target.clone());
    drain(write, read, &mut sink, batch_size).await
}

/// Runs `projection` on its live model until `shutdown` fires (after finishing the batch in
/// hand) or an event fails for good.
///
/// A projection recorded as `failed` is tried again when its loop starts, so a deployment
/// that can apply the event resumes it, and one that cannot records the failure again.
///
/// # Errors
///
/// [`EngineError::Failed`] when an event could not be applied; the failure is already
/// recorded in `projection_checkpoints` and logged.
pub async fn run_projection(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    settings: LoopSettings,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    run_projection_with(
        pool,
        projection,
        settings,
        RunOptions::default(),
        wake,
        shutdown,
    )
    .await
}

/// [`run_projection`] with [`RunOptions`]: a separate pool to read the log from, and
/// dead-lettering of poison events.
///
/// # Errors
///
/// As [`run_projection`]; with `dead_letter` set, only events whose parking itself fails
/// stop the projection.
pub async fn run_projection_with(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    settings: LoopSettings,
    options: RunOptions,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    let span = tracing::info_span!("projection", projection = projection.name());
    let target = Target::live(&*projection, options.dead_letter);
    let read = options.read_pool.unwrap_or_else(|| pool.clone());
    let mut sink = ReadModelSink::new(&pool, &*projection, target);
    let pools = Pools {
        write: &pool,
        read: &read,
    };
    run(pools, &mut sink, settings, &wake, &shutdown)
        .instrument(span)
        .await
}

/// Announces that a checkpoint moved (or its state changed). Outside the batch transaction,
/// so waiters never take a cluster-wide notify lock at our commit; a lost notification only
/// costs them a poll (docs/decisions/0002-wake-up.md).
pub async fn announce(pool: &PgPool, moved: &CheckpointMoved) {
    if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(event_store::wake::CHECKPOINTS_CHANNEL)
        .bind(moved.to_payload())
        .execute(pool)
        .await
    {
        tracing::warn!(%error, projection = moved.projection, "cannot announce the checkpoint");
    }
}
