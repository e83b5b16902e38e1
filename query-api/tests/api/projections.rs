//! `GET /api/v1/projections`: checkpoints and lag.

use axum::http::StatusCode;
use events::LogPosition;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{app, append_event, get, set_checkpoint};

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("an array")
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no projection {name} in {list}"))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn lag_counts_the_events_after_each_checkpoint_that_the_projection_reads(pool: PgPool) {
    let first = append_event(&pool, "Project", "p1", 1).await;
    append_event(&pool, "SupportTicket", "t1", 1).await;
    append_event(&pool, "Project", "p1", 2).await;
    append_event(&pool, "Project", "p2", 1).await;
    let last = append_event(&pool, "SupportTicket", "t1", 2).await;
    // `projects` applied the first event; reads only Project events, so two are behind.
    set_checkpoint(&pool, "projects", first).await;
    // An unmapped projection reads everything: all five are behind it.
    set_checkpoint(&pool, "relay", LogPosition::START).await;
    // A projection that has seen everything lags by nothing.
    set_checkpoint(&pool, "caught_up", last).await;
    sqlx::query(
        "UPDATE projection_checkpoints SET state = 'failed', last_error = 'boom' \
          WHERE name = 'relay'",
    )
    .execute(&pool)
    .await
    .expect("updated");
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/projections").await;

    assert_eq!(answer.status, StatusCode::OK);
    let list = answer.json();
    let names: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .map(|entry| entry["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["caught_up", "projects", "relay"]);

    let projects = by_name(&list, "projects");
    assert_eq!(projects["checkpoint"], first.position);
    assert_eq!(projects["lag_events"], 2);
    assert!(projects["lag_seconds"].as_f64().expect("a number") >= 0.0);
    assert_eq!(projects["state"], "running");
    assert_eq!(projects["last_error"], Value::Null);
    assert_eq!(projects["events_applied"], 1);
    assert!(
        projects["updated_at"]
            .as_str()
            .expect("a time")
            .ends_with('Z')
    );

    let relay = by_name(&list, "relay");
    assert_eq!(relay["checkpoint"], 0);
    assert_eq!(relay["lag_events"], 5);
    assert_eq!(relay["state"], "failed");
    assert_eq!(relay["last_error"], "boom");

    let caught_up = by_name(&list, "caught_up");
    assert_eq!(caught_up["lag_events"], 0);
    assert_eq!(caught_up["lag_seconds"], 0.0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn lag_seconds_measure_the_age_of_the_oldest_unapplied_event(pool: PgPool) {
    let applied = append_event(&pool, "Project", "p1", 1).await;
    // An event recorded 90 seconds ago that the projection has not applied.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, recorded_at) \
         VALUES ('Project', 'p1', 2, 'Something', '1', '{}', '{}', now() - interval '90 seconds')",
    )
    .execute(&pool)
    .await
    .expect("inserted");
    append_event(&pool, "Project", "p1", 3).await;
    set_checkpoint(&pool, "projects", applied).await;
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/projections").await;

    let projects = by_name(&answer.json(), "projects").clone();
    assert_eq!(projects["lag_events"], 2);
    let seconds = projects["lag_seconds"].as_f64().expect("a number");
    assert!((90.0..120.0).contains(&seconds), "{seconds}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_projections_is_an_empty_list(pool: PgPool) {
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/projections").await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json(), serde_json::json!([]));
}
