//! `chronicle export`: NDJSON of the log, page by page, against the real PostgreSQL.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::time::Duration;

use chronicle::export::{ExportOptions, export_ndjson};
use event_store::LogFilter;
use event_store::append::NewEvent;
use events::LogPosition;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

fn event(aggregate_type: &str, sequence: i64, actor: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: "s".to_owned(),
        sequence,
        event_type: "Happened".to_owned(),
        event_version: "1".to_owned(),
        payload: json!({ "n": sequence }),
        metadata: test_support::metadata::json(actor),
    }
}

async fn export(pool: &PgPool, options: &ExportOptions) -> (Vec<Value>, LogPosition) {
    let mut out = Vec::new();
    let summary = export_ndjson(pool, options, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(summary.exported, lines.len() as u64);
    assert!(text.is_empty() || text.ends_with('\n'));
    (lines, summary.cursor)
}

/// Waits (bounded) until `n` events are below the commit-safe horizon: other tests on the same
/// server may hold it back with open transactions.
async fn wait_visible(pool: &PgPool, n: usize) {
    test_support::eventually(
        Duration::from_secs(10),
        "the events are visible",
        || async {
            event_store::log::read_after(pool, LogPosition::START, 1000, &LogFilter::default())
                .await
                .unwrap()
                .len()
                >= n
        },
    )
    .await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_export_writes_every_event_as_one_envelope_per_line_in_log_order(pool: PgPool) {
    test_support::init_logging();
    for sequence in 1..=7 {
        let kind = if sequence % 2 == 0 { "Even" } else { "Odd" };
        let actor = if sequence <= 3 { "ada" } else { "bob" };
        event_store::append::append(&pool, &[event(kind, sequence, actor)], None)
            .await
            .unwrap();
    }
    wait_visible(&pool, 7).await;

    // Pages of 3 make the export cross page boundaries, including an exactly full last page.
    let options = ExportOptions {
        page_size: 3,
        ..ExportOptions::default()
    };
    let (lines, cursor) = export(&pool, &options).await;
    let sequences: Vec<i64> = lines
        .iter()
        .map(|l| l["version"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6, 7]);
    let positions: Vec<i64> = lines
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for key in [
        "event_id",
        "aggregate_type",
        "aggregate_id",
        "event_type",
        "event_version",
        "payload",
        "metadata",
        "recorded_at",
    ] {
        assert!(lines[0].get(key).is_some(), "{key} missing");
    }

    // The cursor resumes after the last event written: nothing more now, the rest later.
    let resumed = ExportOptions {
        after: cursor,
        ..options.clone()
    };
    assert!(export(&pool, &resumed).await.0.is_empty());
    event_store::append::append(&pool, &[event("Odd", 8, "cy")], None)
        .await
        .unwrap();
    wait_visible(&pool, 8).await;
    let (more, _) = export(&pool, &resumed).await;
    assert_eq!(more.len(), 1);
    assert_eq!(more[0]["metadata"]["actor"], "cy");

    // Filters are the audit API's.
    let filtered = ExportOptions {
        filter: LogFilter {
            aggregate_types: vec!["Odd".to_owned()],
            actor: Some("bob".to_owned()),
            ..LogFilter::default()
        },
        ..options
    };
    let (odd_bob, _) = export(&pool, &filtered).await;
    let sequences: Vec<i64> = odd_bob
        .iter()
        .map(|l| l["version"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [5, 7]);
}
