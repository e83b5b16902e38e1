//! `GET /api/v1/projects` and `GET /api/v1/projects/{id}`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use events::LogPosition;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    ItemIds as _, ProjectRow, app, at, get, get_with, insert_project, project, send, set_checkpoint,
};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_project_is_served_with_its_version_as_etag(pool: PgPool) {
    let mut row = project("Apollo");
    row.description = "to the moon".to_owned();
    row.owner_id = Some(Uuid::now_v7());
    row.version = 7;
    row.updated_at = at(5);
    insert_project(&pool, &row).await;
    let app = app(&pool).await;

    let answer = get(&app, &format!("/api/v1/projects/{}", row.id)).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"7\"");
    assert_eq!(
        answer
            .header("cache-control")
            .expect("cache-control header"),
        "private, no-cache"
    );
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "id": row.id,
            "name": "Apollo",
            "description": "to the moon",
            "owner_id": row.owner_id,
            "archived": false,
            "created_at": "2026-01-01T12:00:00Z",
            "updated_at": "2026-01-01T12:05:00Z",
            "version": 7,
        })
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_matching_if_none_match_answers_304_until_the_version_changes(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let (app, state) = crate::helpers::app_and_state(&pool, query_api::Settings::default()).await;
    let uri = format!("/api/v1/projects/{}", row.id);

    for tag in ["\"1\"", "W/\"1\"", "\"0\", \"1\"", "*"] {
        let answer = get_with(&app, &uri, &[("if-none-match", tag)]).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_MODIFIED,
            "If-None-Match: {tag}"
        );
        assert_eq!(answer.header("etag").expect("etag header"), "\"1\"");
        assert_eq!(
            answer
                .header("cache-control")
                .expect("cache-control header"),
            "private, no-cache"
        );
        assert!(answer.body.is_empty());
    }

    sqlx::query("UPDATE projects SET name = 'Artemis', version = 2 WHERE id = $1")
        .bind(row.id)
        .execute(&pool)
        .await
        .expect("updated");
    // As the projector does after every batch: the version read above was learned, and only
    // the announcement of the move retires it (docs/decisions/0019).
    let at = events::LogPosition {
        tx_id: 1,
        position: 1,
    };
    crate::helpers::announce(
        &pool,
        &event_store::wake::CheckpointMoved {
            projection: "projects".to_owned(),
            checkpoint: at,
            generation: 0,
            changed: vec![(row.id.to_string(), 2)],
            complete: true,
        },
    )
    .await;
    crate::helpers::until_announced(&state, "projects", at).await;
    let answer = get_with(&app, &uri, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"2\"");
    assert_eq!(answer.json()["name"], "Artemis");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn head_answers_with_headers_and_no_body(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let app = app(&pool).await;

    let request = Request::head(format!("/api/v1/projects/{}", row.id))
        .body(Body::empty())
        .expect("valid request");
    let answer = send(&app, request).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"1\"");
    assert!(answer.body.is_empty());
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_unknown_id_is_404_and_a_malformed_one_is_422(pool: PgPool) {
    let app = app(&pool).await;

    let unknown = get(&app, &format!("/api/v1/projects/{}", Uuid::now_v7())).await;
    unknown.problem(StatusCode::NOT_FOUND);
    let unknown_revalidated = get_with(
        &app,
        &format!("/api/v1/projects/{}", Uuid::now_v7()),
        &[("if-none-match", "*")],
    )
    .await;
    unknown_revalidated.problem(StatusCode::NOT_FOUND);

    let malformed = get(&app, "/api/v1/projects/not-a-uuid").await;
    let body = malformed.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "id");
}

/// Five projects with distinct creation times, update times and names, in creation order.
async fn five_projects(pool: &PgPool) -> Vec<ProjectRow> {
    // created_at ascending: a..e; updated_at runs the other way; names shuffled.
    let names = ["delta", "alpha", "echo", "charlie", "bravo"];
    let mut rows = Vec::new();
    for (i, name) in (0_i64..).zip(names) {
        let mut row = project(name);
        row.created_at = at(i);
        row.updated_at = at(100 - i);
        insert_project(pool, &row).await;
        rows.push(row);
    }
    rows
}

