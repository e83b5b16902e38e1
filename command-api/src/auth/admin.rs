//! The admin's account commands (ACCOUNTS.md, "Endpoints"): set roles, disable, enable,
//! revoke every session, mail a reset link. Each records the admin as `actor` and the target
//! in the payload; an unknown account is 404. A change that would leave no enabled admin is
//! 409, decided under one lock so two admins cannot demote each other at once.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use event_store::accounts::{self, Credentials};
use events::account::ResetRequestedBy;
use events::session::RevokeReason;
use serde::{Deserialize, Serialize};
use service_kit::Problem;
use service_kit::openapi::ConflictCode;
use service_kit::problem::FieldError;
use sqlx::{Postgres, Transaction};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::routes::{
    AcceptedAnswer, AccountAnswer, accepted, account_answer, auth_of, failure, revoke_all,
};
use super::sessions::{RevokedAnswer, revoked_answer};
use super::{AuthState, worker};
use crate::domain::account::AccountCommand;
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::ProblemDoc;
use crate::state::AppState;

/// The roles an admin can grant; `user` comes with every verified account.
const GRANTABLE: &[&str] = &["admin", "auditor"];

/// The longest reason a disable may record.
const MAX_REASON_CHARS: usize = 500;

/// The admin routes; admins only.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(set_roles))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(revoke_sessions))
        .routes(routes!(password_reset))
        .route_layer(axum::middleware::from_fn(service_kit::caller::needs_admin))
}

/// The errors every admin command may answer besides 401, 403 and 404, declared once.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// Malformed JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// The change would leave no enabled admin (roles, disable), or a concurrent change won
    /// (retry).
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(ProblemDoc),
    /// The body is over 256 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(ProblemDoc),
    /// A body that is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    /// A malformed id, an unknown role, a repeated role, a reason over 500 characters, or
    /// unknown fields.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDoc),
    /// The event store is unavailable; retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDoc),
}

/// `{roles}`: the roles granted from now on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoles {
    /// A subset of `admin` and `auditor` (empty takes every granted role away).
    #[schema(max_items = 2, inline)]
    roles: Vec<GrantableRole>,
}

/// A role an admin can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantableRole {
    /// Administers accounts and sees everything.
    Admin,
    /// Reads the audit log.
    Auditor,
}

impl GrantableRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => GRANTABLE[0],
            Self::Auditor => GRANTABLE[1],
        }
    }
}

/// `{reason?}`: why an account is disabled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disable {
    /// Why, for the audit log (at most 500 characters).
    #[schema(schema_with = crate::http::openapi::text::reason)]
    reason: Option<String>,
}

fn account_id_of(id: Result<Path<String>, PathRejection>) -> Result<Uuid, Problem> {
    match id {
        Ok(Path(raw)) => parse_id(&raw),
        Err(_) => Err(not_found()),
    }
}

fn not_found() -> Problem {
    Problem::not_found("no such account")
}

fn last_admin() -> Problem {
    Problem::conflict(ConflictCode::LastAdmin, "this would leave no enabled admin")
}

/// What every admin command starts from: the accounts state, the path's account id and that
/// account, or the 404.
async fn addressed(
    state: &AppState,
    id: Result<Path<String>, PathRejection>,
) -> Result<(Arc<AuthState>, Uuid, Credentials), Problem> {
    let auth = auth_of(state)?;
    let account_id = account_id_of(id)?;
    let credentials = accounts::by_id(&auth.pool, account_id)
        .await
        .map_err(|e| failure(e.into()))?
        .ok_or_else(not_found)?;
    Ok((auth, account_id, credentials))
}

/// Takes the admin-changes lock and refuses with 409 when the account, read again under it (so
/// every committed demotion is seen), is an enabled admin that `loses_admin` and no other
/// enabled admin would be left.
async fn keep_an_admin(
    tx: &mut Transaction<'_, Postgres>,
    account_id: Uuid,
    loses_admin: impl FnOnce(&Credentials) -> bool,
) -> Result<(), Problem> {
    let db = |e: sqlx::Error| failure(e.into());
    accounts::lock_admin_changes(tx).await.map_err(db)?;
    let Some(current) = accounts::by_id(&mut **tx, account_id).await.map_err(db)? else {
        return Err(not_found());
    };
    let enabled_admin = current.roles.iter().any(|r| r == "admin") && !current.disabled;
    if enabled_admin
        && loses_admin(&current)
        && accounts::other_admins(tx, account_id).await.map_err(db)? == 0
    {
        return Err(last_admin());
    }
    Ok(())
}

