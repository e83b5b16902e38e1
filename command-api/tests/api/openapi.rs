//! The OpenAPI document: every command operation documents every status it can answer.

use serde_json::Value;

fn schema_ref(response: &Value) -> Option<&str> {
    response["content"]["application/problem+json"]["schema"]["$ref"].as_str()
}

#[test]
fn every_command_operation_documents_its_error_answers() {
    let document = serde_json::to_value(command_api::document()).unwrap();
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
            // The accounts' routes take no `If-Match`; they answer 429 instead. The admin's
            // account commands take neither.
            if path.starts_with("/api/v1/auth/") {
                assert!(responses["429"].is_object(), "{name} 429");
            } else if path.starts_with("/api/v1/admin/") {
                assert!(responses["412"].is_null(), "{name} 412");
                assert!(responses["429"].is_null(), "{name} 429");
            } else {
                assert_eq!(
                    schema_ref(&responses["412"]),
                    Some("#/components/schemas/PreconditionFailed"),
                    "{name}"
                );
            }
            if path.ends_with("{id}") || path.contains("{id}/") {
                assert!(responses["404"].is_object(), "{name} 404");
            }
            operations += 1;
        }
    }
    // 11 resource routes, 9 accounts, 5 second-factor, 2 sessions, 5 admin, 5 passkeys.
    assert_eq!(operations, 11 + 9 + 5 + 2 + 5 + 5);
}

#[test]
fn the_openapi_document_describes_the_ingest_route() {
    let document = serde_json::to_value(command_api::document()).unwrap();
    assert!(document["paths"]["/api/v1/analytics/events"]["post"].is_object());
    assert!(document["components"]["schemas"]["TrackEvent"].is_object());
}

#[test]
fn the_openapi_document_lists_every_command() {
    let body = serde_json::to_value(command_api::document()).unwrap();
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

#[test]
fn the_openapi_document_lists_the_ticket_post_and_report_commands() {
    let document = serde_json::to_value(command_api::document()).unwrap();
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

/// `schema`, or the component it refers to.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Whether a string schema states which strings the server takes (a pattern, a format or a
/// closed set) rather than "any string".
fn states_its_strings(schema: &Value) -> bool {
    !schema["pattern"].is_null() || !schema["format"].is_null() || !schema["enum"].is_null()
}

fn is_string(schema: &Value) -> bool {
    schema["type"] == "string"
        || schema["type"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == "string"))
}

// Generic over the document, so it holds for every operation added later: the server checks
// every header and body string it reads, so the document states each one's shape (schemathesis
// sends what the document allows and expects it taken), and a partial update that needs a
// field says so with `minProperties`.
#[test]
fn every_header_and_body_string_states_what_the_server_takes() {
    let document = serde_json::to_value(command_api::document()).unwrap();
    let mut strings = 0;
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let name = format!("{method} {path}");
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] == "header" {
                    assert!(
                        states_its_strings(&parameter["schema"]),
                        "{name}: header {}",
                        parameter["name"]
                    );
                    strings += 1;
                }
            }
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            if body.is_null() {
                continue;
            }
            let mut pending = vec![resolve(&document, body)];
            while let Some(schema) = pending.pop() {
                if method == "patch" && schema["properties"].is_object() {
                    assert!(
                        schema["minProperties"].as_u64() >= Some(1),
                        "{name}: an empty patch is refused"
                    );
                }
                for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                    let property = resolve(&document, property);
                    if is_string(property) {
                        assert!(states_its_strings(property), "{name}: {field}");
                        strings += 1;
                    }
                    if property["type"] == "array" {
                        pending.push(resolve(&document, &property["items"]));
                    }
                }
            }
        }
    }
    assert!(strings >= 30, "only {strings} strings found");
}

// Any route answers 401 to a refused token (public ones too, ACCOUNTS.md), and a route that
// needs an account may answer 403: both are documented on every operation they can reach.
#[test]
fn every_operation_documents_the_answers_of_the_bearer_check() {
    let document = serde_json::to_value(command_api::document()).unwrap();
    let mut operations = 0;
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let public = command_api::PUBLIC_OPERATIONS
                .iter()
                .any(|(m, p)| m == method && p == path);
            let responses = &operation["responses"];
            assert!(responses["401"].is_object(), "{method} {path}: no 401");
            if !public {
                assert!(responses["403"].is_object(), "{method} {path}: no 403");
            }
            operations += 1;
        }
    }
    assert!(operations > 20, "{operations}");
}
