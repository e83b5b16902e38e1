//! The OpenAPI document: every command operation documents every status it can answer.

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{Call, app};

fn schema_ref(response: &Value) -> Option<&str> {
    response["content"]["application/problem+json"]["schema"]["$ref"].as_str()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_command_operation_documents_its_error_answers(pool: PgPool) {
    let document = Call::new(axum::http::Method::GET, "/api/v1/openapi.json")
        .send(&app(&pool))
        .await
        .value();
    for schema in ["Problem", "FieldError", "PreconditionFailed"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    let precondition = &document["components"]["schemas"]["PreconditionFailed"];
    assert!(precondition["properties"]["current_version"].is_object());
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        // Not a command: no aggregate, no `If-Match` (its answers: tests/csp_reports.rs).
        if path == "/api/v1/csp-reports" {
            continue;
        }
        for (method, operation) in methods.as_object().unwrap() {
            let responses = &operation["responses"];
            let name = format!("{method} {path}");
            for status in ["400", "409", "413", "415", "422", "503"] {
                assert_eq!(
                    schema_ref(&responses[status]),
                    Some("#/components/schemas/Problem"),
                    "{name} {status}"
                );
            }
            assert_eq!(
                schema_ref(&responses["412"]),
                Some("#/components/schemas/PreconditionFailed"),
                "{name}"
            );
            if path.ends_with("{id}") || path.contains("{id}/") {
                assert!(responses["404"].is_object(), "{name} 404");
            }
            operations += 1;
        }
    }
    assert_eq!(operations, 11);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_openapi_document_describes_the_ingest_route(pool: PgPool) {
    let document = Call::new(axum::http::Method::GET, "/api/v1/openapi.json")
        .send(&app(&pool))
        .await
        .value();
    assert!(document["paths"]["/api/v1/analytics/events"]["post"].is_object());
    assert!(document["components"]["schemas"]["TrackEvent"].is_object());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_openapi_document_lists_every_command(pool: PgPool) {
    let app = app(&pool);
    let answer = Call::new(axum::http::Method::GET, "/api/v1/openapi.json")
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.value();
    let paths = body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{id}",
        "/api/v1/projects/{id}/archive",
        "/api/v1/projects/{id}/restore",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_openapi_document_lists_the_ticket_post_and_report_commands(pool: PgPool) {
    let app = app(&pool);
    let document = Call::new(axum::http::Method::GET, "/api/v1/openapi.json")
        .send(&app)
        .await
        .value();
    for (path, method) in [
        ("/api/v1/support/tickets", "post"),
        ("/api/v1/support/tickets/{id}/status", "post"),
        ("/api/v1/community/posts", "post"),
        ("/api/v1/community/posts/{id}", "patch"),
        ("/api/v1/community/posts/{id}", "delete"),
        ("/api/v1/status/services/{service_id}/reports", "post"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "missing {method} {path}"
        );
    }
}
