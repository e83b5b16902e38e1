//! `/metrics` after real traffic: every family catalogued in docs/metrics.md with its type,
//! labels and HELP, nothing unprefixed, and `promtool check metrics` clean.

use std::time::Duration;

use axum::http::StatusCode;
use events::ConsistencyToken;
use sqlx::PgPool;
use test_support::exposition::{assert_catalogued, value};

use crate::helpers::{
    app_with, append_event, get, get_with, insert_project, project, set_checkpoint, waiting,
};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn metrics_match_the_catalogue_after_reads(pool: PgPool) {
    // Installs the SQL timing layer, whose histograms the scrape reads.
    test_support::init_logging();
    let position = append_event(&pool, "Project", "p1", 1).await;
    let row = project("Scraped");
    insert_project(&pool, &row).await;
    set_checkpoint(&pool, "projects", position).await;
    let app = app_with(&pool, waiting(Duration::from_secs(10))).await;
    let token = ConsistencyToken::at(position).encode();
    let list = get_with(&app, "/api/v1/projects", &[("x-consistency-token", &token)]).await;
    assert_eq!(list.status, StatusCode::OK);
    let item = get(&app, &format!("/api/v1/projects/{}", row.id)).await;
    assert_eq!(item.status, StatusCode::OK);

    let scrape = get(&app, "/metrics").await;
    assert_eq!(scrape.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&scrape.body).into_owned();
    assert_catalogued(&text);

    let at_least_one = |name: &str, labels: &[(&str, &str)]| {
        let found = value(&text, name, labels);
        assert!(
            found.is_some_and(|v| v >= 1.0),
            "{name} {labels:?}: {found:?}\n{text}"
        );
    };
    at_least_one(
        "chronicle_http_requests_total",
        &[
            ("service", "query-api"),
            ("method", "GET"),
            ("route", "/api/v1/projects/{id}"),
            ("status", "200"),
        ],
    );
    at_least_one(
        "chronicle_consistency_wait_seconds_count",
        &[("result", "reached")],
    );
    at_least_one(
        "chronicle_db_query_duration_seconds_count",
        &[("service", "query-api"), ("operation", "SELECT")],
    );
    // The reads were admitted: the gauge is there, under the service's name (its value is
    // the whole process's, which other tests' reads move).
    assert!(
        value(
            &text,
            "chronicle_http_requests_in_flight",
            &[("service", "query-api")]
        )
        .is_some(),
        "{text}"
    );
    at_least_one(
        "chronicle_db_pool_max_connections",
        &[("service", "query-api")],
    );
    assert!(
        value(
            &text,
            "chronicle_db_pool_connections",
            &[("service", "query-api"), ("state", "used")]
        )
        .is_some(),
        "{text}"
    );
}
