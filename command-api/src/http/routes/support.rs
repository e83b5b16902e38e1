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

use crate::domain::ticket::{Email, Message, Subject, TicketCommand};
use crate::http::fields::Fields;
use crate::http::input::{CommandInput, parse_id};
use crate::http::openapi::{ChangeHeaders, CommandErrors, CreateHeaders, UnknownId, text};
use crate::http::{ChangeAnswer, change, create};
use crate::state::AppState;

/// Routes of the support ticket commands.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_ticket))
        .routes(routes!(change_ticket_status))
}

/// `POST /support/tickets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenTicket {
    /// Client-generated id (UUID) for offline clients; generated when absent.
    id: Option<Uuid>,
    /// The customer's email address, at most 254 characters.
    #[schema(schema_with = text::email)]
    email: String,
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
        CommandErrors,
    )
)]
async fn open_ticket(
    State(state): State<AppState>,
    input: CommandInput,
) -> Result<Response, Problem> {
    let body: OpenTicket = input.json()?;
    let mut fields = Fields::default();
    let email = fields.check("email", Email::parse(&body.email));
    let subject = fields.check("subject", Subject::parse(&body.subject));
    let message = fields.check("message", Message::parse(&body.message));
    let (Some(email), Some(subject), Some(message)) = (email, subject, message) else {
        return Err(fields.problem());
    };
    let id = body.id.unwrap_or_else(Uuid::now_v7);
    let command = TicketCommand::Open {
        email,
        subject,
        message,
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
    change(&state, &state.tickets, &input, &id, command).await
}
