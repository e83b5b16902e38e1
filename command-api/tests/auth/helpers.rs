//! Driving the accounts' routes in-process, with the worker run on demand and mail read from
//! RabbitMQ.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use command_api::auth::settings::{AuthSettings, RateLimits, Secret};
use command_api::auth::{AuthState, worker};
use command_api::{AppState, Hooks, Settings};
use futures::StreamExt as _;
use lapin::options::BasicAckOptions;
use lapin::{Connection, Consumer};
use serde_json::{Value, json};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::broker;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use test_support::{Answer, Call};

/// A password no policy refuses.
pub const PASSWORD: &str = "correct horse battery staple";

/// Accounts' settings for tests: the test keys every router verifies with, default limits
/// unless a test changes them.
pub fn auth_settings() -> AuthSettings {
    AuthSettings {
        signing_keys: Secret::new(test_support::auth::keys_pem().to_owned()),
        secret_key: Secret::new(auth::secret::SecretKey::generate().to_base64()),
        issuer: "chronicle".to_owned(),
        public_url: "https://app.example".to_owned(),
        hash_concurrency: 4,
        hash_max_wait: Duration::from_secs(30),
        refresh_grace: Duration::from_secs(10),
        refresh_ttl: Duration::from_secs(14 * 24 * 3600),
        session_ttl: Duration::from_secs(30 * 24 * 3600),
        verify_ttl: Duration::from_secs(24 * 3600),
        reset_ttl: Duration::from_secs(1800),
        mfa_ttl: Duration::from_secs(300),
        totp_setup_ttl: Duration::from_secs(600),
        max_sessions: 50,
        rate_limits: RateLimits::default(),
        bootstrap_admin: None,
        worker_poll: Duration::from_millis(50),
        webauthn: Default::default(),
    }
}

/// The command API's settings for tests.
pub fn settings() -> Settings {
    Settings {
        addr: "127.0.0.1:0".parse().unwrap(),
        body_limit: 256 * 1024,
        idempotency_ttl: Duration::from_secs(24 * 3600),
        idempotency_lease: Duration::from_secs(30),
        max_retries: 50,
        request_timeout: Duration::from_secs(60),
        trust_forwarded_for: true,
        admission: service_kit::shed::AdmissionSettings::unbounded(),
        auth: test_support::auth::settings(),
        cors: service_kit::frontend::CorsSettings::default(),
    }
}

/// One command-API instance with accounts.
pub struct Instance {
    /// The router.
    pub app: Router,
    /// Its accounts' state (the worker and the hashing counter).
    pub auth: Arc<AuthState>,
}

/// An instance on `pool` with `auth_settings`.
pub fn instance(pool: &PgPool, auth_settings: AuthSettings) -> Instance {
    test_support::init_logging();
    let auth = AuthState::new(pool.clone(), auth_settings).unwrap();
    let app = command_api::router(
        AppState::new(pool.clone(), settings(), Hooks::default())
            .unwrap()
            .with_auth(Arc::clone(&auth)),
    );
    Instance { app, auth }
}

impl Instance {
    /// Serves every queued registration, resend and forgot.
    pub async fn drain(&self) {
        while worker::serve_one(&self.auth).await.unwrap() {}
    }

    /// POSTs `body` as JSON to `/api/v1/auth/<path>` from `ip`.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(path, body, &[]).await
    }

    /// POSTs `body` with extra headers.
    pub async fn call(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut call = Call::post(&format!("/api/v1/auth/{path}"))
            .header("x-forwarded-for", "203.0.113.7")
            .json(body);
        for (name, value) in headers {
            call = call.header(name, value);
        }
        call.send(&self.app).await
    }

    /// Refreshes with `cookie` (the refresh token).
    pub async fn refresh(&self, refresh: &str) -> Answer {
        let cookie = format!("__Host-chronicle-refresh={refresh}");
        self.call("refresh", &json!({}), &[("cookie", &cookie)])
            .await
    }

    /// Logs in and returns the answer, asserting 200.
    pub async fn login(&self, email: &str, password: &str) -> Session {
        let answer = self
            .post("login", &json!({ "email": email, "password": password }))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        Session::of(&answer)
    }
}

/// What a login or refresh handed out.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token.
    pub access: String,
    /// The refresh token from the cookie.
    pub refresh: String,
    /// The session id.
    pub id: Uuid,
}

impl Session {
    /// Reads the answer's body and cookie.
    pub fn of(answer: &Answer) -> Self {
        let body = answer.json();
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: refresh_cookie(answer).unwrap(),
            id: body["session_id"].as_str().unwrap().parse().unwrap(),
        }
    }
}

/// The refresh token an answer's `Set-Cookie` carries (empty when it clears the cookie).
pub fn refresh_cookie(answer: &Answer) -> Option<String> {
    let header = answer.header("set-cookie")?;
    let value = header.strip_prefix("__Host-chronicle-refresh=")?;
    Some(value.split(';').next().unwrap_or_default().to_owned())
}

/// A fresh address only this test uses.
pub fn address(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::now_v7().simple())
}

