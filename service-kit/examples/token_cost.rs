//! What authenticating one request costs, single-threaded, with the verified-token cache (a
//! hit: map lookup plus revocation check) and without it (a full Ed25519 verification plus the
//! same check), for docs/PERFORMANCE.md ("Access tokens on every request"):
//!
//! ```sh
//! cargo run --release -p service-kit --example token_cost
//! ```
//!
//! Wall-clock per call on whatever else the machine is doing: a rough figure, not a test.

use service_kit::caller::Authenticator;
use service_kit::revocation::RevocationView;

fn main() -> anyhow::Result<()> {
    let keys = auth::SigningKeys::from_pem(
        &auth::generate_signing_key_pem(),
        auth::TokenSettings::default(),
    )?;
    let now = chrono::Utc::now();
    let token = keys
        .issue(
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            &[auth::Role::Admin],
            &["pwd"],
            now,
            now,
        )?
        .token;
    let header = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))?;
    println!("token: {} bytes", token.len());
    for (label, capacity, calls) in [("cache hit", 8192, 200_000u32), ("no cache", 0, 5_000)] {
        let authenticator =
            Authenticator::new(keys.verifier(), RevocationView::new()).with_token_cache(capacity);
        // The first call fills the cache; only the calls after it are timed.
        authenticator
            .authenticate(Some(&header), now)
            .map_err(|problem| anyhow::anyhow!("refused: {problem:?}"))?;
        let started = std::time::Instant::now();
        for _ in 0..calls {
            authenticator
                .authenticate(Some(&header), now)
                .map_err(|problem| anyhow::anyhow!("refused: {problem:?}"))?;
        }
        let per_call = started.elapsed().as_secs_f64() * 1e6 / f64::from(calls);
        println!("{label}: {per_call:.2} µs per request");
    }
    Ok(())
}
