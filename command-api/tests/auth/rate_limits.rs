//! Rate limits live in PostgreSQL: two command-API instances on one database share them.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use command_api::auth::settings::Limit;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn failed_logins_are_limited_across_two_instances_before_any_hash(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let other_pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let mut settings = auth_settings();
    settings.rate_limits.login_address_ip = Limit::per(3, 900);
    let instances = [
        instance(&pool, settings.clone()),
        instance(&other_pool, settings),
    ];
    let email = address("limited");
    registered(&instances[0], &mut mailbox, &email).await;
    let wrong = json!({ "email": email, "password": "not the password at all" });
    for n in 0..3 {
        let answer = instances[n % 2].post("login", &wrong).await;
        answer.problem(StatusCode::UNAUTHORIZED);
    }
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let work_before = instances[1].auth.crypto.hash_work();
    // Even the right password is refused now, on either instance, without hashing.
    let right = json!({ "email": email, "password": PASSWORD });
    for api in &instances {
        let limited = api.post("login", &right).await;
        let problem = limited.problem(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(problem["type"], "/problems/rate-limited");
        let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        assert_eq!(problem["retry_after"], retry_after);
    }
    assert_eq!(instances[1].auth.crypto.hash_work(), work_before);
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events_after, events_before, "a 429 appends nothing");
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn registrations_per_address_are_limited_whether_or_not_it_exists(pool: PgPool) {
    let mut settings = auth_settings();
    settings.rate_limits.mail_address = Limit::per(2, 3600);
    let instances = [instance(&pool, settings.clone()), instance(&pool, settings)];
    let email = address("nobody");
    for n in 0..2 {
        let answer = instances[n % 2]
            .post("password/forgot", &json!({ "email": email }))
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    let limited = instances[0]
        .post("resend-verification", &json!({ "email": email }))
        .await;
    limited.problem(StatusCode::TOO_MANY_REQUESTS);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn csp_reports_are_limited_per_ip_across_two_instances(pool: PgPool) {
    let other_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let mut settings = auth_settings();
    settings.rate_limits.csp_reports = Limit::per(2, 60);
    let instances = [
        instance(&pool, settings.clone()),
        instance(&other_pool, settings),
    ];
    let report = r#"{"csp-report":{"document-uri":"https://app.example/a","effective-directive":"script-src"}}"#;
    let send = |n: usize, ip: &'static str| {
        test_support::Call::post("/api/v1/csp-reports")
            .header("x-forwarded-for", ip)
            .raw("application/csp-report", report)
            .send(&instances[n % 2].app)
    };
    for n in 0..2 {
        assert_eq!(send(n, "192.0.2.7").await.status, StatusCode::NO_CONTENT);
    }
    // The third from that address is refused on either instance; another address is not.
    let limited = send(2, "192.0.2.7").await;
    let problem = limited.problem(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem["type"], "/problems/rate-limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(problem["retry_after"], retry_after);
    assert_eq!(send(3, "192.0.2.8").await.status, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn anonymous_tickets_are_limited_per_ip_and_an_account_is_not(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let mut settings = auth_settings();
    settings.rate_limits.tickets_ip = Limit::per(2, 3600);
    let api = instance(&pool, settings);
    let email = address("customer");
    registered(&api, &mut mailbox, &email).await;
    let signed_in = api.login(&email, PASSWORD).await;
    let ticket = json!({ "email": "c@example.com", "subject": "Help", "message": "Please" });
    let open = |token: Option<String>, ip: &'static str| {
        let call = test_support::Call::post("/api/v1/support/tickets")
            .header("x-forwarded-for", ip)
            .json(&ticket);
        let call = match token {
            Some(token) => call.header("authorization", &format!("Bearer {token}")),
            None => call,
        };
        call.send(&api.app)
    };
    for _ in 0..2 {
        assert_eq!(open(None, "192.0.2.7").await.status, StatusCode::CREATED);
    }
    let limited = open(None, "192.0.2.7").await;
    assert_eq!(
        limited.problem(StatusCode::TOO_MANY_REQUESTS)["type"],
        "/problems/rate-limited"
    );
    assert!(limited.header("retry-after").is_some());
    assert_eq!(open(None, "192.0.2.8").await.status, StatusCode::CREATED);
    // An account from the same address is not an anonymous submitter.
    let answer = open(Some(signed_in.access.clone()), "192.0.2.7").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(
        count(&pool, "TicketOpened").await,
        4,
        "a 429 writes nothing"
    );
    relay.stop().await;
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn analytics_batches_are_limited_per_ip_unless_the_limit_is_zero(pool: PgPool) {
    async fn send(api: &Instance, ip: &str) -> Answer {
        test_support::Call::post("/api/v1/analytics/events")
            .header("x-forwarded-for", ip)
            .json(&json!({ "events": [{ "name": "signup" }] }))
            .send(&api.app)
            .await
    }
    let mut settings = auth_settings();
    settings.rate_limits.analytics_ip = Limit::per(2, 60);
    let limited = instance(&pool, settings.clone());
    for _ in 0..2 {
        let answer = send(&limited, "192.0.2.7").await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    }
    send(&limited, "192.0.2.7")
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(&limited, "192.0.2.8").await.status,
        StatusCode::ACCEPTED
    );

    settings.rate_limits.analytics_ip = Limit::per(0, 60);
    let unlimited = instance(&pool, settings);
    for _ in 0..3 {
        assert_eq!(
            send(&unlimited, "192.0.2.9").await.status,
            StatusCode::ACCEPTED
        );
    }
}
