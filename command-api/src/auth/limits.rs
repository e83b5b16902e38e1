//! Applying the rate limits of ACCOUNTS.md to a request: counted in PostgreSQL
//! (event_store::rate_limits) so every replica shares them. Limits count the submitted
//! address whether or not an account has it, so a 429 reveals nothing; the answer never says
//! which limit was hit.

use event_store::rate_limits::{self, Counter};
use service_kit::Problem;
use sqlx::PgPool;

use super::problems::{AuthFailure, rate_limited};
use super::settings::{Limit, RateLimits};

/// A client IP as counted; requests without one (in-process tests) share one bucket.
pub fn ip_of(ip: Option<&str>) -> &str {
    ip.unwrap_or("unknown")
}

fn counter<'a>(
    name: &'a str,
    subject: &'a str,
    email: Option<&'a str>,
    limit: Limit,
) -> Counter<'a> {
    Counter {
        name,
        subject,
        email,
        count: limit.count,
        window: limit.window,
    }
}

/// Counts one hit of each `(name, subject, email, limit)`; a 429 when any went over (the
/// longest wait of those over).
async fn hit_all(
    pool: &PgPool,
    counters: &[Counter<'_>],
) -> Result<Result<(), Problem>, AuthFailure> {
    let mut wait = None;
    for counter in counters {
        let verdict = rate_limits::hit(pool, counter).await?;
        if verdict.over {
            // The label is the limit's name: a bounded set, never the counted subject.
            metrics::counter!(service_kit::metric_names::RATE_LIMITED_TOTAL, "limit" => counter.name.to_owned())
                .increment(1);
            wait = Some(wait.unwrap_or(0).max(verdict.retry_after));
        }
    }
    Ok(match wait {
        Some(seconds) => {
            service_kit::security::record(service_kit::security::SecurityEvent::RateLimited, 1);
            Err(rate_limited(seconds))
        }
        None => Ok(()),
    })
}

/// One hit of a per-IP limit `name` (a coarse brake: many users may share an address); a
/// limit of 0 per window is off and counts nothing.
async fn per_ip(
    pool: &PgPool,
    name: &str,
    limit: Limit,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    if limit.count == 0 {
        return Ok(Ok(()));
    }
    hit_all(pool, &[counter(name, ip, None, limit)]).await
}

/// An anonymous auth request from `ip` (register, resend, verify, login, forgot, reset).
pub async fn anonymous(
    pool: &PgPool,
    limits: &RateLimits,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    per_ip(pool, "auth_ip", limits.auth_ip, ip).await
}

/// A refresh from `ip`.
pub async fn refresh(
    pool: &PgPool,
    limits: &RateLimits,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    per_ip(pool, "refresh_ip", limits.refresh_ip, ip).await
}

/// A CSP report request from `ip`.
pub async fn csp_report(
    pool: &PgPool,
    limits: &RateLimits,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    per_ip(pool, "csp_reports", limits.csp_reports, ip).await
}

/// A ticket opened anonymously from `ip`.
pub async fn anonymous_ticket(
    pool: &PgPool,
    limits: &RateLimits,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    per_ip(pool, "tickets_ip", limits.tickets_ip, ip).await
}

/// An analytics batch from `ip`.
pub async fn analytics_batch(
    pool: &PgPool,
    limits: &RateLimits,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    per_ip(pool, "analytics_ip", limits.analytics_ip, ip).await
}

/// A register, resend or forgot for `email` from `ip`.
pub async fn mail_request(
    pool: &PgPool,
    limits: &RateLimits,
    email: &str,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    let pair = format!("{email}|{ip}");
    hit_all(
        pool,
        &[
            counter(
                "mail_address_ip",
                &pair,
                Some(email),
                limits.mail_address_ip,
            ),
            counter("mail_address", email, Some(email), limits.mail_address),
        ],
    )
    .await
}

/// Whether `email` from `ip` may try a password now: decided before any hash, counting
/// nothing (failures are counted by [`login_failed`]).
pub async fn login_allowed(
    pool: &PgPool,
    limits: &RateLimits,
    email: &str,
    ip: &str,
) -> Result<Result<(), Problem>, AuthFailure> {
    let pair = format!("{email}|{ip}");
    let mut wait = None;
    for counter in [
        counter(
            "login_address_ip",
            &pair,
            Some(email),
            limits.login_address_ip,
        ),
        counter("login_address", email, Some(email), limits.login_address),
    ] {
        let verdict = rate_limits::check(pool, &counter).await?;
        if verdict.over {
            wait = Some(wait.unwrap_or(0).max(verdict.retry_after));
        }
    }
    Ok(match wait {
        Some(seconds) => {
            metrics::counter!(service_kit::metric_names::RATE_LIMITED_TOTAL, "limit" => "login")
                .increment(1);
            service_kit::security::record(service_kit::security::SecurityEvent::RateLimited, 1);
            Err(rate_limited(seconds))
        }
        None => Ok(()),
    })
}

/// Counts a failed login (or step-up) of `email` from `ip`.
pub async fn login_failed(
    pool: &PgPool,
    limits: &RateLimits,
    email: &str,
    ip: &str,
) -> Result<(), AuthFailure> {
    let pair = format!("{email}|{ip}");
    for counter in [
        counter(
            "login_address_ip",
            &pair,
            Some(email),
            limits.login_address_ip,
        ),
        counter("login_address", email, Some(email), limits.login_address),
    ] {
        rate_limits::hit(pool, &counter).await?;
    }
    Ok(())
}
