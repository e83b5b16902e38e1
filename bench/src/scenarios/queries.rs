//! Queries: `GET /projects/{id}`, a list page of 20, and the 304 path of each, against a bare
//! axum handler that runs the same SQL and answers the same JSON without the query API's
//! plumbing. The bare handlers run in a process of their own (this binary, `--serve-bare`),
//! like the query API: served from the load client's own runtime, they would skip the
//! cross-process wake-ups every request to the query API pays.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use service_kit::read_lane::ReadLane;
use sqlx::PgPool;
use uuid::Uuid;

use crate::client::{Http, OpError};
use crate::load::closed_loop;
use crate::report::{Measurement, Row};
use crate::scenarios::{Context, commands};

/// The concurrency of every query figure.
const CONCURRENCY: usize = 32;

/// Connections of the bare handlers' pool: the query API's default `DATABASE_MAX_CONNECTIONS`.
const BASELINE_POOL: u32 = 16;

/// Interleaved rounds of each figure and its baseline.
const ROUNDS: usize = 2;

/// Projects sampled for item reads.
const SAMPLE: usize = 1000;

/// List pages rotated through (page size 20).
const PAGES: u64 = 5;

/// The projects read model's columns, in the query API's order.
const COLUMNS: &str = "id, name, description, owner_id, archived, created_at, updated_at, version";

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Project {
    id: Uuid,
    name: String,
    description: String,
    owner_id: Option<Uuid>,
    archived: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct CountedProject {
    #[sqlx(flatten)]
    project: Project,
    total: i64,
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<Project>,
    total: i64,
    page: i64,
    page_size: i64,
    pages: i64,
}

#[derive(Debug, Deserialize)]
struct PageParam {
    page: Option<i64>,
}

fn internal(error: sqlx::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
}

fn if_none_match(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
}

/// The item: the query API's full-row SELECT.
async fn item(State(pool): State<PgPool>, Path(id): Path<Uuid>) -> Response {
    match sqlx::query_as::<_, Project>(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1"))
        .bind(id)
        .fetch_optional(&pool)
        .await
    {
        Ok(Some(project)) => Json(project).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => internal(error),
    }
}

/// [`item`] on a connection of the read lane, as the query API reads an item: without sqlx's
/// round trip on giving the connection back. Measures the query API's plumbing alone.
async fn item_on_lane(State(lane): State<ReadLane>, Path(id): Path<Uuid>) -> Response {
    let mut connection = match lane.acquire().await {
        Ok(connection) => connection,
        Err(error) => return internal(error),
    };
    let read =
        sqlx::query_as::<_, Project>(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *connection)
            .await;
    match connection.settle(read) {
        Ok(Some(project)) => Json(project).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => internal(error),
    }
}

/// The item's revalidation: the query API's version-only SELECT, then 304.
async fn item_304(
    State(pool): State<PgPool>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Response {
    match sqlx::query_scalar::<_, i64>("SELECT version FROM projects WHERE id = $1")
        .bind(id)
        .fetch_optional(&pool)
        .await
    {
        Ok(Some(version)) if if_none_match(&headers) == Some(&format!("\"{version}\"")) => {
            StatusCode::NOT_MODIFIED.into_response()
        }
        Ok(Some(_)) => StatusCode::OK.into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => internal(error),
    }
}

/// A list page: the query API's windowed SELECT (default sort, no filter).
async fn list(State(pool): State<PgPool>, Query(param): Query<PageParam>) -> Response {
    let page = param.page.unwrap_or(1).max(1);
    let rows = sqlx::query_as::<_, CountedProject>(&format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM projects WHERE TRUE \
          ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
    ))
    .bind(20_i64)
    .bind((page - 1) * 20)
    .fetch_all(&pool)
    .await;
    match rows {
        Ok(rows) => {
            let total = rows.first().map_or(0, |row| row.total);
            Json(Page {
                items: rows.into_iter().map(|row| row.project).collect(),
                total,
                page,
                page_size: 20,
                pages: (total + 19) / 20,
            })
            .into_response()
        }
        Err(error) => internal(error),
    }
}

/// A list revalidation: the query API reads the projection's checkpoint to build the list's
/// ETag; so does this, then answers 304.
async fn list_304(State(pool): State<PgPool>) -> Response {
    match sqlx::query_as::<_, (i64, i64)>(
        "SELECT tx_id, position FROM projection_checkpoints WHERE name = $1",
    )
    .bind("projects")
    .fetch_optional(&pool)
    .await
    {
        Ok(_) => StatusCode::NOT_MODIFIED.into_response(),
        Err(error) => internal(error),
    }
}

/// The flag that makes this binary serve the bare handlers ([`serve_bare`]).
pub const SERVE_BARE: &str = "--serve-bare";

/// What [`serve_bare`] prints first on stdout, followed by its base URL.
const LISTENING: &str = "listening ";

/// Serves the bare handlers on database `name`, on a free loopback port, until killed: the
/// process [`BareServer::start`] runs. Prints [`LISTENING`] and the base URL once ready.
///
/// # Errors
///
/// The database or the port cannot be opened.
pub async fn serve_bare(name: &str) -> anyhow::Result<()> {
    // A pool as large as the query API's, opened up front as the query API's is by the time
    // it is measured.
    let pool = crate::system::pool(name, BASELINE_POOL).await?;
    crate::system::warm(&pool, BASELINE_POOL).await;
    // The query API's own way to a connection for one statement, opened up front as well.
    let lane = ReadLane::new(
        "bench-bare",
        (*pool.connect_options()).clone(),
        BASELINE_POOL as usize,
        Duration::from_secs(10),
    )?;
    let opened = (0..BASELINE_POOL).map(|_| lane.acquire());
    for connection in futures::future::join_all(opened).await {
        connection?.settle(Ok(()))?;
    }
    let on_lane = axum::Router::new()
        .route("/item-lane/{id}", get(item_on_lane))
        .with_state(lane);
    let router = axum::Router::new()
        .route("/item/{id}", get(item))
        .route("/item-304/{id}", get(item_304))
        .route("/list", get(list))
        .route("/list-304", get(list_304))
        .with_state(pool)
        .merge(on_lane);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("{LISTENING}http://{addr}");
    axum::serve(listener, router).await?;
    Ok(())
}

/// The bare handlers' process; killed when dropped.
pub struct BareServer {
    /// Held for `kill_on_drop`.
    _child: tokio::process::Child,
    /// `http://127.0.0.1:port`.
    pub url: String,
}

impl BareServer {
    /// Starts this binary with [`SERVE_BARE`] on database `name` and waits until it listens.
    ///
    /// # Errors
    ///
    /// The process cannot be started, or does not say where it listens within 20 s.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use tokio::io::AsyncBufReadExt as _;

        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args([SERVE_BARE, name])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the bare handlers")?;
        let stdout = child.stdout.take().context("the bare handlers' stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the bare handlers did not start within 20 s")??
            .context("the bare handlers exited before listening")?;
        let url = line
            .strip_prefix(LISTENING)
            .with_context(|| format!("the bare handlers said {line:?}"))?
            .to_owned();
        Ok(Self { _child: child, url })
    }
}

/// The routes of one query figure: what to request for operation `i`, with which
/// `If-None-Match`, and which status is expected.
struct Target {
    urls: Vec<String>,
    etags: Vec<Option<String>>,
    status: u16,
}

async fn measure(
    context: &Context,
    http: &Http,
    target: Arc<Target>,
) -> anyhow::Result<crate::load::Outcome> {
    let http = http.clone();
    closed_loop(CONCURRENCY, context.plan.step_budget(), move |i| {
        let (http, target) = (http.clone(), Arc::clone(&target));
        async move {
            let n = usize::try_from(i).unwrap_or_default() % target.urls.len().max(1);
            let url = target
                .urls
                .get(n)
                .ok_or_else(|| OpError::Invalid("no url".into()))?;
            let etag = target.etags.get(n).cloned().flatten();
            let headers: Vec<(&'static str, &str)> = etag
                .as_deref()
                .map(|tag| vec![("if-none-match", tag)])
                .unwrap_or_default();
            http.get(url, &headers).await?.expect(&[target.status])?;
            Ok(())
        }
    })
    .await
}

/// Baseline and figure, [`ROUNDS`] times each, interleaved (B A B A): on a shared machine the
/// load of the neighbours moves by more than one path differs from the other within a minute.
async fn measure_pair(
    context: &Context,
    target: Target,
    base_target: Target,
) -> anyhow::Result<(Measurement, Measurement)> {
    let (target, base_target) = (Arc::new(target), Arc::new(base_target));
    let mut measured: Option<crate::load::Outcome> = None;
    let mut base: Option<crate::load::Outcome> = None;
    for _ in 0..ROUNDS {
        let round = measure(context, &context.plain, Arc::clone(&base_target)).await?;
        match &mut base {
            Some(base) => base.merge(&round)?,
            None => base = Some(round),
        }
        let round = measure(context, &context.http, Arc::clone(&target)).await?;
        match &mut measured {
            Some(measured) => measured.merge(&round)?,
            None => measured = Some(round),
        }
    }
    let done = |outcome: Option<crate::load::Outcome>| {
        outcome
            .map(|outcome| outcome.measurement(1, "req/s"))
            .ok_or_else(|| anyhow::anyhow!("no round ran"))
    };
    Ok((done(measured)?, done(base)?))
}

/// Fetches each URL once and keeps its ETag.
async fn etags(context: &Context, urls: &[String]) -> anyhow::Result<Vec<Option<String>>> {
    let mut tags = Vec::with_capacity(urls.len());
    for url in urls {
        let answer = context.http.get(url, &[]).await?.expect(&[200])?;
        tags.push(answer.header("etag").map(str::to_owned));
    }
    Ok(tags)
}

/// Every query figure and its baseline.
pub async fn queries(context: &Context) -> anyhow::Result<Vec<Row>> {
    queries_as(context, "queries").await
}

/// [`queries`], its rows in section `section` (an A/B names its variant there).
pub async fn queries_as(context: &Context, section: &'static str) -> anyhow::Result<Vec<Row>> {
    // Make sure the read model has caught up with everything written so far.
    let (_, token) = commands::create_one(&context.http, &context.command).await?;
    context
        .http
        .get(
            &format!("{}/api/v1/projects?page_size=1", context.query),
            &[("x-consistency-token", &token)],
        )
        .await?
        .expect(&[200])?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ids: Vec<Uuid> = context.project_ids().iter().take(SAMPLE).copied().collect();
    if ids.is_empty() {
        anyhow::bail!("no projects to query");
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(&context.pool)
        .await?;
    let bare = BareServer::start(&context.database).await?;
    let baseline = &bare.url;
    let q = &context.query;
    let item_urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{q}/api/v1/projects/{id}"))
        .collect();
    let item_tags = etags(context, &item_urls).await?;
    let list_urls: Vec<String> = (1..=PAGES)
        .map(|page| format!("{q}/api/v1/projects?page={page}&page_size=20"))
        .collect();
    let list_tags = etags(context, &list_urls).await?;
    let none = |n: usize| vec![None; n];
    let base_items: Vec<String> = ids
        .iter()
        .map(|id| format!("{baseline}/item/{id}"))
        .collect();
    let base_items_304: Vec<String> = ids
        .iter()
        .map(|id| format!("{baseline}/item-304/{id}"))
        .collect();
    let base_lists: Vec<String> = (1..=PAGES)
        .map(|page| format!("{baseline}/list?page={page}"))
        .collect();
    let base_items_on_lane: Vec<String> = ids
        .iter()
        .map(|id| format!("{baseline}/item-lane/{id}"))
        .collect();
    let base_lists_304: Vec<String> = (1..=PAGES)
        .map(|_| format!("{baseline}/list-304"))
        .collect();

    let load =
        format!("{CONCURRENCY} clients, closed loop, {ROUNDS}x interleaved, {total} projects");
    let mut rows = Vec::new();
    let specs = [
        (
            "GET /projects/{id} (200)",
            Target {
                urls: item_urls.clone(),
                etags: none(item_urls.len()),
                status: 200,
            },
            Target {
                urls: base_items.clone(),
                etags: none(base_items.len()),
                status: 200,
            },
            "bare axum, same SELECT",
        ),
        (
            "GET /projects/{id} (304, If-None-Match)",
            Target {
                urls: item_urls.clone(),
                etags: item_tags.clone(),
                status: 304,
            },
            Target {
                urls: base_items_304,
                etags: item_tags,
                status: 304,
            },
            "bare axum, same version SELECT",
        ),
        (
            "GET /projects?page_size=20 (200)",
            Target {
                urls: list_urls.clone(),
                etags: none(list_urls.len()),
                status: 200,
            },
            Target {
                urls: base_lists.clone(),
                etags: none(base_lists.len()),
                status: 200,
            },
            "bare axum, same windowed SELECT",
        ),
        (
            "GET /projects?page_size=20 (304, If-None-Match)",
            Target {
                urls: list_urls.clone(),
                etags: list_tags.clone(),
                status: 304,
            },
            Target {
                urls: base_lists_304,
                etags: list_tags,
                status: 304,
            },
            "bare axum, same checkpoint SELECT",
        ),
        // Last, so the pairs above keep their order. The same figure as the first, against a
        // bare handler that gets its connection as the query API does: what the plumbing
        // costs, apart from how the connection is held.
        (
            "GET /projects/{id} (200), against the bare handler on the read lane",
            Target {
                urls: item_urls.clone(),
                etags: none(item_urls.len()),
                status: 200,
            },
            Target {
                urls: base_items_on_lane,
                etags: none(ids.len()),
                status: 200,
            },
            "bare axum on the read lane, same SELECT",
        ),
    ];
    let mut ok_rates = Vec::new();
    for (index, (figure, target, base_target, base_name)) in specs.into_iter().enumerate() {
        eprintln!("  {figure}");
        let (measured, base) = measure_pair(context, target, base_target).await?;
        let rate = measured.rate;
        let mut row = Row::new(section, figure, load.clone())
            .measured(measured)
            .baseline(base_name, base);
        if index % 2 == 0 {
            ok_rates.push(rate);
        } else if let Some(ok_rate) = ok_rates.last().copied().filter(|rate| *rate > 0.0) {
            row = row.goal(">= 2x the 200 path", rate / ok_rate, 2.0, true);
        }
        rows.push(row);
    }
    // Killed here, closing its connections.
    drop(bare);
    Ok(rows)
}