/// The mail relay, publishing this test database's outbox to `chronicle.mail`.
pub struct MailRelay {
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl MailRelay {
    /// Starts a relay on `pool`.
    pub fn start(pool: &PgPool) -> Self {
        let settings = projector::mail::MailSettings {
            enabled: true,
            poll_interval: Duration::from_millis(50),
            connection_name: format!("chronicle-mail-test-{}", Uuid::now_v7().simple()),
            ..projector::mail::MailSettings::disabled()
        };
        let shutdown = Shutdown::new();
        let task = tokio::spawn(projector::mail::run_mail_relay(
            pool.clone(),
            settings,
            Arc::new(tokio::sync::Notify::new()),
            shutdown.clone(),
        ));
        Self { shutdown, task }
    }

    /// Stops it.
    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A mailbox: a queue of our own bound to `chronicle.mail`, as an outside mail service has.
pub struct Mailbox {
    _connection: Connection,
    consumer: Consumer,
    seen: Vec<Value>,
}

impl Mailbox {
    /// Declares and binds a queue with a unique name; bind it before acting.
    pub async fn open() -> Self {
        let queue = format!("chronicle.test.mail.{}", Uuid::now_v7().simple());
        let (connection, consumer) =
            broker::subscribe("chronicle.mail", &queue, "mail.#", false).await;
        Self {
            _connection: connection,
            consumer,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for the next mail of `template` to `to` that was not taken yet.
    pub async fn take(&mut self, to: &str, template: &str) -> Value {
        let wanted = |mail: &Value| mail["to"] == to && mail["template"] == template;
        if let Some(index) = self.seen.iter().position(wanted) {
            return self.seen.remove(index);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let delivery = tokio::time::timeout_at(deadline, self.consumer.next())
                .await
                .unwrap_or_else(|_| panic!("no {template} mail to {to}"))
                .unwrap()
                .unwrap();
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            let mail: Value = serde_json::from_slice(&delivery.data).unwrap();
            assert_eq!(
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(ToString::to_string),
                mail["message_id"].as_str().map(str::to_owned)
            );
            assert_eq!(
                delivery.routing_key.as_str(),
                format!("mail.{}", mail["template"].as_str().unwrap())
            );
            if wanted(&mail) {
                return mail;
            }
            self.seen.push(mail);
        }
    }

    /// Every mail to `to` that arrived so far, after waiting (bounded) for `template`.
    pub fn to(&self, to: &str) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|m| m["to"] == to)
            .cloned()
            .collect()
    }
}

/// The token of a mail's link, checked against its `token` field.
pub fn token_of(mail: &Value) -> String {
    let token = mail["token"].as_str().unwrap().to_owned();
    let link = mail["link"].as_str().unwrap();
    assert!(link.ends_with(&format!("#token={token}")), "{link}");
    token
}

/// Registers `email`, serves the queue, verifies through the mailed link; returns the account
/// id.
pub async fn registered(instance: &Instance, mailbox: &mut Mailbox, email: &str) -> String {
    let answer = instance
        .post("register", &json!({ "email": email, "password": PASSWORD }))
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text());
    instance.drain().await;
    let mail = mailbox.take(email, "verify_email").await;
    let verified = instance
        .post("verify-email", &json!({ "token": token_of(&mail) }))
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    verified.json()["id"].as_str().unwrap().to_owned()
}

/// The event types of a stream, in order.
pub async fn stream(pool: &PgPool, aggregate_type: &str, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
          ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many events of `event_type` the store holds.
pub async fn count(pool: &PgPool, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The bootstrap admin's address in [`with_admin`] instances.
pub const ADMIN_EMAIL: &str = "admin@chronicle.test";

/// An instance whose bootstrap admin (`ADMIN_EMAIL` / `PASSWORD`) exists; returns it and the
/// admin's signed-in session.
pub async fn with_admin(pool: &PgPool) -> (Instance, Session) {
    let mut settings = auth_settings();
    settings.bootstrap_admin = Some(command_api::auth::settings::BootstrapAdmin {
        email: ADMIN_EMAIL.to_owned(),
        password: Secret::new(PASSWORD),
    });
    let api = instance(pool, settings);
    command_api::auth::ensure_bootstrap_admin(&api.auth)
        .await
        .unwrap();
    let admin = api.login(ADMIN_EMAIL, PASSWORD).await;
    (api, admin)
}

impl Instance {
    /// POSTs `body` to `path` (the whole path) with `token` as the bearer, from the test IP.
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: &Value) -> Answer {
        self.send_as(Call::post(path).json(body), token).await
    }

    /// Sends `call` with `token` as the bearer (none when `None`), from the test IP.
    pub async fn send_as(&self, call: Call, token: Option<&str>) -> Answer {
        let call = call.header("x-forwarded-for", "203.0.113.7");
        let call = match token {
            Some(token) => call.header("authorization", &format!("Bearer {token}")),
            None => call,
        };
        call.send(&self.app).await
    }
}

/// The `actor` of every event of a stream, in order.
pub async fn actors(pool: &PgPool, aggregate_type: &str, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT metadata->>'actor' FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}
