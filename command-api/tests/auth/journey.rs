//! Register -> mail -> verify -> login -> refresh -> race -> reuse -> logout, end to end.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn register_verify_login_refresh_reuse_and_logout(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("ada");

    let unverified = {
        let answer = api
            .post("register", &json!({ "email": email, "password": PASSWORD }))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        assert_eq!(answer.json(), json!({ "status": "accepted" }));
        api.drain().await;
        api.post("login", &json!({ "email": email, "password": PASSWORD }))
            .await
    };
    unverified.problem(StatusCode::FORBIDDEN);
    assert_eq!(unverified.json()["type"], "/problems/email-not-verified");

    let mail = mailbox.take(&email, "verify_email").await;
    assert!(mail["expires_at"].is_string(), "{mail}");
    let verified = api
        .post("verify-email", &json!({ "token": token_of(&mail) }))
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    let account_id = verified.json()["id"].as_str().unwrap().to_owned();
    let again = api
        .post("verify-email", &json!({ "token": token_of(&mail) }))
        .await;
    assert_eq!(
        again.problem(StatusCode::BAD_REQUEST)["type"],
        "/problems/invalid-token"
    );
    assert_eq!(
        stream(&pool, "Account", &account_id).await,
        [
            "AccountRegistered",
            "VerificationRequested",
            "EmailVerified"
        ]
    );

    // Login: the answer, the cookie, no-store.
    let answer = api
        .post("login", &json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let cookie = answer.header("set-cookie").unwrap();
    for part in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["account_id"], account_id.as_str());
    assert_eq!(body["roles"], json!(["user"]));
    assert!(body["consistency_token"].is_string());
    let first = Session::of(&answer);
    assert!(first.refresh.starts_with("crt_"), "{}", first.refresh);
    let other = api.login(&email, PASSWORD).await;

    // Rotation: a new token each time; the predecessor right after is the two-tab race.
    let rotated = api.refresh(&first.refresh).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    let second = Session::of(&rotated);
    assert_eq!(second.id, first.id);
    assert_ne!(second.refresh, first.refresh);
    let raced = api.refresh(&first.refresh).await;
    let problem = raced.problem(StatusCode::CONFLICT);
    assert_eq!(problem["type"], "/problems/refresh-raced");
    assert_eq!(problem["code"], "refresh_raced");
    assert_eq!(
        raced.header("set-cookie"),
        None,
        "the race leaves the cookie alone"
    );

    // Once the current token is used, the old one is reuse: the session dies, others live.
    let third = Session::of(&api.refresh(&second.refresh).await);
    // Each token's lapse is recorded where it was issued, the same as the stored token's (to
    // the millisecond: sqlx truncates to microseconds where PostgreSQL's text input rounds).
    let lapses: Vec<(bool, bool)> = sqlx::query_as(
        "SELECT abs(extract(epoch FROM (e.payload -> e.event_type ->> 'refresh_expires_at') \
                    ::timestamptz - r.expires_at)) < 0.001, \
                r.expires_at <= now() + interval '14 days' \
           FROM events e JOIN auth_refresh_tokens r \
             ON r.session_id::text = e.aggregate_id AND r.generation = e.sequence \
          WHERE e.aggregate_id = $1 \
            AND e.event_type IN ('LoginSucceeded', 'SessionRefreshed') \
          ORDER BY e.sequence",
    )
    .bind(first.id.to_string())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(lapses, [(true, true); 3]);
    let reused = api.refresh(&first.refresh).await;
    assert_eq!(
        reused.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/invalid-refresh-token"
    );
    assert_eq!(refresh_cookie(&reused).as_deref(), Some(""));
    assert!(reused.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = api.refresh(&third.refresh).await;
    after.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        stream(&pool, "Session", &first.id.to_string()).await,
        [
            "LoginSucceeded",
            "SessionRefreshed",
            "SessionRefreshed",
            "RefreshReused",
            "SessionRevoked"
        ]
    );
    mailbox.take(&email, "session_reuse_detected").await;
    let survivor = api.refresh(&other.refresh).await;
    assert_eq!(survivor.status, StatusCode::OK, "{}", survivor.text());
    let survivor = Session::of(&survivor);

    // Logout with the bearer token: 204, cookie cleared, the session's refresh is dead.
    let bearer = format!("Bearer {}", survivor.access);
    let out = api
        .call("logout", &json!({}), &[("authorization", &bearer)])
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    assert!(out.header("x-consistency-token").is_some());
    assert_eq!(refresh_cookie(&out).as_deref(), Some(""));
    api.refresh(&survivor.refresh)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let twice = api
        .call("logout", &json!({}), &[("authorization", &bearer)])
        .await;
    twice.problem(StatusCode::UNAUTHORIZED);
    assert!(
        twice
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"chronicle\"")
    );
    // The revoking replica refuses the session's access token at once, on every route.
    let create = test_support::Call::post("/api/v1/projects")
        .header("authorization", &bearer)
        .json(&json!({ "name": "After logout" }))
        .send(&api.app)
        .await;
    assert_eq!(
        create.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/unauthenticated"
    );
    let events = stream(&pool, "Session", &other.id.to_string()).await;
    assert_eq!(events.last().map(String::as_str), Some("SessionRevoked"));
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn refresh_needs_json_and_a_cookie(pool: PgPool) {
    let api = instance(&pool, auth_settings());
    let no_cookie = api.post("refresh", &json!({})).await;
    assert_eq!(
        no_cookie.problem(StatusCode::UNAUTHORIZED)["type"],
        "/problems/invalid-refresh-token"
    );
    let form = test_support::Call::post("/api/v1/auth/refresh")
        .header("cookie", "__Host-chronicle-refresh=crt_x")
        .raw("application/x-www-form-urlencoded", "a=b")
        .send(&api.app)
        .await;
    form.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = api.refresh("crt_unknown").await;
    unknown.problem(StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_login_beyond_the_session_limit_revokes_the_least_recently_used(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let mut settings = auth_settings();
    settings.max_sessions = 2;
    let api = instance(&pool, settings);
    let email = address("limit");
    registered(&api, &mut mailbox, &email).await;
    let oldest = api.login(&email, PASSWORD).await;
    let newer = api.login(&email, PASSWORD).await;
    let newest = api.login(&email, PASSWORD).await;
    api.refresh(&oldest.refresh)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    for live in [newer, newest] {
        assert_eq!(api.refresh(&live.refresh).await.status, StatusCode::OK);
    }
    let payload: serde_json::Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'SessionRevoked'",
    )
    .bind(oldest.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(payload["SessionRevoked"]["reason"], "session_limit");
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_new_verification_link_kills_the_old_one(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("resend");
    let answer = api
        .post("register", &json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    api.drain().await;
    let first = mailbox.take(&email, "verify_email").await;
    let resent = api
        .post("resend-verification", &json!({ "email": email }))
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED);
    api.drain().await;
    let second = mailbox.take(&email, "verify_email").await;
    api.post("verify-email", &json!({ "token": token_of(&first) }))
        .await
        .problem(StatusCode::BAD_REQUEST);
    let verified = api
        .post("verify-email", &json!({ "token": token_of(&second) }))
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn logout_with_only_the_refresh_cookie_ends_its_session(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("cookie");
    registered(&api, &mut mailbox, &email).await;
    let session = api.login(&email, PASSWORD).await;
    let cookie = format!("__Host-chronicle-refresh={}", session.refresh);
    let out = api
        .call(
            "logout",
            &json!({}),
            &[
                ("cookie", &cookie),
                ("authorization", "Bearer expired.or.forged"),
            ],
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text());
    api.refresh(&session.refresh)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let neither = api.post("logout", &json!({})).await;
    neither.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        neither.header("www-authenticate"),
        Some("Bearer realm=\"chronicle\"")
    );
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn two_tabs_refreshing_at_once_get_one_rotation_and_one_race(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("tabs");
    registered(&api, &mut mailbox, &email).await;
    let session = api.login(&email, PASSWORD).await;
    let (one, two) = tokio::join!(api.refresh(&session.refresh), api.refresh(&session.refresh));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{one:?} {two:?}"
    );
    let winner = if one.status == StatusCode::OK {
        one
    } else {
        two
    };
    let next = Session::of(&winner);
    assert_eq!(api.refresh(&next.refresh).await.status, StatusCode::OK);
    relay.stop().await;
}
