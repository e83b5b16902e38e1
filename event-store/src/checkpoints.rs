//! The projector's bookkeeping: `projection_checkpoints` (where each subscription stands in the
//! log, its state and generation) and `projection_dead_letters` (events parked by a
//! projection). Every statement on these two tables lives here, so their rules are read in one
//! place: who may move a checkpoint, under which check, and what a failure records.
//!
//! Tables are qualified with `public.`: rebuild batches run with a shadow schema first on
//! their `search_path`, and an unqualified name must never resolve to anything but these.

use chrono::{DateTime, Utc};
use events::{LogPosition, RecordedEvent};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

/// A checkpoint row's place in the log and its generation (bumped by each rebuild swap, so a
/// tag derived from the checkpoint changes when the rows change without it moving).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event the subscription handled, in commit-safe order.
    pub position: LogPosition,
    /// The generation of the rows behind the checkpoint.
    pub generation: i64,
}

type CheckpointRow = (i64, i64, i64);

fn checkpoint((tx_id, position, generation): CheckpointRow) -> Checkpoint {
    Checkpoint {
        position: LogPosition { tx_id, position },
        generation,
    }
}

/// Reads checkpoint `name`, `None` when it has no row.
///
/// # Errors
///
/// The database fails.
pub async fn read<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT tx_id, position, generation FROM public.projection_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(checkpoint))
}

/// Pushes, into the select list of a statement being built, a scalar subquery naming
/// checkpoint `name` as `ARRAY[tx_id, position, generation]` (NULL without a row) under
/// `alias`. The checkpoint is then read in the statement's own snapshot: whatever the
/// statement reads from the projection's table is exactly what that checkpoint covers, since
/// the projector moves the two in one transaction. Read it back with [`from_array`].
pub fn push_in_statement(query: &mut sqlx::QueryBuilder<'_, Postgres>, name: &str, alias: &str) {
    query
        .push(
            "(SELECT ARRAY[tx_id, position, generation] FROM public.projection_checkpoints \
              WHERE name = ",
        )
        .push_bind(name.to_owned())
        .push(format!(") AS {alias}"));
}

/// The checkpoint of a column pushed by [`push_in_statement`]: NULL (no row yet) is the start
/// of the log, generation 0, as the query side reads a missing row; `None` only for an array
/// that is not three numbers.
pub fn from_array(values: Option<&[i64]>) -> Option<Checkpoint> {
    match values {
        None => Some(Checkpoint::default()),
        Some(&[tx_id, position, generation]) => Some(checkpoint((tx_id, position, generation))),
        Some(_) => None,
    }
}

/// Reads checkpoint `name`, creating its row at the start of the log when missing.
///
/// # Errors
///
/// The database fails.
pub async fn ensure(pool: &PgPool, name: &str) -> Result<Checkpoint, sqlx::Error> {
    create_if_missing(pool, name).await?;
    read(pool, name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Creates checkpoint `name` at the start of the log unless it exists.
///
/// # Errors
///
/// The database fails.
pub async fn create_if_missing<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .execute(executor)
    .await?;
    Ok(())
}

/// Locks checkpoint `name` for the rest of `tx` and returns it; `None` when it has no row.
///
/// Whoever holds this lock is the only writer of the model behind the checkpoint until it
/// commits: batches, parking and the rebuild swap all take it first.
///
/// # Errors
///
/// The database fails.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT tx_id, position, generation FROM public.projection_checkpoints \
          WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(checkpoint))
}

/// Moves checkpoint `name` from `from` to `to` in `tx` if it still rests at `from`, counting
/// `applied` events, recording `state` and clearing the last error; returns its generation,
/// `None` when it rests elsewhere or has no row.
///
/// A batch claims its checkpoint first: the row stays locked until `tx` ends, so whoever
/// claims it is the only writer of the model behind it, as with [`lock`], and the check and
/// the move cost one statement instead of two.
///
/// # Errors
///
/// The database fails.
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    from: LogPosition,
    to: LogPosition,
    applied: usize,
    state: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE public.projection_checkpoints \
            SET tx_id = $4, position = $5, events_applied = events_applied + $6, \
                updated_at = now(), state = $7, last_error = NULL \
          WHERE name = $1 AND tx_id = $2 AND position = $3 \
         RETURNING generation",
    )
    .bind(name)
    .bind(from.tx_id)
    .bind(from.position)
    .bind(to.tx_id)
    .bind(to.position)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .bind(state)
    .fetch_optional(&mut **tx)
    .await
}

