//! Idempotency keys: replay, reuse for another request, in flight, crash after append
//! (docs/decisions/0003-atomic-idempotency.md, 0017-one-statement-idempotency.md).

use std::time::Duration;

use axum::http::StatusCode;
use command_api::Hooks;
use command_api::execute::{Kind, Outcome};
use command_api::idempotency::fingerprint;
use event_store::idempotency;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

/// An open claim on `key`, as versions before decision 0017 wrote one before running the
/// command: the attempt holding it runs now, or died.
async fn open_claim(pool: &PgPool, principal: &str, key: &str, fingerprint: &[u8]) {
    sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, fingerprint, owner) \
         VALUES ($1, $2, $3, gen_random_uuid())",
    )
    .bind(principal)
    .bind(key)
    .bind(fingerprint)
    .execute(pool)
    .await
    .unwrap();
}

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
async fn a_key_an_earlier_version_still_holds_is_409(pool: PgPool) {
    let app = app(&pool);
    let body = json!({ "name": "Apollo" });
    // An instance of an earlier version claimed the key: its attempt is running right now.
    let fingerprint = fingerprint("POST", "/api/v1/projects", body.to_string().as_bytes());
    // Keys are scoped to the account that sent them.
    let principal = tester().id.to_string();
    open_claim(&pool, &principal, "key-3", &fingerprint).await;
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
    // An attempt of an earlier version claimed the key and died before appending anything.
    let principal = tester().id.to_string();
    open_claim(&pool, &principal, "key-4", &fingerprint).await;
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
    // Every repeat waits for the attempt whose append recorded the key, and replays it.
    assert_eq!(created.len(), answers.len(), "{answers:?}");
    assert!(created.iter().all(|a| a.value() == created[0].value()));
    let fresh = answers
        .iter()
        .filter(|a| a.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1);
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
async fn an_append_whose_key_another_attempt_recorded_appends_nothing(pool: PgPool) {
    use event_store::append::{AppendError, NewEvent, append};
    use event_store::idempotency::{Completion, IdempotencyKey};
    use events::project::ProjectEvent;

    let key = IdempotencyKey {
        principal: "anonymous".to_owned(),
        key: "key-9".to_owned(),
        fingerprint: fingerprint("POST", "/api/v1/projects", b"{}"),
        lease: Duration::from_secs(30),
    };
    let archived = |id: &str| {
        NewEvent::of(
            "Project",
            id,
            1,
            &ProjectEvent::ProjectArchived {},
            json!({ "actor": "anonymous" }),
        )
        .unwrap()
    };
    let outcome = |id: &str| Outcome {
        kind: Kind::Changed,
        id: id.to_owned(),
        version: 1,
        appended: 1,
    };
    // Two attempts with one key decided on different streams (a create's generated id).
    let (first, second) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let first_outcome = outcome(&first);
    let completion = Completion::new(&key, &first_outcome).unwrap();
    append(&pool, &[archived(&first)], Some(&completion))
        .await
        .unwrap();
    let second_outcome = outcome(&second);
    let late = Completion::new(&key, &second_outcome).unwrap();
    let appended = append(&pool, &[archived(&second)], Some(&late)).await;
    assert!(
        matches!(appended, Err(AppendError::ClaimLost)),
        "{appended:?}"
    );
    assert_eq!(event_count(&pool).await, 1);
    let stored = idempotency::lookup::<Outcome>(&pool, "anonymous", "key-9", &key.fingerprint)
        .await
        .unwrap()
        .expect("the first attempt's record");
    assert_eq!(stored.outcome, first_outcome);
    assert!(matches!(
        idempotency::lookup::<Outcome>(&pool, "anonymous", "key-9", b"another request").await,
        Err(idempotency::IdempotencyError::Mismatch)
    ));
}

/// A repeat sent while its first attempt's append is running (here: a transaction that wrote
/// the first attempt's events and record and has not committed) waits for it, appends nothing,
/// and answers with the first attempt's outcome.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_repeat_while_the_first_attempt_is_in_flight_waits_and_replays(pool: PgPool) {
    use event_store::append::{NewEvent, append_with};
    use event_store::idempotency::{Completion, IdempotencyKey};
    use events::project::ProjectEvent;

    let app = app(&pool);
    let body = json!({ "name": "Apollo" });
    let key = IdempotencyKey {
        principal: tester().id.to_string(),
        key: "key-11".to_owned(),
        fingerprint: fingerprint("POST", "/api/v1/projects", body.to_string().as_bytes()),
        lease: Duration::from_secs(30),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let created = NewEvent::of(
        "Project",
        &id,
        1,
        &ProjectEvent::ProjectCreated {
            name: "Apollo".to_owned(),
            description: String::new(),
            owner_id: Some(tester().id),
            created_by: tester().id.to_string(),
        },
        json!({ "actor": tester().id.to_string() }),
    )
    .unwrap();
    let first = Outcome {
        kind: Kind::Created,
        id: id.clone(),
        version: 1,
        appended: 1,
    };
    let completion = Completion::new(&key, &first).unwrap();
    let mut in_flight = pool.begin().await.unwrap();
    append_with(&mut in_flight, &[created], Some(&completion))
        .await
        .unwrap();

    let repeat = tokio::spawn({
        let app = app.clone();
        async move {
            Call::post("/api/v1/projects")
                .header("idempotency-key", "key-11")
                .json(&json!({ "name": "Apollo" }))
                .send(&app)
                .await
        }
    });
    // The repeat's append waits on the first attempt's record.
    test_support::poll::eventually(
        Duration::from_secs(10),
        "the repeat waits on a lock",
        || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock')",
                )
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        },
    )
    .await;
    in_flight.commit().await.unwrap();
    let repeat = repeat.await.unwrap();
    assert_eq!(repeat.status, StatusCode::CREATED);
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    assert_eq!(repeat.value()["id"], id.as_str());
    assert_eq!(event_count(&pool).await, 1);
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
