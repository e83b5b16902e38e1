//! What a read model is to the subscription loop: the [`Projection`] trait, its errors, and the
//! [`Target`] (live model or rebuild shadow) a projection is applied to.

use std::time::Duration;

use async_trait::async_trait;
use event_store::LogFilter;
use event_store::catalogue::ReadModel;
use events::{LogPosition, RecordedEvent};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// How often an event whose application failed with a retryable error is tried again before
/// the projection is marked failed.
pub const APPLY_RETRIES: u32 = 3;

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
    /// The checkpoint row the projection writes under is gone, and it is not one to be
    /// re-created (a rebuild's shadow whose rebuild was abandoned or taken over): stop.
    #[error("projection {projection}: checkpoint {checkpoint} is gone")]
    Missing {
        /// The projection.
        projection: &'static str,
        /// The checkpoint row.
        checkpoint: String,
    },
    /// A rebuild's shadow batch found its fence broken (the rebuild lock's session died, or
    /// the shadow schema is gone): nothing was written, and the rebuild must stop.
    #[error("projection {projection}: the rebuild lost its lock or its shadow")]
    Fenced {
        /// The projection.
        projection: &'static str,
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
    /// The most payload bytes read into one batch (the first event always is, whatever its
    /// size): big events make batches shorter, so memory stays bounded.
    pub max_bytes: i64,
    /// The least time between two skips of unrelated events by an idle loop
    /// (`skip::skip_unrelated`): a skip is a checkpoint write and an announcement,
    /// which on every append wake-up of every idle projection cost more than the appends.
    /// Zero skips on every idle round.
    pub skip_every: Duration,
}

impl LoopSettings {
    /// [`LoopSettings::skip_every`] by default (`PROJECTOR_SKIP_EVERY_MS`).
    pub const DEFAULT_SKIP_EVERY: Duration = Duration::from_secs(1);
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
    /// Whether a missing checkpoint row is created at the start of the log (the live model:
    /// deleting its row rebuilds it in place) or stops the subscription (a shadow: its row
    /// goes only when its rebuild is over or abandoned).
    pub create_missing: bool,
    /// For a shadow: what must still hold for a batch to be written (see [`Fence`]).
    pub fence: Option<Fence>,
}

/// What fences a rebuild's shadow batches: the rebuild's advisory lock, held by the session
/// `holder`, and the shadow schema. Checked inside every batch transaction; when the lock's
/// session died (another rebuild may then own the shadow) or the schema is gone (its
/// `search_path` would silently resolve to the live tables), the batch is not written.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The advisory-lock key of the rebuild.
    pub key: i64,
    /// The backend pid of the session that holds it.
    pub holder: i32,
    /// The shadow schema.
    pub schema: String,
}

impl Fence {
    /// Whether the lock is still held by `holder` and the schema exists, as `executor` sees it.
    ///
    /// # Errors
    ///
    /// The database fails.
    pub async fn holds<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
    ) -> Result<bool, sqlx::Error> {
        // A bigint advisory key shows in pg_locks as classid (high half) and objid (low half),
        // with objsubid 1.
        sqlx::query_scalar(
            "SELECT to_regnamespace($3) IS NOT NULL \
                AND EXISTS (SELECT 1 FROM pg_locks \
                             WHERE locktype = 'advisory' AND granted AND pid = $2 \
                               AND objsubid = 1 \
                               AND ((classid::bigint << 32) | objid::bigint) = $1)",
        )
        .bind(self.key)
        .bind(self.holder)
        .bind(format!("\"{}\"", self.schema.replace('"', "\"\"")))
        .fetch_one(executor)
        .await
    }
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
            create_missing: true,
            fence: None,
        }
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
