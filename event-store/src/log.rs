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
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
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

/// The most payload bytes a read of the log sends by default (at least one event is always
/// sent): one analytics batch may be about 1 MiB, so a count alone would let a batch of 500
/// hold 500 MiB in the reader's memory.
pub const DEFAULT_MAX_BYTES: i64 = 8 * 1024 * 1024;

/// Reads up to `limit` events after `after` in commit-safe order: every event returned was
/// committed, and no event that commits later can sort before the last one returned. At most
/// [`DEFAULT_MAX_BYTES`] of payload is sent ([`read_after_within`]).
///
/// # Errors
///
/// The database fails.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
    filter: &LogFilter,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    read_after_within(executor, after, limit, DEFAULT_MAX_BYTES, filter).await
}

/// [`read_after`], sending events only while the payloads sent before each one stay under
/// `max_bytes`: a page stops early once it holds that much (the event that crosses the budget
/// is the last one sent; the first one is always sent, whatever its size), and the next read
/// after its last event goes on from there.
///
/// Index-backed under generic plans, whatever the size of the log: without aggregate types
/// the commit-order index is read from `after` on; with them, one branch per type reads the
/// aggregate-type index from `(type, after)` on (a 3-column row comparison, which is an index
/// condition; `aggregate_type = ANY($n)` is not, and a cached plan for it scans the log).
///
/// # Errors
///
/// The database fails.
pub async fn read_after_within<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
    max_bytes: i64,
    filter: &LogFilter,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new("");
    push_read(&mut query, after, limit, max_bytes, filter);
    let rows: Vec<Row> = query.build_query_as().fetch_all(executor).await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Appends [`read_after_within`]'s statement to `query` (empty, or a test's `EXPLAIN`).
fn push_read(
    query: &mut QueryBuilder<'_, Postgres>,
    after: LogPosition,
    limit: i64,
    max_bytes: i64,
    filter: &LogFilter,
) {
    // The running sum is computed on the server so that rows past the budget are never sent;
    // `octet_length` of a stored value reads its size without detoasting it.
    query.push(
        "SELECT tx_id, global_position, event_id, aggregate_type, aggregate_id, sequence, \
                event_type, event_version, payload, metadata, recorded_at \
           FROM (SELECT page.*, \
                        sum(octet_length(page.payload)) OVER \
                            (ORDER BY page.tx_id, page.global_position \
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS sent_before \
                   FROM (",
    );
    match filter.aggregate_types.as_slice() {
        [] => push_branch(query, None, after, limit, filter),
        [kind] => push_branch(query, Some(kind), after, limit, filter),
        kinds => {
            // The output's `tx_id` is the bigint cast, which orders as the xid8 does.
            query.push("SELECT * FROM (");
            for (n, kind) in kinds.iter().enumerate() {
                if n > 0 {
                    query.push(" UNION ALL ");
                }
                query.push("(");
                push_branch(query, Some(kind), after, limit, filter);
                query.push(")");
            }
            query
                .push(") AS e ORDER BY e.tx_id, e.global_position LIMIT ")
                .push_bind(limit);
        }
    }
    query
        .push(") AS page) AS sized WHERE COALESCE(sent_before, 0) < ")
        .push_bind(max_bytes.max(1))
        .push(" ORDER BY tx_id, global_position");
}

