//! The one place accounts' failures become HTTP answers (ACCOUNTS.md, "New problem types").

use axum::http::StatusCode;
use event_store::append::AppendError;
use event_store::load::LoadError;
use service_kit::Problem;
use service_kit::openapi::ConflictCode;

use super::crypto::{HashFailure, KeyError};

/// 401 `invalid-credentials`: login failed; the same bytes whatever the reason.
pub fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-credentials",
        "Invalid credentials",
    )
    .detail("The email or password is incorrect.")
}

/// 401 `invalid-refresh-token`: no live refresh token, or a spent one.
pub fn invalid_refresh_token() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "/problems/invalid-refresh-token",
        "Invalid refresh token",
    )
    .detail("Sign in again.")
}

/// 401 `unauthenticated`: no valid access token (or refresh cookie, for logout).
pub fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "/problems/unauthenticated",
        "Authentication required",
    )
}

/// 403 `step-up-failed`: a re-entered password is wrong.
pub fn step_up_failed() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "/problems/step-up-failed",
        "Step-up failed",
    )
    .detail("The password is incorrect.")
}

/// 403 `step-up-failed` for a step-up that takes a code: the password or the code is wrong
/// (which one is not said).
pub fn step_up_code_failed() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "/problems/step-up-failed",
        "Step-up failed",
    )
    .detail("The password or code is incorrect.")
}

/// 401 `mfa-required`: the password was right and a second factor is due; the client
/// completes the login at `login/mfa` with `mfa_token` within `expires_in` seconds.
pub fn mfa_required(mfa_token: &str, expires_in: u64) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "/problems/mfa-required",
        "A second factor is required",
    )
    .with("mfa_token", mfa_token)
    .with("methods", vec!["totp", "recovery_code"])
    .with("expires_in", expires_in)
}

/// 409 `totp-already-enabled`: setup or enable while TOTP is on.
pub fn totp_already_enabled() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "/problems/totp-already-enabled",
        "TOTP already enabled",
    )
    .detail("Disable TOTP before setting it up again.")
    .with("code", ConflictCode::TotpAlreadyEnabled.as_str())
}

/// 409 `no-pending-totp`: enable without a live pending secret (set up again), or disable or
/// recovery-code regeneration while TOTP is off.
pub fn no_pending_totp(detail: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "/problems/no-pending-totp",
        "No pending TOTP",
    )
    .detail(detail)
    .with("code", ConflictCode::NoPendingTotp.as_str())
}

/// 403 `email-not-verified`: right password, address not proven yet.
pub fn email_not_verified() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "/problems/email-not-verified",
        "Email not verified",
    )
    .detail("Follow the link mailed to you first.")
}

/// 403 `account-disabled`: right password, account disabled by an admin.
pub fn account_disabled() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "/problems/account-disabled",
        "Account disabled",
    )
}

/// 400 `invalid-token`: a mail token that is unknown, expired or used.
pub fn invalid_token() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "/problems/invalid-token",
        "Invalid token",
    )
    .detail("The link is unknown, expired or already used.")
}

/// 409 `refresh-raced`: another tab just rotated this token; retry with the cookie now held.
pub fn refresh_raced() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "/problems/refresh-raced",
        "Refresh raced",
    )
    .detail("Another request just refreshed this session; retry.")
    .with("code", ConflictCode::RefreshRaced.as_str())
}

/// 429 `rate-limited`, never saying which limit.
pub fn rate_limited(retry_after: u64) -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "/problems/rate-limited",
        "Too many requests",
    )
    .with("retry_after", retry_after)
    .retry_after(retry_after)
}

/// A failure of the machinery under an accounts' command.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Appending failed.
    #[error("append: {0}")]
    Append(#[from] AppendError),
    /// Loading a stream failed.
    #[error("load: {0}")]
    Load(#[from] LoadError),
    /// Hashing failed or is saturated.
    #[error(transparent)]
    Hash(#[from] HashFailure),
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// An event did not serialize.
    #[error("event: {0}")]
    Event(#[from] serde_json::Error),
    /// A domain rule refused what the machinery assumed it would take.
    #[error("refused: {0}")]
    Refused(String),
}

impl From<AuthFailure> for Problem {
    fn from(failure: AuthFailure) -> Self {
        match &failure {
            AuthFailure::Hash(HashFailure::Busy) => {
                Problem::unavailable("Too many sign-ins at once; retry shortly.", 2)
            }
            AuthFailure::Database(error)
            | AuthFailure::Append(AppendError::Database(error))
            | AuthFailure::Load(LoadError::Database(error))
                if service_kit::db::is_unavailable(error) =>
            {
                Problem::unavailable("The event store is unavailable.", 1)
            }
            AuthFailure::Append(AppendError::Conflict) => {
                Problem::conflict(ConflictCode::Contention, "A concurrent change won; retry.")
            }
            _ => Problem::internal(&failure),
        }
    }
}
