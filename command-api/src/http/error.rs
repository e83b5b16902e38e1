//! The one place where write-side errors become HTTP answers.

use axum::http::StatusCode;
use event_store::idempotency::IdempotencyError;
use service_kit::Problem;
use service_kit::openapi::ConflictCode;

use crate::domain::analytics::AnalyticsError;
use crate::domain::post::PostError;
use crate::domain::project::ProjectError;
use crate::domain::service_status::ServiceStatusError;
use crate::domain::ticket::TicketError;
use crate::execute::ExecuteError;

/// A domain rule's HTTP face.
pub trait RuleProblem: std::error::Error {
    /// The problem answering this rule violation.
    fn problem(&self) -> Problem;
}

impl RuleProblem for AnalyticsError {
    fn problem(&self) -> Problem {
        match self {
            // 409: the batch id was used before (batch ids are server-made v7 UUIDs).
            Self::AlreadyIngested => {
                Problem::conflict(ConflictCode::AlreadyExists, self.to_string())
            }
        }
    }
}

impl RuleProblem for ProjectError {
    fn problem(&self) -> Problem {
        match self {
            // 404: the project does not exist.
            Self::NotFound => Problem::not_found(self.to_string()),
            // 409: every other rule is a conflict with the project's state.
            Self::AlreadyExists => Problem::conflict(ConflictCode::AlreadyExists, self.to_string()),
            Self::Archived => Problem::conflict(ConflictCode::Archived, self.to_string()),
            // The lifecycle's moves: archive of an archived project, restore of an active one.
            Self::AlreadyArchived => {
                Problem::invalid_transition("archived", "archived", self.to_string())
            }
            Self::NotArchived => Problem::invalid_transition("active", "active", self.to_string()),
        }
    }
}

impl RuleProblem for TicketError {
    fn problem(&self) -> Problem {
        match self {
            // 404: the ticket does not exist.
            Self::NotFound => Problem::not_found(self.to_string()),
            // 409: the id is taken, or the lifecycle has no such move from the current status.
            Self::AlreadyExists => Problem::conflict(ConflictCode::AlreadyExists, self.to_string()),
            Self::ForbiddenMove { from, to } => {
                Problem::invalid_transition(from.to_string(), to.to_string(), self.to_string())
            }
            // 403: the submitter may see the ticket but not make this move.
            Self::SubmitterMove => service_kit::caller::forbidden(self.to_string()),
        }
    }
}

impl RuleProblem for PostError {
    fn problem(&self) -> Problem {
        match self {
            // 404: the post was never published.
            Self::NotFound => Problem::not_found(self.to_string()),
            // 409: the id is taken, or the post was deleted and takes nothing more.
            Self::AlreadyExists => Problem::conflict(ConflictCode::AlreadyExists, self.to_string()),
            Self::Deleted => Problem::conflict(ConflictCode::Deleted, self.to_string()),
            // 403: posts are public, so another's post is visible but not changeable.
            Self::NotAuthor => service_kit::caller::forbidden(self.to_string()),
        }
    }
}

impl RuleProblem for ServiceStatusError {
    fn problem(&self) -> Problem {
        // Reports are always accepted: there is no variant to answer.
        match *self {}
    }
}

impl<E: RuleProblem> From<ExecuteError<E>> for Problem {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Rejected(rule) => rule.problem(),
            // 412 with the current version, so the client can refetch and decide.
            ExecuteError::PreconditionFailed { current, resource } => {
                Problem::precondition_failed(current, resource)
            }
            // 409: retried and still lost; the client may retry.
            ExecuteError::Contention => {
                Problem::conflict(ConflictCode::Contention, error.to_string())
            }
            // 409: another attempt with this key completed, and its record could not be read
            // back (purged in between, or an earlier version's claim still open): retry.
            ExecuteError::ClaimLost => {
                Problem::conflict(ConflictCode::IdempotencyInFlight, error.to_string())
            }
            // 503: transient; retry later.
            ExecuteError::Unavailable(_) => {
                tracing::warn!(%error, "event store unavailable");
                Problem::unavailable("the event store is unavailable", 1)
            }
            ExecuteError::Store(_) => Problem::internal(&error),
        }
    }
}

/// The answer to a key that cannot be used (a function, not a `From`: both types are foreign).
pub fn idempotency_problem(error: IdempotencyError) -> Problem {
    match error {
        // 422: the key belongs to another request.
        IdempotencyError::Mismatch => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/idempotency-key-reused",
            "Idempotency key reused",
        )
        .detail(error.to_string()),
        // 409: the first request with this key is still running.
        IdempotencyError::InFlight => Problem::new(
            StatusCode::CONFLICT,
            "/problems/idempotency-key-in-flight",
            "Request in progress",
        )
        .detail(error.to_string())
        .with("code", ConflictCode::IdempotencyInFlight.as_str())
        .retry_after(1),
        IdempotencyError::Database(ref database) if service_kit::db::is_unavailable(database) => {
            Problem::unavailable("the database is unavailable", 1)
        }
        // 500: a record this version cannot read, or a database failure: bugs either way.
        IdempotencyError::Database(_) | IdempotencyError::Unreadable(_) => {
            Problem::internal(&error)
        }
    }
}
