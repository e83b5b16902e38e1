//! Rebuilding a read model from the log while the live one keeps serving reads, and verifying
//! a live model against a fresh rebuild.
//!
//! Both build a *shadow*: a schema `shadow_<projection>` holding an empty copy of each of the
//! projection's tables ([`Projection::tables`]) with the same columns, defaults, constraints
//! and index *names* as the live ones. The projection runs from position zero under its own
//! checkpoint (`<projection>@shadow`, visible in `GET /projections` with state `rebuilding`)
//! with `SET LOCAL search_path = shadow_<projection>, public` in its batch transactions, so its
//! unqualified table names resolve to the shadow while the log is still read from `public`.
//!
//! **Rebuild** then, in one transaction: locks the live checkpoint row (the live loop's next
//! batch waits on that lock, so the live model stops changing), applies the rest of the log
//! to the shadow, moves the live tables into a `retired_<projection>` schema and the shadow
//! tables into the live schema, sets the live checkpoint to the shadow's, and drops the old
//! tables. Readers see either the old complete tables or the new complete ones: the moves take
//! an exclusive lock for the instant of the commit, and a reader queued behind it resolves
//! the table name again. Index names do not clash because the old indexes leave the schema
//! in the same transaction that the new ones enter it. The waiting live batch then finds its
//! checkpoint moved and goes on from the rebuilt position.
//!
//! **Verify** builds the shadow up to the live checkpoint, then compares every row by primary
//! key in one read-only snapshot in which both checkpoints cover the same events of the
//! projection's types (catching up again while the live model moves on). Read-only, it holds
//! no transaction id, so the commit-safe horizon of every reader goes on meanwhile.
//!
//! **Fencing.** The rebuild lock is a session lock on a connection of its own; every shadow
//! batch, the swap and the comparison check that this session still holds it and that the
//! shadow schema exists ([`crate::subscription::Fence`]), and a shadow checkpoint row that
//! disappeared is never re-created. Otherwise a rebuild whose lock died could run beside a
//! second one, or, once the shadow schema is gone, write through `search_path` into the live
//! tables. The swap checks that it moved exactly one live checkpoint and bumps its
//! `generation`.
//!
//! Limits: tables must not take defaults from sequences owned by the live table (`serial`);
//! identity columns are fine (the copy has its own). Foreign keys between read-model tables
//! are not copied.

mod shadow;
mod verify;

use std::time::{Duration, Instant};

use events::LogPosition;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use event_store::checkpoints;
use event_store::wake::CheckpointMoved;

pub use verify::verify;

use crate::subscription::{
    EngineError, Fence, Projection, ProjectionError, Target, announce, catch_up_target, filter_for,
};
use shadow::{create_shadow, live_tables, rebuild_lock};

/// The checkpoint name of `projection`'s shadow.
pub fn shadow_checkpoint(projection: &str) -> String {
    format!("{projection}@shadow")
}

/// The schema of `projection`'s shadow tables.
pub fn shadow_schema(projection: &str) -> String {
    format!("shadow_{projection}")
}

fn retired_schema(projection: &str) -> String {
    format!("retired_{projection}")
}

/// Quotes an identifier for SQL.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The projection.
    pub projection: String,
    /// Events applied to the shadow.
    pub events: u64,
    /// From the first shadow batch to the committed swap.
    pub elapsed: Duration,
    /// The live checkpoint after the swap.
    pub checkpoint: LogPosition,
}

impl RebuildReport {
    /// Events applied per second of the rebuild.
    pub fn events_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.events as f64 / seconds
        } else {
            0.0
        }
    }
}

/// One row that differs between the live model and a rebuild.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDifference {
    /// The table.
    pub table: String,
    /// The row's primary key as a JSON object (the whole row for tables without one).
    pub key: Value,
    /// The live row; `None` when only the rebuild has it.
    pub live: Option<Value>,
    /// The rebuilt row; `None` when only the live model has it.
    pub rebuilt: Option<Value>,
}

