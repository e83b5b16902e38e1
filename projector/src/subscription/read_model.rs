//! The read-model sink: applies a batch to a [`Projection`] in one transaction that first claims
//! the checkpoint row: one statement moves it past the batch only if it still holds the
//! position the batch was read after, and keeps it locked. The claim makes a batch land at most
//! once even if two projector processes ever run the same projection; applying it in the same
//! transaction as the checkpoint makes it land at least once across crashes.
//!
//! An event that cannot be applied stops its projection (state `failed`) rather than being
//! skipped, or, when dead-lettering is configured for the projection, is parked in
//! `projection_dead_letters` in the same transaction that moves the checkpoint past it.
//!
//! The same sink builds shadow copies for rebuilds ([`crate::rebuild`]): its [`Target`] names
//! the checkpoint row to use and the `search_path` under which the projection's unqualified
//! table names resolve to the shadow tables.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use event_store::LogFilter;
use event_store::checkpoints;
use event_store::wake::CheckpointMoved;
use events::{LogPosition, RecordedEvent};
use service_kit::metric_names;
use sqlx::{PgPool, Postgres, Transaction};

use super::{
    APPLY_RETRIES, Delivered, EngineError, Projection, ProjectionError, Sink, Target, announce,
    filter_for,
};

/// The first delay before retrying a failed batch; it doubles with each retry.
const APPLY_RETRY_DELAY: Duration = Duration::from_millis(50);

/// A projection applied to a [`Target`], as a sink of a subscription.
pub struct ReadModelSink<'a> {
    pool: &'a PgPool,
    projection: &'a dyn Projection,
    target: Target,
    filter: LogFilter,
}

impl<'a> ReadModelSink<'a> {
    /// The sink applying `projection` to `target`, writing through `pool`.
    pub fn new(pool: &'a PgPool, projection: &'a dyn Projection, target: Target) -> Self {
        Self {
            pool,
            projection,
            filter: filter_for(projection),
            target,
        }
    }

    fn database(&self, source: sqlx::Error) -> EngineError {
        EngineError::Database {
            projection: self.projection.name(),
            source,
        }
    }

    fn missing(&self) -> EngineError {
        EngineError::Missing {
            projection: self.projection.name(),
            checkpoint: self.target.checkpoint.clone(),
        }
    }

    fn moved(
        &self,
        last: LogPosition,
        generation: i64,
        batch: &[RecordedEvent],
    ) -> CheckpointMoved {
        CheckpointMoved {
            projection: self.target.checkpoint.clone(),
            checkpoint: last,
            generation,
            changed: changed(batch),
            complete: true,
        }
    }
}

/// `(aggregate id, newest version)` of every stream in `batch`.
fn changed(batch: &[RecordedEvent]) -> Vec<(String, i64)> {
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for event in batch {
        let version = newest.entry(event.aggregate_id.as_str()).or_default();
        *version = (*version).max(event.version);
    }
    newest
        .into_iter()
        .map(|(id, version)| (id.to_owned(), version))
        .collect()
}

/// The outcome of one batch transaction.
enum Batch {
    /// Committed; the checkpoint's generation.
    Committed(i64),
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
    /// The checkpoint row is gone and must not be re-created.
    Missing,
    /// The target's fence is broken.
    Fenced,
    /// Locking or moving the checkpoint, or committing, failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
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

#[async_trait]
impl Sink for ReadModelSink<'_> {
    type Error = EngineError;

    fn checkpoint(&self) -> &str {
        &self.target.checkpoint
    }

    fn filter(&self) -> &LogFilter {
        &self.filter
    }

    fn until(&self) -> Option<LogPosition> {
        self.target.until
    }

    async fn start(&mut self, pool: &PgPool) -> Result<LogPosition, EngineError> {
        let name = self.target.checkpoint.as_str();
        if self.target.create_missing {
            checkpoints::create_if_missing(pool, name)
                .await
                .map_err(|error| self.database(error))?;
        }
        match checkpoints::read(pool, name).await {
            Ok(Some(checkpoint)) => Ok(checkpoint.position),
            Ok(None) => Err(self.missing()),
            Err(error) => Err(self.database(error)),
        }
    }

    async fn deliver(
        &mut self,
        after: LogPosition,
        batch: &[RecordedEvent],
    ) -> Result<Delivered, EngineError> {
        deliver(self, after, batch).await
    }

    fn database_error(&self, error: sqlx::Error) -> EngineError {
        self.database(error)
    }

    fn is_final(&self, error: &EngineError) -> bool {
        matches!(
            error,
            EngineError::Failed { .. } | EngineError::Missing { .. } | EngineError::Fenced { .. }
        )
    }
}

