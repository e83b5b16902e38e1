//! Running a command against an aggregate: read what deciding needs of its stream (its state
//! from a snapshot and later events, its revision alone, or nothing for a new stream; see
//! [`Reads`] and docs/decisions/0008-bounded-write-cost.md), decide, append, retry on a lost
//! race, and record the request's idempotency key in the statement that appends.
//!
//! This is cqrs-es's `CqrsFramework::execute_with_metadata` loop (load, `handle` into an
//! `EventSink`, commit) written out, because the framework returns `()` and we need what the
//! commit produced: the new version for the answer and `ETag`, the log position for the
//! consistency token, and the idempotency record written atomically with the events
//! (docs/decisions/0003-atomic-idempotency.md).

use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::EventUpcaster;
use event_store::append::{self, AppendError, NewEvent};
use event_store::idempotency::{Completion, IdempotencyKey};
use event_store::load::{AggregateLoader, LoadError, Loaded};
use event_store::wake::AppendNotifier;
use events::{ConsistencyToken, EventMetadata, LogPosition};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::Instrument as _;
use uuid::Uuid;

/// What kind of change a command made: what the HTTP edge answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A new aggregate, or a new entry in a stream's history (201).
    Created,
    /// A change to an existing aggregate (200).
    Changed,
    /// A batch taken in whole (202).
    Accepted {
        /// How many items the batch held.
        items: usize,
    },
}

/// What a command committed, as stored with its idempotency key and replayed for a repeat:
/// everything its answer says except the log position, which does not exist yet when the
/// outcome is written (it is stored in the same statement as the events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The kind of change.
    pub kind: Kind,
    /// The aggregate's id.
    pub id: String,
    /// The aggregate's version after the command.
    pub version: i64,
    /// How many events were appended (0 when the command changed nothing).
    pub appended: usize,
}

/// What a successful command committed: its outcome and where its last event stands in the
/// log (`START` when it appended nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// What it did.
    pub outcome: Outcome,
    /// The log position of its last event.
    pub position: LogPosition,
    /// The aggregate's type: that of every event it appended.
    pub aggregate_type: &'static str,
}

impl Committed {
    /// The token a query passes to read its own write. It names the aggregate type, so a
    /// query of a projection reading that type waits on announcements alone.
    pub fn token(&self) -> ConsistencyToken {
        ConsistencyToken::after(self.position, self.aggregate_type)
    }
}

/// Why a command did not commit. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// `If-Match` named another version.
    #[error("the aggregate is at version {current}")]
    PreconditionFailed {
        /// The version the aggregate is at.
        current: i64,
        /// The resource at that version as the query API would serve it ([`Current`]).
        resource: Option<serde_json::Value>,
    },
    /// Every retry lost the race to other writers.
    #[error("too many concurrent writers on this aggregate")]
    Contention,
    /// Another attempt with the same idempotency key completed first: its outcome is the
    /// answer.
    #[error("another attempt with this idempotency key completed first")]
    ClaimLost,
    /// The event store could not be read or written.
    #[error("event store: {0}")]
    Store(String),
    /// The event store is unreachable or saturated.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
}

/// The `outcome` label of `chronicle_commands_total` for a command's result.
fn outcome_label<E: std::error::Error>(
    result: &Result<Committed, ExecuteError<E>>,
) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(error) => error_label(error),
    }
}

/// The `outcome` label of `chronicle_commands_total` for a command that did not commit.
pub(crate) fn error_label<E: std::error::Error>(error: &ExecuteError<E>) -> &'static str {
    match error {
        ExecuteError::Rejected(_) => "rejected",
        ExecuteError::PreconditionFailed { .. } => "precondition_failed",
        ExecuteError::Contention | ExecuteError::ClaimLost => "conflict",
        // The catalogue's outcomes have no separate "error": a store failure is a 5xx as
        // unavailability is.
        ExecuteError::Store(_) | ExecuteError::Unavailable(_) => "unavailable",
    }
}

