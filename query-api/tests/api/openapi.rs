//! The query API's part of the OpenAPI document (`query_api::document()`; the whole one is
//! checked in `chronicle/tests/openapi.rs`): every path, the generic page schemas and the
//! shared answers.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{app, get};

#[test]
fn the_openapi_document_lists_every_path_and_the_problem_schema() {
    let document = serde_json::to_value(query_api::document()).expect("the document serializes");
    assert!(
        document["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.")
    );
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/{id}",
        "/api/v1/support/tickets",
        "/api/v1/support/tickets/{id}",
        "/api/v1/community/posts",
        "/api/v1/community/posts/{id}",
        "/api/v1/status",
        "/api/v1/status/services/{service_id}/history",
        "/api/v1/analytics/summary",
        "/api/v1/audit/events",
        "/api/v1/audit/streams/{aggregate_type}/{aggregate_id}",
        "/api/v1/projections",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "missing {path}");
    }
    for schema in [
        "Project",
        "Ticket",
        "Post",
        "StatusPage",
        "StatusReport",
        "Envelope",
        "ProjectionStatus",
        "Problem",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "missing schema {schema}"
        );
    }
    let parameters = document["paths"]["/api/v1/projects"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    for name in [
        "page",
        "page_size",
        "owner_id",
        "archived",
        "q",
        "sort",
        "If-None-Match",
        "X-Consistency-Token",
    ] {
        assert!(
            parameters.iter().any(|p| p["name"] == name),
            "missing parameter {name}"
        );
    }
}

#[test]
fn every_list_answers_one_generic_page_schema_under_a_distinct_name() {
    let document = serde_json::to_value(query_api::document()).expect("the document serializes");

    for (path, item) in [
        ("/api/v1/projects", "Project"),
        ("/api/v1/support/tickets", "Ticket"),
        ("/api/v1/community/posts", "Post"),
        (
            "/api/v1/status/services/{service_id}/history",
            "StatusReport",
        ),
    ] {
        let page = format!("Page_{item}");
        let body = &document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"];
        assert_eq!(body, &format!("#/components/schemas/{page}"), "{path}");
        let schema = &document["components"]["schemas"][page.as_str()];
        // utoipa inlines a generic argument: the items carry the item schema's fields.
        let items = &schema["properties"]["items"]["items"]["properties"];
        let fields = document["components"]["schemas"][item]["properties"]
            .as_object()
            .expect("item properties");
        for field in fields.keys() {
            assert!(items[field].is_object(), "{page}.items[].{field}");
        }
        for field in ["total", "page", "page_size", "pages"] {
            assert!(schema["properties"][field].is_object(), "{page}.{field}");
        }
    }
    // The documentation-only mirrors are gone.
    for old in ["ProjectPage", "TicketPage", "PostPage", "StatusHistoryPage"] {
        assert!(document["components"]["schemas"][old].is_null(), "{old}");
    }
}

#[test]
fn every_error_answer_is_documented_as_problem_json() {
    let document = serde_json::to_value(query_api::document()).expect("the document serializes");

    let item = &document["paths"]["/api/v1/projects/{id}"]["get"]["responses"];
    for status in ["400", "404", "422", "503"] {
        assert_eq!(
            item[status]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{status}"
        );
        assert!(
            item[status]["headers"]["Cache-Control"].is_object(),
            "{status}"
        );
    }
    assert!(item["503"]["headers"]["Retry-After"].is_object());
    assert!(item["304"]["headers"]["ETag"].is_object());
    for (path, statuses) in [
        ("/api/v1/projects", &["304", "400", "503"][..]),
        (
            "/api/v1/audit/streams/{aggregate_type}/{aggregate_id}",
            &["400", "404", "422", "503"][..],
        ),
        ("/api/v1/projections", &["503"][..]),
    ] {
        for status in statuses {
            assert!(
                document["paths"][path]["get"]["responses"][status].is_object(),
                "{path} {status}"
            );
        }
    }
}

/// `path` with each `{name}` replaced by a value its schema takes (`{id}` by a UUID).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + end];
        if name == "id" {
            out.push_str("01a229d7-c52f-75b1-8a3a-c6a06785bb9f");
        } else {
            out.push_str("a1");
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

// Generic over the document, so it holds for every operation added later: an empty value is
// no value of any query parameter the document describes (each is an integer, a boolean, or a
// string of at least one character), so the server refuses it with a 400 naming it.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_query_parameter_refuses_an_empty_value_as_its_schema_does(pool: PgPool) {
    let app = app(&pool).await;
    let document = serde_json::to_value(query_api::document()).expect("the document serializes");
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        let Some(parameters) = operations["get"]["parameters"].as_array() else {
            continue;
        };
        for parameter in parameters.iter().filter(|p| p["in"] == "query") {
            let name = parameter["name"].as_str().expect("name");
            let schema = &parameter["schema"];
            let admits_empty = schema["type"] == "string"
                && schema["minLength"].as_u64().unwrap_or(0) == 0
                && schema["pattern"].is_null()
                && schema["format"].is_null();
            assert!(!admits_empty, "{path} {name}: the schema admits \"\"");
            let uri = format!("{}?{name}=", concrete(path));
            let problem = get(&app, &uri).await.problem(StatusCode::BAD_REQUEST);
            assert_eq!(problem["parameter"], name, "{uri}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} query parameters found");
}
