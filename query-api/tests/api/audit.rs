//! The auditors' log: cursor paging in commit-safe order, filters, single streams.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use event_store::append::NewEvent;
use events::project::ProjectEvent;
use events::ticket::TicketEvent;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{app, append_event, get};

/// A `DomainEvent` on stream (`aggregate_type`, `id`) at `sequence`, recorded as `actor`'s.
fn event(
    aggregate_type: &str,
    id: &str,
    sequence: i64,
    event: &impl cqrs_es::DomainEvent,
    actor: &str,
) -> NewEvent {
    NewEvent::of(
        aggregate_type,
        id,
        sequence,
        event,
        json!({ "actor": actor, "request_id": "r", "correlation_id": "c", "causation_id": "c" }),
    )
    .expect("event serializes")
}

fn archived() -> ProjectEvent {
    ProjectEvent::ProjectArchived {}
}

/// Waits (bounded) until `n` events are below the commit-safe horizon: tests run in parallel
/// on one server, and another test's open transaction holds every reader back.
async fn wait_visible(pool: &PgPool, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let visible = event_store::log::read_after(
            pool,
            events::LogPosition::START,
            1000,
            &Default::default(),
        )
        .await
        .expect("read");
        if visible.len() >= n || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one page; returns its event ids and its `next`.
async fn page(app: &Router, query: &str) -> (Vec<String>, String) {
    let answer = get(app, &format!("/api/v1/audit/events?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let body = answer.json();
    let ids = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["event_id"].as_str().expect("event_id").to_owned())
        .collect();
    (ids, body["next"].as_str().expect("next").to_owned())
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn following_next_never_skips_or_repeats_an_event_while_appends_continue(pool: PgPool) {
    let app = app(&pool).await;
    append_event(&pool, "Early", "e", 1).await;

    // A transaction that appends first and commits last, after everything below.
    let mut late = pool.begin().await.expect("begin");
    event_store::append::append_in(&mut late, &[event("Late", "l", 1, &archived(), "slow")])
        .await
        .expect("late append");

    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for n in 0..60 {
                append_event(&pool, "Busy", &format!("b{}", n % 6), n / 6 + 1).await;
                tokio::task::yield_now().await;
            }
        })
    };

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let follow = async |seen: &mut Vec<String>, cursor: &mut String| {
        let query = if cursor.is_empty() {
            "limit=7".to_owned()
        } else {
            format!("limit=7&after={cursor}")
        };
        let (ids, next) = page(&app, &query).await;
        seen.extend(ids);
        *cursor = next;
    };
    // While the late transaction is open, nothing committed after it began is visible.
    while !writer.is_finished() {
        follow(&mut seen, &mut cursor).await;
    }
    writer.await.expect("writer");
    follow(&mut seen, &mut cursor).await;
    // (Another test's open transaction may hold even the early event back for a while.)
    assert!(
        seen.len() <= 1,
        "only the early event may be below the horizon: {seen:?}"
    );

    late.commit().await.expect("late commit");
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 62 && Instant::now() < deadline {
        follow(&mut seen, &mut cursor).await;
    }

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was repeated");
    let stored: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pool)
        .await
        .expect("ids");
    let stored: HashSet<String> = stored.iter().map(Uuid::to_string).collect();
    assert_eq!(stored.len(), 62);
    assert_eq!(
        unique,
        stored.iter().collect::<HashSet<_>>(),
        "an event was skipped"
    );
    // An empty page hands the same cursor back.
    let (ids, next) = page(&app, &format!("after={cursor}")).await;
    assert!(ids.is_empty());
    assert_eq!(next, cursor);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn filters_narrow_the_log_and_items_are_full_envelopes(pool: PgPool) {
    let events = [
        event("Project", "p1", 1, &archived(), "ada"),
        event("Project", "p2", 1, &archived(), "bob"),
        event(
            "Ticket",
            "t1",
            1,
            &TicketEvent::TicketOpened {
                email: "ada@example.com".to_owned(),
                subject: "Help".to_owned(),
                message: "Please".to_owned(),
                submitter_id: None,
            },
            "ada",
        ),
    ];
    for event in &events {
        event_store::append::append(&pool, std::slice::from_ref(event), None)
            .await
            .expect("appended");
    }
    wait_visible(&pool, 3).await;
    let app = app(&pool).await;
    let count = async |query: &str| page(&app, query).await.0.len();
    assert_eq!(count("").await, 3);
    assert_eq!(count("aggregate_type=Project").await, 2);
    assert_eq!(count("aggregate_type=Project&aggregate_id=p2").await, 1);
    assert_eq!(count("event_type=TicketOpened").await, 1);
    assert_eq!(count("actor=ada").await, 2);
    assert_eq!(
        count("from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z").await,
        3
    );
    assert_eq!(count("to=2000-01-01T00:00:00Z").await, 0);

    let body = get(&app, "/api/v1/audit/events?actor=bob").await.json();
    let item = &body["items"][0];
    let keys: HashSet<&str> = item
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "position",
            "event_id",
            "aggregate_type",
            "aggregate_id",
            "version",
            "event_type",
            "event_version",
            "payload",
            "metadata",
            "recorded_at",
        ])
    );
    assert_eq!(item["aggregate_id"], "p2");
    assert_eq!(item["metadata"]["actor"], "bob");
    assert_eq!(item["version"], 1);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_audit_parameters_are_400_naming_the_parameter(pool: PgPool) {
    let app = app(&pool).await;
    for (query, parameter) in [
        ("after=not-a-cursor", "after"),
        ("after=MTIz", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("from=yesterday", "from"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("actor=a%00b", "actor"),
        ("aggregate_type=", "aggregate_type"),
        ("after=", "after"),
        // 257 characters: the limit counts characters, as the document's maxLength does.
        (&*format!("event_type={}", "e".repeat(257)), "event_type"),
    ] {
        let answer = get(&app, &format!("/api/v1/audit/events?{query}")).await;
        let problem = answer.problem(StatusCode::BAD_REQUEST);
        assert_eq!(problem["parameter"], parameter, "{query}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn audit_filters_count_characters_not_bytes(pool: PgPool) {
    let app = app(&pool).await;
    // 256 two-byte characters: 512 bytes, within the documented maxLength of 256.
    let actor = "%C3%A9".repeat(256);
    let answer = get(&app, &format!("/api/v1/audit/events?actor={actor}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    let too_long = "%C3%A9".repeat(257);
    let problem = get(&app, &format!("/api/v1/audit/events?actor={too_long}"))
        .await
        .problem(StatusCode::BAD_REQUEST);
    assert_eq!(problem["parameter"], "actor");
    // The stream's path values too: 256 characters is an unknown stream, 257 an invalid one.
    get(&app, &format!("/api/v1/audit/streams/{actor}/p1"))
        .await
        .problem(StatusCode::NOT_FOUND);
    let problem = get(&app, &format!("/api/v1/audit/streams/{too_long}/p1"))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "aggregate_type");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stream_is_read_in_version_order_from_a_version(pool: PgPool) {
    for sequence in 1..=3 {
        append_event(&pool, "Project", "p1", sequence).await;
    }
    append_event(&pool, "Project", "other", 1).await;
    wait_visible(&pool, 4).await;
    let app = app(&pool).await;
    let versions = |body: Value| -> Vec<i64> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["version"].as_i64().expect("version"))
            .collect()
    };
    let all = get(&app, "/api/v1/audit/streams/Project/p1").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(versions(all.json()), [1, 2, 3]);
    let tail = get(&app, "/api/v1/audit/streams/Project/p1?from_version=2").await;
    assert_eq!(versions(tail.json()), [2, 3]);
    let past_end = get(&app, "/api/v1/audit/streams/Project/p1?from_version=9").await;
    assert_eq!(versions(past_end.json()), Vec::<i64>::new());

    get(&app, "/api/v1/audit/streams/Project/missing")
        .await
        .problem(StatusCode::NOT_FOUND);
    get(&app, "/api/v1/audit/streams/Project/p1?from_version=0")
        .await
        .problem(StatusCode::BAD_REQUEST);
    get(&app, "/api/v1/audit/streams/Project/p%001")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn old_event_versions_are_served_upcast(pool: PgPool) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('Project', 'p', 1, 'ProjectCreated', '1', $1, $2)",
    )
    .bind(json!({"ProjectCreated": {"name": "Old", "description": "", "owner_id": null}}))
    .bind(json!({"actor": "grace", "request_id": "r", "correlation_id": "c", "causation_id": "c"}))
    .execute(&pool)
    .await
    .expect("inserted");
    wait_visible(&pool, 1).await;
    let app = app(&pool).await;
    for uri in ["/api/v1/audit/events", "/api/v1/audit/streams/Project/p"] {
        let body = get(&app, uri).await.json();
        assert_eq!(body["items"][0]["event_version"], "2", "{uri}");
        assert_eq!(
            body["items"][0]["payload"]["ProjectCreated"]["created_by"], "grace",
            "{uri}"
        );
    }
}

/// The versions and `next_version` of one stream page.
async fn stream_page(app: &Router, query: &str) -> (Vec<i64>, Value) {
    let answer = get(app, &format!("/api/v1/audit/streams/Project/p1?{query}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
    let body = answer.json();
    let versions = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["version"].as_i64().expect("version"))
        .collect();
    (versions, body["next_version"].clone())
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stream_is_paged_by_version_and_next_version_is_null_at_the_end(pool: PgPool) {
    for sequence in 1..=4 {
        append_event(&pool, "Project", "p1", sequence).await;
    }
    wait_visible(&pool, 4).await;
    let app = app(&pool).await;

    // An exact multiple of the page: the second page is the last, not an empty third.
    assert_eq!(stream_page(&app, "limit=2").await, (vec![1, 2], json!(3)));
    assert_eq!(
        stream_page(&app, "limit=2&from_version=3").await,
        (vec![3, 4], Value::Null)
    );
    // Not a multiple, and the default limit (100) covers the whole stream.
    assert_eq!(
        stream_page(&app, "limit=3&from_version=2").await,
        (vec![2, 3, 4], Value::Null)
    );
    assert_eq!(
        stream_page(&app, "limit=3").await,
        (vec![1, 2, 3], json!(4))
    );
    assert_eq!(stream_page(&app, "").await, (vec![1, 2, 3, 4], Value::Null));
    assert_eq!(stream_page(&app, "limit=1000").await.1, Value::Null);
    // Past the end of an existing stream: empty, and nothing follows.
    assert_eq!(
        stream_page(&app, "from_version=5").await,
        (vec![], Value::Null)
    );

    for bad in ["limit=0", "limit=1001", "limit=ten", "limit=-1", "limit="] {
        let problem = get(&app, &format!("/api/v1/audit/streams/Project/p1?{bad}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert_eq!(problem["parameter"], "limit", "{bad}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_stream_page_stops_at_the_limit_even_for_a_long_stream(pool: PgPool) {
    let events: Vec<NewEvent> = (1..=250)
        .map(|sequence| event("Project", "p1", sequence, &archived(), "ada"))
        .collect();
    event_store::append::append(&pool, &events, None)
        .await
        .expect("appended");
    wait_visible(&pool, 250).await;
    let app = app(&pool).await;

    let (versions, next) = stream_page(&app, "").await;
    assert_eq!(versions, (1..=100).collect::<Vec<_>>());
    assert_eq!(next, json!(101));
    let (versions, next) = stream_page(&app, "from_version=201").await;
    assert_eq!(versions, (201..=250).collect::<Vec<_>>());
    assert_eq!(next, Value::Null);
}