/// Counts one command in `chronicle_commands_total{aggregate_type, outcome}`.
pub(crate) fn count_command(aggregate_type: &'static str, outcome: &'static str) {
    metrics::counter!(
        service_kit::metric_names::COMMANDS_TOTAL,
        "aggregate_type" => aggregate_type,
        "outcome" => outcome,
    )
    .increment(1);
}

impl<E: std::error::Error> From<AppendError> for ExecuteError<E> {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict => Self::Contention,
            AppendError::ClaimLost => Self::ClaimLost,
            AppendError::Database(error) => database_error(error),
        }
    }
}

fn database_error<E: std::error::Error>(error: sqlx::Error) -> ExecuteError<E> {
    if service_kit::db::is_unavailable(&error) {
        ExecuteError::Unavailable(error.to_string())
    } else {
        ExecuteError::Store(error.to_string())
    }
}

fn load_error<E: std::error::Error>(error: LoadError) -> ExecuteError<E> {
    match error {
        LoadError::Database(error) => database_error(error),
        LoadError::Event(error) => ExecuteError::Store(error.to_string()),
    }
}

/// An aggregate's face in the query API, for a 412's `current`; implemented for every
/// aggregate by `impl_aggregate!` from `Decide::current`.
pub trait Current {
    /// The resource `id` in this state at the stream's `ends`, as the query API serves it.
    fn current(&self, id: &str, ends: &event_store::load::StreamEnds) -> Option<serde_json::Value>;
}

/// An `If-Match` precondition, as the bus checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// The strong tag of this version: matches the aggregate at exactly this version.
    Version(i64),
    /// A weak tag (`W/"3"`): never matches, since `If-Match` compares strongly (RFC 9110
    /// 13.1.1); the answer is 412 with the current version.
    Weak,
}

impl IfMatch {
    /// Whether the aggregate at `version` satisfies this precondition.
    pub fn matches(self, version: i64) -> bool {
        self == Self::Version(version)
    }
}

/// What deciding a command needs to read of its stream, so that no command's cost grows with
/// its stream's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// The aggregate's state: its newest snapshot and the events after it.
    State,
    /// Nothing: the command starts a new stream at revision 0. When the id is taken, the
    /// append's unique violation on the stream revision says so, and the command is decided
    /// again on the stored state, which answers with the aggregate's own rule (409).
    NewStream,
    /// Only the stream's revision: the decision never depends on the state (a status report
    /// is recorded whatever came before).
    Revision,
}

/// What the caller asks of one execution.
pub struct Request<'a> {
    /// The aggregate's id.
    pub aggregate_id: &'a str,
    /// `If-Match`: the version the client last saw.
    pub expected_version: Option<IfMatch>,
    /// Audit metadata for every event.
    pub metadata: &'a EventMetadata,
    /// The idempotency key to record with the outcome, if any.
    pub key: Option<&'a IdempotencyKey>,
    /// The kind of change the command makes when it succeeds.
    pub kind: Kind,
    /// What deciding it reads of the stream.
    pub reads: Reads,
    /// After this the command gives up with 503 — but only before its append starts: an
    /// append is never abandoned half-way, so a timeout answer never has written anything.
    pub deadline: tokio::time::Instant,
}

/// After a load that applied this many events, the new state is stored as a snapshot, so the
/// next load reads the snapshot and fewer events than this.
pub const SNAPSHOT_AFTER: usize = 64;

/// Executes commands of aggregate `A` against the event store.
pub struct CommandBus<A: Aggregate> {
    loader: AggregateLoader<A>,
    pool: PgPool,
    services: A::Services,
    notifier: AppendNotifier,
    max_retries: u32,
}

