//! The command API's HTTP surface: routes per resource, merged here, and the one path every
//! command takes (execute with its idempotency key, answer or replay).

pub mod error;
pub mod fields;
pub mod input;
pub mod openapi;
pub mod routes;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use event_store::idempotency;
use service_kit::Problem;
use tracing::Instrument as _;
use utoipa::ToSchema;

use crate::execute::{CommandBus, Committed, Kind, Outcome, Reads, Request};
use crate::http::error::{RuleProblem, idempotency_problem};
use crate::http::input::CommandInput;
use crate::state::AppState;

/// `X-Consistency-Token`.
pub const X_CONSISTENCY_TOKEN: &str = "x-consistency-token";

/// A route's `Location` for a created resource, from the aggregate's id.
pub type Location = fn(&str) -> String;

/// What a command is aimed at and how it is answered.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The aggregate's id.
    pub id: &'a str,
    /// The kind of change it makes: its answer's status and body.
    pub kind: Kind,
    /// What deciding it reads of the stream.
    pub reads: Reads,
    /// The created resource's URL, for [`Kind::Created`].
    pub location: Option<Location>,
}

/// Runs one command the way every endpoint does: execute with retries, recording the
/// idempotency key in the append, and answer; a command that did not commit with a key
/// answers with what an earlier attempt with the key stored, if one did
/// (docs/decisions/0017-one-statement-idempotency.md). A failed command writes nothing.
pub async fn run_command<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    target: Target<'_>,
    command: A::Command,
) -> Result<Response, Problem>
where
    A: Aggregate + crate::execute::Current,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    run_guarded(state, bus, input, target, command, &|_: &A| Ok(())).await
}

/// [`run_command`] with a guard on the loaded state ([`CommandBus::execute_guarded`]).
pub async fn run_guarded<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    target: Target<'_>,
    command: A::Command,
    guard: &(dyn Fn(&A) -> Result<(), A::Error> + Sync),
) -> Result<Response, Problem>
where
    A: Aggregate + crate::execute::Current,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let key = match (&input.idempotency_key, &input.fingerprint) {
        (Some(key), Some(fingerprint)) => Some(idempotency::IdempotencyKey {
            principal: input.principal.clone(),
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            lease: state.settings.idempotency_lease,
        }),
        _ => None,
    };
    let request = Request {
        aggregate_id: target.id,
        expected_version: input.if_match,
        metadata: &input.metadata,
        key: key.as_ref(),
        kind: target.kind,
        reads: target.reads,
        deadline: input.deadline,
    };
    let result = bus.execute_guarded(&request, command, guard).await;
    let (error, key) = match (result, key) {
        (Ok(committed), key) => {
            if key.is_some() {
                count_idempotency("first");
            }
            (state.hooks.after_commit)();
            return Ok(respond(&committed, target.location, false));
        }
        (Err(error), None) => return Err(error.into()),
        (Err(error), Some(key)) => (error, key),
    };
    // The command did not commit. With a key, an earlier attempt may have: a repeat of a
    // completed request (its command now refused, or its append finding the key recorded),
    // or one that ran beside its first attempt and waited for it. What is stored answers.
    let stored =
        idempotency::lookup::<Outcome>(&state.pool, &key.principal, &key.key, &key.fingerprint)
            .instrument(tracing::info_span!("idempotency.lookup"))
            .await;
    match stored {
        Ok(Some(stored)) => {
            count_idempotency("replayed");
            crate::execute::count_command(A::TYPE, "replayed");
            let committed = Committed {
                outcome: stored.outcome,
                position: stored.position,
                aggregate_type: A::TYPE,
            };
            Ok(respond(&committed, target.location, true))
        }
        // Nothing stored: the command's own failure is the answer. A key that was recorded
        // when the append ran and is gone now was purged in between: the answer is lost, as
        // for any purged key, and the client may retry.
        Ok(None) => {
            crate::execute::count_command(A::TYPE, crate::execute::error_label(&error));
            Err(error.into())
        }
        Err(error) => {
            match error {
                idempotency::IdempotencyError::InFlight => count_idempotency("in_flight"),
                idempotency::IdempotencyError::Mismatch => count_idempotency("mismatch"),
                _ => {}
            }
            Err(idempotency_problem(error))
        }
    }
}

