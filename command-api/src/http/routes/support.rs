//! Support ticket commands: open a ticket, change its status.

use axum::extract::{Path, State};
use axum::response::Response;
use events::ticket::TicketStatus;
use serde::Deserialize;
use service_kit::Problem;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::limits;
use crate::domain::ticket::SupportTicket;
use crate::domain::ticket::{Email, Message, Subject, TicketCommand};
use crate::http::fields::Fields;
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::{
    ChangeHeaders, CommandErrors, CreateHeaders, ProblemDoc, UnknownId, text,
};
use crate::http::{ChangeAnswer, change_guarded, create};
use crate::state::AppState;

/// Routes of the support ticket commands.
pub fn router() -> OpenApiRouter<AppState> {
    // Anyone may open a ticket; only accounts move one (ACCOUNTS.md, "Who may call what").
    OpenApiRouter::new()
        .routes(routes!(change_ticket_status))
        .route_layer(axum::middleware::from_fn(
            service_kit::caller::needs_account,
        ))
        .routes(routes!(open_ticket))
}

/// `POST /support/tickets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTicket {
    /// Client-generated id (UUID) for offline clients; generated when absent.
    id: Option<Uuid>,
    /// The customer's email address, at most 254 characters; required without an account.
    #[schema(schema_with = text::email)]
    email: Option<String>,
    /// 1 to 200 characters after trimming.
    #[schema(schema_with = text::subject)]
    subject: String,
    /// 1 to 10000 characters after trimming.
    #[schema(schema_with = text::message)]
    message: String,
}

/// `POST /support/tickets/{id}/status` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeTicketStatus {
    /// One of `open`, `in_progress`, `resolved`, `closed`. Allowed moves: open -> in_progress
    /// -> resolved -> closed, and resolved -> open.
    #[schema(pattern = "^(open|in_progress|resolved|closed)$")]
    status: String,
}

fn location(id: &str) -> String {
    format!("/api/v1/support/tickets/{id}")
}

/// Opens a support ticket.
#[utoipa::path(
    post, path = "/api/v1/support/tickets", tag = "support",
    request_body = OpenTicket,
    params(CreateHeaders),
    responses(
        (status = 201, description = "Opened", body = ChangeAnswer),
        (status = 429, description = "`/problems/rate-limited`: over the per-IP limit on anonymous tickets (`RATE_LIMIT_TICKETS_IP`, 30 per hour), with `Retry-After`", body = ProblemDoc, content_type = "application/problem+json"),
        CommandErrors,
    )
)]
async fn open_ticket(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let submitter_id = input.caller.account_id();
    // Anonymous tickets are a coarse per-IP brake's business (ACCOUNTS.md, "Rate limits"):
    // counted before any work, a 429 writes nothing.
    if submitter_id.is_none()
        && let Some(auth) = &state.auth
    {
        limits::anonymous_ticket(
            &state.pool,
            &auth.settings.rate_limits,
            limits::ip_of(input.metadata.ip.as_deref()),
        )
        .await??;
    }
    let body: OpenTicket = input.json()?;
    let mut fields = Fields::default();
    // An account is answered through its account; an anonymous customer needs an address.
    let email = match (&body.email, submitter_id) {
        (Some(raw), _) => fields.check("email", Email::parse(raw)).map(Some),
        (None, Some(_)) => Some(None),
        (None, None) => {
            fields.refuse("email", "required when opening a ticket without an account");
            None
        }
    };
    let subject = fields.check("subject", Subject::parse(&body.subject));
    let message = fields.check("message", Message::parse(&body.message));
    let (Some(email), Some(subject), Some(message)) = (email, subject, message) else {
        return Err(fields.problem());
    };
    let email = match (email, submitter_id) {
        (None, Some(account_id)) => account_email(&state, account_id).await?,
        (email, _) => email,
    };
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = TicketCommand::Open {
        email,
        subject,
        message,
        submitter_id,
    };
    create(
        &state,
        &state.tickets,
        &input,
        &id.to_string(),
        location,
        command,
    )
    .await
}

/// The address of `account_id`, which a ticket it opens without one is answered at; `None`
/// when accounts are not configured here or the address no longer parses.
async fn account_email(state: &AppState, account_id: Uuid) -> Result<Option<Email>, Problem> {
    if state.auth.is_none() {
        return Ok(None);
    }
    let credentials = event_store::accounts::by_id(&state.pool, account_id)
        .await
        .map_err(|error| Problem::from(crate::auth::AuthFailure::from(error)))?;
    Ok(credentials.and_then(|credentials| Email::parse(&credentials.email).ok()))
}

/// Moves a ticket to another status.
#[utoipa::path(
    post, path = "/api/v1/support/tickets/{id}/status", tag = "support",
    request_body = ChangeTicketStatus,
    params(
        ("id" = Uuid, Path, description = "Ticket id"),
        ChangeHeaders,
    ),
    responses(
        (status = 200, description = "Status changed", body = ChangeAnswer),
        UnknownId,
        CommandErrors,
    )
)]
async fn change_ticket_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?.to_string();
    let body: ChangeTicketStatus = input.json()?;
    let mut fields = Fields::default();
    let Some(to) = fields.check("status", body.status.parse::<TicketStatus>()) else {
        return Err(fields.problem());
    };
    let command = TicketCommand::ChangeStatus { to };
    let account = input.caller.require_account()?;
    let (account_id, admin) = (account.account_id, account.is_admin());
    let guard = move |ticket: &SupportTicket| ticket.allows(account_id, admin, Some(to));
    change_guarded(&state, &state.tickets, &input, &id, command, &guard).await
}
