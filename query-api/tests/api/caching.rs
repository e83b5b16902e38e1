//! `Cache-Control` and `Vary` (FRONTEND.md "Backoff and caching"): public reads are shared-
//! cacheable only when asked anonymously and without a consistency token; everything else that
//! is read is `private, no-cache`; no problem answer is ever stored.

use std::time::Duration;

use axum::http::StatusCode;
use events::{ConsistencyToken, LogPosition};
use sqlx::PgPool;

use crate::helpers::{
    Answer, app, app_with, bare_app, get, get_with, insert_project, project, set_checkpoint,
    waiting,
};

const PUBLIC: &str = "public, max-age=5, stale-while-revalidate=30";
const PRIVATE: &str = "private, no-cache";
const VARY: &str = "Authorization, X-Consistency-Token";

async fn post(pool: &PgPool) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO community_posts (id, title, content, author, created_at, updated_at, version) \
         VALUES ($1, 't', 'c', 'ada', now(), now(), 1)",
    )
    .bind(id)
    .execute(pool)
    .await
    .expect("post inserted");
    id
}

fn token() -> String {
    ConsistencyToken::at(LogPosition::START).encode()
}

fn assert_caching(answer: &Answer, expected: &str, what: &str) {
    assert_eq!(
        answer
            .header("cache-control")
            .expect("cache-control header"),
        expected,
        "{what}"
    );
    assert_eq!(answer.header("vary").expect("vary header"), VARY, "{what}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn public_reads_are_shared_cacheable_only_when_asked_anonymously(pool: PgPool) {
    let id = post(&pool).await;
    // As a client sends them: anonymous unless a call names its token.
    let app = bare_app(&pool).await;
    let token = token();
    let bearer = test_support::TestAccount::user().bearer();
    let item = format!("/api/v1/community/posts/{id}");
    for uri in [
        "/api/v1/status",
        "/api/v1/status/services/api/history",
        "/api/v1/community/posts",
        item.as_str(),
    ] {
        let anonymous = get(&app, uri).await;
        assert_eq!(anonymous.status, StatusCode::OK, "{uri}");
        assert_caching(&anonymous, PUBLIC, uri);
        let revalidated = get_with(
            &app,
            uri,
            &[(
                "if-none-match",
                anonymous.header("etag").expect("etag header"),
            )],
        )
        .await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert_caching(&revalidated, PUBLIC, uri);

        for header in [
            ("authorization", bearer.as_str()),
            ("x-consistency-token", token.as_str()),
        ] {
            let personal = get_with(&app, uri, &[header]).await;
            assert_eq!(personal.status, StatusCode::OK, "{uri} {header:?}");
            assert_caching(&personal, PRIVATE, uri);
            let revalidated = get_with(
                &app,
                uri,
                &[
                    header,
                    (
                        "if-none-match",
                        personal.header("etag").expect("etag header"),
                    ),
                ],
            )
            .await;
            assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{uri}");
            assert_caching(&revalidated, PRIVATE, uri);
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn private_reads_are_private_no_cache_with_an_etag(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let app = app(&pool).await;
    let item = format!("/api/v1/projects/{}", row.id);
    for uri in [
        "/api/v1/projects",
        item.as_str(),
        "/api/v1/support/tickets",
        "/api/v1/analytics/summary",
    ] {
        let answer = get(&app, uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert_caching(&answer, PRIVATE, uri);
        assert!(
            !answer.header("etag").expect("etag header").is_empty(),
            "{uri}"
        );
        let revalidated = get_with(
            &app,
            uri,
            &[("if-none-match", answer.header("etag").expect("etag header"))],
        )
        .await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert_caching(&revalidated, PRIVATE, uri);
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn no_problem_answer_is_ever_stored(pool: PgPool) {
    set_checkpoint(&pool, "projects", LogPosition::START).await;
    let app = app_with(&pool, waiting(Duration::from_millis(50))).await;
    let far = ConsistencyToken::at(LogPosition {
        tx_id: i64::MAX / 2,
        position: i64::MAX / 2,
    })
    .encode();
    let answers = [
        ("400", get(&app, "/api/v1/projects?page=0").await),
        (
            "404",
            get(&app, &format!("/api/v1/projects/{}", uuid::Uuid::now_v7())).await,
        ),
        ("404 route", get(&app, "/api/v1/nowhere").await),
        ("422", get(&app, "/api/v1/projects/not-a-uuid").await),
        (
            "400 token",
            get_with(&app, "/api/v1/status", &[("x-consistency-token", "junk")]).await,
        ),
        (
            "503",
            get_with(&app, "/api/v1/projects", &[("x-consistency-token", &far)]).await,
        ),
    ];
    for (what, answer) in answers {
        assert_eq!(
            answer.header("content-type").expect("content-type header"),
            "application/problem+json",
            "{what}"
        );
        assert_eq!(
            answer
                .header("cache-control")
                .expect("cache-control header"),
            "no-store",
            "{what}"
        );
    }
}

// CORS (FRONTEND.md): reads of an allowed origin may be read by its pages, with credentials;
// any other origin gets no CORS headers; every answer varies by `Origin` as well.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn reads_are_readable_cross_origin_by_allowed_origins_only(pool: PgPool) {
    let settings = query_api::Settings {
        cors: service_kit::frontend::CorsSettings::parse("http://localhost:5173")
            .expect("an origin"),
        ..query_api::Settings::default()
    };
    let app = app_with(&pool, settings).await;
    let allowed = get_with(
        &app,
        "/api/v1/projects",
        &[("origin", "http://localhost:5173")],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    let exposed = allowed
        .header("access-control-expose-headers")
        .expect("exposed headers")
        .to_lowercase();
    assert!(
        exposed.contains("etag") && exposed.contains("link"),
        "{exposed}"
    );
    // The read's own `Vary` comes first; CORS adds `Origin` beside it.
    assert_caching(&allowed, PRIVATE, "allowed");
    let vary: Vec<&str> = allowed
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    assert!(
        vary.iter()
            .any(|value| value.to_lowercase().contains("origin")),
        "{vary:?}"
    );

    let refused = get_with(
        &app,
        "/api/v1/projects",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert_eq!(refused.header("access-control-allow-credentials"), None);
}
