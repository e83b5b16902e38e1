//! The subscription engine: runs each [`Projection`] over the global log, exactly once per
//! event, with the read-model rows and the projection's checkpoint written in one transaction.
//!
//! A projection's loop reads a batch after its checkpoint in commit-safe order
//! ([`event_store::log::read_after`]: only transactions older than the oldest one still running), then
//! applies it in one transaction that first locks the checkpoint row and checks that it still
//! holds the position the batch was read after. The lock and the check make a batch land at
//! most once even if two projector processes ever run the same projection; applying it in the
//! same transaction as the checkpoint makes it land at least once across crashes.
//!
//! Loops wake on the append notification ([`event_store::wake::EVENTS_CHANNEL`]), poll as a
//! fallback, and re-check quickly while committed events are held back by an older
//! transaction. An event that cannot be applied stops its projection (state `failed`) rather
//! than being skipped, or, when dead-lettering is configured for the projection, is parked in
//! `projection_dead_letters` in the same transaction that moves the checkpoint past it.
//!
//! The same machinery builds shadow copies for rebuilds ([`crate::rebuild`]): a [`Target`]
//! names the checkpoint row to use and the `search_path` under which the projection's
//! unqualified table names resolve to the shadow tables.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use event_store::LogFilter;
use event_store::catalogue::ReadModel;
use events::{LogPosition, RecordedEvent};
use service_kit::shutdown::Shutdown;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tracing::Instrument as _;
use uuid::Uuid;

/// How often an event whose application failed with a retryable error is tried again before
/// the projection is marked failed.
pub const APPLY_RETRIES: u32 = 3;

/// The first delay before retrying a failed batch; it doubles with each retry.
const APPLY_RETRY_DELAY: Duration = Duration::from_millis(50);

/// The first delay before re-reading while committed events wait behind an older transaction.
const RECHECK_MIN: Duration = Duration::from_millis(5);

/// The longest delay between re-reads while committed events wait behind an older
/// transaction: the horizon is cluster-wide, so any long transaction (even in another
/// database) holds events back, and its end notifies no one.
const RECHECK_MAX: Duration = Duration::from_millis(250);

/// Bounds for waiting after a database error outside of applying (reading, locking).
const DATABASE_BACKOFF_MIN: Duration = Duration::from_millis(100);
const DATABASE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A read model fed from the global log.
#[async_trait]
pub trait Projection: Send + Sync {
    /// The read model this projection fills, as the catalogue declares it.
    fn model(&self) -> ReadModel;

    /// The projection's stable name: the key of its checkpoint row.
    fn name(&self) -> &'static str {
        self.model().name
    }

    /// The aggregate types whose events the projection reads.
    fn aggregate_types(&self) -> &'static [&'static str] {
        self.model().sources
    }

    /// The read-model tables the projection writes, by unqualified name (rebuilds build
    /// shadow copies of exactly these). Projections must not qualify these names with a
    /// schema in their SQL.
    fn tables(&self) -> &'static [&'static str] {
        self.model().tables
    }

    /// Applies one event inside the batch transaction, which also moves the checkpoint.
    ///
    /// Events arrive in commit-safe log order, hence in stream-revision order per stream.
    /// Returning an error rolls the whole batch back; see [`ProjectionError`] for which
    /// errors are retried.
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError>;

    /// Applies a whole batch inside the batch transaction; must leave the model exactly as
    /// applying each event in turn would. The default does just that. A projection overrides
    /// it to write a batch in a few set-based statements instead of one per event; when it
    /// fails, the engine rolls back and applies the batch event by event, which names the
    /// event at fault.
    async fn apply_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in batch {
            self.apply(tx, event).await?;
        }
        Ok(())
    }
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The event can never be applied by this code: an unknown event type, a payload that does
    /// not decode, a stream that contradicts the read model. Not retried.
    #[error("poison event: {0}")]
    Poison(String),
    /// The database failed while applying; retried up to [`APPLY_RETRIES`] times.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl ProjectionError {
    /// A poison error with the given reason.
    pub fn poison(reason: impl std::fmt::Display) -> Self {
        Self::Poison(reason.to_string())
    }

    /// Whether trying the same event again could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database(_))
    }

    /// Whether the failure is an outage (connection lost, shutdown, deadlock, overload) that
    /// says nothing about the event: such a batch is retried until the database is back, and
    /// the event is never parked or blamed.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Database(error) if service_kit::db::is_unavailable(error))
    }
}

