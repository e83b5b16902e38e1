//! Verifying a live model against a fresh rebuild of it.

use events::LogPosition;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use event_store::checkpoints;

use super::shadow::{LiveTable, create_shadow, drop_shadow, live_tables, rebuild_lock};
use super::{RebuildError, RowDifference, quote, shadow_checkpoint, shadow_schema, shadow_target};
use crate::subscription::{EngineError, Fence, Projection, catch_up_target};

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
    let outcome = verify_locked(pool, read_pool, projection, batch_size, &lock.fence).await;
    let dropped = drop_shadow(pool, name).await;
    lock.release().await;
    let differences = outcome?;
    dropped?;
    Ok(differences)
}

/// How many times verification catches the shadow up to a live model that keeps moving
/// before it gives up.
const VERIFY_ATTEMPTS: u32 = 20;

async fn verify_locked(
    pool: &PgPool,
    read_pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
    fence: &Fence,
) -> Result<Vec<RowDifference>, RebuildError> {
    let name = projection.name();
    let tables = live_tables(pool, projection).await?;
    create_shadow(pool, projection, &tables).await?;
    let types: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|&kind| kind.to_owned())
        .collect();
    let mut target = shadow_target(projection, false, fence);
    for _ in 0..VERIFY_ATTEMPTS {
        // Never past the live checkpoint: the live model may lag the log.
        target.until = Some(checkpoints::ensure(pool, name).await?.position);
        catch_up_target(pool, read_pool, projection, &target, batch_size).await?;

        // The comparison reads both models in one snapshot and writes nothing, so it holds
        // no transaction id: the commit-safe horizon of every reader of the log goes on
        // while it runs. Rows and checkpoints commit together, so in one snapshot each
        // model is exactly as its checkpoint says.
        let mut tx = pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        if !fence.holds(&mut *tx).await? {
            return Err(EngineError::Fenced { projection: name }.into());
        }
        let live = checkpoints::read(&mut *tx, name)
            .await?
            .map_or(LogPosition::START, |live| live.position);
        let shadow = checkpoints::read(&mut *tx, &shadow_checkpoint(name))
            .await?
            .ok_or_else(|| EngineError::Missing {
                projection: name,
                checkpoint: shadow_checkpoint(name),
            })?
            .position;
        // The live checkpoint may rest past events of other types it skipped; what lies
        // between the two matters only if the projection reads it.
        let (low, high) = (shadow.min(live), shadow.max(live));
        if low != high && event_store::log::any_between(read_pool, &types, low, Some(high)).await? {
            tx.rollback().await?;
            continue;
        }
        let mut differences = Vec::new();
        for table in &tables {
            differences.extend(compare(&mut tx, projection, table).await?);
        }
        // Nothing was written; the shadow is dropped by the caller.
        tx.rollback().await?;
        return Ok(differences);
    }
    Err(RebuildError::Unsettled {
        projection: name.to_owned(),
        attempts: VERIFY_ATTEMPTS,
    })
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