/// Sets the roles an account is granted.
#[utoipa::path(
    put, path = "/api/v1/admin/accounts/{id}/roles", tag = "admin",
    request_body = SetRoles,
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Set; tokens carrying a removed role stop working, a granted one shows at the next refresh", body = AccountAnswer),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    )
)]
async fn set_roles(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let body: SetRoles = input.json()?;
    let mut roles: Vec<String> = Vec::new();
    for role in &body.roles {
        if roles.iter().any(|held| held == role.as_str()) {
            return Err(Problem::validation(vec![FieldError::new(
                "roles",
                "must not repeat a role",
            )]));
        }
        roles.push(role.as_str().to_owned());
    }
    let (auth, account_id, _) = addressed(&state, id).await?;
    let db = |e: sqlx::Error| failure(e.into());
    let mut tx = auth.pool.begin().await.map_err(db)?;
    keep_an_admin(&mut tx, account_id, |_| !roles.iter().any(|r| r == "admin")).await?;
    let staged = auth
        .stage_account(
            account_id,
            AccountCommand::SetRoles {
                roles: roles.clone(),
            },
            &input.metadata,
        )
        .await
        .map_err(failure)?;
    accounts::set_roles(&mut tx, account_id, &roles)
        .await
        .map_err(db)?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}

/// Disables an account and revokes every session of it.
#[utoipa::path(
    post, path = "/api/v1/admin/accounts/{id}/disable", tag = "admin",
    request_body(content = Disable, description = "Optional: `{}` or no body disables without a reason"),
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Disabled; every session revoked, its tokens stop working", body = AccountAnswer),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    )
)]
async fn disable(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let body: Disable = if input.is_empty() {
        Disable::default()
    } else {
        input.json()?
    };
    let reason = body
        .reason
        .map(|reason| reason.trim().to_owned())
        .filter(|reason| !reason.is_empty());
    if reason
        .as_ref()
        .is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS)
    {
        return Err(Problem::validation(vec![FieldError::new(
            "reason",
            "must be at most 500 characters",
        )]));
    }
    let (auth, account_id, _) = addressed(&state, id).await?;
    let db = |e: sqlx::Error| failure(e.into());
    let mut tx = auth.pool.begin().await.map_err(db)?;
    keep_an_admin(&mut tx, account_id, |_| true).await?;
    let (_, mut events) = revoke_all(
        &auth,
        &mut tx,
        account_id,
        None,
        RevokeReason::AccountDisabled,
        &input.metadata,
    )
    .await?;
    let staged = auth
        .stage_account(
            account_id,
            AccountCommand::Disable { reason },
            &input.metadata,
        )
        .await
        .map_err(failure)?;
    events.extend(staged.events);
    accounts::set_disabled(&mut tx, account_id, true)
        .await
        .map_err(db)?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}

/// Enables a disabled account again.
#[utoipa::path(
    post, path = "/api/v1/admin/accounts/{id}/enable", tag = "admin",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Enabled; it can log in again", body = AccountAnswer),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    )
)]
async fn enable(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let (auth, account_id, _) = addressed(&state, id).await?;
    let db = |e: sqlx::Error| failure(e.into());
    let staged = auth
        .stage_account(account_id, AccountCommand::Enable, &input.metadata)
        .await
        .map_err(failure)?;
    let mut tx = auth.pool.begin().await.map_err(db)?;
    accounts::set_disabled(&mut tx, account_id, false)
        .await
        .map_err(db)?;
    let position = auth.commit(tx, &staged.events).await.map_err(failure)?;
    Ok(account_answer(account_id, staged.version, position))
}

/// Revokes every session of an account.
#[utoipa::path(
    post, path = "/api/v1/admin/accounts/{id}/sessions/revoke", tag = "admin",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 200, description = "Every session revoked", body = RevokedAnswer),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    )
)]
async fn revoke_sessions(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let (auth, account_id, _) = addressed(&state, id).await?;
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let (revoked, events) = revoke_all(
        &auth,
        &mut tx,
        account_id,
        None,
        RevokeReason::Admin,
        &input.metadata,
    )
    .await?;
    let position = auth.commit(tx, &events).await.map_err(failure)?;
    Ok(revoked_answer(revoked, position))
}

/// Mails the account a password reset link (the admin never sets a password).
#[utoipa::path(
    post, path = "/api/v1/admin/accounts/{id}/password-reset", tag = "admin",
    params(("id" = Uuid, Path, description = "The account's id")),
    responses(
        (status = 202, description = "A reset link is mailed to the account's address", body = AcceptedAnswer),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        AdminErrors,
    )
)]
async fn password_reset(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let (auth, _, credentials) = addressed(&state, id).await?;
    let mut tx = auth.pool.begin().await.map_err(|e| failure(e.into()))?;
    let events = worker::reset(
        &auth,
        &mut tx,
        &credentials,
        ResetRequestedBy::Admin,
        &input.metadata,
    )
    .await
    .map_err(failure)?;
    auth.commit(tx, &events).await.map_err(failure)?;
    Ok(accepted())
}
