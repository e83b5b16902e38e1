//! The command API's HTTP surface: routes per resource, merged here, and the one path every
//! command takes (idempotency claim, execute, answer).

pub mod error;
pub mod fields;
pub mod input;
pub mod routes;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use event_store::append::StoredAnswer;
use service_kit::Problem;
use utoipa::ToSchema;

use crate::AppState;
use crate::execute::{CommandBus, Committed, Request};
use crate::http::error::RuleProblem;
use crate::http::input::CommandInput;
use crate::idempotency::{self, Claim};

/// `X-Consistency-Token`.
pub const X_CONSISTENCY_TOKEN: &str = "x-consistency-token";

/// Runs one command the way every endpoint does: claim the idempotency key (or replay its
/// answer), execute with retries, answer; a failed command releases its claim and writes
/// nothing.
pub async fn run_command<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    aggregate_id: &str,
    command: A::Command,
    answer: &(dyn Fn(&Committed) -> StoredAnswer + Sync),
) -> Result<Response, Problem>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let claim = match &input.idempotency_key {
        Some(key) => match idempotency::claim(
            &state.claims,
            &input.principal,
            key,
            &input.fingerprint,
            state.settings.idempotency_lease,
        )
        .await?
        {
            Claim::Owned(claim) => Some(claim),
            Claim::Replay(stored) => return Ok(respond(stored, true)),
        },
        None => None,
    };
    let request = Request {
        aggregate_id,
        expected_version: input.if_match,
        metadata: &input.metadata,
        claim: claim.as_ref(),
        answer,
        deadline: input.deadline,
    };
    match bus.execute(&request, command).await {
        Ok((_, stored)) => {
            (state.hooks.after_commit)();
            Ok(respond(stored, false))
        }
        Err(error) => {
            if let Some(claim) = &claim {
                idempotency::release(&state.claims, claim).await;
            }
            Err(error.into())
        }
    }
}

/// Runs a command that creates its aggregate (or starts its stream): answers 201 with
/// [`ChangeAnswer`] and `Location: location`.
pub async fn create<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    id: &str,
    location: String,
    command: A::Command,
) -> Result<Response, Problem>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let answer = |committed: &Committed| {
        change_answer(StatusCode::CREATED, id, Some(location.clone()), committed)
    };
    run_command(state, bus, input, id, command, &answer).await
}

/// Runs a command on an existing aggregate: answers 200 with [`ChangeAnswer`].
pub async fn change<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    id: &str,
    command: A::Command,
) -> Result<Response, Problem>
where
    A: Aggregate,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let answer = |committed: &Committed| change_answer(StatusCode::OK, id, None, committed);
    run_command(state, bus, input, id, command, &answer).await
}

/// The answer to a create or change.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ChangeAnswer {
    /// The aggregate's id.
    id: String,
    /// Its version after the command (also the `ETag`).
    version: i64,
    /// Pass as `X-Consistency-Token` to a query to read this write.
    consistency_token: String,
}

/// The answer of a create or change: `{id, version, consistency_token}`, the body
/// [`ChangeAnswer`] describes.
pub fn change_answer(
    status: StatusCode,
    id: &str,
    location: Option<String>,
    committed: &Committed,
) -> StoredAnswer {
    StoredAnswer {
        status: status.as_u16(),
        body: serde_json::json!({
            "id": id,
            "version": committed.version,
            "consistency_token": committed.token().encode(),
        }),
        location,
        etag: Some(format!("\"{}\"", committed.version)),
    }
}

/// Turns a (possibly stored) answer into a response.
pub fn respond(answer: StoredAnswer, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let token = answer
        .body
        .get(crate::execute::TOKEN_FIELD)
        .and_then(|token| token.as_str())
        .and_then(|token| HeaderValue::from_str(token).ok());
    let mut response = (status, Json(answer.body)).into_response();
    let headers = response.headers_mut();
    let header_values = [
        (header::LOCATION, answer.location),
        (header::ETAG, answer.etag),
    ];
    for (name, value) in header_values {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    if let Some(token) = token {
        headers.insert(X_CONSISTENCY_TOKEN, token);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
