//! The shadow of a rebuild or verification: the rebuild lock, the empty copies of the live
//! tables in their own schema, and dropping them again.

use sqlx::{Connection as _, PgPool};

use event_store::checkpoints;

use super::{RebuildError, quote, shadow_checkpoint, shadow_schema};
use crate::subscription::{Fence, Projection};

/// A projection's tables with the schema each lives in now.
pub(super) struct LiveTable {
    pub(super) schema: String,
    pub(super) name: String,
}

pub(super) async fn live_tables(
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
pub(super) struct RebuildLock {
    connection: sqlx::PgConnection,
    /// What the rebuild's batches check that this lock still holds.
    pub(super) fence: Fence,
}

pub(super) async fn rebuild_lock(
    pool: &PgPool,
    projection: &str,
) -> Result<RebuildLock, RebuildError> {
    let mut connection = crate::leader::dedicated_connection(pool).await?;
    let key = crate::leader::lock_key(&format!("rebuild:{projection}"));
    if crate::leader::try_lock(&mut connection, key).await? {
        let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut connection)
            .await?;
        Ok(RebuildLock {
            connection,
            fence: Fence {
                key,
                holder,
                schema: shadow_schema(projection),
            },
        })
    } else {
        Err(RebuildError::Busy(projection.to_owned()))
    }
}

impl RebuildLock {
    pub(super) async fn release(self) {
        let _ = self.connection.close().await;
    }
}

/// Creates the empty shadow tables and a fresh shadow checkpoint.
pub(super) async fn create_shadow(
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
    checkpoints::reset_shadow(&mut tx, &shadow_checkpoint(name)).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn drop_shadow(pool: &PgPool, projection: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote(&shadow_schema(projection))
    ))
    .execute(&mut *tx)
    .await?;
    checkpoints::remove(&mut *tx, &shadow_checkpoint(projection)).await?;
    tx.commit().await
}
