//! The caller's own sessions (ACCOUNTS.md, "Sessions"): revoke one, or every other one. Both
//! re-prove the caller with the password first (step-up); a session that is not the caller's
//! live one answers 404 exactly like one that does not exist.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use events::session::RevokeReason;
use serde::{Deserialize, Serialize};
use service_kit::Problem;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::routes::{
    AccountAnswer, AuthErrors, account_answer, auth_of, bounded, caller_credentials, failure,
    no_store, revoke_all, revoke_in, session_metadata, step_up,
};
use super::token;
use crate::http::X_CONSISTENCY_TOKEN;
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::ProblemDoc;
use crate::state::AppState;

/// The session routes; an account only.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_other_sessions))
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_account,
        ))
}

/// `{password}`: the step-up of a change to sessions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUp {
    /// The account's password, re-entered.
    #[schema(format = Password, max_length = 256)]
    password: String,
}

/// How many sessions a bulk revocation ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAnswer {
    /// How many live sessions were revoked.
    pub revoked: u32,
    /// Pass as `X-Consistency-Token` to read the sessions without them.
    pub consistency_token: String,
}

/// The answer of a bulk revocation, with `X-Consistency-Token`.
pub(crate) fn revoked_answer(revoked: u32, position: events::LogPosition) -> Response {
    let consistency_token = token(position);
    let mut response = (
        StatusCode::OK,
        Json(RevokedAnswer {
            revoked,
            consistency_token: consistency_token.clone(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&consistency_token) {
        response.headers_mut().insert(X_CONSISTENCY_TOKEN, value);
    }
    no_store(response)
}

fn not_found() -> Problem {
    Problem::not_found("no such session")
}

/// Revokes one of the caller's sessions (the current one too: that is a logout elsewhere).
#[utoipa::path(
    post, path = "/api/v1/auth/sessions/{id}/revoke", tag = "auth",
    request_body = StepUp,
    params(("id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "Revoked; its tokens stop working", body = AccountAnswer),
        (status = 403, description = "`step-up-failed`: the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No live session of the caller has this id", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn revoke_session(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let caller = input.caller.require_account()?.clone();
    let session_id = match id {
        Ok(Path(raw)) => parse_id(&raw)?,
        Err(_) => return Err(not_found()),
    };
    let body: StepUp = input.json()?;
    bounded("password", &body.password)?;
    let credentials = match caller_credentials(&auth, caller.account_id).await? {
        Ok(credentials) => credentials,
        Err(response) => return Ok(response),
    };
    let session = auth.session(session_id).await.map_err(failure)?;
    if session.revoked || session.account_id != Some(caller.account_id) {
        return Err(not_found());
    }
    step_up(&auth, &credentials, &body.password, &input.metadata).await?;
    let metadata = session_metadata(&input.metadata, caller.account_id, caller.session_id);
    let metadata = events::EventMetadata {
        session_id: Some(session_id),
        ..metadata
    };
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let events = revoke_in(&auth, &mut tx, session_id, RevokeReason::User, &metadata).await?;
    // Another request revoked it since it was read: it is gone all the same.
    let Some(version) = events.last().map(|event| event.sequence) else {
        return Err(not_found());
    };
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(no_store(account_answer(session_id, version, position)))
}

/// Revokes every session of the caller but the current one.
#[utoipa::path(
    post, path = "/api/v1/auth/sessions/revoke-others", tag = "auth",
    request_body = StepUp,
    responses(
        (status = 200, description = "Every other session revoked", body = RevokedAnswer),
        (status = 403, description = "`step-up-failed`: the password is wrong", body = ProblemDoc, content_type = "application/problem+json"),
        AuthErrors,
    )
)]
async fn revoke_other_sessions(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let auth = auth_of(&state)?;
    let caller = input.caller.require_account()?.clone();
    let body: StepUp = input.json()?;
    bounded("password", &body.password)?;
    let credentials = match caller_credentials(&auth, caller.account_id).await? {
        Ok(credentials) => credentials,
        Err(response) => return Ok(response),
    };
    step_up(&auth, &credentials, &body.password, &input.metadata).await?;
    let metadata = session_metadata(&input.metadata, caller.account_id, caller.session_id);
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let (revoked, events) = revoke_all(
        &auth,
        &mut tx,
        caller.account_id,
        Some(caller.session_id),
        RevokeReason::Others,
        &metadata,
    )
    .await?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(revoked_answer(revoked, position))
}
