//! Logging and metrics set-up, in one place for every binary and test.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, compact text otherwise. Safe to call more than once.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// The environment variable that turns test logs on: `TEST_LOG=1 cargo test`.
pub const TEST_LOG: &str = "TEST_LOG";

/// Installs a log subscriber for tests when `TEST_LOG` is set (to anything but empty or `0`),
/// and does nothing otherwise, so a passing test run stays quiet.
///
/// Lines go through the test harness's capture (shown for failing tests, or all with
/// `--nocapture`); `RUST_LOG` filters them (default `debug` for our crates, `info` for the
/// rest). Safe to call from every test: the first call wins.
pub fn init_test_logging() {
    let wanted = std::env::var(TEST_LOG).is_ok_and(|value| !value.is_empty() && value != "0");
    if !wanted {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,events=debug,event_store=debug,service_kit=debug,command_api=debug,\
             projector=debug,query_api=debug,chronicle=debug",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .compact()
        .try_init();
}

/// The process-wide Prometheus recorder; installed on first use, with a task that runs its
/// upkeep (histogram draining) since no exporter listener does it for us.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only when another recorder was installed first (tests installing twice);
            // the handle still renders this recorder's metrics.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        tick.tick().await;
                        upkeep.run_upkeep();
                    }
                });
            }
            handle
        })
        .clone()
}
