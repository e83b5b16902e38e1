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
//! **Verify** builds the shadow only up to the live checkpoint, brings it to exactly the live
//! checkpoint under the same lock, compares every row by primary key and rolls back.
//!
//! Limits: tables must not take defaults from sequences owned by the live table (`serial`);
//! identity columns are fine (the copy has its own). Foreign keys between read-model tables
//! are not copied.

use std::time::{Duration, Instant};

use events::LogPosition;
use serde_json::Value;
use sqlx::{Connection as _, PgPool, Postgres, Transaction};

use crate::engine::{
    EngineError, Projection, ProjectionError, Target, announce, catch_up_target, filter_for,
    load_checkpoint, lock_checkpoint,
};

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
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A projection's tables with the schema each lives in now.
struct LiveTable {
    schema: String,
    name: String,
}

async fn live_tables(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<Vec<LiveTable>, RebuildError> {
    let mut tables = Vec::new();
    for &name in projection.tables() {
        let schema: Option<String> = sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE c.oid = to_regclass($1)",
        )
        .bind(quote(name))
        .fetch_optional(pool)
        .await?;
        let schema = schema.ok_or_else(|| RebuildError::Unsupported {
            table: name.to_owned(),
            reason: "it does not exist".to_owned(),
        })?;
        let serial: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_attrdef d \
                             WHERE d.adrelid = to_regclass($1) \
                               AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%')",
        )
        .bind(format!("{}.{}", quote(&schema), quote(name)))
        .fetch_one(pool)
        .await?;
        if serial {
            return Err(RebuildError::Unsupported {
                table: name.to_owned(),
                reason: "a column takes its default from a sequence (use an identity column)"
                    .to_owned(),
            });
        }
        tables.push(LiveTable {
            schema,
            name: name.to_owned(),
        });
    }
    Ok(tables)
}

/// Holds the projection's rebuild lock for as long as it lives (a session lock on a
/// connection of its own), so two rebuilds never share a shadow.
struct RebuildLock(sqlx::PgConnection);

async fn rebuild_lock(pool: &PgPool, projection: &str) -> Result<RebuildLock, RebuildError> {
    let mut connection = crate::leader::dedicated_connection(pool).await?;
    let key = crate::leader::lock_key(&format!("rebuild:{projection}"));
    if crate::leader::try_lock(&mut connection, key).await? {
        Ok(RebuildLock(connection))
    } else {
        Err(RebuildError::Busy(projection.to_owned()))
    }
}

impl RebuildLock {
    async fn release(self) {
        let _ = self.0.close().await;
    }
}

