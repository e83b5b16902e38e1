//! `GET /api/v1/community/posts` and `GET /api/v1/community/posts/{id}`: deleted posts vanish.

use axum::http::StatusCode;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{ItemIds as _, app, at, get, get_with};

/// Inserts a post row as the projector would, returning its id.
async fn insert_post(pool: &PgPool, author: &str, minutes: i64, deleted: bool) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO community_posts \
             (id, title, content, author, created_at, updated_at, deleted_at, version) \
         VALUES ($1, 'Title', 'Content', $2, $3, $4, CASE WHEN $5 THEN $4 END, 3)",
    )
    .bind(id)
    .bind(author)
    .bind(at(minutes))
    .bind(at(100 - minutes))
    .bind(deleted)
    .execute(pool)
    .await
    .expect("post inserted");
    id
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_post_is_served_with_its_version_as_etag(pool: PgPool) {
    let id = insert_post(&pool, "ada", 1, false).await;
    let app = app(&pool).await;
    let uri = format!("/api/v1/community/posts/{id}");
    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"3\"");
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "id": id, "title": "Title", "content": "Content", "author": "ada", "author_id": null,
            "created_at": "2026-01-01T12:01:00Z", "updated_at": "2026-01-01T13:39:00Z",
            "version": 3,
        })
    );
    let cached = get_with(&app, &uri, &[("if-none-match", "W/\"3\"")]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_deleted_post_is_404_even_when_revalidated_and_is_not_listed(pool: PgPool) {
    let live = insert_post(&pool, "ada", 1, false).await;
    let deleted = insert_post(&pool, "ada", 2, true).await;
    let app = app(&pool).await;
    let uri = format!("/api/v1/community/posts/{deleted}");
    get(&app, &uri).await.problem(StatusCode::NOT_FOUND);
    get_with(&app, &uri, &[("if-none-match", "*")])
        .await
        .problem(StatusCode::NOT_FOUND);
    let list = get(&app, "/api/v1/community/posts").await;
    assert_eq!(list.item_ids(), vec![live]);
    assert_eq!(list.json()["total"], 1);
    let past = get(&app, "/api/v1/community/posts?page=3").await;
    assert_eq!(
        past.json()["total"],
        1,
        "the total past the end skips deleted posts too"
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn posts_are_filtered_by_author_and_sorted(pool: PgPool) {
    let a = insert_post(&pool, "ada", 1, false).await;
    let b = insert_post(&pool, "bob", 2, false).await;
    let c = insert_post(&pool, "ada", 3, false).await;
    let app = app(&pool).await;
    assert_eq!(
        get(&app, "/api/v1/community/posts").await.item_ids(),
        vec![c, b, a]
    );
    assert_eq!(
        get(&app, "/api/v1/community/posts?author=ada&sort=created_at")
            .await
            .item_ids(),
        vec![a, c]
    );
    assert_eq!(
        get(&app, "/api/v1/community/posts?sort=-updated_at")
            .await
            .item_ids(),
        vec![a, b, c]
    );
    let none = get(&app, "/api/v1/community/posts?author=Ada").await;
    assert_eq!(none.json()["total"], 0, "author matches exactly");
    let link = get(&app, "/api/v1/community/posts?author=a%20b&page_size=1").await;
    assert!(
        link.header("link")
            .expect("link header")
            .contains("author=a%20b&"),
        "{}",
        link.header("link").expect("link header")
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_post_requests_are_answered_without_500(pool: PgPool) {
    let app = app(&pool).await;
    let long = "a".repeat(81);
    for (query, parameter) in [
        ("author=a%00", "author"),
        (&*format!("author={long}"), "author"),
        ("sort=title", "sort"),
        ("page=-1", "page"),
        ("author=", "author"),
        ("sort=", "sort"),
        ("page=", "page"),
    ] {
        let body = get(&app, &format!("/api/v1/community/posts?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert_eq!(body["parameter"], parameter, "{query}");
    }
    get(&app, "/api/v1/community/posts/%00")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    get(&app, &format!("/api/v1/community/posts/{}", Uuid::now_v7()))
        .await
        .problem(StatusCode::NOT_FOUND);
}