/// Moves checkpoint `name` from `from` to `to` if it still rests at `from` (a compare-and-set,
/// for subscriptions that write nothing in the database with it: the relay, and skipping
/// events that concern nobody). `applied` events are counted, the state becomes `running`.
/// Returns the checkpoint afterwards when it moved, `None` when someone else had moved it.
///
/// # Errors
///
/// The database fails.
pub async fn advance_from(
    pool: &PgPool,
    name: &str,
    from: LogPosition,
    to: LogPosition,
    applied: usize,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "UPDATE public.projection_checkpoints \
            SET tx_id = $4, position = $5, events_applied = events_applied + $6, \
                updated_at = now(), state = 'running', last_error = NULL \
          WHERE name = $1 AND tx_id = $2 AND position = $3 \
         RETURNING tx_id, position, generation",
    )
    .bind(name)
    .bind(from.tx_id)
    .bind(from.position)
    .bind(to.tx_id)
    .bind(to.position)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(checkpoint))
}

/// Moves checkpoint `name` from `from` to `to` without counting anything or touching its
/// state, if it still rests at `from`: an idle subscription stepping past events that do not
/// concern it. Returns the checkpoint afterwards when it moved.
///
/// # Errors
///
/// The database fails.
pub async fn skip_from<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    from: LogPosition,
    to: LogPosition,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    // A failed projection stays where its failure was found.
    let row: Option<CheckpointRow> = sqlx::query_as(
        "UPDATE public.projection_checkpoints SET tx_id = $4, position = $5 \
          WHERE name = $1 AND tx_id = $2 AND position = $3 AND state <> 'failed' \
         RETURNING tx_id, position, generation",
    )
    .bind(name)
    .bind(from.tx_id)
    .bind(from.position)
    .bind(to.tx_id)
    .bind(to.position)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(checkpoint))
}

/// Parks `event` for checkpoint `name` and moves the checkpoint (locked in `tx`) past it,
/// recording `state` and why in `last_error`.
///
/// # Errors
///
/// The database fails.
pub async fn park(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    event: &RecordedEvent,
    message: &str,
    state: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO public.projection_dead_letters \
                (projection, event_id, position, tx_id, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(event.event_id)
    .bind(event.position)
    .bind(event.log_position.tx_id)
    .bind(message)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE public.projection_checkpoints \
            SET tx_id = $2, position = $3, updated_at = now(), state = $4, last_error = $5 \
          WHERE name = $1",
    )
    .bind(name)
    .bind(event.log_position.tx_id)
    .bind(event.position)
    .bind(state)
    .bind(format!("parked in projection_dead_letters: {message}"))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records checkpoint `name` as `failed` with `message`, but only while it still rests at
/// `at`, where the failure was found: a process that moved on meanwhile has applied or parked
/// the event, and its progress must not be labelled failed. Returns whether it was recorded.
///
/// # Errors
///
/// The database fails.
pub async fn fail_at(
    pool: &PgPool,
    name: &str,
    at: LogPosition,
    message: &str,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query(
        "UPDATE public.projection_checkpoints \
            SET state = 'failed', last_error = $4, updated_at = now() \
          WHERE name = $1 AND tx_id = $2 AND position = $3",
    )
    .bind(name)
    .bind(at.tx_id)
    .bind(at.position)
    .bind(message)
    .execute(pool)
    .await?;
    Ok(recorded.rows_affected() == 1)
}

/// Records `state` and `error` on checkpoint `name` when they differ from what it holds.
///
/// # Errors
///
/// The database fails.
pub async fn record_state(
    pool: &PgPool,
    name: &str,
    state: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.projection_checkpoints SET state = $2, last_error = $3, updated_at = now() \
          WHERE name = $1 AND (state IS DISTINCT FROM $2 OR last_error IS DISTINCT FROM $3)",
    )
    .bind(name)
    .bind(state)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every checkpoint's name and state.
///
/// # Errors
///
/// The database fails.
pub async fn states(pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, state FROM public.projection_checkpoints")
        .fetch_all(pool)
        .await
}

/// Starts shadow checkpoint `shadow` afresh at the start of the log in state `rebuilding`,
/// without dead letters.
///
/// # Errors
///
/// The database fails.
pub async fn reset_shadow(
    tx: &mut Transaction<'_, Postgres>,
    shadow: &str,
) -> Result<(), sqlx::Error> {
    remove(&mut **tx, shadow).await?;
    sqlx::query(
        "INSERT INTO public.projection_checkpoints (name, state) VALUES ($1, 'rebuilding')",
    )
    .bind(shadow)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
        .bind(shadow)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes checkpoint `name`.
///
/// # Errors
///
/// The database fails.
pub async fn remove<'e>(executor: impl PgExecutor<'e>, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM public.projection_checkpoints WHERE name = $1")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}

/// The swap of a rebuild, inside `tx` which holds the live checkpoint's lock: the live
/// checkpoint takes the shadow's place (`at`, its count plus `remainder`), state `running`,
/// and a new generation; the shadow checkpoint goes, and the shadow's dead letters replace the
/// live ones. Returns how many live rows were moved: 1, or 0 when either row is missing, in
/// which case the caller must roll back.
///
/// # Errors
///
/// The database fails.
pub async fn swap(
    tx: &mut Transaction<'_, Postgres>,
    live: &str,
    shadow: &str,
    at: LogPosition,
    remainder: u64,
) -> Result<u64, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE public.projection_checkpoints AS live \
            SET tx_id = $3, position = $4, events_applied = shadow.events_applied + $5, \
                state = 'running', last_error = NULL, updated_at = now(), \
                generation = live.generation + 1 \
           FROM public.projection_checkpoints AS shadow \
          WHERE live.name = $1 AND shadow.name = $2",
    )
    .bind(live)
    .bind(shadow)
    .bind(at.tx_id)
    .bind(at.position)
    .bind(i64::try_from(remainder).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(moved);
    }
    remove(&mut **tx, shadow).await?;
    // The rebuilt model's parked events are now the truth about the live one.
    sqlx::query("DELETE FROM public.projection_dead_letters WHERE projection = $1")
        .bind(live)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE public.projection_dead_letters SET projection = $1 WHERE projection = $2")
        .bind(live)
        .bind(shadow)
        .execute(&mut **tx)
        .await?;
    Ok(moved)
}