fn ids(rows: &[&ProjectRow]) -> Vec<Uuid> {
    rows.iter().map(|row| row.id).collect()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_default_list_is_newest_first_with_totals(pool: PgPool) {
    let rows = five_projects(&pool).await;
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/projects").await;

    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["total"], 5);
    assert_eq!(body["page"], 1);
    assert_eq!(body["page_size"], 20);
    assert_eq!(body["pages"], 1);
    let newest_first: Vec<&ProjectRow> = rows.iter().rev().collect();
    assert_eq!(answer.item_ids(), ids(&newest_first));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_sort_order_is_honoured(pool: PgPool) {
    let rows = five_projects(&pool).await;
    let app = app(&pool).await;
    let by_created: Vec<&ProjectRow> = rows.iter().collect();
    let by_updated: Vec<&ProjectRow> = rows.iter().rev().collect();
    let mut by_name: Vec<&ProjectRow> = rows.iter().collect();
    by_name.sort_by(|a, b| a.name.cmp(&b.name));

    for (sort, ascending) in [
        ("created_at", &by_created),
        ("updated_at", &by_updated),
        ("name", &by_name),
    ] {
        let answer = get(&app, &format!("/api/v1/projects?sort={sort}")).await;
        assert_eq!(answer.item_ids(), ids(ascending), "sort={sort}");
        let descending: Vec<&ProjectRow> = ascending.iter().rev().copied().collect();
        let answer = get(&app, &format!("/api/v1/projects?sort=-{sort}")).await;
        assert_eq!(answer.item_ids(), ids(&descending), "sort=-{sort}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn equal_sort_keys_are_ordered_by_id_so_pages_are_stable(pool: PgPool) {
    let mut rows = Vec::new();
    for _ in 0..4 {
        let row = project("same");
        insert_project(&pool, &row).await;
        rows.push(row.id);
    }
    rows.sort();
    let app = app(&pool).await;

    let first = get(&app, "/api/v1/projects?sort=name&page_size=2").await;
    let second = get(&app, "/api/v1/projects?sort=name&page_size=2&page=2").await;

    assert_eq!([first.item_ids(), second.item_ids()].concat(), rows);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn filters_narrow_the_list_and_the_total(pool: PgPool) {
    let owner = Uuid::now_v7();
    let mut owned = project("Owned Thing");
    owned.owner_id = Some(owner);
    owned.created_at = at(1);
    let mut archived = project("Archived thing");
    archived.archived = true;
    archived.owner_id = Some(owner);
    archived.created_at = at(2);
    let mut other = project("Something else");
    other.owner_id = Some(Uuid::now_v7());
    other.created_at = at(3);
    for row in [&owned, &archived, &other] {
        insert_project(&pool, row).await;
    }
    let app = app(&pool).await;

    let cases: [(String, Vec<Uuid>); 6] = [
        (format!("owner_id={owner}"), vec![archived.id, owned.id]),
        ("archived=true".to_owned(), vec![archived.id]),
        ("archived=false".to_owned(), vec![other.id, owned.id]),
        ("q=THING".to_owned(), vec![other.id, archived.id, owned.id]),
        (
            "q=thing&archived=false".to_owned(),
            vec![other.id, owned.id],
        ),
        (
            format!("owner_id={owner}&archived=false&q=owned"),
            vec![owned.id],
        ),
    ];
    for (query, expected) in cases {
        let answer = get(&app, &format!("/api/v1/projects?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}");
        assert_eq!(answer.item_ids(), expected, "{query}");
        assert_eq!(answer.json()["total"], expected.len(), "{query}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn like_wildcards_in_q_match_only_themselves(pool: PgPool) {
    let percent = project("50% off");
    let underscore = project("snake_case");
    let backslash = project(r"back\slash");
    let decoys = [
        project("500 off"),
        project("snakeXcase"),
        project("backslash"),
    ];
    for row in [&percent, &underscore, &backslash]
        .into_iter()
        .chain(&decoys)
    {
        insert_project(&pool, row).await;
    }
    let app = app(&pool).await;

    for (q, expected) in [
        ("%25", percent.id),
        ("_", underscore.id),
        ("%5C", backslash.id),
    ] {
        let answer = get(&app, &format!("/api/v1/projects?q={q}")).await;
        assert_eq!(answer.item_ids(), vec![expected], "q={q}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_page_past_the_end_is_empty_with_the_true_totals(pool: PgPool) {
    five_projects(&pool).await;
    let app = app(&pool).await;

    let answer = get(&app, "/api/v1/projects?page=4&page_size=2").await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        serde_json::json!({"items": [], "total": 5, "page": 4, "page_size": 2, "pages": 3})
    );
    assert_eq!(
        answer.header("link").expect("link header"),
        "</api/v1/projects?sort=-created_at&page=1&page_size=2>; rel=\"first\", \
         </api/v1/projects?sort=-created_at&page=3&page_size=2>; rel=\"prev\", \
         </api/v1/projects?sort=-created_at&page=3&page_size=2>; rel=\"last\""
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_link_header_keeps_the_filters_and_names_every_neighbour(pool: PgPool) {
    for i in 0..5 {
        let mut row = project(&format!("big thing {i}"));
        row.created_at = at(i);
        insert_project(&pool, &row).await;
    }
    let app = app(&pool).await;

    let answer = get(
        &app,
        "/api/v1/projects?page=2&page_size=2&archived=false&q=big+thing&sort=name&utm=ignored",
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK);
    let url = |page: u32| {
        format!("/api/v1/projects?archived=false&q=big%20thing&sort=name&page={page}&page_size=2")
    };
    assert_eq!(
        answer.header("link").expect("link header"),
        format!(
            "<{}>; rel=\"first\", <{}>; rel=\"prev\", <{}>; rel=\"next\", <{}>; rel=\"last\"",
            url(1),
            url(1),
            url(3),
            url(3)
        )
    );

    let first = get(&app, "/api/v1/projects?page_size=2").await;
    assert_eq!(
        first.header("link").expect("link header"),
        "</api/v1/projects?sort=-created_at&page=1&page_size=2>; rel=\"first\", \
         </api/v1/projects?sort=-created_at&page=2&page_size=2>; rel=\"next\", \
         </api/v1/projects?sort=-created_at&page=3&page_size=2>; rel=\"last\""
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_query_parameters_are_400_naming_the_parameter(pool: PgPool) {
    let app = app(&pool).await;
    let long_q = "x".repeat(201);

    for (query, parameter) in [
        ("page=0", Some("page")),
        ("page=-3", Some("page")),
        ("page=abc", Some("page")),
        ("page_size=0", Some("page_size")),
        ("page_size=101", Some("page_size")),
        ("page_size=abc", Some("page_size")),
        ("sort=color", Some("sort")),
        ("sort=--name", Some("sort")),
        ("archived=maybe", Some("archived")),
        ("owner_id=not-a-uuid", Some("owner_id")),
        ("q=a%00b", Some("q")),
        (&format!("q={long_q}"), Some("q")),
        ("page=1&page=2", None),
        // Empty is no value of any parameter (the document gives each at least one
        // character): refused, not taken as absent.
        ("page=", Some("page")),
        ("page_size=", Some("page_size")),
        ("sort=", Some("sort")),
        ("archived=", Some("archived")),
        ("owner_id=", Some("owner_id")),
        ("q=", Some("q")),
    ] {
        let answer = get(&app, &format!("/api/v1/projects?{query}")).await;
        let body = answer.problem(StatusCode::BAD_REQUEST);
        assert_eq!(body["type"], "/problems/bad-request", "{query}");
        if let Some(parameter) = parameter {
            assert_eq!(body["parameter"], parameter, "{query}");
            let detail = body["detail"].as_str().expect("detail");
            assert!(detail.contains(parameter), "{query}: {detail}");
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_list_etag_answers_304_until_the_checkpoint_moves(pool: PgPool) {
    insert_project(&pool, &project("Apollo")).await;
    set_checkpoint(
        &pool,
        "projects",
        LogPosition {
            tx_id: 10,
            position: 1,
        },
    )
    .await;
    let app = app(&pool).await;

    let first = get(&app, "/api/v1/projects").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.header("cache-control").expect("cache-control header"),
        "private, no-cache"
    );
    let etag = first.header("etag").expect("etag header").to_owned();
    assert!(etag.starts_with("W/\"1-10-"), "{etag}");

    let revalidated = get_with(&app, "/api/v1/projects", &[("if-none-match", &etag)]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.header("etag").expect("etag header"), etag);
    assert!(revalidated.body.is_empty());

    // The same tag does not stand for another page, size or filter.
    for other in [
        "?page=2",
        "?page_size=5",
        "?archived=true",
        "?sort=name",
        "?q=apollo",
    ] {
        let answer = get_with(
            &app,
            &format!("/api/v1/projects{other}"),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{other}");
        assert_ne!(answer.header("etag").expect("etag header"), etag, "{other}");
    }

    // The projector applies another event: new row and new checkpoint in one transaction.
    let mut tx = pool.begin().await.expect("begin");
    insert_project(&mut *tx, &project("Artemis")).await;
    set_checkpoint(
        &mut *tx,
        "projects",
        LogPosition {
            tx_id: 11,
            position: 2,
        },
    )
    .await;
    tx.commit().await.expect("commit");

    let changed = get_with(&app, "/api/v1/projects", &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag").expect("etag header"), etag);
    assert_eq!(changed.json()["total"], 2);
}
