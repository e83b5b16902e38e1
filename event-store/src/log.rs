//! Reading the global log (`$all`) in commit-safe order, and single streams in version order.
//!
//! Identity values are taken at insert but become visible at commit, so "position greater
//! than my checkpoint" would skip the events of a transaction that commits late. Readers
//! therefore order by (transaction id, position) and read only events of transactions older
//! than the oldest one still running (docs/decisions/0001-commit-safe-order.md).
//!
//! Every event read here is upcast to its current schema version first ([`events::upcast`]).

use chrono::{DateTime, Utc};
use events::{LogPosition, RecordedEvent};
use serde_json::Value;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

type Row = (
    i64,
    i64,
    Uuid,
    String,
    String,
    i64,
    String,
    String,
    String,
    Value,
    DateTime<Utc>,
);

// `json` columns keep the text as it was stored: the audit trail shows the exact payload
// text. The payload is read as that text and never parsed here (events::envelope); metadata
// is server-made and flat, so it decodes as a value.
const COLUMNS: &str = "tx_id::text::bigint, global_position, event_id, aggregate_type, \
                       aggregate_id, sequence, event_type, event_version, payload::text, \
                       metadata, recorded_at";

/// Builds the event of a row, upcast to its current schema version ([`events::upcast`]), so
/// no reader of the log ever meets an old version.
fn from_row(row: Row) -> RecordedEvent {
    events::upcast::upcast_recorded(decode_row(row))
}

fn decode_row(row: Row) -> RecordedEvent {
    let (
        tx_id,
        position,
        event_id,
        aggregate_type,
        aggregate_id,
        version,
        event_type,
        event_version,
        payload,
        metadata,
        recorded_at,
    ) = row;
    let payload = events::envelope::raw_payload(payload).unwrap_or_else(|error| {
        // Cannot happen for a `json` column, which PostgreSQL validated; should it, the event
        // still reads (as a string no typed reader accepts) rather than stall every reader.
        tracing::error!(%error, %event_id, "a stored payload is not JSON");
        serde_json::value::to_raw_value(&error.to_string())
            .unwrap_or_else(|_| events::envelope::null_payload())
    });
    RecordedEvent {
        log_position: LogPosition { tx_id, position },
        position,
        event_id,
        aggregate_type,
        aggregate_id,
        version,
        event_type,
        event_version,
        payload,
        metadata,
        recorded_at,
    }
}

/// Narrows a read of the global log; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only these aggregate types (empty: all).
    pub aggregate_types: Vec<String>,
    /// Only this stream id.
    pub aggregate_id: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events whose metadata names this actor.
    pub actor: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}

/// Reads up to `limit` events after `after` in commit-safe order: every event returned was
/// committed, and no event that commits later can sort before the last one returned.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
    filter: &LogFilter,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM events WHERE "));
    query
        .push("(tx_id, global_position) > (")
        .push_bind(after.tx_id.to_string())
        .push("::xid8, ")
        .push_bind(after.position)
        .push(") AND tx_id < pg_snapshot_xmin(pg_current_snapshot())");
    if !filter.aggregate_types.is_empty() {
        query
            .push(" AND aggregate_type = ANY(")
            .push_bind(filter.aggregate_types.clone())
            .push(")");
    }
    if let Some(id) = &filter.aggregate_id {
        query.push(" AND aggregate_id = ").push_bind(id.clone());
    }
    if let Some(event_type) = &filter.event_type {
        query
            .push(" AND event_type = ")
            .push_bind(event_type.clone());
    }
    if let Some(actor) = &filter.actor {
        query
            .push(" AND metadata->>'actor' = ")
            .push_bind(actor.clone());
    }
    if let Some(from) = filter.from {
        query.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND recorded_at < ").push_bind(to);
    }
    query
        // Qualified: the select list's `tx_id::text::bigint` is also named `tx_id`, and ORDER BY
        // would sort by that cast, which no index provides (a full sort of everything after
        // the checkpoint, every batch).
        .push(" ORDER BY events.tx_id, events.global_position LIMIT ")
        .push_bind(limit);
    let rows: Vec<Row> = query.build_query_as().fetch_all(executor).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Reads one stream in version order, from `from_version` on.
pub async fn read_stream<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    from_version: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 \
          ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(from_version)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Whether committed events of `aggregate_types` (empty: any) lie beyond `after`, whether or
/// not a commit-safe read can see them yet. Uncommitted events are invisible here, so this
/// names exactly the events that an older running transaction holds back.
///
/// One statement per shape, never `cardinality($1) = 0 OR ...`: a cached generic plan cannot
/// use an index for such a disjunction and scans the log.
///
/// # Errors
///
/// The database fails.
pub async fn committed_beyond<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_types: &[String],
    after: LogPosition,
) -> Result<bool, sqlx::Error> {
    if aggregate_types.is_empty() {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
                             WHERE (tx_id, global_position) > ($1::xid8, $2))",
        )
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .fetch_one(executor)
        .await
    } else {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
                             WHERE (tx_id, global_position) > ($1::xid8, $2) \
                               AND aggregate_type = ANY($3))",
        )
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .bind(aggregate_types)
        .fetch_one(executor)
        .await
    }
}