/// Creates the empty shadow tables and a fresh shadow checkpoint.
async fn create_shadow(
    pool: &PgPool,
    projection: &dyn Projection,
    tables: &[LiveTable],
) -> Result<(), RebuildError> {
    let name = projection.name();
    let shadow = quote(&shadow_schema(name));
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {shadow}"))
        .execute(&mut *tx)
        .await?;
    for table in tables {
        let live = format!("{}.{}", quote(&table.schema), quote(&table.name));
        let copy = format!("{shadow}.{}", quote(&table.name));
        // Indexes are made below under their live names, which LIKE would not keep.
        sqlx::query(&format!(
            "CREATE TABLE {copy} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
        ))
        .execute(&mut *tx)
        .await?;
        let constraints: Vec<(String, String)> = sqlx::query_as(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
              WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'x') ORDER BY conname",
        )
        .bind(&live)
        .fetch_all(&mut *tx)
        .await?;
        for (constraint, definition) in constraints {
            sqlx::query(&format!(
                "ALTER TABLE {copy} ADD CONSTRAINT {} {definition}",
                quote(&constraint)
            ))
            .execute(&mut *tx)
            .await?;
        }
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
              WHERE i.indrelid = to_regclass($1) \
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                                 WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid \
                                   AND c.contype IN ('p', 'u', 'x')) \
              ORDER BY i.indexrelid",
        )
        .bind(&live)
        .fetch_all(&mut *tx)
        .await?;
        let qualified: String = sqlx::query_scalar("SELECT format('%I.%I', $1::text, $2::text)")
            .bind(&table.schema)
            .bind(&table.name)
            .fetch_one(&mut *tx)
            .await?;
        let needle = format!(" ON {qualified} ");
        for definition in indexes {
            if !definition.contains(&needle) {
                return Err(RebuildError::Unsupported {
                    table: table.name.clone(),
                    reason: format!("cannot copy the index {definition:?}"),
                });
            }
            let shadowed = definition.replacen(&needle, &format!(" ON {copy} "), 1);
            sqlx::query(&shadowed).execute(&mut *tx).await?;
        }
    }
    let checkpoint = shadow_checkpoint(name);
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(&checkpoint)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO projection_checkpoints (name, state) VALUES ($1, 'rebuilding')")
        .bind(&checkpoint)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM projection_dead_letters WHERE projection = $1")
        .bind(&checkpoint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn shadow_target(projection: &dyn Projection, dead_letter: bool) -> Target {
    Target {
        checkpoint: shadow_checkpoint(projection.name()),
        search_path: Some(format!(
            "{}, public",
            quote(&shadow_schema(projection.name()))
        )),
        dead_letter,
        until: None,
        state: "rebuilding",
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

async fn drop_shadow(pool: &PgPool, projection: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote(&shadow_schema(projection))
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(shadow_checkpoint(projection))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
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
    let outcome = rebuild_locked(pool, read_pool, projection, batch_size, dead_letter).await;
    lock.release().await;
    outcome
}

async fn rebuild_locked(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
    dead_letter: bool,
) -> Result<RebuildReport, RebuildError> {
    let name = projection.name();
    let tables = live_tables(pool, projection).await?;
    create_shadow(pool, projection, &tables).await?;
    let started = Instant::now();
    let target = shadow_target(projection, dead_letter);
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
    lock_checkpoint(&mut tx, name).await?;
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
    let shadow_name = shadow_checkpoint(name);
    sqlx::query(
        "UPDATE projection_checkpoints AS live \
            SET tx_id = $3, position = $4, events_applied = shadow.events_applied + $5, \
                state = 'running', last_error = NULL, updated_at = now() \
           FROM projection_checkpoints AS shadow \
          WHERE live.name = $1 AND shadow.name = $2",
    )
    .bind(name)
    .bind(&shadow_name)
    .bind(position.tx_id)
    .bind(position.position)
    .bind(i64::try_from(remainder).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(&shadow_name)
        .execute(&mut *tx)
        .await?;
    // The rebuilt model's parked events are now the truth about the live one.
    sqlx::query("DELETE FROM projection_dead_letters WHERE projection = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE projection_dead_letters SET projection = $1 WHERE projection = $2")
        .bind(name)
        .bind(&shadow_name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {retired} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("DROP SCHEMA {shadow} CASCADE"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    announce(pool, name).await;
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

/// Rebuilds `projection` into a shadow up to the live checkpoint and returns every row that
/// differs from the live model (empty when they are equal). The live model is not changed.
///
/// # Errors
///
/// [`RebuildError`].
pub async fn verify(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
) -> Result<Vec<RowDifference>, RebuildError> {
    let name = projection.name();
    let lock = rebuild_lock(pool, name).await?;
    let outcome = verify_locked(pool, read_pool, projection, batch_size).await;
    let dropped = drop_shadow(pool, name).await;
    lock.release().await;
    let differences = outcome?;
    dropped?;
    Ok(differences)
}

async fn verify_locked(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
) -> Result<Vec<RowDifference>, RebuildError> {
    let name = projection.name();
    let tables = live_tables(pool, projection).await?;
    create_shadow(pool, projection, &tables).await?;
    // Never past the live checkpoint: the live model may lag the log.
    let mut target = shadow_target(projection, false);
    target.until = Some(load_checkpoint(pool, name).await?);
    let built = catch_up_target(pool, read_pool, projection, &target, batch_size).await?;

    let mut tx = pool.begin().await?;
    let live = lock_checkpoint(&mut tx, name)
        .await?
        .unwrap_or(LogPosition::START);
    let (position, _) = final_catch_up(
        &mut tx,
        projection,
        built.checkpoint,
        Some(live),
        batch_size,
    )
    .await?;
    if position != live && live != LogPosition::START {
        // The shadow could not reach the live checkpoint: an event the live model applied is
        // not in the log below the horizon. Should never happen; say so rather than compare.
        tracing::warn!(projection = name, ?position, ?live, "shadow stopped short");
    }
    let mut differences = Vec::new();
    for table in &tables {
        differences.extend(compare(&mut tx, projection, table).await?);
    }
    // Nothing live was changed; the shadow is dropped by the caller.
    tx.rollback().await?;
    Ok(differences)
}

async fn compare(
    tx: &mut Transaction<'_, Postgres>,
    projection: &dyn Projection,
    table: &LiveTable,
) -> Result<Vec<RowDifference>, RebuildError> {
    let live = format!("{}.{}", quote(&table.schema), quote(&table.name));
    let shadow = format!(
        "{}.{}",
        quote(&shadow_schema(projection.name())),
        quote(&table.name)
    );
    let key_columns: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
          WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
          ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(&live)
    .fetch_all(&mut **tx)
    .await?;
    let rows: Vec<(Value, Option<Value>, Option<Value>)> = sqlx::query_as(&format!(
        "WITH l AS (SELECT to_jsonb(t) AS r FROM {live} t), \
              s AS (SELECT to_jsonb(t) AS r FROM {shadow} t), \
              lk AS (SELECT r, COALESCE((SELECT jsonb_object_agg(k, r -> k) \
                                           FROM unnest($1::text[]) AS k), r) AS key FROM l), \
              sk AS (SELECT r, COALESCE((SELECT jsonb_object_agg(k, r -> k) \
                                           FROM unnest($1::text[]) AS k), r) AS key FROM s) \
         SELECT COALESCE(lk.key, sk.key), lk.r, sk.r \
           FROM lk FULL JOIN sk ON lk.key = sk.key \
          WHERE lk.r IS DISTINCT FROM sk.r \
          ORDER BY 1"
    ))
    .bind(&key_columns)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, live, rebuilt)| RowDifference {
            table: table.name.clone(),
            key,
            live,
            rebuilt,
        })
        .collect())
}
