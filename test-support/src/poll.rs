//! Bounded waiting: a test that waits for the system does so with a deadline, and says what it
//! was waiting for when the deadline passes.

use std::time::{Duration, Instant};

/// How often [`eventually`] checks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, checking every [`POLL_INTERVAL`].
///
/// # Panics
///
/// When it still does not hold after `within`: "timed out waiting until {what}".
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let calls = AtomicU32::new(0);
        eventually(Duration::from_secs(5), "the third call", || async {
            calls.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out waiting until never")]
    async fn eventually_gives_up_after_its_bound() {
        eventually(Duration::from_millis(30), "never", || async { false }).await;
    }
}
