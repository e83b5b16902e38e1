//! Bearer tokens on the query API: the JWKS, refused tokens, roles, and each account seeing
//! only what it owns (another's resource is a 404, exactly like a missing one).

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use test_support::{Answer, Call, TestAccount};
use uuid::Uuid;

use crate::helpers::{ItemIds as _, at, bare_app, insert_project, project};

fn assert_unauthenticated(answer: &Answer, invalid_token: bool) {
    let body = answer.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "/problems/unauthenticated", "{body}");
    let expected = if invalid_token {
        r#"Bearer realm="chronicle", error="invalid_token""#
    } else {
        r#"Bearer realm="chronicle""#
    };
    assert_eq!(answer.header("www-authenticate"), Some(expected));
}

async fn insert_ticket(pool: &PgPool, submitter: Option<Uuid>, minutes: i64) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO support_tickets \
             (id, email, subject, message, status, created_at, updated_at, version, \
              submitter_id) \
         VALUES ($1, 'a@example.com', 'Subject', 'Message', 'open', $2, $2, 1, $3)",
    )
    .bind(id)
    .bind(at(minutes))
    .bind(submitter)
    .execute(pool)
    .await
    .expect("ticket inserted");
    id
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_jwks_is_public_and_names_the_signing_key(pool: PgPool) {
    let app = bare_app(&pool).await;
    let answer = Call::get("/api/v1/auth/jwks.json").send(&app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
    let body = answer.json();
    assert_eq!(
        body["keys"][0]["kid"],
        test_support::auth::keys().signing_kid()
    );
    assert_eq!(body["keys"][0]["alg"], "EdDSA");
    assert_eq!(body["keys"][0]["use"], "sig");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_bad_token_is_refused_on_public_routes_too(pool: PgPool) {
    let app = bare_app(&pool).await;
    let account = TestAccount::user();
    for (fault, token) in test_support::auth::bad_tokens(&account) {
        for path in [
            "/api/v1/community/posts",
            "/api/v1/projects",
            "/api/v1/status",
        ] {
            let answer = Call::get(path)
                .header("authorization", &format!("Bearer {token}"))
                .send(&app)
                .await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{fault} on {path}");
            assert_unauthenticated(&answer, true);
        }
    }
    let public = Call::get("/api/v1/community/posts").send(&app).await;
    assert_eq!(public.status, StatusCode::OK);
    // Without an account, the request's shape is not read: a bad id or parameter is still 401.
    let id = Uuid::now_v7();
    for path in [
        "/api/v1/projects".to_owned(),
        "/api/v1/support/tickets".to_owned(),
        format!("/api/v1/projects/{id}"),
        format!("/api/v1/support/tickets/{id}"),
        "/api/v1/projects/not-a-uuid".to_owned(),
        "/api/v1/support/tickets/not-a-uuid".to_owned(),
        "/api/v1/projects?page=0".to_owned(),
        "/api/v1/support/tickets?page=0".to_owned(),
    ] {
        assert_unauthenticated(&Call::get(&path).send(&app).await, false);
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn each_role_reaches_only_its_routes(pool: PgPool) {
    let app = bare_app(&pool).await;
    let (user, admin, auditor) = (
        TestAccount::user(),
        TestAccount::admin(),
        TestAccount::auditor(),
    );
    let summary = "/api/v1/analytics/summary?from=2026-01-01&to=2026-01-02";
    let audit = "/api/v1/audit/events";
    let projections = "/api/v1/projections";
    let cases: [(&str, &TestAccount, StatusCode); 9] = [
        (summary, &user, StatusCode::FORBIDDEN),
        (summary, &auditor, StatusCode::FORBIDDEN),
        (summary, &admin, StatusCode::OK),
        (audit, &user, StatusCode::FORBIDDEN),
        (audit, &admin, StatusCode::FORBIDDEN),
        (audit, &auditor, StatusCode::OK),
        (projections, &user, StatusCode::FORBIDDEN),
        (projections, &admin, StatusCode::OK),
        (projections, &auditor, StatusCode::OK),
    ];
    for (path, account, status) in cases {
        let answer = Call::get(path).as_account(account).send(&app).await;
        assert_eq!(
            answer.status,
            status,
            "{path} as {:?}: {}",
            account.roles,
            answer.text()
        );
        if status == StatusCode::FORBIDDEN {
            assert_eq!(answer.json()["type"], "/problems/forbidden");
        }
    }
    for path in [summary, audit, projections] {
        assert_unauthenticated(&Call::get(path).send(&app).await, false);
    }
    // A missing role answers before a malformed parameter.
    let bad = Call::get("/api/v1/analytics/summary?from=yesterday")
        .as_account(&user)
        .send(&app)
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_account_sees_its_own_projects_and_an_admin_sees_all(pool: PgPool) {
    let (ada, bob, admin) = (
        TestAccount::user(),
        TestAccount::auditor(),
        TestAccount::admin(),
    );
    let mut ada_project = project("Ada's");
    ada_project.owner_id = Some(ada.id);
    let mut bob_project = project("Bob's");
    bob_project.owner_id = Some(bob.id);
    bob_project.created_at = at(1);
    let ownerless = project("Old");
    for row in [&ada_project, &bob_project, &ownerless] {
        insert_project(&pool, row).await;
    }
    let app = bare_app(&pool).await;
    let list = |account: &TestAccount, query: &str| {
        Call::get(&format!("/api/v1/projects{query}")).as_account(account)
    };
    assert_eq!(
        list(&ada, "").send(&app).await.item_ids(),
        vec![ada_project.id]
    );
    // An auditor is no admin: its own only.
    assert_eq!(
        list(&bob, "").send(&app).await.item_ids(),
        vec![bob_project.id]
    );
    // A filter narrows further, and never widens.
    let narrowed = list(&ada, &format!("?owner_id={}", bob.id))
        .send(&app)
        .await;
    assert_eq!(narrowed.json()["total"], 0);
    let all = list(&admin, "?sort=created_at").send(&app).await;
    assert_eq!(all.json()["total"], 3);

    let hidden = Call::get(&format!("/api/v1/projects/{}", bob_project.id))
        .as_account(&ada)
        .send(&app)
        .await;
    let missing = Call::get(&format!("/api/v1/projects/{}", Uuid::now_v7()))
        .as_account(&ada)
        .send(&app)
        .await;
    let hidden_body = hidden.problem(StatusCode::NOT_FOUND);
    let missing_body = missing.problem(StatusCode::NOT_FOUND);
    assert_eq!(hidden_body["type"], missing_body["type"]);
    // Revalidating another's row is a 404 too, never a 304 that would confirm its version.
    let revalidated = Call::get(&format!("/api/v1/projects/{}", bob_project.id))
        .as_account(&ada)
        .header("if-none-match", "\"1\"")
        .send(&app)
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_FOUND);
    let own = Call::get(&format!("/api/v1/projects/{}", ada_project.id))
        .as_account(&ada)
        .send(&app)
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.json()["owner_id"], ada.id.to_string());
    let admin_reads = Call::get(&format!("/api/v1/projects/{}", bob_project.id))
        .as_account(&admin)
        .send(&app)
        .await;
    assert_eq!(admin_reads.status, StatusCode::OK);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn two_accounts_never_share_a_list_etag(pool: PgPool) {
    let (ada, bob) = (TestAccount::user(), TestAccount::user());
    let app = bare_app(&pool).await;
    let first = Call::get("/api/v1/projects")
        .as_account(&ada)
        .send(&app)
        .await;
    let etag = first.header("etag").expect("a list has an ETag").to_owned();
    let other = Call::get("/api/v1/projects")
        .as_account(&bob)
        .header("if-none-match", &etag)
        .send(&app)
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_ne!(other.header("etag"), Some(etag.as_str()));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_account_sees_the_tickets_it_submitted(pool: PgPool) {
    let (ada, bob, admin) = (
        TestAccount::user(),
        TestAccount::user(),
        TestAccount::admin(),
    );
    let ada_ticket = insert_ticket(&pool, Some(ada.id), 0).await;
    let bob_ticket = insert_ticket(&pool, Some(bob.id), 1).await;
    let anonymous_ticket = insert_ticket(&pool, None, 2).await;
    let app = bare_app(&pool).await;
    let ada_list = Call::get("/api/v1/support/tickets")
        .as_account(&ada)
        .send(&app)
        .await;
    assert_eq!(ada_list.item_ids(), vec![ada_ticket]);
    let items: &Value = &ada_list.json()["items"][0];
    assert_eq!(items["submitter_id"], ada.id.to_string());
    let admin_list = Call::get("/api/v1/support/tickets")
        .as_account(&admin)
        .send(&app)
        .await;
    assert_eq!(admin_list.json()["total"], 3);
    for hidden in [bob_ticket, anonymous_ticket] {
        let answer = Call::get(&format!("/api/v1/support/tickets/{hidden}"))
            .as_account(&ada)
            .send(&app)
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
    }
}

#[test]
fn the_document_names_bearer_auth_where_a_token_is_needed() {
    let document = serde_json::to_value(query_api::document()).expect("the document serializes");
    assert_eq!(
        document["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let security = |path: &str| document["paths"][path]["get"]["security"].clone();
    assert_eq!(
        security("/api/v1/projects"),
        serde_json::json!([{ "bearerAuth": [] }])
    );
    assert_eq!(
        security("/api/v1/auth/jwks.json"),
        serde_json::json!([{}, { "bearerAuth": [] }])
    );
    assert_eq!(
        security("/api/v1/community/posts"),
        serde_json::json!([{}, { "bearerAuth": [] }])
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_list_narrowed_to_the_caller_reads_the_owner_index(pool: PgPool) {
    // Many rows of other accounts, a few of the caller's: the narrowed page must come from the
    // owner index, not a scan of everyone's rows.
    sqlx::query(
        "INSERT INTO support_tickets \
             (id, email, subject, message, status, created_at, updated_at, version, submitter_id) \
         SELECT gen_random_uuid(), 'a@example.com', 's', 'm', 'open', \
                now() - n * interval '1 minute', now(), 1, gen_random_uuid() \
           FROM generate_series(1, 20000) AS n",
    )
    .execute(&pool)
    .await
    .expect("rows inserted");
    let caller = Uuid::now_v7();
    for minutes in 0..3 {
        insert_ticket(&pool, Some(caller), minutes).await;
    }
    sqlx::query("ANALYZE support_tickets")
        .execute(&pool)
        .await
        .expect("analyzed");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM support_tickets WHERE TRUE AND submitter_id = $1 \
          ORDER BY created_at DESC, id DESC LIMIT 20",
    )
    .bind(caller)
    .fetch_all(&pool)
    .await
    .expect("explained");
    let plan = plan.join("\n");
    assert!(plan.contains("support_tickets_submitter_idx"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}
