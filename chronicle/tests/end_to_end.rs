//! The whole path for every resource, in one process against the real PostgreSQL: a command
//! through the command API, the running projector (woken by the append notification), and a
//! read-your-writes query through the query API with the command's consistency token.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::Call;

struct System {
    commands: Router,
    queries: Router,
    shutdown: Shutdown,
    projector: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl System {
    async fn start(pool: &PgPool) -> Self {
        let settings = command_api::Settings {
            addr: "127.0.0.1:0".parse().unwrap(),
            body_limit: 256 * 1024,
            idempotency_ttl: Duration::from_secs(3600),
            idempotency_lease: Duration::from_secs(30),
            max_retries: 5,
            request_timeout: Duration::from_secs(30),
            trust_forwarded_for: false,
            admission: service_kit::shed::AdmissionSettings::unbounded(),
            auth: test_support::auth::settings(),
            cors: service_kit::frontend::CorsSettings::default(),
        };
        let commands = command_api::router(
            command_api::AppState::new(pool.clone(), settings, command_api::Hooks::default())
                .expect("test keys load"),
        );
        let commands = test_support::acting_as(commands, test_support::auth::tester());
        let query_settings = query_api::Settings {
            // Generous: other tests' open transactions hold the cluster-wide horizon back.
            consistency_wait: Duration::from_secs(20),
            auth: test_support::auth::settings(),
            ..query_api::Settings::default()
        };
        let queries = query_api::router(
            query_api::app_state(pool.clone(), query_settings)
                .await
                .expect("test keys load"),
        );
        let queries = test_support::acting_as(queries, test_support::auth::tester());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let shutdown = Shutdown::new();
        let projector = tokio::spawn(projector::run(
            projector::Settings::local(port),
            pool.clone(),
            shutdown.clone(),
        ));
        Self {
            commands,
            queries,
            shutdown,
            projector,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(20), self.projector)
            .await
            .expect("the projector stops")
            .unwrap()
            .unwrap();
    }
}

/// Sends `method path` (with a JSON body and a consistency token when given) under the
/// request id every event of this test records, and returns the status and the JSON body.
async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut call = Call::new(method.parse().unwrap(), path)
        .header("x-request-id", "e2e-request")
        .header_opt("x-consistency-token", token);
    if let Some(body) = body {
        call = call.json(&body);
    }
    let answer = call.send(app).await;
    (answer.status, answer.value())
}

