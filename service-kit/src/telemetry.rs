//! Logging and metrics set-up, in one place for every binary and test.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{metric_names, sql_metrics};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, compact text otherwise; and the SQL timing metrics
/// ([`crate::sql_metrics`]), whose filter is their own. Safe to call more than once.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let logs = tracing_subscriber::fmt::layer().with_span_events(FmtSpan::NONE);
    let logs = if json {
        logs.json().flatten_event(true).boxed()
    } else {
        logs.compact().boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(sql_metrics::layer())
        .try_init();
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
        // No logs, but the SQL timings still reach the metrics the scrape tests read.
        let _ = tracing_subscriber::registry()
            .with(sql_metrics::layer())
            .try_init();
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,sqlx=warn,events=debug,event_store=debug,service_kit=debug,command_api=debug,\
             projector=debug,query_api=debug,chronicle=debug",
        )
    });
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .compact()
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(sql_metrics::layer())
        .try_init();
}

/// The process-wide Prometheus recorder; installed on first use, with every family of
/// [`crate::metric_names::FAMILIES`] described and given its buckets, and with a task that runs
/// its upkeep (histogram draining) since no exporter listener does it for us.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_builder()
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first (tests installing twice);
            // the handle still renders this recorder's metrics.
            let _ = metrics::set_global_recorder(recorder);
            metric_names::describe_all();
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

/// The exporter's builder with the catalogue's buckets: each histogram family its own, any
/// other histogram the latency buckets.
///
/// # Errors
///
/// A family with no buckets (ruled out by `metric_names`' test).
pub fn metrics_builder() -> Result<PrometheusBuilder, BuildError> {
    let mut builder = PrometheusBuilder::new().set_buckets(metric_names::LATENCY_BUCKETS)?;
    for family in metric_names::FAMILIES {
        if family.kind == metric_names::Kind::Histogram {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(family.name.to_owned()), family.buckets)?;
        }
    }
    Ok(builder)
}

/// Sets the pool gauges (`chronicle_db_pool_connections{service, state}`,
/// `chronicle_db_pool_max_connections{service}`) from `pool` as it is now; called on each
/// scrape, so the figures are as fresh as the scrape.
pub fn record_pool(service: &'static str, pool: &sqlx::PgPool) {
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
    metrics::gauge!(metric_names::DB_POOL_CONNECTIONS, "service" => service, "state" => "idle")
        .set(f64::from(idle));
    metrics::gauge!(metric_names::DB_POOL_CONNECTIONS, "service" => service, "state" => "used")
        .set(f64::from(open - idle));
    metrics::gauge!(metric_names::DB_POOL_MAX_CONNECTIONS, "service" => service)
        .set(f64::from(pool.options().get_max_connections()));
}
