//! The threat counter `chronicle_security_events_total{kind}` (ACCOUNTS.md, "Metrics"): one
//! family for every security-relevant event, whichever service sees it.
//!
//! `kind` is an enum rather than a string so that a label can never carry an address, an id or
//! an IP: a new kind is a new variant here, with its label in [`SecurityEvent::label`] and in
//! docs/metrics.md.

use std::sync::Once;

/// The family's name, as exposed and catalogued in docs/metrics.md.
pub const SECURITY_EVENTS_TOTAL: &str = "chronicle_security_events_total";

/// A security-relevant event: what `kind` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityEvent {
    /// A browser reported a Content Security Policy violation.
    CspViolation,
    /// A wrong TOTP or recovery code, or a dead `mfa_token`, at `login/mfa`.
    MfaFailed,
    /// A login failed (wrong password, unknown address, unverified or disabled account).
    LoginFailed,
    /// A request was refused with 429 by a rate limit.
    RateLimited,
    /// A wrong re-entered password or code before a change to factors or sessions.
    StepUpFailed,
}

impl SecurityEvent {
    /// The `kind` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::CspViolation => "csp_violation",
            Self::MfaFailed => "mfa_failed",
            Self::LoginFailed => "login_failed",
            Self::RateLimited => "rate_limited",
            Self::StepUpFailed => "step_up_failed",
        }
    }
}

/// Counts `count` events of one kind.
pub fn record(event: SecurityEvent, count: u64) {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_counter!(
            SECURITY_EVENTS_TOTAL,
            "Security-relevant events (blocked or failed attempts), by kind."
        );
    });
    metrics::counter!(SECURITY_EVENTS_TOTAL, "kind" => event.label()).increment(count);
}