/// Applies `batch` (read after `checkpoint`), retrying retryable failures; parks or records a
/// final failure.
async fn deliver(
    sink: &ReadModelSink<'_>,
    checkpoint: LogPosition,
    batch: &[RecordedEvent],
) -> Result<Delivered, EngineError> {
    let started = Instant::now();
    let Some(last) = batch.last().map(|event| event.log_position) else {
        return Ok(Delivered::Overtaken(checkpoint));
    };
    let batch_error = |error: BatchError| match error {
        BatchError::Missing => sink.missing(),
        BatchError::Fenced => EngineError::Fenced {
            projection: sink.projection.name(),
        },
        BatchError::Database(source) => sink.database(source),
        // Callers match these before.
        BatchError::Apply { error, .. } | BatchError::Bulk(error) => match error {
            ProjectionError::Database(source) => sink.database(source),
            ProjectionError::Poison(reason) => sink.database(sqlx::Error::Protocol(reason)),
        },
    };

    let mut attempt = 0;
    // Set-based first; after any failure, event by event, which locates the event at fault.
    let mut mode = Mode::Bulk;
    let (index, error) = loop {
        match apply_batch(sink, checkpoint, batch, mode).await {
            Ok(Batch::Committed(generation)) => {
                committed(&sink.target.checkpoint, batch, started);
                return Ok(Delivered::Moved {
                    count: batch.len(),
                    moved: sink.moved(last, generation, batch),
                });
            }
            Ok(Batch::Moved(position)) => return Ok(Delivered::Overtaken(position)),
            Err(BatchError::Bulk(error)) => {
                tracing::debug!(%error, "set-based batch failed; applying event by event");
                mode = Mode::PerEvent;
            }
            Err(BatchError::Apply {
                error: ProjectionError::Database(source),
                ..
            }) if service_kit::db::is_unavailable(&source) => {
                // Not the event's fault: the loop backs off and reads the batch again.
                return Err(sink.database(source));
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
            Err(other) => return Err(batch_error(other)),
        }
    };

    // Keep what precedes the failed event, so the checkpoint rests right before it.
    let mut checkpoint_after = checkpoint;
    let mut prefix_moved = None;
    if index > 0 {
        let prefix = &batch[..index];
        match apply_batch(sink, checkpoint, prefix, Mode::PerEvent).await {
            Ok(Batch::Committed(generation)) => {
                committed(&sink.target.checkpoint, prefix, started);
                checkpoint_after = prefix[index - 1].log_position;
                prefix_moved = Some(sink.moved(checkpoint_after, generation, prefix));
            }
            // Another process moved on; it will meet the same event and record it itself.
            Ok(Batch::Moved(position)) => return Ok(Delivered::Overtaken(position)),
            Err(BatchError::Apply { .. } | BatchError::Bulk(_)) => {}
            Err(other) => return Err(batch_error(other)),
        }
    }
    let poison = &batch[index];
    // Parking needs the checkpoint to rest right before the event (the prefix landed).
    let before = index
        .checked_sub(1)
        .map_or(checkpoint, |previous| batch[previous].log_position);
    if sink.target.dead_letter && is_parkable(&error) && checkpoint_after == before {
        return match park(sink, checkpoint_after, poison, &error).await {
            Ok(Batch::Committed(generation)) => {
                let mut moved = sink.moved(poison.log_position, generation, &batch[..index]);
                moved.checkpoint = poison.log_position;
                Ok(Delivered::Moved {
                    count: index,
                    moved,
                })
            }
            Ok(Batch::Moved(position)) => Ok(Delivered::Overtaken(position)),
            Err(other) => Err(batch_error(other)),
        };
    }
    if let Some(moved) = prefix_moved {
        announce(sink.pool, &moved).await;
    }
    Err(fail(sink, poison, checkpoint_after, error).await)
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

/// Begins a batch transaction on the target, with its settings sent in the same round trip as
/// `BEGIN`, and checks the target's fence.
async fn begin(sink: &ReadModelSink<'_>) -> Result<Transaction<'static, Postgres>, BatchError> {
    // Rows and checkpoint commit together, so a crash that loses this commit loses both and
    // the batch is applied again: no flush needs to be waited for. It also keeps the
    // projector's commits from queueing behind the command side's on the WAL flush.
    let settings = "BEGIN; SET LOCAL synchronous_commit = off";
    let statement = match &sink.target.search_path {
        // Only for this transaction: the pooled connection goes back with its usual path.
        Some(search_path) => Cow::Owned(format!(
            "{settings}; SET LOCAL search_path TO {search_path}"
        )),
        None => Cow::Borrowed(settings),
    };
    let mut tx = sink.pool.begin_with(statement).await?;
    if let Some(fence) = &sink.target.fence
        && !fence.holds(&mut *tx).await?
    {
        tx.rollback().await?;
        return Err(BatchError::Fenced);
    }
    Ok(tx)
}

/// Where the checkpoint rests after a batch found it elsewhere than it expected: ends `tx`,
/// and re-creates a missing row at the start of the log when the target allows (it may have
/// been deleted to rebuild the model in place), which sends the loop back to the start.
async fn moved_elsewhere(
    sink: &ReadModelSink<'_>,
    tx: Transaction<'static, Postgres>,
) -> Result<Batch, BatchError> {
    tx.rollback().await?;
    let name = sink.target.checkpoint.as_str();
    if sink.target.create_missing {
        checkpoints::create_if_missing(sink.pool, name).await?;
    }
    match checkpoints::read(sink.pool, name).await? {
        Some(current) => Ok(Batch::Moved(current.position)),
        None => Err(BatchError::Missing),
    }
}

/// Applies `batch` (read after `expected`) in one transaction with the checkpoint: claimed
/// first (checked to rest at `expected`, moved and locked by one statement), then the rows.
async fn apply_batch(
    sink: &ReadModelSink<'_>,
    expected: LogPosition,
    batch: &[RecordedEvent],
    mode: Mode,
) -> Result<Batch, BatchError> {
    let Some(last) = batch.last().map(|event| event.log_position) else {
        return Ok(Batch::Moved(expected));
    };
    let mut tx = begin(sink).await?;
    let claimed = checkpoints::claim(
        &mut tx,
        &sink.target.checkpoint,
        expected,
        last,
        batch.len(),
        sink.target.state,
    )
    .await?;
    let Some(generation) = claimed else {
        return moved_elsewhere(sink, tx).await;
    };
    match mode {
        Mode::Bulk => sink
            .projection
            .apply_batch(&mut tx, batch)
            .await
            .map_err(BatchError::Bulk)?,
        Mode::PerEvent => {
            for (index, event) in batch.iter().enumerate() {
                sink.projection
                    .apply(&mut tx, event)
                    .await
                    .map_err(|error| BatchError::Apply { index, error })?;
            }
        }
    }
    tx.commit().await?;
    Ok(Batch::Committed(generation))
}

/// Parks `event` in `projection_dead_letters` and moves the checkpoint past it, in one
/// transaction that first checks the checkpoint still rests right before the event.
async fn park(
    sink: &ReadModelSink<'_>,
    expected: LogPosition,
    event: &RecordedEvent,
    error: &ProjectionError,
) -> Result<Batch, BatchError> {
    let name = sink.target.checkpoint.as_str();
    let message = describe_failure(error, event);
    let mut tx = begin(sink).await?;
    let generation = match checkpoints::lock(&mut tx, name).await? {
        Some(current) if current.position == expected => current.generation,
        _ => return moved_elsewhere(sink, tx).await,
    };
    checkpoints::park(&mut tx, name, event, &message, sink.target.state).await?;
    tx.commit().await?;
    tracing::error!(
        projection = sink.projection.name(),
        checkpoint = name,
        position = event.position,
        tx_id = event.log_position.tx_id,
        event_id = %event.event_id,
        event_type = %event.event_type,
        error = %error,
        "event parked as a dead letter; the projection goes on without it"
    );
    metrics::counter!(metric_names::PROJECTION_DEAD_LETTERS_TOTAL, "projection" => name.to_owned())
        .increment(1);
    Ok(Batch::Committed(generation))
}

/// Bookkeeping after a batch committed: metrics and a debug line.
fn committed(name: &str, batch: &[RecordedEvent], started: Instant) {
    let Some(last) = batch.last() else { return };
    let label = name.to_owned();
    metrics::counter!(metric_names::PROJECTION_EVENTS_APPLIED_TOTAL, "projection" => label.clone())
        .increment(batch.len() as u64);
    metrics::histogram!(metric_names::PROJECTION_BATCH_DURATION_SECONDS, "projection" => label)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(
        count = batch.len(),
        tx_id = last.log_position.tx_id,
        position = last.position,
        "batch applied"
    );
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

/// Records the failure of `event` as the projection's state, if its checkpoint still rests at
/// `checkpoint` where the failure was found; logs it and counts it.
async fn fail(
    sink: &ReadModelSink<'_>,
    event: &RecordedEvent,
    checkpoint: LogPosition,
    error: ProjectionError,
) -> EngineError {
    let projection = sink.projection.name();
    let name = sink.target.checkpoint.as_str();
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
    metrics::counter!(metric_names::PROJECTION_FAILURES_TOTAL, "projection" => name.to_owned())
        .increment(1);
    match checkpoints::fail_at(sink.pool, name, checkpoint, &message).await {
        Ok(true) => {}
        // Another process moved the checkpoint since: it applied or parked the event, and
        // its progress is not to be labelled failed.
        Ok(false) => tracing::warn!(
            projection = name,
            "the checkpoint moved on; the failure is not recorded"
        ),
        Err(record_error) => {
            tracing::error!(projection = name, error = %record_error, "cannot record the failure");
        }
    }
    match checkpoints::read(sink.pool, name).await {
        Ok(Some(now)) => {
            let moved = CheckpointMoved {
                projection: name.to_owned(),
                checkpoint: now.position,
                generation: now.generation,
                changed: Vec::new(),
                complete: true,
            };
            announce(sink.pool, &moved).await;
        }
        Ok(None) => {}
        Err(read_error) => tracing::warn!(%read_error, "cannot announce the failure"),
    }
    EngineError::Failed {
        projection,
        event_id: event.event_id,
        position: event.log_position,
        source: error,
    }
}