/// One index-backed read of the log after `after`: of aggregate type `kind`, or of all.
///
/// The read is a range of the index that starts with the most selective equality the filter
/// holds (stream id, event type, actor, aggregate type, in that order; the commit-order index
/// without one), written as a 3-column row comparison and ordered as that index is: a generic
/// plan for `actor = $n AND (tx_id, global_position) > (..)` estimated half the log per actor
/// and walked the commit-order index filtering every row (3.0 s on 1,000,000 events of
/// another actor; 0.12 ms as a range of `events_actor_idx`). The other equalities filter.
///
/// A leading value is written as three conditions ([`push_lead`]).
fn push_branch(
    query: &mut QueryBuilder<'_, Postgres>,
    kind: Option<&String>,
    after: LogPosition,
    limit: i64,
    filter: &LogFilter,
) {
    // (column as indexed, its value); `None`: the commit-order index.
    let lead: Option<(&str, &String)> = if let Some(id) = &filter.aggregate_id {
        Some(("aggregate_id", id))
    } else if let Some(event_type) = &filter.event_type {
        Some(("event_type", event_type))
    } else if let Some(actor) = &filter.actor {
        Some(("(metadata ->> 'actor')", actor))
    } else {
        kind.map(|kind| ("aggregate_type", kind))
    };
    query.push(format!("SELECT {COLUMNS} FROM events WHERE "));
    if let Some((column, value)) = lead {
        push_lead(query, column, value, after);
    }
    query
        .push("(tx_id, global_position) > (")
        .push_bind(after.tx_id.to_string())
        .push("::xid8, ")
        .push_bind(after.position)
        .push(") AND tx_id < pg_snapshot_xmin(pg_current_snapshot())");
    let leads = |column: &str| lead.is_some_and(|(leading, _)| leading == column);
    if let Some(kind) = kind
        && !leads("aggregate_type")
    {
        query.push(" AND aggregate_type = ").push_bind(kind.clone());
    }
    if let Some(id) = &filter.aggregate_id
        && !leads("aggregate_id")
    {
        query.push(" AND aggregate_id = ").push_bind(id.clone());
    }
    if let Some(event_type) = &filter.event_type
        && !leads("event_type")
    {
        query
            .push(" AND event_type = ")
            .push_bind(event_type.clone());
    }
    if let Some(actor) = &filter.actor
        && !leads("(metadata ->> 'actor')")
    {
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
    // Qualified: the select list's `tx_id::text::bigint` is also named `tx_id`, and ORDER BY
    // would sort by that cast, which no index provides (a full sort of everything after the
    // checkpoint, every batch). With a leading equality, the order is that index's.
    match lead {
        Some(("(metadata ->> 'actor')", _)) => query.push(
            " ORDER BY (events.metadata ->> 'actor'), events.tx_id, events.global_position LIMIT ",
        ),
        Some((column, _)) => query.push(format!(
            " ORDER BY events.{column}, events.tx_id, events.global_position LIMIT "
        )),
        None => query.push(" ORDER BY events.tx_id, events.global_position LIMIT "),
    };
    query.push_bind(limit);
}

/// Pushes `{column} = $v AND ({column}, tx_id, global_position) > ($v, ..) AND `: the start of
/// a read led by a value, three conditions, each for its reader.
///
/// - The equality gives the planner the value's share of the log, with or without statistics;
///   with a range `lead <= $v` instead, an unanalyzed `events` got a plan reading the primary
///   key's range of the type and sorting it (10,070 buffers at 10,000 events).
/// - The 3-column comparison is an index condition of the leading index only, so that index
///   wins over the commit-order one, which a generic plan otherwise walks, filtering the value
///   (decision 0007).
/// - The 2-column comparison that the caller pushes next, `(tx_id, global_position) > (..)`,
///   is where the scan starts. Given an equality on an index's first column, PostgreSQL's
///   B-tree does not take a row comparison on that column as its start and begins at the
///   value's first entry: the projects projection at the head of 128,666 `Project` events read
///   637 buffers (5.7 ms) per check. A row comparison on the columns after the equality's is a
///   start: 3 buffers (0.03 ms).
///
/// `tests::reads_at_the_head_of_a_long_range_start_there` counts the buffers, before and after
/// `ANALYZE`; decision 0014 has the history.
fn push_lead(
    query: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    value: &str,
    after: LogPosition,
) {
    query
        .push(format!("{column} = "))
        .push_bind(value.to_owned())
        .push(format!(" AND ({column}, tx_id, global_position) > ("))
        .push_bind(value.to_owned())
        .push(", ")
        .push_bind(after.tx_id.to_string())
        .push("::xid8, ")
        .push_bind(after.position)
        .push(") AND ");
}

/// Reads up to `limit` events of one stream in version order, from `from_version` on. The
/// limit bounds a read of a long stream (an audit page); callers that need to know whether
/// more follow ask for one more than they serve.
pub async fn read_stream<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    from_version: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 \
          ORDER BY sequence LIMIT $4"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(from_version)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// Whether committed events of `aggregate_types` (empty: any) lie beyond `after`, whether or
/// not a commit-safe read can see them yet. Uncommitted events are invisible here, so this
/// names exactly the events that an older running transaction holds back.
///
/// # Errors
///
/// The database fails.
pub async fn committed_beyond(
    pool: &PgPool,
    aggregate_types: &[String],
    after: LogPosition,
) -> Result<bool, sqlx::Error> {
    any_between(pool, aggregate_types, after, None).await
}

/// The last event in commit-safe order of a transaction older than every one still running,
/// `None` when there is none: found by a backward scan of the commit-order index, which stops
/// at the first event below the horizon.
///
/// # Errors
///
/// The database fails.
pub async fn last_committed<'e>(
    executor: impl PgExecutor<'e>,
) -> Result<Option<LogPosition>, sqlx::Error> {
    // Qualified ORDER BY: the select list's cast is also named `tx_id` (see `read_after`).
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events \
          WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
          ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|(tx_id, position)| LogPosition { tx_id, position }))
}

