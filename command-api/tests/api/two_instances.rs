//! Two command-API instances on one database, each with its own pool, as two processes behind
//! a load balancer would be: concurrency control and idempotency hold across them, because
//! both live in the database (the stream's primary key, the idempotency claim row), not in
//! either process.

use axum::Router;
use axum::http::StatusCode;
use futures::future::join_all;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::*;

/// Two apps, each on a pool of its own to the test's database.
async fn two_instances(pool: &PgPool) -> [Router; 2] {
    let other_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    [app(pool), app(&other_pool)]
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn if_match_races_across_two_instances_have_exactly_one_winner(pool: PgPool) {
    let instances = two_instances(&pool).await;
    let id = create_project(&instances[0], "Apollo").await;
    let attempts = (0..16).map(|n| {
        Call::patch(&format!("/api/v1/projects/{id}"))
            .header("if-match", "\"1\"")
            .json(&json!({ "name": format!("name {n}") }))
            .send(&instances[n % 2])
    });
    let answers = join_all(attempts).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count(),
        15,
        "{statuses:?}"
    );
    assert_eq!(stream_versions(&pool, &id).await, vec![1, 2]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_same_idempotency_key_sent_to_two_instances_appends_once(pool: PgPool) {
    let instances = two_instances(&pool).await;
    let body = json!({ "name": "Apollo", "description": "sent twice" });
    let attempts = (0..12).map(|n| {
        Call::post("/api/v1/projects")
            .header("idempotency-key", "shared-key")
            .json(&body)
            .send(&instances[n % 2])
    });
    let answers = join_all(attempts).await;
    let firsts: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED && a.header("idempotent-replayed").is_none())
        .collect();
    assert_eq!(firsts.len(), 1, "exactly one attempt ran the command");
    for answer in &answers {
        match answer.status {
            StatusCode::CREATED => assert_eq!(answer.value(), firsts[0].value(), "a replay"),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}: {:?}", answer.value()),
        }
    }
    assert_eq!(event_count(&pool).await, 1);

    // Afterwards both instances replay the stored answer.
    for instance in &instances {
        let again = Call::post("/api/v1/projects")
            .header("idempotency-key", "shared-key")
            .json(&body)
            .send(instance)
            .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.value(), firsts[0].value());
    }
    assert_eq!(event_count(&pool).await, 1);
}
