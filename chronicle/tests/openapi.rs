//! The committed OpenAPI document is exactly what the code produces (both APIs serve it:
//! `end_to_end.rs`).

#[test]
fn the_committed_document_is_what_the_code_produces() {
    let produced = chronicle::openapi::document_text().expect("the two APIs' documents merge");
    assert!(
        produced == service_kit::openapi::PUBLISHED,
        "openapi/chronicle.json is stale: regenerate it with `{}` and commit it",
        service_kit::openapi::REGENERATE
    );
}

#[test]
fn the_document_declares_the_problem_schema_once_and_both_sides_operations() {
    let document = chronicle::openapi::document().expect("merges");
    assert_eq!(document["openapi"], "3.1.0");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for name in [
        "Problem",
        "FieldError",
        "PreconditionFailed",
        "ConflictCode",
        "Project",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let projects = &document["paths"]["/api/v1/projects"];
    assert!(projects["post"].is_object(), "the command side");
    assert!(projects["get"].is_object(), "the query side");
    let code = &document["components"]["schemas"]["ConflictCode"]["enum"];
    for value in [
        "already_exists",
        "archived",
        "deleted",
        "invalid_transition",
        "idempotency_in_flight",
    ] {
        assert!(
            code.as_array()
                .is_some_and(|codes| codes.iter().any(|c| c == value)),
            "{value}"
        );
    }
}