/// Whether committed events of `aggregate_types` (empty: any) lie after `after` (and up to
/// `upto`, when given).
///
/// One statement per shape and per type, each the first row of an index range: never
/// `cardinality($1) = 0 OR ...` nor `= ANY($1)` inside `EXISTS`, for which a cached generic
/// plan scans the log (issue 10.1; the plans are in docs/decisions/0007-bounded-log-reads.md).
///
/// # Errors
///
/// The database fails.
pub async fn any_between(
    pool: &PgPool,
    aggregate_types: &[String],
    after: LogPosition,
    upto: Option<LogPosition>,
) -> Result<bool, sqlx::Error> {
    if aggregate_types.is_empty() {
        return first_between(pool, None, after, upto).await;
    }
    for kind in aggregate_types {
        if first_between(pool, Some(kind), after, upto).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn first_between(
    pool: &PgPool,
    kind: Option<&String>,
    after: LogPosition,
    upto: Option<LogPosition>,
) -> Result<bool, sqlx::Error> {
    let mut query = QueryBuilder::<Postgres>::new("");
    push_first_between(&mut query, kind, after, upto);
    let found: Option<i32> = query.build_query_scalar().fetch_optional(pool).await?;
    Ok(found.is_some())
}

/// Appends [`first_between`]'s statement to `query` (empty, or a test's `EXPLAIN`), led by the
/// type ([`push_lead`]).
fn push_first_between(
    query: &mut QueryBuilder<'_, Postgres>,
    kind: Option<&String>,
    after: LogPosition,
    upto: Option<LogPosition>,
) {
    query.push("SELECT 1 FROM events WHERE ");
    let columns = if let Some(kind) = kind {
        push_lead(query, "aggregate_type", kind, after);
        "(aggregate_type, tx_id, global_position)"
    } else {
        "(tx_id, global_position)"
    };
    query
        .push("(tx_id, global_position) > (")
        .push_bind(after.tx_id.to_string())
        .push("::xid8, ")
        .push_bind(after.position)
        .push(")");
    if let Some(upto) = upto {
        query.push(format!(" AND {columns} <= ("));
        if let Some(kind) = kind {
            query.push_bind(kind.clone()).push(", ");
        }
        query
            .push_bind(upto.tx_id.to_string())
            .push("::xid8, ")
            .push_bind(upto.position)
            .push(")");
    }
    // Ordered as the index is, so the plan is the first entry of an index range.
    query.push(if kind.is_some() {
        " ORDER BY events.aggregate_type, events.tx_id, events.global_position LIMIT 1"
    } else {
        " ORDER BY events.tx_id, events.global_position LIMIT 1"
    });
}

/// [`settled_without`]'s statement for one type. The first row of a type-index range, as in
/// [`first_between`]: a 2-column row comparison inside `NOT EXISTS` was a sequential scan of
/// the log under a generic plan (617 ms on 1,000,000 events of other types; 0.09 ms now). Led
/// by the type as [`push_lead`] explains.
const SETTLED_WITHOUT: &str = "SELECT $3::text::xid8 < pg_snapshot_xmin(pg_current_snapshot()) \
    AND (SELECT 1 FROM events \
          WHERE aggregate_type = $5 \
            AND (aggregate_type, tx_id, global_position) > ($5, $1::text::xid8, $2) \
            AND (tx_id, global_position) > ($1::text::xid8, $2) \
            AND (aggregate_type, tx_id, global_position) <= ($5, $3::text::xid8, $4) \
          ORDER BY events.aggregate_type, events.tx_id, events.global_position \
          LIMIT 1) IS NULL";

/// Whether every transaction up to `upto` has finished (it lies below the commit-safe
/// horizon) and none of them appended an event of `aggregate_types` after `after`: a
/// subscription at `after` then already reflects everything up to `upto` of those types. One
/// statement per type, each a range scan of the type index under any plan; the horizon test
/// comes first, so a far-future `upto` never scans at all. Returns how many statements ran
/// with the answer, for callers that count their queries.
///
/// # Errors
///
/// The database fails.
pub async fn settled_without(
    pool: &PgPool,
    aggregate_types: &[&str],
    after: LogPosition,
    upto: LogPosition,
) -> Result<(bool, usize), sqlx::Error> {
    let mut statements = 0;
    for aggregate_type in aggregate_types {
        statements += 1;
        let none: bool = sqlx::query_scalar(SETTLED_WITHOUT)
            .bind(after.tx_id.to_string())
            .bind(after.position)
            .bind(upto.tx_id.to_string())
            .bind(upto.position)
            .bind(*aggregate_type)
            .fetch_one(pool)
            .await?;
        if !none {
            return Ok((false, statements));
        }
    }
    Ok((true, statements))
}

/// Whether the stream (`aggregate_type`, `aggregate_id`) holds any event: one probe of the
/// stream's primary key.
///
/// # Errors
///
/// The database fails.
pub async fn stream_exists(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use events::LogPosition;
    use serde_json::Value;
    use sqlx::{PgPool, Postgres, QueryBuilder};

    use super::{LogFilter, SETTLED_WITHOUT, push_first_between, push_read};

    /// Events in the range every filtered read below leads with: one type, one stream, one
    /// event type and one actor.
    const LONG_RANGE: i64 = 20_000;

    /// At most this many buffers per index range read at the head of [`LONG_RANGE`] events:
    /// the index's root, an inner page, a leaf, the visibility map, a heap page. A scan that
    /// starts at the range's first entry instead walks about a hundred leaves.
    const HEAD_READ_BUFFERS: i64 = 8;

    /// Appends [`LONG_RANGE`] events of one stream in one transaction; returns the last one's
    /// position, the head of the log.
    async fn seed_long_range(pool: &PgPool) -> sqlx::Result<LogPosition> {
        let (tx_id, position): (i64, i64) = sqlx::query_as(
            "WITH added AS ( \
                INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                    event_version, payload, metadata) \
                SELECT 'Project', 'long', n, 'ProjectRenamed', '1', \
                       ('{\"n\":' || n || '}')::json, '{\"actor\":\"auditor-x\"}'::json \
                  FROM generate_series(1::bigint, $1::bigint) AS n \
                RETURNING tx_id, global_position) \
             SELECT tx_id::text::bigint, global_position FROM added \
              ORDER BY global_position DESC LIMIT 1",
        )
        .bind(LONG_RANGE)
        .fetch_one(pool)
        .await?;
        // The commit-safe horizon is the server's: another test's open transaction holds the
        // seed back from commit-safe reads until it ends.
        let mut below = false;
        for _ in 0..1000 {
            below = sqlx::query_scalar(
                "SELECT $1::text::xid8 < pg_snapshot_xmin(pg_current_snapshot())",
            )
            .bind(tx_id.to_string())
            .fetch_one(pool)
            .await?;
            if below {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            below,
            "the seed stayed above the commit-safe horizon for 10 s"
        );
        Ok(LogPosition { tx_id, position })
    }

    const EXPLAIN: &str = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ";

    /// Shared buffers (hit or read) the statement of an `EXPLAIN (ANALYZE, BUFFERS, FORMAT
    /// JSON)` touched.
    fn touched(plan: &Value) -> i64 {
        let top = &plan[0]["Plan"];
        let count = |key: &str| {
            top[key]
                .as_i64()
                .unwrap_or_else(|| panic!("no {key} in the plan: {plan}"))
        };
        count("Shared Hit Blocks") + count("Shared Read Blocks")
    }

    /// [`touched`] by `query`, which starts with [`EXPLAIN`].
    async fn buffers(pool: &PgPool, mut query: QueryBuilder<'_, Postgres>) -> sqlx::Result<i64> {
        let plan: Value = query.build_query_scalar().fetch_one(pool).await?;
        Ok(touched(&plan))
    }

    fn explain() -> QueryBuilder<'static, Postgres> {
        QueryBuilder::new(EXPLAIN)
    }

    /// The filters every read below is narrowed by, each leading with another index.
    fn filters() -> [(&'static str, LogFilter); 5] {
        let only = |build: fn(&mut LogFilter)| {
            let mut filter = LogFilter::default();
            build(&mut filter);
            filter
        };
        [
            (
                "one type",
                only(|f| f.aggregate_types = vec!["Project".to_owned()]),
            ),
            (
                "two types",
                only(|f| {
                    f.aggregate_types = vec!["Project".to_owned(), "SupportTicket".to_owned()];
                }),
            ),
            (
                "stream id",
                only(|f| f.aggregate_id = Some("long".to_owned())),
            ),
            (
                "event type",
                only(|f| f.event_type = Some("ProjectRenamed".to_owned())),
            ),
            ("actor", only(|f| f.actor = Some("auditor-x".to_owned()))),
        ]
    }

    /// Asserts that each statement reading the log at `head` touches at most
    /// [`HEAD_READ_BUFFERS`]; `when` names the statistics' state in the message.
    async fn assert_reads_start_at(
        pool: &PgPool,
        head: LogPosition,
        when: &str,
    ) -> sqlx::Result<()> {
        let project = "Project".to_owned();
        for (name, filter) in &filters() {
            let mut query = explain();
            push_read(&mut query, head, 500, super::DEFAULT_MAX_BYTES, filter);
            let touched = buffers(pool, query).await?;
            // One range per type (a branch each), else one.
            let ranges = i64::try_from(filter.aggregate_types.len().max(1)).unwrap_or(i64::MAX);
            assert!(
                touched <= HEAD_READ_BUFFERS * ranges,
                "{when}, read by {name}: {touched} buffers"
            );
        }
        for upto in [None, Some(head)] {
            let mut query = explain();
            push_first_between(&mut query, Some(&project), head, upto);
            let touched = buffers(pool, query).await?;
            assert!(
                touched <= HEAD_READ_BUFFERS,
                "{when}, check up to {upto:?}: {touched} buffers"
            );
        }
        let plan: Value = sqlx::query_scalar(&format!("{EXPLAIN}{SETTLED_WITHOUT}"))
            .bind(head.tx_id.to_string())
            .bind(head.position)
            .bind(head.tx_id.to_string())
            .bind(head.position)
            .bind(&project)
            .fetch_one(pool)
            .await?;
        let settled = touched(&plan);
        assert!(
            settled <= HEAD_READ_BUFFERS,
            "{when}, settled_without: {settled} buffers"
        );
        let statement = format!("{EXPLAIN}{}", crate::checkpoints::STATUSES);
        let plan: Value = sqlx::query_scalar(&statement)
            .bind(["projects"])
            .bind([&project])
            .fetch_one(pool)
            .await?;
        let lag = touched(&plan);
        assert!(
            lag <= HEAD_READ_BUFFERS,
            "{when}, checkpoint statuses: {lag} buffers"
        );
        Ok(())
    }

    /// Every read of the log at the head of a long range of its leading value costs what the
    /// read returns, not what the range holds before it: the scan starts at the checkpoint,
    /// with the planner's statistics and before it has any (a young database). An equality on
    /// the index's first column alone made the B-tree start at the value's first entry; a
    /// range instead of the equality made the planner pick the primary key without statistics.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn reads_at_the_head_of_a_long_range_start_there(pool: PgPool) -> sqlx::Result<()> {
        let head = seed_long_range(&pool).await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, tx_id, position) VALUES ($1, $2, $3)",
        )
        .bind("projects")
        .bind(head.tx_id)
        .bind(head.position)
        .execute(&pool)
        .await?;
        assert_reads_start_at(&pool, head, "without statistics").await?;
        sqlx::query("ANALYZE events").execute(&pool).await?;
        assert_reads_start_at(&pool, head, "with statistics").await?;

        // The same statements return what lies after a position, so each filter is the one
        // meant and each check sees the range.
        let start = LogPosition {
            tx_id: 0,
            position: 0,
        };
        for (name, filter) in &filters() {
            let read = super::read_after(&pool, start, 5, filter).await?;
            assert_eq!(read.len(), 5, "read by {name}");
            assert!(super::read_after(&pool, head, 5, filter).await?.is_empty());
        }
        let project = ["Project".to_owned()];
        assert!(super::any_between(&pool, &project, start, None).await?);
        assert!(!super::any_between(&pool, &project, head, None).await?);
        assert!(
            !super::settled_without(&pool, &["Project"], start, head)
                .await?
                .0
        );
        assert!(
            super::settled_without(&pool, &["Project"], head, head)
                .await?
                .0
        );
        let statuses = crate::checkpoints::statuses(&pool, &[("projects", "Project")]).await?;
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].lag_events, 0);
        Ok(())
    }
}
