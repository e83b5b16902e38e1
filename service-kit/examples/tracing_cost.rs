//! What tracing costs one request through the shared plumbing (request id, server span,
//! metrics, problem mapping) with export off (the id layers: no OpenTelemetry SDK), against the
//! same router with the SDK disabled (`OTEL_SDK_DISABLED=true`: the SQL layer alone, as
//! `init_tracing` then installs it); for comparison, the export-off layers as they were before
//! the id layer (`tracing-opentelemetry` on a parent-based always-off SDK provider, no context
//! activation); and, for scale, with every span sampled into a no-op processor. Two paths: a
//! read (`GET`, the server span alone) and a create-like `POST` (the server span, a `command`
//! span and an `append` span under it, as command-api opens them, the handler yielding six times
//! as a create waits on six database round trips, so every span is entered once per wake, and
//! reading the `traceparent` an event would store). For docs/tracing.md ("Cost"):
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
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::ServiceExt as _;
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
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
        })
        .post(create),
    );
    Ok(service_kit::http::with_plumbing(
        "command-api",
        routes,
        pool,
    ))
}

/// A create's spans and waits, without the database: `command` (with command-api's fields)
/// around the lookups and `append`, each wait a yield, as a round trip would be.
async fn create() -> &'static str {
    let command = tracing::info_span!(
        target: "command_api::execute",
        "command",
        aggregate.r#type = "Project",
        aggregate.id = %"0193f2a4-7c1e-7d2a-9b1c-3f4e5d6c7b8a",
        outcome = tracing::field::Empty,
    );
    async {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let traceparent = service_kit::otel::current_traceparent();
        async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        .instrument(tracing::info_span!(target: "command_api::execute", "append", events = 1))
        .await;
        std::hint::black_box(traceparent);
    }
    .instrument(command.clone())
    .await;
    command.record("outcome", "ok");
    "ok"
}

/// Microseconds per request of `REQUESTS` requests to `method` `/things/7`, half with a
/// `traceparent`.
fn per_request(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    method: &str,
) -> anyhow::Result<f64> {
    runtime.block_on(async {
        let started = Instant::now();
        for n in 0..REQUESTS {
            let mut request = Request::builder().method(method).uri("/things/7");
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
    // Export off as it was before the id layer: a non-recording SDK span per span of ours.
    let off = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
        .build();
    // Every span recorded (what exporting costs before the exporter), into no processor.
    let on = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .build();
    let cases: [(&str, Case<'_>); 4] = [
        ("OTEL_SDK_DISABLED=true", Case::Disabled),
        ("tracing, export off (id layer)", Case::ExportOff),
        ("tracing, export off, SDK (before)", Case::SdkOff(&off)),
        ("tracing, all sampled", Case::Exporting(&on)),
    ];
    for method in ["GET", "POST"] {
        let mut figures = vec![Vec::with_capacity(ROUNDS); cases.len()];
        // Warm up each case once.
        for (_, case) in &cases {
            run_case(&runtime, &app, *case, method)?;
        }
        for round in 0..ROUNDS {
            for offset in 0..cases.len() {
                let index = (round + offset) % cases.len();
                figures[index].push(run_case(&runtime, &app, cases[index].1, method)?);
            }
        }
        for ((label, _), mut samples) in cases.iter().zip(figures) {
            samples.sort_by(f64::total_cmp);
            println!(
                "{method} {label}: {:.2} µs per request (median of {ROUNDS} rounds of {REQUESTS}; min {:.2}, max {:.2})",
                samples[ROUNDS / 2],
                samples[0],
                samples[ROUNDS - 1]
            );
        }
    }
    Ok(())
}

fn run_case(
    runtime: &tokio::runtime::Runtime,
    app: &Router,
    case: Case<'_>,
    method: &str,
) -> anyhow::Result<f64> {
    use service_kit::telemetry::{id_layers, trace_layers, untraced_layers};

    let layers = match case {
        Case::Disabled => untraced_layers().boxed(),
        Case::ExportOff => id_layers().boxed(),
        Case::SdkOff(provider) => {
            // What `unexported_trace_layers` installed: the OpenTelemetry layer on our spans,
            // without context activation, and the SQL layer without statement spans.
            let ours = tracing_subscriber::filter::FilterFn::new(|metadata| {
                metadata.is_span()
                    && ["service_kit", "command_api"]
                        .iter()
                        .any(|ours| metadata.target().starts_with(ours))
            });
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service_kit::otel::SCOPE))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
                .with_filter(ours)
                .and_then(service_kit::sql_metrics::layer(None))
                .boxed()
        }
        Case::Exporting(provider) => trace_layers(provider).boxed(),
    };
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layers));
    per_request(runtime, app, method)
}

/// The layers a case runs under.
#[derive(Clone, Copy)]
enum Case<'a> {
    /// `OTEL_SDK_DISABLED=true`.
    Disabled,
    /// The default: no exporter, the id layers.
    ExportOff,
    /// The default before the id layer, on this (always-off) provider.
    SdkOff(&'a SdkTracerProvider),
    /// As when exporting, on this provider.
    Exporting(&'a SdkTracerProvider),
}
