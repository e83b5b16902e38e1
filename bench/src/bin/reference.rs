//! The bench's reference service: the create Chronicle measures, done the way cqrs-es and
//! postgres-es document it, with nothing of Chronicle's own machinery.
//!
//! `POST /api/v1/projects` (`{"id"?, "name", "description"?}`) runs
//! `CqrsFramework::execute_with_metadata` on a Project aggregate whose events are Chronicle's
//! own `ProjectEvent` (so each stored row has the same payload); postgres-es's event store
//! loads the stream, appends in its transaction, and a `GenericQuery` over a
//! `PostgresViewRepository` updates the `project_query` view in the same request. Tables are
//! postgres-es's standard ones (`events`, `snapshots`, one view table), created at start.
//!
//! It is what Chronicle's create is compared with: the framework's cost without a global log
//! (no positions, no transaction ids, one index on `events`), idempotency, consistency tokens,
//! or a durable projector.
//!
//! Settings: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/chronicle_bench_reference`),
//! `REFERENCE_ADDR` (default `127.0.0.1:8090`), `DATABASE_MAX_CONNECTIONS` (default 16, as
//! Chronicle's services).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, Query, View};
use events::project::{AGGREGATE_TYPE, ProjectEvent};
use postgres_es::{PostgresCqrs, PostgresViewRepository, postgres_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// postgres-es's standard schema (its `db/init.sql`), with the view table named for this
/// service's view.
const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS events ( \
       aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
       sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, \
       event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL, \
       PRIMARY KEY (aggregate_type, aggregate_id, sequence))",
    "CREATE TABLE IF NOT EXISTS snapshots ( \
       aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
       last_sequence bigint CHECK (last_sequence >= 0) NOT NULL, \
       current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, \
       payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence))",
    "CREATE TABLE IF NOT EXISTS project_query ( \
       view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL, \
       payload json NOT NULL, PRIMARY KEY (view_id))",
];

/// The view's table.
const VIEW_TABLE: &str = "project_query";

/// A project's state, as far as creating one needs it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Project {
    created: bool,
}

/// The one command the reference serves.
#[derive(Debug)]
enum ProjectCommand {
    Create {
        name: String,
        description: String,
        created_by: String,
    },
}

/// The one rule it enforces.
#[derive(Debug, thiserror::Error)]
enum ProjectError {
    #[error("a project with this id already exists")]
    AlreadyExists,
}

impl Aggregate for Project {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = ProjectError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ProjectCommand::Create { .. } if self.created => Err(ProjectError::AlreadyExists),
            ProjectCommand::Create {
                name,
                description,
                created_by,
            } => {
                let event = ProjectEvent::ProjectCreated {
                    name,
                    description,
                    owner_id: None,
                    created_by,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        if let ProjectEvent::ProjectCreated { .. } = event {
            self.created = true;
        }
    }
}

/// The read model, as a JSON document per project (postgres-es's view repository).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProjectView {
    id: String,
    name: String,
    description: String,
    created_by: String,
    version: usize,
}

impl View<Project> for ProjectView {
    fn update(&mut self, event: &EventEnvelope<Project>) {
        self.id.clone_from(&event.aggregate_id);
        self.version = event.sequence;
        match &event.payload {
            ProjectEvent::ProjectCreated {
                name,
                description,
                created_by,
                ..
            } => {
                self.name.clone_from(name);
                self.description.clone_from(description);
                self.created_by.clone_from(created_by);
            }
            ProjectEvent::ProjectUpdated { name, description } => {
                if let Some(name) = name {
                    self.name.clone_from(name);
                }
                if let Some(description) = description {
                    self.description.clone_from(description);
                }
            }
            ProjectEvent::ProjectArchived {} | ProjectEvent::ProjectRestored {} => {}
        }
    }
}

#[derive(Clone)]
struct AppState {
    cqrs: Arc<PostgresCqrs<Project>>,
    pool: PgPool,
}

/// `POST /api/v1/projects` body, as Chronicle's.
#[derive(Debug, Deserialize)]
struct CreateProject {
    id: Option<Uuid>,
    name: String,
    #[serde(default)]
    description: Option<String>,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "status": status.as_u16(), "detail": detail })),
    )
        .into_response()
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<CreateProject>,
) -> Response {
    // The same checks as Chronicle's ProjectName and Description, so neither side skips work.
    let name = body.name.trim().to_owned();
    let description = body.description.unwrap_or_default();
    if name.is_empty() || name.chars().count() > 120 || description.chars().count() > 2000 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid name or description",
        );
    }
    let id = body.id.unwrap_or_else(Uuid::now_v7).to_string();
    let request_id = headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned);
    // The audit metadata Chronicle stores with each event, in the same shape.
    let metadata = HashMap::from([
        ("actor".to_owned(), "anonymous".to_owned()),
        ("ip".to_owned(), peer.ip().to_string()),
        ("request_id".to_owned(), request_id.clone()),
        ("correlation_id".to_owned(), request_id),
        ("causation_id".to_owned(), Uuid::now_v7().to_string()),
    ]);
    let command = ProjectCommand::Create {
        name,
        description,
        created_by: "anonymous".to_owned(),
    };
    match state
        .cqrs
        .execute_with_metadata(&id, command, metadata)
        .await
    {
        Ok(()) => (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/api/v1/projects/{id}"))],
            Json(serde_json::json!({ "id": id, "version": 1 })),
        )
            .into_response(),
        Err(AggregateError::UserError(error)) => problem(StatusCode::CONFLICT, &error.to_string()),
        Err(AggregateError::AggregateConflict) => {
            problem(StatusCode::CONFLICT, "concurrent write to the project")
        }
        Err(error) => {
            eprintln!("create {id} failed: {error}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

async fn ready(State(state): State<AppState>) -> StatusCode {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C (below) still stops the service.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = env_or(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/chronicle_bench_reference",
    );
    let addr: SocketAddr = env_or("REFERENCE_ADDR", "127.0.0.1:8090")
        .parse()
        .context("REFERENCE_ADDR is not an address")?;
    let max: u32 = env_or("DATABASE_MAX_CONNECTIONS", "16")
        .parse()
        .context("DATABASE_MAX_CONNECTIONS is not a number")?;
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&url)
        .await
        .context("connecting to the reference database")?;
    for statement in SCHEMA {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .context("creating postgres-es's tables")?;
    }
    let views = Arc::new(PostgresViewRepository::<ProjectView, Project>::new(
        VIEW_TABLE,
        pool.clone(),
    ));
    let mut query = GenericQuery::new(views);
    query.use_error_handler(Box::new(|error| eprintln!("view update failed: {error}")));
    let queries: Vec<Box<dyn Query<Project>>> = vec![Box::new(query)];
    let cqrs = Arc::new(postgres_cqrs(pool.clone(), queries, ()));
    let router = Router::new()
        .route("/api/v1/projects", post(create))
        .route("/readyz", get(ready))
        .with_state(AppState { cqrs, pool });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    Ok(())
}
