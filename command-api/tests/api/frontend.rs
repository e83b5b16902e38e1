//! What browsers get from the command API (FRONTEND.md, "Backoff and caching"): no command
//! answer or problem is cached, CORS for the allowed origins only, and compressed JSON over
//! 1 KiB.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

/// Every value of header `name` on `answer`, joined, lowercase (`Vary` may come as several).
fn all_values(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
        .to_lowercase()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn command_answers_and_problems_are_never_stored(pool: PgPool) {
    let app = app(&pool);
    let created = Call::post("/api/v1/projects")
        .json(&json!({ "name": "Apollo" }))
        .send(&app)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let invalid = Call::post("/api/v1/projects")
        .json(&json!({ "name": "" }))
        .send(&app)
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.header("cache-control"), Some("no-store"));
    let unknown = Call::get("/api/v1/nothing-here").send(&app).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.header("cache-control"), Some("no-store"));
}

fn preflight(origin: &str) -> Call {
    Call::new(
        Method::OPTIONS,
        "/api/v1/projects/0196f4c0-0000-7000-8000-000000000000",
    )
    .header("origin", origin)
    .header("access-control-request-method", "PATCH")
    .header(
        "access-control-request-headers",
        "authorization, content-type, if-match, idempotency-key, x-request-id",
    )
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_preflight_from_an_allowed_origin_is_allowed_with_credentials(pool: PgPool) {
    let app = bare_app(&pool);
    let answer = preflight(TEST_ORIGIN).send(&app).await;
    assert!(answer.status.is_success(), "{}", answer.status);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(TEST_ORIGIN)
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );
    let methods = all_values(&answer, "access-control-allow-methods");
    assert!(
        methods.contains("patch") && methods.contains("delete"),
        "{methods}"
    );
    let headers = all_values(&answer, "access-control-allow-headers");
    for header in [
        "if-match",
        "idempotency-key",
        "x-consistency-token",
        "authorization",
    ] {
        assert!(headers.contains(header), "{header} in {headers}");
    }
    assert!(all_values(&answer, "vary").contains("origin"));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_preflight_from_another_origin_is_not_allowed(pool: PgPool) {
    let app = bare_app(&pool);
    let answer = preflight("https://evil.example").send(&app).await;
    assert_eq!(answer.header("access-control-allow-origin"), None);
    assert_eq!(answer.header("access-control-allow-credentials"), None);
    assert!(all_values(&answer, "vary").contains("origin"));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_allowed_origin_reads_the_headers_a_client_needs(pool: PgPool) {
    let app = app(&pool);
    let created = Call::post("/api/v1/projects")
        .header("origin", TEST_ORIGIN)
        .json(&json!({ "name": "Apollo" }))
        .send(&app)
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.header("access-control-allow-origin"),
        Some(TEST_ORIGIN)
    );
    let exposed = all_values(&created, "access-control-expose-headers");
    for header in [
        "etag",
        "location",
        "link",
        "retry-after",
        "x-request-id",
        "x-consistency-token",
        "idempotent-replayed",
    ] {
        assert!(exposed.contains(header), "{header} in {exposed}");
    }
    assert!(all_values(&created, "vary").contains("origin"));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn json_over_1_kib_is_compressed_as_the_client_accepts_and_smaller_json_is_not(pool: PgPool) {
    let app = app(&pool);
    let document = service_kit::openapi::PUBLISHED;
    assert!(document.len() > 1024);
    for encoding in ["gzip", "br"] {
        let large = Call::get(service_kit::openapi::DOCUMENT_PATH)
            .header("accept-encoding", encoding)
            .send(&app)
            .await;
        assert_eq!(large.status, StatusCode::OK);
        assert_eq!(large.header("content-encoding"), Some(encoding));
        assert!(
            large.body.len() < document.len(),
            "{encoding} makes it smaller"
        );
        assert!(all_values(&large, "vary").contains("accept-encoding"));
    }
    let plain = Call::get(service_kit::openapi::DOCUMENT_PATH)
        .send(&app)
        .await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text(), document);
    // Sent as it is, but a cache must still tell it from the compressed answers.
    assert!(all_values(&plain, "vary").contains("accept-encoding"));
    for accepted in [Some("gzip, br"), None] {
        let mut small = Call::post("/api/v1/projects");
        if let Some(accepted) = accepted {
            small = small.header("accept-encoding", accepted);
        }
        let small = small.json(&json!({ "name": "Apollo" })).send(&app).await;
        assert_eq!(small.status, StatusCode::CREATED);
        assert!(small.body.len() < 1024);
        assert_eq!(small.header("content-encoding"), None);
        assert!(
            !all_values(&small, "vary").contains("accept-encoding"),
            "{accepted:?}"
        );
    }
}