/// Why a rebuild or verification failed. Nothing live changes unless a rebuild returns `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No projection has this name.
    #[error("no projection is named {0:?}")]
    UnknownProjection(String),
    /// Another rebuild or verification of the projection is running.
    #[error("another rebuild or verification of {0} is running")]
    Busy(String),
    /// A table cannot be shadowed.
    #[error("table {table} cannot be rebuilt in a shadow: {reason}")]
    Unsupported {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
    /// Building the shadow failed (the failure is recorded on the shadow's checkpoint).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An event could not be applied during the final catch-up.
    #[error("event {event_id} cannot be applied: {source}")]
    Apply {
        /// The event.
        event_id: uuid::Uuid,
        /// Why.
        #[source]
        source: ProjectionError,
    },
    /// Verification could not catch its shadow up with a live model that kept moving.
    #[error("{projection} kept moving through {attempts} attempts to verify it")]
    Unsettled {
        /// The projection.
        projection: String,
        /// How many times the shadow caught up.
        attempts: u32,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

fn shadow_target(projection: &dyn Projection, dead_letter: bool, fence: &Fence) -> Target {
    Target {
        checkpoint: shadow_checkpoint(projection.name()),
        search_path: Some(format!(
            "{}, public",
            quote(&shadow_schema(projection.name()))
        )),
        dead_letter,
        until: None,
        state: "rebuilding",
        // A shadow whose row is gone was abandoned or taken over by another rebuild: stop
        // rather than build a second one beside it.
        create_missing: false,
        fence: Some(fence.clone()),
    }
}

/// Checks, inside the swap or comparison transaction `tx`, that the rebuild still owns its
/// shadow: the fence holds and the shadow checkpoint rests where the catch-up left it.
async fn check_shadow(
    tx: &mut Transaction<'_, Postgres>,
    projection: &dyn Projection,
    fence: &Fence,
    built: LogPosition,
) -> Result<(), RebuildError> {
    let name = projection.name();
    if !fence.holds(&mut **tx).await? {
        return Err(EngineError::Fenced { projection: name }.into());
    }
    match checkpoints::lock(tx, &shadow_checkpoint(name)).await? {
        Some(shadow) if shadow.position == built => Ok(()),
        _ => Err(EngineError::Missing {
            projection: name,
            checkpoint: shadow_checkpoint(name),
        }
        .into()),
    }
}

/// Catches the shadow up inside `tx` (which holds the live checkpoint lock) to the end of the
/// log, or to `until`; returns the shadow's position and how many events it applied.
async fn final_catch_up(
    tx: &mut Transaction<'_, Postgres>,
    projection: &dyn Projection,
    from: LogPosition,
    until: Option<LogPosition>,
    batch_size: i64,
) -> Result<(LogPosition, u64), RebuildError> {
    let original: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut **tx)
        .await?;
    let path = format!("{}, public", quote(&shadow_schema(projection.name())));
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(&path)
        .execute(&mut **tx)
        .await?;
    let filter = filter_for(projection);
    let mut position = from;
    let mut applied = 0_u64;
    loop {
        let mut batch =
            event_store::log::read_after(&mut **tx, position, batch_size.max(1), &filter).await?;
        if let Some(until) = until {
            batch.retain(|event| event.log_position <= until);
        }
        let Some(last) = batch.last().map(|event| event.log_position) else {
            break;
        };
        for event in &batch {
            projection
                .apply(tx, event)
                .await
                .map_err(|source| RebuildError::Apply {
                    event_id: event.event_id,
                    source,
                })?;
        }
        applied += batch.len() as u64;
        position = last;
    }
    sqlx::query("SELECT set_config('search_path', $1, true)")
        .bind(&original)
        .execute(&mut **tx)
        .await?;
    Ok((position, applied))
}

/// Rebuilds `projection` from position zero into a shadow and swaps it in atomically, while
/// the live model keeps serving reads (and the live loop keeps applying until the swap).
///
/// `dead_letter` parks poison events in the shadow as the live loop would; the rebuilt model's
/// dead letters then replace the live ones.
///
/// # Errors
///
/// [`RebuildError`]; on any error the live model is untouched and the shadow stays behind for
/// inspection until the next rebuild.
pub async fn rebuild(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
    dead_letter: bool,
) -> Result<RebuildReport, RebuildError> {
    let name = projection.name();
    let lock = rebuild_lock(pool, name).await?;
    let outcome = rebuild_locked(
        pool,
        read_pool,
        projection,
        batch_size,
        dead_letter,
        &lock.fence,
    )
    .await;
    lock.release().await;
    outcome
}

async fn rebuild_locked(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
    dead_letter: bool,
    fence: &Fence,
) -> Result<RebuildReport, RebuildError> {
    let name = projection.name();
    let tables = live_tables(pool, projection).await?;
    create_shadow(pool, projection, &tables).await?;
    let started = Instant::now();
    let target = shadow_target(projection, dead_letter, fence);
    let built = catch_up_target(pool, read_pool, projection, &target, batch_size).await?;
    tracing::info!(
        projection = name,
        events = built.applied,
        seconds = started.elapsed().as_secs_f64(),
        "shadow caught up; swapping"
    );

    let mut tx = pool.begin().await?;
    // Readers queue behind the table moves below; never let them queue for long.
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    checkpoints::create_if_missing(&mut *tx, name).await?;
    checkpoints::lock(&mut tx, name).await?;
    check_shadow(&mut tx, projection, fence, built.checkpoint).await?;
    let (position, remainder) =
        final_catch_up(&mut tx, projection, built.checkpoint, None, batch_size).await?;
    let retired = quote(&retired_schema(name));
    let shadow = quote(&shadow_schema(name));
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {retired} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {retired}"))
        .execute(&mut *tx)
        .await?;
    for table in &tables {
        sqlx::query(&format!(
            "ALTER TABLE {}.{} SET SCHEMA {retired}",
            quote(&table.schema),
            quote(&table.name)
        ))
        .execute(&mut *tx)
        .await?;
    }
    for table in &tables {
        sqlx::query(&format!(
            "ALTER TABLE {shadow}.{} SET SCHEMA {}",
            quote(&table.name),
            quote(&table.schema)
        ))
        .execute(&mut *tx)
        .await?;
    }
    let swapped =
        checkpoints::swap(&mut tx, name, &shadow_checkpoint(name), position, remainder).await?;
    if swapped != 1 {
        // Either checkpoint row vanished under us: nothing may be swapped in.
        tx.rollback().await?;
        return Err(RebuildError::Engine(EngineError::Missing {
            projection: name,
            checkpoint: shadow_checkpoint(name),
        }));
    }
    sqlx::query(&format!("DROP SCHEMA {retired} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {shadow} CASCADE"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if let Ok(Some(now)) = checkpoints::read(pool, name).await {
        // Every row may have changed: readers forget what they knew of the model.
        let moved = CheckpointMoved {
            projection: name.to_owned(),
            checkpoint: now.position,
            generation: now.generation,
            changed: Vec::new(),
            complete: false,
        };
        announce(pool, &moved).await;
    }
    let report = RebuildReport {
        projection: name.to_owned(),
        events: built.applied + remainder,
        elapsed: started.elapsed(),
        checkpoint: position,
    };
    tracing::info!(
        projection = name,
        events = report.events,
        events_per_second = report.events_per_second(),
        "rebuild swapped in"
    );
    Ok(report)
}