/// A checkpoint with how far it lags behind the log.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CheckpointStatus {
    /// The checkpoint row's name.
    pub name: String,
    /// The global position of the last event handled (0 before the first).
    pub checkpoint: i64,
    /// How many events it reads lie after it in commit order.
    pub lag_events: i64,
    /// Seconds since the oldest of those events was recorded; 0 when there are none.
    pub lag_seconds: f64,
    /// Its state (`running`, `failed`, `rebuilding`, ...).
    pub state: String,
    /// The last error recorded, if any.
    pub last_error: Option<String>,
    /// How many events it has handled in all.
    pub events_applied: i64,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
}

/// [`statuses`]' statement: `$1` the checkpoint names, `$2` the type each reads.
pub(crate) const STATUSES: &str = "WITH sources AS (SELECT * FROM unnest($1::text[], $2::text[]) AS s(name, aggregate_type)) \
         SELECT c.name, c.position AS checkpoint, lag.lag_events, \
                COALESCE(GREATEST(EXTRACT(EPOCH FROM now() - lag.oldest), 0), 0)::float8 \
                    AS lag_seconds, \
                c.state, c.last_error, c.events_applied, c.updated_at \
           FROM public.projection_checkpoints c \
          CROSS JOIN LATERAL ( \
                SELECT count(*) AS lag_events, min(behind.recorded_at) AS oldest \
                  FROM ( \
                        SELECT e.recorded_at \
                          FROM sources s \
                         CROSS JOIN LATERAL ( \
                               SELECT e.recorded_at FROM events e \
                                WHERE e.aggregate_type = s.aggregate_type \
                                  AND (e.aggregate_type, e.tx_id, e.global_position) \
                                      > (s.aggregate_type, c.tx_id::text::xid8, c.position) \
                                  AND (e.tx_id, e.global_position) \
                                      > (c.tx_id::text::xid8, c.position) \
                                OFFSET 0 \
                               ) e \
                         WHERE s.name = c.name \
                        UNION ALL \
                        SELECT e.recorded_at FROM events e \
                         WHERE NOT EXISTS (SELECT 1 FROM sources s WHERE s.name = c.name) \
                           AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position) \
                       ) behind \
               ) lag \
          ORDER BY c.name";

/// Every checkpoint with its lag, ordered by name. `sources` pairs a checkpoint name with an
/// aggregate type it reads; a checkpoint missing from it (the relay, a shadow) reads every
/// event.
///
/// Counting the lag costs what the lag is, never what the log is: a checkpoint's typed events
/// are counted on `events_aggregate_type_idx` from `(type, checkpoint)` on (a 3-column row
/// comparison, an index condition under generic plans, started as `event_store::log`'s
/// `push_lead` explains; `OFFSET 0` keeps the planner from
/// flattening that lateral into a hash join over the whole log), every event on the
/// commit-order index from the checkpoint on. Events of transactions still running are
/// invisible, so not lag yet.
///
/// # Errors
///
/// The database fails.
pub async fn statuses(
    pool: &PgPool,
    sources: &[(&str, &str)],
) -> Result<Vec<CheckpointStatus>, sqlx::Error> {
    let (names, types): (Vec<&str>, Vec<&str>) = sources.iter().copied().unzip();
    let mut tx = pool.begin().await?;
    // The generic plan's estimates (a third of the log per type) exceed `jit_above_cost`, and
    // compiling the plan took 1.4 s of a statement that runs in 0.4 ms (docs/decisions/0006).
    // Read-only: the transaction takes no transaction id.
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    let statuses = sqlx::query_as(STATUSES)
        .bind(names)
        .bind(types)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(statuses)
}
