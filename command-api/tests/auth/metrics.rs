//! `/metrics` of an instance with accounts after auth traffic: the accounts' families catalogued
//! in docs/metrics.md with their type, labels and HELP, and `promtool check metrics` clean.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use test_support::Call;
use test_support::exposition::{assert_catalogued, value};

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn metrics_match_the_catalogue_after_auth_traffic(pool: PgPool) {
    let instance = instance(&pool, auth_settings());
    let refused = instance.refresh("not-a-refresh-token").await;
    assert!(refused.status.is_client_error(), "{}", refused.text());
    let login = instance
        .post(
            "login",
            &json!({ "email": address("nobody"), "password": "not the password at all" }),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.text());

    let scrape = Call::get("/metrics").send(&instance.app).await;
    assert_eq!(scrape.status, StatusCode::OK);
    let text = scrape.text();
    assert_catalogued(&text);
    assert!(
        value(
            &text,
            "chronicle_auth_refresh_total",
            &[("result", "invalid")]
        )
        .is_some_and(|count| count >= 1.0),
        "{text}"
    );
}
