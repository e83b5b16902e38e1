//! The baseline for the item-read benchmark (docs in the report of issue 10.4): a bare axum
//! handler running the same primary-key SELECT as `GET /api/v1/projects/{id}`, with the same
//! pool settings, and nothing else (no plumbing, no consistency, no ETag).
//!
//! `DATABASE_URL=... BARE_ADDR=127.0.0.1:58082 cargo run --release -p query-api --example bare_item`
//! then `wrk -t2 -c32 -d10s http://127.0.0.1:58082/projects/<id>`.

use anyhow::Context as _;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use query_api::routes::projects::Project;
use sqlx::PgPool;
use uuid::Uuid;

async fn project(
    State(pool): State<PgPool>,
    Path(id): Path<Uuid>,
) -> Result<Json<Project>, StatusCode> {
    sqlx::query_as(
        "SELECT id, name, description, owner_id, archived, created_at, updated_at, version \
           FROM projects WHERE id = $1 AND TRUE",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await
    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
    .map(Json)
    .ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let pool = service_kit::db::DatabaseSettings::from_env()?
        .connect()
        .await?;
    let addr = std::env::var("BARE_ADDR").unwrap_or_else(|_| "127.0.0.1:58082".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let app = axum::Router::new()
        .route("/projects/{id}", get(project))
        .with_state(pool);
    axum::serve(listener, app).await.context("serving")
}
