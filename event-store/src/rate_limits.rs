//! Rate-limit counters: every statement on `auth_rate_limits`. Fixed windows aligned to the
//! epoch, one upsert per hit, so every replica shares them and a restart forgets nothing
//! (ACCOUNTS.md, "Rate limits").

use std::time::Duration;

use sqlx::{PgConnection, PgExecutor};

/// One limit applied to one subject: `count` per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Counter<'a> {
    /// The limit's name (`login_failed_address_ip`, ...).
    pub name: &'a str,
    /// What it counts: an address, an address and IP, an IP.
    pub subject: &'a str,
    /// The address it counts, when it counts one (a password reset clears these).
    pub email: Option<&'a str>,
    /// How many hits a window allows.
    pub count: u32,
    /// The window's length.
    pub window: Duration,
}

/// Where a subject stands against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the limit is exceeded.
    pub over: bool,
    /// Whole seconds until the current window ends (at least 1).
    pub retry_after: u64,
}

/// The window's start and the seconds left in it, computed by the database's clock so every
/// replica agrees.
const WINDOW: &str = "to_timestamp(floor(extract(epoch FROM now()) / $3) * $3)";

/// Counts one hit and says whether it went over the limit.
///
/// # Errors
///
/// The database failed.
pub async fn hit<'e>(
    executor: impl PgExecutor<'e>,
    counter: &Counter<'_>,
) -> Result<Verdict, sqlx::Error> {
    let (hits, left): (i32, f64) = sqlx::query_as(&format!(
        "INSERT INTO auth_rate_limits (limit_name, subject, window_start, email, hits) \
         VALUES ($1, $2, {WINDOW}, $4, 1) \
         ON CONFLICT (limit_name, subject, window_start) \
           DO UPDATE SET hits = auth_rate_limits.hits + 1 \
         RETURNING hits, \
                   extract(epoch FROM window_start + make_interval(secs => $3) - now())::float8"
    ))
    .bind(counter.name)
    .bind(counter.subject)
    .bind(window_secs(counter.window))
    .bind(counter.email)
    .fetch_one(executor)
    .await?;
    Ok(verdict(i64::from(hits) > i64::from(counter.count), left))
}

/// Says whether the subject already reached the limit, without counting: for limits on
/// failures, decided before a password is checked.
///
/// # Errors
///
/// The database failed.
pub async fn check<'e>(
    executor: impl PgExecutor<'e>,
    counter: &Counter<'_>,
) -> Result<Verdict, sqlx::Error> {
    let (hits, left): (Option<i32>, f64) = sqlx::query_as(&format!(
        "SELECT (SELECT hits FROM auth_rate_limits \
                  WHERE limit_name = $1 AND subject = $2 AND window_start = {WINDOW}), \
                extract(epoch FROM {WINDOW} + make_interval(secs => $3) - now())::float8"
    ))
    .bind(counter.name)
    .bind(counter.subject)
    .bind(window_secs(counter.window))
    .fetch_one(executor)
    .await?;
    Ok(verdict(
        i64::from(hits.unwrap_or(0)) >= i64::from(counter.count),
        left,
    ))
}

fn window_secs(window: Duration) -> f64 {
    window.as_secs_f64().max(1.0)
}

fn verdict(over: bool, left: f64) -> Verdict {
    Verdict {
        over,
        // Saturating float-to-int conversion; a window never lasts 2^64 seconds.
        retry_after: (left.ceil() as u64).max(1),
    }
}

/// Clears every counter of `email` (a successful password reset lets its owner back in).
///
/// # Errors
///
/// The database failed.
pub async fn clear_email(tx: &mut PgConnection, email: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM auth_rate_limits WHERE email = $1")
        .bind(email)
        .execute(tx)
        .await?;
    Ok(())
}

/// Deletes windows that ended more than `older_than` ago; returns how many.
///
/// # Errors
///
/// The database failed.
pub async fn purge<'e>(
    executor: impl PgExecutor<'e>,
    older_than: Duration,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM auth_rate_limits WHERE window_start < now() - make_interval(secs => $1)",
    )
    .bind(older_than.as_secs_f64())
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_window_counts_hits_and_a_cleared_address_starts_again(
        pool: PgPool,
    ) -> sqlx::Result<()> {
        let counter = Counter {
            name: "login_address",
            subject: "ada@example.com",
            email: Some("ada@example.com"),
            count: 2,
            window: Duration::from_secs(3600),
        };
        assert!(!check(&pool, &counter).await?.over);
        assert!(!hit(&pool, &counter).await?.over);
        assert!(!hit(&pool, &counter).await?.over);
        let over = hit(&pool, &counter).await?;
        assert!(over.over);
        assert!((1..=3600).contains(&over.retry_after), "{over:?}");
        assert!(check(&pool, &counter).await?.over);
        let other = Counter {
            subject: "bob@example.com",
            email: Some("bob@example.com"),
            ..counter
        };
        assert!(!check(&pool, &other).await?.over, "subjects are apart");

        let mut tx = pool.begin().await?;
        clear_email(&mut tx, "ada@example.com").await?;
        tx.commit().await?;
        assert!(!check(&pool, &counter).await?.over);
        Ok(())
    }
}