fn token(answer: &Value) -> String {
    answer["consistency_token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_resource_goes_from_command_to_a_consistent_read(pool: PgPool) {
    test_support::init_logging();
    let system = System::start(&pool).await;
    let (c, q) = (&system.commands, &system.queries);

    // Projects.
    let (status, created) = call(
        c,
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "Apollo"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, read) = call(
        q,
        "GET",
        &format!("/api/v1/projects/{id}"),
        None,
        Some(&token(&created)),
    )
    .await;
    assert_eq!(
        (status, read["name"].as_str()),
        (StatusCode::OK, Some("Apollo"))
    );

    // Support tickets: open, then move along the lifecycle.
    let ticket = json!({"email": "ada@example.com", "subject": "Broken", "message": "It broke."});
    let (status, opened) = call(c, "POST", "/api/v1/support/tickets", Some(ticket), None).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let ticket_id = opened["id"].as_str().unwrap();
    let (status, moved) = call(
        c,
        "POST",
        &format!("/api/v1/support/tickets/{ticket_id}/status"),
        Some(json!({"status": "in_progress"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let (_, read) = call(
        q,
        "GET",
        &format!("/api/v1/support/tickets/{ticket_id}"),
        None,
        Some(&token(&moved)),
    )
    .await;
    assert_eq!(
        (read["status"].as_str(), read["version"].as_i64()),
        (Some("in_progress"), Some(2))
    );

    // Community posts: a deleted post vanishes from reads.
    let post = json!({"title": "Hello", "content": "First post", "author": "ada"});
    let (status, published) = call(c, "POST", "/api/v1/community/posts", Some(post), None).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let post_id = published["id"].as_str().unwrap();
    let (_, read) = call(
        q,
        "GET",
        &format!("/api/v1/community/posts/{post_id}"),
        None,
        Some(&token(&published)),
    )
    .await;
    assert_eq!(read["title"], "Hello");
    let (status, deleted) = call(
        c,
        "DELETE",
        &format!("/api/v1/community/posts/{post_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    let (status, _) = call(
        q,
        "GET",
        &format!("/api/v1/community/posts/{post_id}"),
        None,
        Some(&token(&deleted)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Service status: the latest report per service and the overall worst.
    let (status, reported) = call(
        c,
        "POST",
        "/api/v1/status/services/api-gateway/reports",
        Some(json!({"status": "partial_outage", "description": "errors"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reported}");
    let (_, page) = call(q, "GET", "/api/v1/status", None, Some(&token(&reported))).await;
    assert_eq!(page["overall"], "partial_outage");
    assert_eq!(page["services"][0]["service_id"], "api-gateway");

    // Analytics: a batch, then the daily summary.
    let batch = json!({"events": [
        {"name": "page.view", "session_id": "s1"},
        {"name": "page.view", "session_id": "s2"},
        {"name": "page.view", "session_id": "s1"},
    ]});
    let (status, accepted) = call(c, "POST", "/api/v1/analytics/events", Some(batch), None).await;
    assert_eq!(
        (status, accepted["accepted"].as_i64()),
        (StatusCode::ACCEPTED, Some(3))
    );
    let (_, summary) = call(
        q,
        "GET",
        "/api/v1/analytics/summary?name=page.view",
        None,
        Some(&token(&accepted)),
    )
    .await;
    assert_eq!(summary["items"][0]["count"], 3, "{summary}");
    assert_eq!(summary["items"][0]["unique_sessions"], 2, "{summary}");

    // Auditors see every event, with the request's metadata, in commit order.
    let (status, audit) = call(q, "GET", "/api/v1/audit/events?limit=1000", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let items = audit["items"].as_array().unwrap();
    let types: Vec<&str> = items
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 7, "{types:?}");
    assert_eq!(types[0], "ProjectCreated");
    assert!(
        items
            .iter()
            .all(|e| e["metadata"]["request_id"] == "e2e-request")
    );
    let positions: Vec<i64> = items
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    system.stop().await;

    // Every live read model equals a rebuild from the log (rows and checkpoint alike).
    for projection in projector::projections() {
        let differences = projector::rebuild::verify(&pool, &pool, projection.as_ref(), 100)
            .await
            .unwrap();
        assert!(
            differences.is_empty(),
            "{}: {differences:?}",
            projection.name()
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn both_apis_serve_the_committed_openapi_document(pool: PgPool) {
    let system = System::start(&pool).await;
    for app in [&system.commands, &system.queries] {
        let answer = Call::get(service_kit::openapi::DOCUMENT_PATH)
            .send(app)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.text(), service_kit::openapi::PUBLISHED);
    }
    system.stop().await;
}

// FRONTEND.md: a 412's `current` is the resource as the query API would serve it, so an
// offline client can show "yours / theirs" without another request.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_412_carries_the_project_or_post_exactly_as_the_query_api_serves_it(pool: PgPool) {
    let system = System::start(&pool).await;
    let (c, q) = (&system.commands, &system.queries);
    let (status, created) = call(
        c,
        "POST",
        "/api/v1/projects",
        Some(json!({"name": "Apollo", "description": "to the moon"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/v1/projects/{}", created["id"].as_str().unwrap());
    let theirs = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Artemis"}))
        .send(c)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let archived = Call::post(&format!("{path}/archive"))
        .header("if-match", "\"2\"")
        .send(c)
        .await;
    assert_eq!(archived.status, StatusCode::OK);

    // Mine, based on the version seen before both changes.
    let mine = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({"description": "mine"}))
        .send(c)
        .await;
    let problem = mine.problem(StatusCode::PRECONDITION_FAILED);
    assert_eq!(problem["current_version"], 3);
    assert_eq!(mine.header("cache-control"), Some("no-store"));

    let (status, served) = call(q, "GET", &path, None, Some(&token(&archived.value()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(problem["current"], served);
    assert_eq!(served["name"], "Artemis");
    assert_eq!(served["archived"], true);

    // A community post, the other resource with a public item.
    let (status, published) = call(
        c,
        "POST",
        "/api/v1/community/posts",
        Some(json!({"title": "Hello", "content": "First post", "author": "ada"})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let path = format!(
        "/api/v1/community/posts/{}",
        published["id"].as_str().unwrap()
    );
    let theirs = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Hello again"}))
        .send(c)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let mine = Call::patch(&path)
        .header("if-match", "\"1\"")
        .json(&json!({"content": "mine"}))
        .send(c)
        .await;
    let problem = mine.problem(StatusCode::PRECONDITION_FAILED);
    let (status, served) = call(q, "GET", &path, None, Some(&token(&theirs.value()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(problem["current"], served);
    assert_eq!(served["title"], "Hello again");
    system.stop().await;
}
