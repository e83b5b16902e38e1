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

/// Moves the checkpoint locked in `tx` to `to`, counting `applied` events, recording `state`
/// and clearing the last error.
///
/// # Errors
///
/// The database fails.
pub async fn advance(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    to: LogPosition,
    applied: usize,
    state: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.projection_checkpoints \
            SET tx_id = $2, position = $3, events_applied = events_applied + $4, \
                updated_at = now(), state = $5, last_error = NULL \
          WHERE name = $1",
    )
    .bind(name)
    .bind(to.tx_id)
    .bind(to.position)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .bind(state)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

/// A checkpoint row as [`statuses`] reads it.
#[derive(sqlx::FromRow)]
struct StatusRow {
    name: String,
    tx_id: i64,
    position: i64,
    state: String,
    last_error: Option<String>,
    events_applied: i64,
    updated_at: DateTime<Utc>,
}

/// How many events of one type lie after a checkpoint, and the age of the oldest, in seconds
/// (null without any). `$1` the type, `$2`/`$3` the checkpoint: a range of
/// `events_aggregate_type_idx` from `(type, checkpoint)` on, bounded above by the type rather
/// than an equality on it, which would start the scan at the type's first event
/// (`event_store::log`'s reads explain).
pub(crate) const LAG_OF_TYPE: &str = "SELECT count(*), \
            EXTRACT(EPOCH FROM now() - min(recorded_at))::float8 \
       FROM events \
      WHERE (aggregate_type, tx_id, global_position) > ($1, $2::text::xid8, $3) \
        AND aggregate_type <= $1";

/// [`LAG_OF_TYPE`] for a checkpoint that reads every event: the commit-order index from the
/// checkpoint on.
const LAG_OF_ALL: &str = "SELECT count(*), EXTRACT(EPOCH FROM now() - min(recorded_at))::float8 \
       FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2)";

/// Every checkpoint with its lag, ordered by name. `sources` pairs a checkpoint name with an
/// aggregate type it reads; a checkpoint missing from it (the relay, a shadow) reads every
/// event.
///
/// Counting the lag costs what the lag is, never what the log is: one statement per
/// checkpoint and type ([`LAG_OF_TYPE`], [`LAG_OF_ALL`]), planned for its values. In one
/// statement, a lateral over the checkpoints gave the planner no values: it estimated the
/// type's range of the primary key as cheaper and read every event of the type (35,665
/// buffers, 70 ms at 128,666 events of it; 3 buffers planned for the values). Events of
/// transactions still running are invisible, so not lag yet.
///
/// # Errors
///
/// The database fails.
pub async fn statuses(
    pool: &PgPool,
    sources: &[(&str, &str)],
) -> Result<Vec<CheckpointStatus>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // A plan for the values at hand (see above); JIT compiling a generic plan's estimates took
    // 1.4 s of a statement that runs in 0.4 ms (docs/decisions/0006). Read-only: the
    // transaction takes no transaction id.
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    let checkpoints: Vec<StatusRow> = sqlx::query_as(
        "SELECT name, tx_id, position, state, last_error, events_applied, updated_at \
               FROM public.projection_checkpoints ORDER BY name",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut statuses = Vec::with_capacity(checkpoints.len());
    for StatusRow {
        name,
        tx_id,
        position,
        state,
        last_error,
        events_applied,
        updated_at,
    } in checkpoints
    {
        // Collected before the awaits: a borrowing iterator held across them makes the future
        // not `Send` for every lifetime, which a route handler needs.
        let types: Vec<&str> = sources
            .iter()
            .filter(|(source, _)| *source == name)
            .map(|(_, kind)| *kind)
            .collect();
        let mut lags: Vec<(i64, Option<f64>)> = Vec::with_capacity(types.len().max(1));
        if types.is_empty() {
            lags.push(
                sqlx::query_as(LAG_OF_ALL)
                    .bind(tx_id.to_string())
                    .bind(position)
                    .fetch_one(&mut *tx)
                    .await?,
            );
        }
        for kind in types {
            lags.push(
                sqlx::query_as(LAG_OF_TYPE)
                    .bind(kind)
                    .bind(tx_id.to_string())
                    .bind(position)
                    .fetch_one(&mut *tx)
                    .await?,
            );
        }
        statuses.push(CheckpointStatus {
            name,
            checkpoint: position,
            lag_events: lags.iter().map(|(count, _)| count).sum(),
            lag_seconds: lags.iter().filter_map(|(_, age)| *age).fold(0.0, f64::max),
            state,
            last_error,
            events_applied,
            updated_at,
        });
    }
    tx.commit().await?;
    Ok(statuses)
}
