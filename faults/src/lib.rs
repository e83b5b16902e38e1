//! Chronicle's fault suite: helpers to run the real service binaries as child processes against
//! a database of their own, drive them over HTTP and break what they depend on.
//!
//! - [`Service`]: a `command-api`, `query-api` or `projector` process on a free loopback port,
//!   SIGKILLed when dropped (also when a test panics).
//! - [`TestDb`]: a fresh, migrated database on a given server, dropped at the end of a test.
//! - [`Http`]: a small HTTP/1 client with a deadline per request, acting as an admin and
//!   auditor account with a token signed by the key the services are started with.
//! - [`Instances`]: the second PostgreSQL cluster and RabbitMQ node `scripts/faults.sh` starts,
//!   which the tests that restart a database or a broker use (never the shared ones).
//! - [`eventually`]: bounded polling that names what it waited for when it gives up.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

/// The signing key (PKCS#8 PEM) and secret key (base64) every service this process starts
/// shares: the command API refuses to start without them, and replicas must agree on them.
static AUTH_KEYS: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    (
        auth::generate_signing_key_pem(),
        auth::secret::SecretKey::generate().to_base64(),
    )
});

/// The machine's shared PostgreSQL server (each test makes a database of its own on it).
pub const SHARED_PG: &str = "postgres://postgres@127.0.0.1:5432";
/// The PostgreSQL server for tests that do not restart it: `FAULTS_PG_URL` (the second cluster,
/// when `scripts/faults.sh` runs the suite) or else the shared one.
pub fn pg_server() -> String {
    std::env::var("FAULTS_PG_URL").unwrap_or_else(|_| SHARED_PG.to_owned())
}

/// The machine's shared RabbitMQ (each test uses exchange and queue names of its own).
pub const SHARED_RABBIT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Which service binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// `command-api`, listening on `COMMAND_API_ADDR`.
    CommandApi,
    /// `query-api`, listening on `QUERY_API_ADDR`.
    QueryApi,
    /// `projector`, health and metrics on `PROJECTOR_ADDR`.
    Projector,
}

impl Bin {
    /// The binary's file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CommandApi => "command-api",
            Self::QueryApi => "query-api",
            Self::Projector => "projector",
        }
    }

    fn addr_var(self) -> &'static str {
        match self {
            Self::CommandApi => "COMMAND_API_ADDR",
            Self::QueryApi => "QUERY_API_ADDR",
            Self::Projector => "PROJECTOR_ADDR",
        }
    }
}

/// The workspace's `target/<profile>` directory, found from the running test binary
/// (`target/<profile>/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The path of a service binary; panics with the command that builds it when missing.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the service binaries first (`cargo build --bins`, \
         scripts/faults.sh does)",
        path.display()
    );
    path
}

/// A free port on loopback in 60000-64999 (freed again at once; the service binds it next).
pub fn free_addr() -> SocketAddr {
    let seed = u64::from(std::process::id()) ^ u64::from(uuid::Uuid::new_v4().as_fields().0);
    for attempt in 0..5000 {
        let port = 60_000 + u16::try_from((seed + attempt * 7919) % 5000).unwrap_or(0);
        if let Ok(probe) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return probe.local_addr().expect("a bound address");
        }
    }
    panic!("no free loopback port in 60000-64999")
}

/// A running service binary; SIGKILLed and reaped when dropped, so no test leaves one behind.
pub struct Service {
    /// Which binary.
    pub bin: Bin,
    /// The child process.
    pub child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    database_url: String,
    env: Vec<(String, String)>,
}

impl Service {
    /// Starts `bin` on `database_url` with `env` on top of quiet defaults (`RUST_LOG=warn`,
    /// relay off, fast projector polling), on a free loopback port.
    pub fn start(bin: Bin, database_url: &str, env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Self::spawn(bin, database_url.to_owned(), env)
    }