/// Why the engine stopped or could not make progress.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An event could not be applied (after retries, when retryable): the projection is
    /// marked `failed` and its checkpoint stays just before the event.
    #[error(
        "projection {projection} failed at event {event_id} (tx {}, position {})",
        position.tx_id,
        position.position
    )]
    Failed {
        /// The projection.
        projection: &'static str,
        /// The event that failed.
        event_id: Uuid,
        /// The failed event's place in the log.
        position: LogPosition,
        /// What went wrong.
        #[source]
        source: ProjectionError,
    },
    /// Reading the log or moving the checkpoint failed; nothing was applied, and trying again
    /// later is safe.
    #[error("projection {projection}: database error")]
    Database {
        /// The projection.
        projection: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

/// How a projection loop reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct LoopSettings {
    /// The most events applied in one transaction (at least 1).
    pub batch_size: i64,
    /// How long an idle loop waits without a notification before reading again.
    pub poll_interval: Duration,
}

/// How a projection loop runs beyond its pace: where it reads the log and what it does with
/// poison events.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reads the log here instead of the write pool (a streaming replica, say); read models
    /// and checkpoints are always written through the write pool.
    pub read_pool: Option<PgPool>,
    /// Park events that can never be applied in `projection_dead_letters` and go on, instead
    /// of stopping the projection.
    pub dead_letter: bool,
}

/// Where a subscription applies a projection: the live read model, or a shadow copy being
/// rebuilt under another checkpoint name.
#[derive(Debug, Clone)]
pub struct Target {
    /// The checkpoint row (the projection's name for the live model).
    pub checkpoint: String,
    /// Schemas put first on the `search_path` of every batch transaction (`SET LOCAL`), so the
    /// projection's unqualified table names resolve to a shadow copy; `None` for the live
    /// model. Must be a valid, already quoted `search_path` value.
    pub search_path: Option<String>,
    /// Park poison events instead of stopping.
    pub dead_letter: bool,
    /// Apply nothing beyond this position (verification builds a shadow up to the live
    /// checkpoint, never past it).
    pub until: Option<LogPosition>,
    /// The state recorded on the checkpoint row with each batch.
    pub state: &'static str,
}

impl Target {
    /// The live model of `projection`.
    pub fn live(projection: &dyn Projection, dead_letter: bool) -> Self {
        Self {
            checkpoint: projection.name().to_owned(),
            search_path: None,
            dead_letter,
            until: None,
            state: "running",
        }
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

/// The outcome of one read-and-apply step.
enum Step {
    /// Nothing to read below the horizon.
    Idle,
    /// `count` events were applied; the checkpoint is now `last`.
    Applied { count: usize, last: LogPosition },
    /// Someone else moved the checkpoint since it was read; go on from there.
    Moved(LogPosition),
}

/// The outcome of one batch transaction.
enum Batch {
    Committed,
    Moved(LogPosition),
}

/// Why a batch transaction did not commit.
enum BatchError {
    /// The event at `index` of the batch failed.
    Apply {
        index: usize,
        error: ProjectionError,
    },
    /// [`Projection::apply_batch`] failed; which event is at fault is not known.
    Bulk(ProjectionError),
    /// Locking or moving the checkpoint, or committing, failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// The log filter that reads exactly the events `projection` applies.
pub(crate) fn filter_for(projection: &dyn Projection) -> LogFilter {
    LogFilter {
        aggregate_types: projection
            .aggregate_types()
            .iter()
            .map(|&kind| kind.to_owned())
            .collect(),
        ..LogFilter::default()
    }
}

/// Reads the projection's checkpoint, creating its row at the start of the log when missing.
pub async fn load_checkpoint(pool: &PgPool, name: &str) -> Result<LogPosition, sqlx::Error> {
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    let (tx_id, position): (i64, i64) =
        sqlx::query_as("SELECT tx_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?;
    Ok(LogPosition { tx_id, position })
}

/// Whether committed events of `aggregate_types` (empty: any) lie beyond `after`, whether or
/// not a commit-safe read can see them yet. Uncommitted events are invisible here, so this
/// names exactly the events that an older running transaction holds back.
pub async fn committed_beyond(
    pool: &PgPool,
    aggregate_types: &[&str],
    after: LogPosition,
) -> Result<bool, sqlx::Error> {
    let types: Vec<String> = aggregate_types
        .iter()
        .map(|&kind| kind.to_owned())
        .collect();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events \
                         WHERE (tx_id, global_position) > ($1::xid8, $2) \
                           AND (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3)))",
    )
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .bind(types)
    .fetch_one(pool)
    .await
}

/// Applies batches of `projection` until the log below the commit-safe horizon is exhausted,
/// and reports what it did. Failures are handled as in the loop: retried when retryable, then
/// recorded as the projection's `failed` state and returned.
///
/// For tests, tools and rebuilds: deterministic where [`run_projection`] waits on time.
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
    let name = projection.name();
    let database = |source| EngineError::Database {
        projection: name,
        source,
    };
    let filter = filter_for(projection);
    let mut checkpoint = load_checkpoint(write, &target.checkpoint)
        .await
        .map_err(database)?;
    let mut applied = 0_u64;
    let pools = Pools { write, read };
    loop {
        match step(
            pools,
            projection,
            target,
            &filter,
            checkpoint,
            batch_size.max(1),
        )
        .await?
        {
            Step::Applied { count, last } => {
                applied += count as u64;
                checkpoint = last;
            }
            Step::Moved(position) => checkpoint = position,
            Step::Idle => break,
        }
    }
    let held_back = match target.until {
        Some(until) if checkpoint >= until => false,
        _ => committed_beyond(read, projection.aggregate_types(), checkpoint)
            .await
            .map_err(database)?,
    };
    Ok(CatchUp {
        applied,
        checkpoint,
        held_back,
    })
}

