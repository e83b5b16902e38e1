//! Idempotency keys: replay, reuse for another request, in flight, crash after append.

use std::time::Duration;

use axum::http::StatusCode;
use command_api::Hooks;
use command_api::execute::{Kind, Outcome};
use command_api::idempotency::fingerprint;
use event_store::idempotency::{self, Claimed};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

fn create(key: &str, name: &str) -> Call {
    Call::post("/api/v1/projects")
        .header("idempotency-key", key)
        .json(&json!({ "name": name }))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_repeat_gets_the_first_answer_and_appends_nothing(pool: PgPool) {
    let app = app(&pool);
    let first = create("key-1", "Apollo").send(&app).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let repeat = create("key-1", "Apollo").send(&app).await;
    assert_eq!(repeat.status, StatusCode::CREATED);
    assert_eq!(repeat.value(), first.value());
    assert_eq!(repeat.header("location"), first.header("location"));
    assert_eq!(repeat.header("etag"), first.header("etag"));
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    assert_eq!(event_count(&pool).await, 1);
    let key: String = sqlx::query_scalar("SELECT metadata->>'idempotency_key' FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(key, "key-1");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_reused_for_another_request_is_422(pool: PgPool) {
    let app = app(&pool);
    assert_eq!(
        create("key-2", "Apollo").send(&app).await.status,
        StatusCode::CREATED
    );
    let other = create("key-2", "Gemini").send(&app).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.value()["type"], "/problems/idempotency-key-reused");
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_key_still_in_flight_is_409(pool: PgPool) {
    let app = app(&pool);
    let body = json!({ "name": "Apollo" });
    // Another attempt holds the claim: it is running right now.
    let fingerprint = fingerprint("POST", "/api/v1/projects", body.to_string().as_bytes());
    // Keys are scoped to the account that sent them.
    let principal = tester().id.to_string();
    let held = idempotency::claim::<Outcome>(
        &pool,
        &principal,
        "key-3",
        &fingerprint,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(matches!(held, Claimed::Owned(_)));
    let second = Call::post("/api/v1/projects")
        .header("idempotency-key", "key-3")
        .json(&body)
        .send(&app)
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(
        second.value()["type"],
        "/problems/idempotency-key-in-flight"
    );
    assert_eq!(second.value()["code"], "idempotency_in_flight");
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_claim_abandoned_past_its_lease_is_taken_over_and_appends_once(pool: PgPool) {
    let mut settings = settings();
    settings.idempotency_lease = Duration::ZERO;
    let app = app_with(&pool, settings, Hooks::default());
    let body = json!({ "name": "Apollo" });
    let fingerprint = fingerprint("POST", "/api/v1/projects", body.to_string().as_bytes());
    // An attempt claimed the key and died before appending anything.
    idempotency::claim::<Outcome>(
        &pool,
        "anonymous",
        "key-4",
        &fingerprint,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let retry = Call::post("/api/v1/projects")
        .header("idempotency-key", "key-4")
        .json(&body)
        .send(&app)
        .await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(event_count(&pool).await, 1);
    let replay = Call::post("/api/v1/projects")
        .header("idempotency-key", "key-4")
        .json(&body)
        .send(&app)
        .await;
    assert_eq!(replay.value(), retry.value());
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_first_attempt_that_died_after_its_append_is_not_appended_again(pool: PgPool) {
    let dying = app_with(&pool, settings(), dying_after_commit());
    let crashed = create("key-5", "Apollo").send(&dying).await;
    // The process "died": the client saw no success.
    assert_eq!(crashed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(event_count(&pool).await, 1);

    let healthy = app(&pool);
    let retry = create("key-5", "Apollo").send(&healthy).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.value()["version"], 1);
    let stored_id: String = sqlx::query_scalar("SELECT aggregate_id FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(retry.value()["id"], stored_id.as_str());
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_failed_command_stores_no_answer_and_the_key_can_be_retried(pool: PgPool) {
    let app = app(&pool);
    let id = "0195a7d4-1c2b-7def-8000-0000000000dd";
    let missing = Call::post(&format!("/api/v1/projects/{id}/archive"))
        .header("idempotency-key", "key-6")
        .send(&app)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn concurrent_repeats_of_one_key_append_once(pool: PgPool) {
    let app = app(&pool);
    let answers =
        futures::future::join_all((0..8).map(|_| create("key-7", "Apollo").send(&app))).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|a| a.value() == created[0].value()));
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT)
    );
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn expired_answers_are_purged(pool: PgPool) {
    let app = app(&pool);
    create("key-8", "Apollo").send(&app).await;
    assert_eq!(
        idempotency::purge(&pool, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    sqlx::query("UPDATE idempotency_keys SET completed_at = now() - interval '25 hours'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        idempotency::purge(&pool, Duration::from_secs(24 * 3600))
            .await
            .unwrap(),
        1
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_append_whose_claim_was_taken_over_appends_nothing(pool: PgPool) {
    use event_store::append::{AppendError, NewEvent, append};
    use event_store::idempotency::{Completion, IdempotencyClaim};
    use events::project::ProjectEvent;

    let fingerprint = fingerprint("POST", "/api/v1/projects", b"{}");
    let Claimed::Owned(current) = idempotency::claim::<Outcome>(
        &pool,
        "anonymous",
        "key-9",
        &fingerprint,
        Duration::from_secs(30),
    )
    .await
    .unwrap() else {
        panic!("a fresh key is claimed");
    };
    // The attempt that held the claim before the takeover tries to finish.
    let stale = IdempotencyClaim {
        owner: uuid::Uuid::now_v7(),
        ..current.clone()
    };
    let id = uuid::Uuid::now_v7().to_string();
    let event = NewEvent::of(
        "Project",
        &id,
        1,
        &ProjectEvent::ProjectArchived {},
        json!({ "actor": "anonymous" }),
    )
    .unwrap();
    let outcome = Outcome {
        kind: Kind::Changed,
        id,
        version: 1,
        appended: 1,
    };
    let stale_completion = Completion::new(&stale, &outcome).unwrap();
    let appended = append(&pool, std::slice::from_ref(&event), Some(&stale_completion)).await;
    assert!(
        matches!(appended, Err(AppendError::ClaimLost)),
        "{appended:?}"
    );
    assert_eq!(event_count(&pool).await, 0);

    // The current owner completes it, events and outcome together.
    let completion = Completion::new(&current, &outcome).unwrap();
    append(&pool, &[event], Some(&completion)).await.unwrap();
    assert_eq!(event_count(&pool).await, 1);
    let Claimed::Replay(stored) = idempotency::claim::<Outcome>(
        &pool,
        "anonymous",
        "key-9",
        &fingerprint,
        Duration::from_secs(30),
    )
    .await
    .unwrap() else {
        panic!("a completed key replays");
    };
    assert_eq!(stored.outcome, outcome);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_keyed_command_that_changes_nothing_replays_its_answer(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let same_name = || {
        Call::patch(&format!("/api/v1/projects/{id}"))
            .header("idempotency-key", "key-10")
            .json(&json!({ "name": "Apollo" }))
    };
    let first = same_name().send(&app).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.value()["version"], 1);
    let replay = same_name().send(&app).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.value(), first.value());
    assert_eq!(event_count(&pool).await, 1);
}

/// A replay is the first answer byte for byte, headers included, for every kind of answer.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn replays_of_creates_changes_and_batches_are_the_first_answers_byte_for_byte(pool: PgPool) {
    let app = app(&pool);
    let id = create_project(&app, "Apollo").await;
    let calls = [
        || create("key-11", "Gemini"),
        || {
            Call::post("/api/v1/analytics/events")
                .header("idempotency-key", "key-12")
                .json(&json!({ "events": [{ "name": "page.view" }, { "name": "signup" }] }))
        },
    ];
    let patch = |id: &str| {
        Call::patch(&format!("/api/v1/projects/{id}"))
            .header("idempotency-key", "key-13")
            .json(&json!({ "name": "Renamed" }))
    };
    let mut pairs = Vec::new();
    for call in calls {
        pairs.push((call().send(&app).await, call().send(&app).await));
    }
    pairs.push((patch(&id).send(&app).await, patch(&id).send(&app).await));
    for (first, replay) in pairs {
        assert!(first.status.is_success(), "{:?}", first.value());
        assert_eq!(replay.status, first.status);
        assert_eq!(replay.body, first.body);
        for header in ["location", "etag", "x-consistency-token", "content-type"] {
            assert_eq!(replay.header(header), first.header(header), "{header}");
        }
        assert_eq!(
            first.header("x-consistency-token"),
            first.value()["consistency_token"].as_str()
        );
        assert_eq!(first.header("idempotent-replayed"), None);
        assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    }
}