    fn spawn(bin: Bin, database_url: String, env: Vec<(String, String)>) -> Self {
        let addr = free_addr();
        let dir = std::env::temp_dir().join("chronicle-faults");
        std::fs::create_dir_all(&dir).expect("a log directory");
        let log = dir.join(format!("{}-{}.log", bin.name(), addr.port()));
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a second handle on the log file");
        let mut command = Command::new(binary(bin.name()));
        command
            .env("DATABASE_URL", &database_url)
            .env(bin.addr_var(), addr.to_string())
            .env("RUST_LOG", "warn")
            .env("AUTH_SIGNING_KEYS", signing_key_pem())
            .env("AUTH_SECRET_KEY", &AUTH_KEYS.1)
            .env("RELAY_ENABLED", "false")
            .env("PROJECTOR_POLL_MS", "50")
            .env("PROJECTOR_LEADER_POLL_MS", "100")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (name, value) in &env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", bin.name()));
        Self {
            bin,
            child,
            addr,
            log,
            database_url,
            env,
        }
    }

    /// The same binary with the same settings again, on a new port (after [`Self::kill_9`]).
    pub fn restart(&self) -> Self {
        Self::spawn(self.bin, self.database_url.clone(), self.env.clone())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://addr` for URLs.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process with SIGKILL (no shutdown code runs) and reaps it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most 60 s) until `GET /readyz` answers 200; panics naming the log otherwise.
    pub async fn wait_ready(&mut self, http: &Http) {
        let url = format!("{}/readyz", self.base());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                self.is_running(),
                "{} exited before it was ready; log: {}",
                self.bin.name(),
                self.log.display()
            );
            if let Ok(answer) = http.send(Method::GET, &url, &[], None, SECOND).await
                && answer.status == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready (GET /readyz 200) within 60 s; log: {}",
                self.bin.name(),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's peak resident set size (`VmHWM`), in KiB.
    pub fn vm_hwm_kib(&self) -> Option<u64> {
        status_field(self.pid(), "VmHWM:")
    }

    /// The process's current resident set size (`VmRSS`), in KiB.
    pub fn vm_rss_kib(&self) -> Option<u64> {
        status_field(self.pid(), "VmRSS:")
    }

    /// The CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }

    /// The local ports of the process's TCP connections (to match `pg_stat_activity`'s
    /// `client_port` with this process's database sessions).
    pub fn tcp_local_ports(&self) -> Vec<u16> {
        tcp_local_ports(self.pid())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_9();
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`
/// (`utime` and `stime`, in clock ticks of 10 ms on Linux).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: count fields after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn tcp_local_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && inodes.iter().any(|inode| inode == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or_default();
                if let Ok(port) = u16::from_str_radix(port, 16) {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// One second, the deadline of a probe.
pub const SECOND: Duration = Duration::from_secs(1);

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, cut to 300 bytes, for messages.
    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The connection failed or broke.
    Transport(String),
    /// No whole answer within the request's deadline.
    Timeout,
}

/// The signing key every service of the suite is started with, made once per process: the
/// suite's tokens are signed with it.
fn signing_key_pem() -> &'static str {
    &AUTH_KEYS.0
}

/// `Bearer <token>` of the suite's account (admin and auditor, so every route answers), fresh
/// for each request so a long test never outlives its token.
fn bearer() -> Result<String, HttpError> {
    static ACCOUNT: std::sync::OnceLock<(uuid::Uuid, uuid::Uuid)> = std::sync::OnceLock::new();
    let (account, session) = *ACCOUNT.get_or_init(|| (uuid::Uuid::now_v7(), uuid::Uuid::now_v7()));
    let keys = auth::SigningKeys::from_pem(signing_key_pem(), auth::TokenSettings::default())
        .map_err(|error| HttpError::Transport(format!("signing key: {error}")))?;
    let now = chrono::Utc::now();
    let issued = keys
        .issue(
            account,
            session,
            &[auth::Role::Admin, auth::Role::Auditor],
            &["pwd"],
            now,
            now,
        )
        .map_err(|error| HttpError::Transport(format!("signing a token: {error}")))?;
    Ok(format!("Bearer {}", issued.token))
}

/// A cloneable HTTP/1 client with keep-alive connections.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client that keeps idle connections for reuse.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client }
    }

    /// Sends one request with a JSON body (if any) and reads the whole answer within
    /// `deadline`; without an `Authorization` header of its own it carries a fresh token of
    /// the suite's admin and auditor account.
    ///
    /// # Errors
    ///
    /// [`HttpError::Transport`] when it cannot be sent or read, [`HttpError::Timeout`] after
    /// `deadline`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<serde_json::Value>,
        deadline: Duration,
    ) -> Result<Answer, HttpError> {
        let mut builder = Request::builder().method(method).uri(url);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            builder = builder.header(http::header::AUTHORIZATION, bearer()?);
        }
        for (name, value) in headers {
            let name = HeaderName::try_from(*name)
                .map_err(|error| HttpError::Transport(format!("header {name}: {error}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|error| HttpError::Transport(format!("header {name}: {error}")))?;
            builder = builder.header(name, value);
        }
        let body = body.map_or_else(Bytes::new, |json| Bytes::from(json.to_string()));
        let request = builder
            .body(Full::new(body))
            .map_err(|error| HttpError::Transport(error.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| HttpError::Transport(format!("{error:?}")))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| HttpError::Transport(error.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

/// One request of a load: when it was sent (from the load's start), how long it took, and
/// what came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Sent this long after the load started.
    pub sent_at: Duration,
    /// Time to the whole answer (or to the error).
    pub latency: Duration,
    /// The status, or why there was none.
    pub status: Result<u16, HttpError>,
    /// Whether the answer said when to retry, consistently: a `Retry-After` header of whole
    /// seconds, and for a problem+json body the same number as its `retry_after` member.
    pub retry_after: bool,
}

/// Whether `answer` carries `Retry-After` in whole seconds, equal to its problem body's
/// `retry_after` when the body is problem+json.
pub fn says_when_to_retry(answer: &Answer) -> bool {
    let Some(header) = answer
        .header("retry-after")
        .and_then(|value| value.parse::<u64>().ok())
    else {
        return false;
    };
    let is_problem = answer
        .header("content-type")
        .is_some_and(|kind| kind.starts_with("application/problem+json"));
    !is_problem || answer.json()["retry_after"].as_u64() == Some(header)
}

impl Outcome {
    /// Measures one request.
    pub async fn of(
        started: Instant,
        request: impl Future<Output = Result<Answer, HttpError>>,
    ) -> (Self, Option<Answer>) {
        let sent = Instant::now();
        let result = request.await;
        let latency = sent.elapsed();
        let (status, retry_after, answer) = match result {
            Ok(answer) => (
                Ok(answer.status.as_u16()),
                says_when_to_retry(&answer),
                Some(answer),
            ),
            Err(error) => (Err(error), false, None),
        };
        (
            Self {
                sent_at: sent.duration_since(started),
                latency,
                status,
                retry_after,
            },
            answer,
        )
    }

    /// Whether the answer is 2xx.
    pub fn is_success(&self) -> bool {
        matches!(self.status, Ok(200..=299))
    }
}

/// Counts of statuses in a set of outcomes, `"201: 40, 503: 3, timeout: 1"`.
pub fn status_histogram(outcomes: &[Outcome]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for outcome in outcomes {
        let key = match &outcome.status {
            Ok(status) => status.to_string(),
            Err(HttpError::Timeout) => "timeout".to_owned(),
            Err(HttpError::Transport(_)) => "transport error".to_owned(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `q`-quantile (0..=1) of `values`, zero when empty.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short vector"
    )]
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Polls `check` every 20 ms until it holds; panics naming `what` after `deadline`. Returns
/// how long it took.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many statuses of each kind, for a set of plain statuses.
pub fn histogram_of(statuses: &[Result<u16, HttpError>]) -> String {
    let outcomes: Vec<Outcome> = statuses
        .iter()
        .map(|status| Outcome {
            sent_at: Duration::ZERO,
            latency: Duration::ZERO,
            status: status.clone(),
            retry_after: false,
        })
        .collect();
    status_histogram(&outcomes)
}

/// A fresh database of its own on a server, migrated; [`TestDb::drop_database`] at the end, or,
/// when a test panics before, dropped with `psql` by the `Drop` guard.
pub struct TestDb {
    /// The server, `postgres://user@host:port`.
    pub server: String,
    /// The database name.
    pub name: String,
    /// The URL the services get as `DATABASE_URL`.
    pub url: String,
    /// A small pool for the test's own checks.
    pub pool: PgPool,
    dropped: bool,
}

impl TestDb {
    /// Creates and migrates `faults_<random>` on `server` (`postgres://user@host:port`).
    pub async fn create(server: &str) -> Self {
        let name = format!("faults_{}", uuid::Uuid::new_v4().simple())[..20].to_owned();
        let admin: PgConnectOptions = format!("{server}/postgres").parse().expect("a server URL");
        // A busy shared server may refuse clients for a moment ("too many clients").
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut connection = loop {
            match admin.connect().await {
                Ok(connection) => break connection,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("waiting for {server} to accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => panic!("connecting to {server} for 30 s: {error}"),
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("creating the test database");
        connection.close().await.ok();
        let url = format!("{server}/{name}");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await
            .expect("connecting to the test database");
        event_store::MIGRATOR
            .run(&pool)
            .await
            .expect("migrating the test database");
        Self {
            server: server.to_owned(),
            name,
            url,
            pool,
            dropped: false,
        }
    }

    /// Closes the test's pool and drops the database (forcing out any session left).
    pub async fn drop_database(mut self) {
        self.dropped = true;
        self.pool.close().await;
        let admin: PgConnectOptions = format!("{}/postgres", self.server)
            .parse()
            .expect("a server URL");
        if let Ok(mut connection) = admin.connect().await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut connection)
            .await;
        }
    }

    /// How many events the log holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("counting events")
    }

    /// A projection's `events_applied` and `state`, if its checkpoint exists.
    pub async fn checkpoint(&self, name: &str) -> Option<(i64, String)> {
        sqlx::query_as("SELECT events_applied, state FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .expect("reading a checkpoint")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            let _ = Command::new("psql")
                .arg(format!("{}/postgres", self.server))
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The second PostgreSQL cluster and RabbitMQ node that `scripts/faults.sh` starts and
/// describes in environment variables; the tests that restart a database or a broker use these.
#[derive(Debug, Clone)]
pub struct Instances {
    /// `FAULTS_PG_URL`: `postgres://postgres@127.0.0.1:5433`.
    pub pg_url: String,
    /// `FAULTS_PG_STOP`: a shell command that stops that cluster.
    pub pg_stop: String,
    /// `FAULTS_PG_START`: starts it again.
    pub pg_start: String,
    /// `FAULTS_RABBIT_URL`: `amqp://guest:guest@127.0.0.1:5673/%2f`.
    pub rabbit_url: String,
    /// `FAULTS_RABBIT_STOP`: stops the RabbitMQ node (the whole Erlang VM).
    pub rabbit_stop: String,
    /// `FAULTS_RABBIT_START`: starts it again and waits for its AMQP port.
    pub rabbit_start: String,
}

impl Instances {
    /// Reads the environment `scripts/faults.sh` sets; panics saying to run it otherwise.
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is unset: run this test through scripts/faults.sh")
            })
        };
        Self {
            pg_url: var("FAULTS_PG_URL"),
            pg_stop: var("FAULTS_PG_STOP"),
            pg_start: var("FAULTS_PG_START"),
            rabbit_url: var("FAULTS_RABBIT_URL"),
            rabbit_stop: var("FAULTS_RABBIT_STOP"),
            rabbit_start: var("FAULTS_RABBIT_START"),
        }
    }
}

/// Runs a shell command when dropped unless disarmed: a test that stops PostgreSQL or the broker
/// holds one with the start command, so a panic in the outage still brings the instance back.
pub struct RestoreOnDrop {
    command: Option<String>,
}

impl RestoreOnDrop {
    /// Arms the guard with `command`.
    pub fn new(command: &str) -> Self {
        Self {
            command: Some(command.to_owned()),
        }
    }

    /// The instance is back: nothing to do on drop.
    pub fn disarm(&mut self) {
        self.command = None;
    }
}

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        if let Some(command) = self.command.take() {
            eprintln!("restoring after a failure: {command}");
            let _ = Command::new("bash")
                .arg("-c")
                .arg(&command)
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// Runs a shell command to completion (off the async threads); panics if it fails. Returns
/// how long it took.
pub async fn sh(command: &str) -> Duration {
    let started = Instant::now();
    let owned = command.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&owned)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("the shell task runs")
    .unwrap_or_else(|error| panic!("running {command}: {error}"));
    assert!(
        output.status.success(),
        "{command} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// `POST /api/v1/projects` with a client-generated id and an idempotency key.
pub async fn create_project(
    http: &Http,
    command_api: &str,
    id: uuid::Uuid,
    key: &str,
    deadline: Duration,
) -> Result<Answer, HttpError> {
    http.send(
        Method::POST,
        &format!("{command_api}/api/v1/projects"),
        &[("idempotency-key", key)],
        Some(serde_json::json!({"id": id, "name": format!("project {id}")})),
        deadline,
    )
    .await
}
