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

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn logins_are_counted_by_result_and_each_failure_costs_one_verify(pool: PgPool) {
    let mut settings = auth_settings();
    settings.rate_limits.login_address_ip = command_api::auth::settings::Limit::per(1, 900);
    let instance = instance(&pool, settings);
    let scrape = || async {
        let text = Call::get("/metrics").send(&instance.app).await.text();
        let of = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels).unwrap_or(0.0);
        (
            of("chronicle_password_hashes_total", &[("op", "verify")]),
            of("chronicle_auth_logins_total", &[("result", "failure")]),
            of("chronicle_auth_logins_total", &[("result", "rate_limited")]),
            of(
                "chronicle_security_events_total",
                &[("kind", "login_failed")],
            ),
            of(
                "chronicle_security_events_total",
                &[("kind", "rate_limited")],
            ),
        )
    };
    let email = address("nobody");
    let attempt = json!({ "email": email, "password": "not the password at all" });
    let before = scrape().await;
    let failed = instance.post("login", &attempt).await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED, "{}", failed.text());
    let after_failure = scrape().await;
    // Other tests of this process hash too: at least what this one did.
    assert!(
        after_failure.0 >= before.0 + 1.0,
        "{before:?} {after_failure:?}"
    );
    assert!(
        after_failure.1 >= before.1 + 1.0,
        "{before:?} {after_failure:?}"
    );
    let limited = instance.post("login", &attempt).await;
    limited.problem(StatusCode::TOO_MANY_REQUESTS);
    let after_limit = scrape().await;
    assert!(
        after_limit.2 >= before.2 + 1.0,
        "{before:?} {after_limit:?}"
    );
    assert_catalogued(&Call::get("/metrics").send(&instance.app).await.text());
}