/// Runs `projection` until `shutdown` fires (after finishing the batch in hand) or an event
/// fails for good.
///
/// `wake` is poked when events are appended ([`event_store::wake::listen`]); several loops may
/// share it. Database errors outside of applying are logged and retried with backoff. A
/// projection recorded as `failed` is tried again when its loop starts, so a deployment that
/// can apply the event resumes it, and one that cannot records the failure again.
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
    let name = projection.name();
    let span = tracing::info_span!("projection", projection = name);
    run_loop(pool, projection, settings, options, wake, shutdown)
        .instrument(span)
        .await
}

/// The pools a subscription uses: the log is read through `read`, everything is written
/// through `write`.
#[derive(Clone, Copy)]
struct Pools<'a> {
    write: &'a PgPool,
    read: &'a PgPool,
}

async fn run_loop(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    settings: LoopSettings,
    options: RunOptions,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    let target = Target::live(&*projection, options.dead_letter);
    let read_pool = options.read_pool.unwrap_or_else(|| pool.clone());
    let pools = Pools {
        write: &pool,
        read: &read_pool,
    };
    let name = projection.name();
    let filter = filter_for(&*projection);
    let batch_size = settings.batch_size.max(1);
    let poll_interval = settings.poll_interval.max(RECHECK_MIN);
    let mut database_backoff = Backoff::new(DATABASE_BACKOFF_MIN, DATABASE_BACKOFF_MAX);
    let mut recheck = Backoff::new(RECHECK_MIN, poll_interval.min(RECHECK_MAX));

    let mut checkpoint = loop {
        match load_checkpoint(&pool, name).await {
            Ok(position) => break position,
            Err(error) => {
                tracing::warn!(%error, "cannot read the checkpoint; retrying");
                let delay = database_backoff.next_delay();
                tokio::select! {
                    () = shutdown.wait() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    database_backoff.reset();
    tracing::info!(
        tx_id = checkpoint.tx_id,
        position = checkpoint.position,
        "projection started"
    );

    loop {
        if shutdown.is_triggered() {
            tracing::info!("projection stopped");
            return Ok(());
        }
        // Armed before reading: a notification that arrives while the batch is in hand still
        // ends the wait below, so an append is never left for the poll to find.
        let mut notified = pin!(wake.notified());
        notified.as_mut().enable();

        let outcome = match step(
            pools,
            &*projection,
            &target,
            &filter,
            checkpoint,
            batch_size,
        )
        .await
        {
            Ok(Step::Applied { count, last }) => {
                checkpoint = last;
                database_backoff.reset();
                if i64::try_from(count).unwrap_or(i64::MAX) >= batch_size {
                    // A full batch: more is most likely waiting.
                    continue;
                }
                Ok(())
            }
            Ok(Step::Moved(position)) => {
                tracing::warn!(
                    tx_id = position.tx_id,
                    position = position.position,
                    "checkpoint moved by another process; continuing from it"
                );
                checkpoint = position;
                continue;
            }
            Ok(Step::Idle) => Ok(()),
            Err(failed @ EngineError::Failed { .. }) => return Err(failed),
            Err(EngineError::Database { source, .. }) => Err(source),
        };

        let wait = match outcome {
            Ok(()) => {
                match committed_beyond(&read_pool, projection.aggregate_types(), checkpoint).await {
                    // Committed events wait behind an older transaction, whose commit may not
                    // notify anyone (it need not be an append): look again soon.
                    Ok(true) => recheck.next_delay(),
                    Ok(false) => {
                        recheck.reset();
                        poll_interval
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot check for held-back events");
                        database_backoff.next_delay()
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the log or move the checkpoint; retrying");
                database_backoff.next_delay()
            }
        };

        tokio::select! {
            biased;
            () = shutdown.wait() => {
                tracing::info!("projection stopped");
                return Ok(());
            }
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Reads one batch after `checkpoint` and applies it, retrying retryable failures; parks or
/// records a final failure.
async fn step(
    pools: Pools<'_>,
    projection: &dyn Projection,
    target: &Target,
    filter: &LogFilter,
    checkpoint: LogPosition,
    batch_size: i64,
) -> Result<Step, EngineError> {
    let name = projection.name();
    let pool = pools.write;
    let database = |source| EngineError::Database {
        projection: name,
        source,
    };
    let started = Instant::now();
    let mut batch = event_store::log::read_after(pools.read, checkpoint, batch_size, filter)
        .await
        .map_err(database)?;
    if let Some(until) = target.until {
        // The log is read in order, so everything past the bound is at the end.
        batch.retain(|event| event.log_position <= until);
    }
    let Some(last) = batch.last().map(|event| event.log_position) else {
        return Ok(Step::Idle);
    };

    let mut attempt = 0;
    // Set-based first; after any failure, event by event, which locates the event at fault.
    let mut mode = Mode::Bulk;
    let (index, error) = loop {
        match apply_batch(pool, projection, target, checkpoint, &batch, mode).await {
            Ok(Batch::Committed) => {
                committed(&target.checkpoint, &batch, started);
                announce(pool, &target.checkpoint).await;
                return Ok(Step::Applied {
                    count: batch.len(),
                    last,
                });
            }
            Ok(Batch::Moved(position)) => return Ok(Step::Moved(position)),
            Err(BatchError::Database(source)) => return Err(database(source)),
            Err(BatchError::Bulk(error)) => {
                tracing::debug!(%error, "set-based batch failed; applying event by event");
                mode = Mode::PerEvent;
            }
            Err(BatchError::Apply {
                error: ProjectionError::Database(source),
                ..
            }) if service_kit::db::is_unavailable(&source) => {
                // Not the event's fault: the loop backs off and reads the batch again.
                return Err(database(source));
            }
            Err(BatchError::Apply { index, error }) => {
                if !error.is_retryable() || attempt >= APPLY_RETRIES {
                    break (index, error);
                }
                let delay = APPLY_RETRY_DELAY * 2_u32.pow(attempt);
                attempt += 1;
                tracing::warn!(
                    %error,
                    attempt,
                    event_id = %batch[index].event_id,
                    position = batch[index].position,
                    "applying an event failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
    };

    // Keep what precedes the failed event, so the checkpoint rests right before it.
    let mut checkpoint_after = checkpoint;
    if index > 0 {
        let prefix = &batch[..index];
        match apply_batch(pool, projection, target, checkpoint, prefix, Mode::PerEvent).await {
            Ok(Batch::Committed) => {
                committed(&target.checkpoint, prefix, started);
                announce(pool, &target.checkpoint).await;
                checkpoint_after = prefix[index - 1].log_position;
            }
            // Another process moved on; it will meet the same event and record it itself.
            Ok(Batch::Moved(position)) => return Ok(Step::Moved(position)),
            Err(BatchError::Database(source)) => return Err(database(source)),
            Err(BatchError::Apply { .. } | BatchError::Bulk(_)) => {}
        }
    }
    let poison = &batch[index];
    // Parking needs the checkpoint to rest right before the event (the prefix landed).
    if target.dead_letter
        && is_parkable(&error)
        && checkpoint_after == preceding(checkpoint, &batch, index)
    {
        return match park(pool, name, target, checkpoint_after, poison, &error).await {
            Ok(Batch::Committed) => Ok(Step::Applied {
                count: index,
                last: poison.log_position,
            }),
            Ok(Batch::Moved(position)) => Ok(Step::Moved(position)),
            Err(source) => Err(database(source)),
        };
    }
    Err(fail(pool, name, target, poison, checkpoint_after, error).await)
}

/// The checkpoint right before `batch[index]`, for a batch read after `checkpoint`.
fn preceding(checkpoint: LogPosition, batch: &[RecordedEvent], index: usize) -> LogPosition {
    index
        .checked_sub(1)
        .map_or(checkpoint, |before| batch[before].log_position)
}

/// Whether an event that failed with `error` may be parked rather than stop the projection:
/// poison, or an error the database reported about the statement (a constraint, a type).
/// Outages say nothing about the event; parking on them would throw away good events.
fn is_parkable(error: &ProjectionError) -> bool {
    match error {
        ProjectionError::Poison(_) => true,
        ProjectionError::Database(sqlx::Error::Database(_)) => !error.is_outage(),
        ProjectionError::Database(_) => false,
    }
}

/// How a batch is handed to its projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// [`Projection::apply_batch`]: fast, but a failure does not say which event.
    Bulk,
    /// [`Projection::apply`] per event: a failure names its event.
    PerEvent,
}

/// Applies `batch` (read after `expected`) in one transaction with the checkpoint.
async fn apply_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    target: &Target,
    expected: LogPosition,
    batch: &[RecordedEvent],
    mode: Mode,
) -> Result<Batch, BatchError> {
    let name = target.checkpoint.as_str();
    let mut tx = pool.begin().await?;
    // Rows and checkpoint commit together, so a crash that loses this commit loses both and
    // the batch is applied again: no flush needs to be waited for. It also keeps the
    // projector's commits from queueing behind the command side's on the WAL flush.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    if let Some(search_path) = &target.search_path {
        // Only for this transaction: the pooled connection goes back with its usual path.
        sqlx::query(&format!("SET LOCAL search_path TO {search_path}"))
            .execute(&mut *tx)
            .await?;
    }
    let Some(current) = lock_checkpoint(&mut tx, name).await? else {
        return Ok(Batch::Committed);
    };
    if current != expected {
        tx.rollback().await?;
        return Ok(Batch::Moved(current));
    }
    match mode {
        Mode::Bulk => projection
            .apply_batch(&mut tx, batch)
            .await
            .map_err(BatchError::Bulk)?,
        Mode::PerEvent => {
            for (index, event) in batch.iter().enumerate() {
                projection
                    .apply(&mut tx, event)
                    .await
                    .map_err(|error| BatchError::Apply { index, error })?;
            }
        }
    }
    let Some(last) = batch.last().map(|event| event.log_position) else {
        tx.rollback().await?;
        return Ok(Batch::Committed);
    };
    sqlx::query(
        "UPDATE projection_checkpoints \
            SET tx_id = $2, position = $3, events_applied = events_applied + $4, \
                updated_at = now(), state = $5, last_error = NULL \
          WHERE name = $1",
    )
    .bind(name)
    .bind(last.tx_id)
    .bind(last.position)
    .bind(i64::try_from(batch.len()).unwrap_or(i64::MAX))
    .bind(target.state)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Batch::Committed)
}

/// Locks the checkpoint row `name` for the rest of `tx`, creating it at the start of the log
/// when missing, and returns its position. `None` never happens but keeps the signature
/// honest about a row deleted between the insert and the lock.
///
/// Whoever holds this lock is the only writer of the projection's model until it commits:
/// batches, parking and the rebuild swap all take it first.
pub async fn lock_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    // The row may have been deleted to rebuild the model; recreating it at the start makes
    // the caller's check send its loop back to the start of the log.
    sqlx::query("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(tx_id, position)| LogPosition { tx_id, position }))
}

/// Parks `event` in `projection_dead_letters` and moves the checkpoint past it, in one
/// transaction that first checks the checkpoint still rests right before the event.
async fn park(
    pool: &PgPool,
    projection: &'static str,
    target: &Target,
    expected: LogPosition,
    event: &RecordedEvent,
    error: &ProjectionError,
) -> Result<Batch, sqlx::Error> {
    let name = target.checkpoint.as_str();
    let message = describe_failure(error, event);
    let mut tx = pool.begin().await?;
    let Some(current) = lock_checkpoint(&mut tx, name).await? else {
        return Ok(Batch::Committed);
    };
    if current != expected {
        tx.rollback().await?;
        return Ok(Batch::Moved(current));
    }
    sqlx::query(
        "INSERT INTO projection_dead_letters (projection, event_id, position, tx_id, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(event.event_id)
    .bind(event.position)
    .bind(event.log_position.tx_id)
    .bind(&message)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE projection_checkpoints \
            SET tx_id = $2, position = $3, updated_at = now(), state = $4, last_error = $5 \
          WHERE name = $1",
    )
    .bind(name)
    .bind(event.log_position.tx_id)
    .bind(event.position)
    .bind(target.state)
    .bind(format!("parked in projection_dead_letters: {message}"))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::error!(
        projection,
        checkpoint = name,
        position = event.position,
        tx_id = event.log_position.tx_id,
        event_id = %event.event_id,
        event_type = %event.event_type,
        error = %error,
        "event parked as a dead letter; the projection goes on without it"
    );
    metrics::counter!("projector_dead_letters_total", "projection" => name.to_owned()).increment(1);
    announce(pool, name).await;
    Ok(Batch::Committed)
}

/// Bookkeeping after a batch committed: metrics, and the notification query-api waits on.
fn committed(name: &str, batch: &[RecordedEvent], started: Instant) {
    let Some(last) = batch.last() else { return };
    let label = name.to_owned();
    metrics::counter!("projector_events_applied_total", "projection" => label.clone())
        .increment(batch.len() as u64);
    metrics::histogram!("projector_batch_duration_seconds", "projection" => label.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::gauge!("projector_checkpoint_position", "projection" => label.clone())
        .set(last.position as f64);
    metrics::gauge!("projector_projection_failed", "projection" => label).set(0.0);
    tracing::debug!(
        count = batch.len(),
        tx_id = last.log_position.tx_id,
        position = last.position,
        "batch applied"
    );
}

/// Announces that `name`'s checkpoint moved (or its state changed). Outside the batch
/// transaction, so waiters never take a cluster-wide notify lock at our commit; a lost
/// notification only costs them a poll.
pub async fn announce(pool: &PgPool, name: &str) {
    if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(event_store::wake::CHECKPOINTS_CHANNEL)
        .bind(name)
        .execute(pool)
        .await
    {
        tracing::warn!(%error, projection = name, "cannot announce the checkpoint");
    }
}

fn describe_failure(error: &ProjectionError, event: &RecordedEvent) -> String {
    format!(
        "{error} (event {} {} of {} {}, version {}, tx {}, position {})",
        event.event_id,
        event.event_type,
        event.aggregate_type,
        event.aggregate_id,
        event.version,
        event.log_position.tx_id,
        event.position
    )
}

/// Records the failure of `event` as the projection's state, logs it and counts it.
async fn fail(
    pool: &PgPool,
    projection: &'static str,
    target: &Target,
    event: &RecordedEvent,
    checkpoint: LogPosition,
    error: ProjectionError,
) -> EngineError {
    let name = target.checkpoint.as_str();
    let message = describe_failure(&error, event);
    tracing::error!(
        projection,
        checkpoint_name = name,
        position = event.position,
        tx_id = event.log_position.tx_id,
        event_id = %event.event_id,
        event_type = %event.event_type,
        checkpoint = checkpoint.position,
        error = %error,
        "projection failed; it stays stopped until the event can be applied"
    );
    metrics::counter!("projector_failures_total", "projection" => name.to_owned()).increment(1);
    metrics::gauge!("projector_projection_failed", "projection" => name.to_owned()).set(1.0);
    let recorded = sqlx::query(
        "UPDATE projection_checkpoints \
            SET state = 'failed', last_error = $2, updated_at = now() \
          WHERE name = $1",
    )
    .bind(name)
    .bind(&message)
    .execute(pool)
    .await;
    if let Err(record_error) = recorded {
        tracing::error!(projection = name, error = %record_error, "cannot record the failure");
    }
    announce(pool, name).await;
    EngineError::Failed {
        projection,
        event_id: event.event_id,
        position: event.log_position,
        source: error,
    }
}

/// A doubling delay between bounds.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound_and_starts_over_when_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(30));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(5));
    }

    #[test]
    fn only_database_errors_are_retried() {
        assert!(!ProjectionError::poison("bad payload").is_retryable());
        assert!(ProjectionError::Database(sqlx::Error::PoolTimedOut).is_retryable());
    }
}
