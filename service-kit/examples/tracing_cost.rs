//! What tracing costs one request through the shared plumbing (request id, server span,
//! metrics, problem mapping) with export off, against the same router with no tracing layers
//! at all; and, for scale, with every span sampled into a no-op processor. For
//! docs/tracing.md ("Cost"):
//!
//! ```sh
//! cargo run --release -p service-kit --example tracing_cost
//! ```
//!
//! Each case runs its requests on a current-thread runtime, its subscriber this thread's
//! default; the case order rotates each round and the median of the rounds is printed.
//! Wall-clock on whatever else the machine is doing: a rough figure, not a test.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

const REQUESTS: u32 = 20_000;
const ROUNDS: usize = 7;

fn app() -> anyhow::Result<Router> {
    let pool =
        sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://nobody@127.0.0.1:1/none")?;
    let routes = Router::new().route(
        "/things/{id}",
        get(|| async {
            // One statement-like event in the handler's span, as a log line would be.
            tracing::debug!("handled");
            "ok"
        }),
    );
    Ok(service_kit::http::with_plumbing(
        "command-api",
        routes,
        pool,
    ))
}

/// Microseconds per request of `REQUESTS` requests, half with a `traceparent`.
fn per_request(runtime: &tokio::runtime::Runtime, app: &Router) -> anyhow::Result<f64> {
    runtime.block_on(async {
        let started = Instant::now();
        for n in 0..REQUESTS {
            let mut request = Request::get("/things/7");
            if n % 2 == 0 {
                request = request.header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                );
            }
            let response = app.clone().oneshot(request.body(Body::empty())?).await?;
            anyhow::ensure!(response.status().is_success(), "{}", response.status());
        }
        Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(REQUESTS))
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = runtime.block_on(async { app() })?;
    // Export off, as `init_tracing` sets it up without OTEL_EXPORTER_OTLP_ENDPOINT.
    let off = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
        .build();
    // Every span recorded (what exporting costs before the exporter), into no processor.
    let on = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .build();
    let cases: [(&str, Option<&SdkTracerProvider>); 3] = [
        ("no tracing layers", None),
        ("tracing, export off", Some(&off)),
        ("tracing, all sampled", Some(&on)),
    ];
    let mut figures = vec![Vec::with_capacity(ROUNDS); cases.len()];
    // Warm up each case once.
    for (_, provider) in &cases {
        run_case(&runtime, &app, *provider)?;
    }
    for round in 0..ROUNDS {
        for offset in 0..cases.len() {
            let index = (round + offset) % cases.len();
            figures[index].push(run_case(&runtime, &app, cases[index].1)?);
        }
    }
    for ((label, _), mut samples) in cases.iter().zip(figures) {
        samples.sort_by(f64::total_cmp);
        println!(
            "{label}: {:.2} µs per request (median of {ROUNDS} rounds of {REQUESTS}; min {:.2}, max {:.2})",
            samples[ROUNDS / 2],
            samples[0],
            samples[ROUNDS - 1]
        );
    }
    Ok(())
}

fn run_case(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    provider: Option<&SdkTracerProvider>,
) -> anyhow::Result<f64> {
    match provider {
        None => {
            let subscriber =
                tracing_subscriber::registry().with(service_kit::sql_metrics::layer(None));
            let _guard = tracing::subscriber::set_default(subscriber);
            per_request(runtime, app)
        }
        Some(provider) => {
            let subscriber =
                tracing_subscriber::registry().with(service_kit::telemetry::trace_layers(provider));
            let _guard = tracing::subscriber::set_default(subscriber);
            per_request(runtime, app)
        }
    }
}