impl<A> CommandBus<A>
where
    A: Aggregate + Current,
    A::Command: Clone,
{
    /// A bus on `pool`; `max_retries` bounds re-runs of an unconditioned command that lost a
    /// race.
    pub fn new(
        pool: PgPool,
        services: A::Services,
        upcasters: Vec<Box<dyn EventUpcaster>>,
        notifier: AppendNotifier,
        max_retries: u32,
    ) -> Self {
        Self {
            loader: AggregateLoader::new(pool.clone(), upcasters),
            pool,
            services,
            notifier,
            max_retries,
        }
    }

    /// Runs `command`: a conditioned command (`expected_version`) gets one try and a 412 when
    /// the version moved; an unconditioned one is re-decided on fresh state when it loses a
    /// race, up to `max_retries` times.
    pub async fn execute(
        &self,
        request: &Request<'_>,
        command: A::Command,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        self.execute_guarded(request, command, &|_: &A| Ok(()))
            .await
    }

    /// [`CommandBus::execute`], first asking `guard` whether the caller may act on the
    /// loaded state: its refusal (404 for what the caller may not see, 403 for what it may
    /// see but not change) answers before `If-Match` is compared, so neither a version nor
    /// a conflict leaks about another account's resource.
    pub async fn execute_guarded(
        &self,
        request: &Request<'_>,
        command: A::Command,
        guard: &(dyn Fn(&A) -> Result<(), A::Error> + Sync),
    ) -> Result<Committed, ExecuteError<A::Error>> {
        let span = tracing::info_span!(
            "command",
            aggregate.r#type = A::TYPE,
            aggregate.id = %request.aggregate_id,
            outcome = tracing::field::Empty,
        );
        let result = self
            .execute_inner(request, command, guard)
            .instrument(span.clone())
            .await;
        let outcome = outcome_label(&result);
        span.record("outcome", outcome);
        // A keyed command that did not commit is counted by the caller: an earlier attempt's
        // stored answer may replace its failure (a replay), and a command is counted once.
        if result.is_ok() || request.key.is_none() {
            count_command(A::TYPE, outcome);
        }
        result
    }

    async fn execute_inner(
        &self,
        request: &Request<'_>,
        command: A::Command,
        guard: &(dyn Fn(&A) -> Result<(), A::Error> + Sync),
    ) -> Result<Committed, ExecuteError<A::Error>> {
        let mut attempt = 0;
        let timed_out = || ExecuteError::Unavailable("the request timed out".to_owned());
        // A precondition on a create compares with what is stored: read it.
        let mut reads = match request.reads {
            Reads::NewStream if request.expected_version.is_some() => Reads::State,
            reads => reads,
        };
        loop {
            let loaded = tokio::time::timeout_at(request.deadline, self.read(request, reads))
                .await
                .map_err(|_| timed_out())??;
            guard(&loaded.aggregate).map_err(ExecuteError::Rejected)?;
            if let Some(expected) = request.expected_version
                && !expected.matches(loaded.version)
            {
                return Err(self
                    .precondition_failed(request.aggregate_id, &loaded.aggregate, loaded.version)
                    .await);
            }
            let mut aggregate = loaded.aggregate;
            let sink = EventSink::default();
            aggregate
                .handle(command.clone(), &self.services, &sink)
                .await
                .map_err(ExecuteError::Rejected)?;
            let decided = sink.collect().await;
            let new_events = self.to_new_events(request, loaded.version, &decided)?;
            let outcome = Outcome {
                kind: request.kind,
                id: request.aggregate_id.to_owned(),
                version: loaded.version + i64::try_from(new_events.len()).unwrap_or(i64::MAX),
                appended: new_events.len(),
            };
            if new_events.is_empty() && request.key.is_none() {
                return Ok(Committed {
                    outcome,
                    position: LogPosition::START,
                    aggregate_type: A::TYPE,
                });
            }
            let completion = request
                .key
                .map(|key| Completion::new(key, &outcome))
                .transpose()
                .map_err(|error| ExecuteError::Store(error.to_string()))?;
            if tokio::time::Instant::now() >= request.deadline {
                return Err(timed_out());
            }
            let appending = tracing::info_span!("append", events = new_events.len());
            match append::append(&self.pool, &new_events, completion.as_ref())
                .instrument(appending)
                .await
            {
                Ok(receipt) => {
                    if receipt.count > 0 {
                        self.notifier.notify_appended([A::TYPE]);
                        metrics::counter!(service_kit::metric_names::EVENTS_APPENDED_TOTAL, "aggregate_type" => A::TYPE)
                            .increment(receipt.count as u64);
                    }
                    // Only a full state is worth keeping, and only once its replay got long.
                    if reads == Reads::State && loaded.replayed + new_events.len() >= SNAPSHOT_AFTER
                    {
                        self.snapshot(request.aggregate_id, &aggregate, outcome.version)
                            .await;
                    }
                    return Ok(Committed {
                        outcome,
                        position: if receipt.count == 0 {
                            LogPosition::START
                        } else {
                            receipt.last
                        },
                        aggregate_type: A::TYPE,
                    });
                }
                // The new stream exists: decide again on what it holds (not a retry: nothing
                // raced, the id was taken).
                Err(AppendError::Conflict) if reads == Reads::NewStream => reads = Reads::State,
                Err(AppendError::Conflict) if request.expected_version.is_some() => {
                    // The winner's state, read whole: the answer shows it.
                    let now = self
                        .loader
                        .load(request.aggregate_id)
                        .await
                        .map_err(load_error)?;
                    return Err(self
                        .precondition_failed(request.aggregate_id, &now.aggregate, now.version)
                        .await);
                }
                Err(AppendError::Conflict) if attempt < self.max_retries => {
                    attempt += 1;
                    metrics::counter!(service_kit::metric_names::COMMAND_RETRIES_TOTAL, "aggregate_type" => A::TYPE)
                        .increment(1);
                    tracing::debug!(attempt, "lost a concurrency race; retrying on fresh state");
                    // Spread retrying writers apart so they do not collide again in lockstep.
                    let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 8);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) + jitter)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The 412 for `aggregate` at `version`: with the resource as the query API would serve
    /// it, built from the stream itself, so it is never behind the projection.
    async fn precondition_failed(
        &self,
        aggregate_id: &str,
        aggregate: &A,
        version: i64,
    ) -> ExecuteError<A::Error> {
        match self.loader.ends(aggregate_id, version).await {
            Ok(ends) => ExecuteError::PreconditionFailed {
                current: version,
                resource: ends.and_then(|ends| aggregate.current(aggregate_id, &ends)),
            },
            Err(error) => database_error(error),
        }
    }

    /// Reads what deciding needs: the state, nothing, or the revision alone.
    async fn read(
        &self,
        request: &Request<'_>,
        reads: Reads,
    ) -> Result<Loaded<A>, ExecuteError<A::Error>> {
        let empty = |version| Loaded {
            aggregate: A::default(),
            version,
            replayed: 0,
        };
        match reads {
            Reads::State => self
                .loader
                .load(request.aggregate_id)
                .await
                .map_err(load_error),
            Reads::NewStream => Ok(empty(0)),
            Reads::Revision => self
                .loader
                .revision(request.aggregate_id)
                .await
                .map(empty)
                .map_err(database_error),
        }
    }

    /// Stores `aggregate` at `version` as a snapshot. The command already committed, so a
    /// failure only means the next load reads more events: logged, not returned.
    async fn snapshot(&self, aggregate_id: &str, aggregate: &A, version: i64) {
        if let Err(error) = self
            .loader
            .save_snapshot(aggregate_id, aggregate, version)
            .await
        {
            tracing::warn!(%error, "could not store a snapshot");
        }
    }

    fn to_new_events(
        &self,
        request: &Request<'_>,
        version: i64,
        decided: &[A::Event],
    ) -> Result<Vec<NewEvent>, ExecuteError<A::Error>> {
        // Run inside the command span: its context is what a consumer of the events continues.
        let metadata = EventMetadata {
            traceparent: service_kit::otel::current_traceparent()
                .or_else(|| request.metadata.traceparent.clone()),
            ..request.metadata.clone()
        };
        let metadata = serde_json::to_value(&metadata)
            .map_err(|error| ExecuteError::Store(error.to_string()))?;
        decided
            .iter()
            .zip(version + 1..)
            .map(|(event, sequence)| {
                NewEvent::of(
                    A::TYPE,
                    request.aggregate_id,
                    sequence,
                    event,
                    metadata.clone(),
                )
                .map_err(|error| ExecuteError::Store(error.to_string()))
            })
            .collect()
    }
}
