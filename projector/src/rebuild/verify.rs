//! Verifying a live model against a fresh rebuild of it.

use events::LogPosition;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use event_store::checkpoints;

use super::shadow::{LiveTable, create_shadow, drop_shadow, live_tables, rebuild_lock};
use super::{RebuildError, RowDifference, final_catch_up, quote, shadow_schema, shadow_target};
use crate::subscription::{Projection, catch_up_target};

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
    target.until = Some(checkpoints::ensure(pool, name).await?.position);
    let built = catch_up_target(pool, read_pool, projection, &target, batch_size).await?;

    let mut tx = pool.begin().await?;
    let live = checkpoints::lock(&mut tx, name)
        .await?
        .map_or(LogPosition::START, |live| live.position);
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