/// Counts one request carrying an `Idempotency-Key` in `chronicle_idempotency_requests_total`.
fn count_idempotency(result: &'static str) {
    metrics::counter!(service_kit::metric_names::IDEMPOTENCY_REQUESTS_TOTAL, "result" => result)
        .increment(1);
}

/// Runs a command that creates its aggregate, starting a new stream (no read: an id already
/// taken is found by the append): answers 201 with [`ChangeAnswer`] and `Location`.
pub async fn create<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    id: &str,
    location: Location,
    command: A::Command,
) -> Result<Response, Problem>
where
    A: Aggregate + crate::execute::Current,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let target = Target {
        id,
        kind: Kind::Created,
        reads: Reads::NewStream,
        location: Some(location),
    };
    run_command(state, bus, input, target, command).await
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
    A: Aggregate + crate::execute::Current,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    change_guarded(state, bus, input, id, command, &|_: &A| Ok(())).await
}

/// [`change`], refused by `guard` when the caller may not act on the loaded state.
pub async fn change_guarded<A>(
    state: &AppState,
    bus: &CommandBus<A>,
    input: &CommandInput,
    id: &str,
    command: A::Command,
    guard: &(dyn Fn(&A) -> Result<(), A::Error> + Sync),
) -> Result<Response, Problem>
where
    A: Aggregate + crate::execute::Current,
    A::Command: Clone,
    A::Error: RuleProblem,
{
    let target = Target {
        id,
        kind: Kind::Changed,
        reads: Reads::State,
        location: None,
    };
    run_guarded(state, bus, input, target, command, guard).await
}

/// The answer to a create or change.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ChangeAnswer<'a> {
    /// The aggregate's id.
    id: &'a str,
    /// Its version after the command (also the `ETag`).
    version: i64,
    /// Pass as `X-Consistency-Token` to a query to read this write.
    consistency_token: &'a str,
}

/// The answer to an accepted batch.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Accepted<'a> {
    /// How many events were accepted (all of the batch).
    accepted: usize,
    /// Pass as `X-Consistency-Token` to read the summary including this batch.
    consistency_token: &'a str,
}

/// The one place a committed command becomes a response, fresh or replayed alike, so a replay
/// is byte for byte the first answer (plus `Idempotent-Replayed: true`): status and body by
/// the outcome's kind, `ETag` of the new version, `Location` of a created resource, and the
/// consistency token in the body and in `X-Consistency-Token`.
pub fn respond(committed: &Committed, location: Option<Location>, replayed: bool) -> Response {
    let outcome = &committed.outcome;
    let token = committed.token().encode();
    let mut response = match outcome.kind {
        Kind::Created | Kind::Changed => {
            let status = if outcome.kind == Kind::Created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body = ChangeAnswer {
                id: &outcome.id,
                version: outcome.version,
                consistency_token: &token,
            };
            (status, Json(body)).into_response()
        }
        Kind::Accepted { items } => {
            let body = Accepted {
                accepted: items,
                consistency_token: &token,
            };
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
    };
    let headers = response.headers_mut();
    if matches!(outcome.kind, Kind::Created | Kind::Changed) {
        // A version is digits only: quoting it always makes a valid header value.
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", outcome.version)) {
            headers.insert(header::ETAG, etag);
        }
    }
    if let (Kind::Created, Some(location)) = (outcome.kind, location)
        && let Ok(url) = HeaderValue::from_str(&location(&outcome.id))
    {
        headers.insert(header::LOCATION, url);
    }
    if let Ok(token) = HeaderValue::from_str(&token) {
        headers.insert(X_CONSISTENCY_TOKEN, token);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
