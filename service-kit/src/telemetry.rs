//! Logging, tracing and metrics set-up, in one place for every binary and test.
//!
//! One subscriber: the log lines (each written while serving a request carries `request_id`,
//! `trace_id` and `span_id`), a layer giving our spans their trace context, and the SQL layer
//! that times sqlx's statements ([`crate::sql_metrics`]). The span layer is the OpenTelemetry one
//! when exporting ([`trace_layers`]: our spans become OTel spans, statements get spans too), and
//! otherwise [`crate::trace_ids`]'s, which only gives each span its W3C ids ([`id_layers`]).
//! `OTEL_SDK_DISABLED=true` leaves out both ([`untraced_layers`]), never the statement timings.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::trace_ids::{IdLayer, SpanIds};
use crate::{metric_names, otel, sql_metrics};

/// The provider installed by [`init_tracing`], kept so that [`shutdown_tracing`] can flush it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One compact text line per event.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT=json` for JSON lines, else text.
    pub fn from_env() -> Self {
        if std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json") {
            Self::Json
        } else {
            Self::Text
        }
    }
}

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `LOG_FORMAT=json`, compact text otherwise; the span layer and the SQL timings
/// ([`crate::sql_metrics`]), whose filters are their own. Safe to call more than once.
///
/// When `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otel::export_enabled`]), the exporting
/// provider ([`otel::exporting_provider`]) under the OpenTelemetry layer, and statement spans
/// ([`trace_layers`]). Otherwise no OpenTelemetry SDK at all: our spans get their W3C ids from
/// the id layer, and statements no span ([`id_layers`]); event metadata, AMQP headers and log
/// lines carry the ids all the same.
///
/// With `OTEL_SDK_DISABLED=true` ([`otel::sdk_disabled`]) neither: the SQL layer still times
/// every statement ([`untraced_layers`]); log lines carry `request_id` but no
/// `trace_id`/`span_id`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let disabled = otel::sdk_disabled();
    let provider = (!disabled && otel::export_enabled())
        .then(|| otel::exporting_provider(None))
        .and_then(|built| match built {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Tracing is not worth refusing to serve for: say so, and keep the ids.
                eprintln!("OpenTelemetry export disabled: {error}");
                None
            }
        });
    let ids = !disabled && provider.is_none();
    let installed = tracing_subscriber::registry()
        .with(log_layer(LogFormat::from_env(), std::io::stdout).with_filter(filter))
        .with(layers(provider.as_ref().map(otel::tracer), ids))
        .try_init();
    if installed.is_ok() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        if let Some(provider) = provider {
            let _ = PROVIDER.set(provider);
        }
    }
}

/// Flushes the spans not yet exported and stops the exporter; call once, before exiting.
pub fn shutdown_tracing() {
    if let Some(provider) = PROVIDER.get()
        && let Err(error) = provider.shutdown()
    {
        tracing::debug!(%error, "tracer provider shutdown");
    }
}

/// The log layer: lines in `format` to `writer`, each written inside a request (or any span of
/// ours) ending with its `request_id`, `trace_id` and `span_id`. Give it its own filter.
pub fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // No colour codes: the line is rewritten after formatting, and compose logs are files.
    let logs = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::NONE)
        .with_ansi(false)
        .with_writer(writer);
    let dispatch = Arc::new(OnceLock::new());
    let correlation = Correlation {
        dispatch: Arc::clone(&dispatch),
    };
    match format {
        LogFormat::Json => {
            let logs = logs.json().flatten_event(true);
            let inner = tracing_subscriber::fmt::format().json().flatten_event(true);
            logs.event_format(Correlated {
                inner,
                json: true,
                dispatch,
            })
            .and_then(correlation)
            .boxed()
        }
        LogFormat::Text => {
            let inner = tracing_subscriber::fmt::format().compact().with_ansi(false);
            logs.event_format(Correlated {
                inner,
                json: false,
                dispatch,
            })
            .and_then(correlation)
            .boxed()
        }
    }
}

/// The OpenTelemetry layer (our crates' spans, on `provider`'s tracer) and the SQL layer
/// (statement timings, and a client span per statement on the same tracer): what
/// [`init_tracing`] installs when it exports.
pub fn trace_layers<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    layers(Some(otel::tracer(provider)), false)
}

/// What [`init_tracing`] installs when it does not export: no OpenTelemetry SDK, the id layer
/// on our crates' spans ([`crate::trace_ids`]: each gets its trace id and sampled flag from its
/// parent of ours or the caller, else a new trace, and a new span id), and the SQL layer
/// without statement spans (nothing would receive them). The ids in event metadata, AMQP
/// headers and log lines are as with [`trace_layers`]; nothing else of a span is kept, links
/// included.
pub fn id_layers<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    layers(None, true)
}

/// What [`init_tracing`] installs beside the logs with `OTEL_SDK_DISABLED=true`: the SQL layer
/// alone, timing statements and making no span.
pub fn untraced_layers<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    layers(None, false)
}

/// The OpenTelemetry layer on `tracer` when there is one (exporting), the id layer when `ids`,
/// and the SQL layer, with statement spans on the tracer.
fn layers<S>(tracer: Option<SdkTracer>, ids: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let spans = tracer.clone().map(span_layer);
    // The ids and the SQL timings share one filter when both are installed: each filtered
    // layer looks its span up on every enter and exit of every span, and a read enters its
    // request's span six times or so (sqlx re-enters the current span on each poll of a
    // statement).
    // `Option`'s own `and_then` would shadow the layer's. An absent layer (`None`) goes first:
    // put last, it would set the subscriber's most verbose level to `OFF` (what a `None`
    // layer claims), and no event of sqlx would be dispatched at all.
    if ids {
        Layer::and_then(spans, ids_and_sql_layer(tracer)).boxed()
    } else {
        Layer::and_then(spans, sql_metrics::layer(tracer)).boxed()
    }
}

/// Whether a span is one of our crates' (the metadata filter of the span layers).
const OURS: sql_metrics::TargetFilter = |metadata| metadata.is_span() && is_ours(metadata);

/// Our crates' spans as OpenTelemetry spans; events stay log lines (not span events), and
/// other crates' spans (hyper, lapin, ...) are not traced. Each span's context is the current
/// OpenTelemetry context while it is entered, which is how a statement span finds its parent
/// ([`sql_metrics`]); that costs a context clone and attach on every poll of every instrumented
/// future, which is one reason this layer is only installed when exporting.
fn span_layer<S>(
    tracer: SdkTracer,
) -> Filtered<OpenTelemetryLayer<S, SdkTracer>, FilterFn<sql_metrics::TargetFilter>, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    OpenTelemetryLayer::new(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(true)
        .with_filter(FilterFn::new(OURS))
}

/// Our crates' spans with W3C ids and nothing else ([`crate::trace_ids`]), and sqlx's events
/// timed ([`sql_metrics`]), behind one filter. Neither layer handles what the other is given:
/// the id layer only makes spans' ids, the SQL layer only reads events.
fn ids_and_sql_layer<S>(
    tracer: Option<SdkTracer>,
) -> Filtered<
    tracing_subscriber::layer::Layered<sql_metrics::SqlMetrics, IdLayer, S>,
    FilterFn<sql_metrics::TargetFilter>,
    S,
>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    const WANTED: sql_metrics::TargetFilter =
        |metadata| OURS(metadata) || sql_metrics::is_sqlx_event(metadata);
    IdLayer::new::<S>()
        .and_then(sql_metrics::SqlMetrics::new(tracer))
        .with_filter(FilterFn::new(WANTED))
}

/// Whether a span comes from one of Chronicle's crates.
fn is_ours(metadata: &Metadata<'_>) -> bool {
    const CRATES: [&str; 8] = [
        "service_kit",
        "command_api",
        "query_api",
        "projector",
        "event_store",
        "events",
        "chronicle",
        "auth",
    ];
    let root = metadata.target().split("::").next().unwrap_or_default();
    CRATES.contains(&root)
}

/// Keeps a span's `request_id` field in its extensions, for [`Correlated`] to find, and the
/// subscriber it is part of, through which [`Correlated`] reaches a span's OpenTelemetry context
/// when none is active on the thread (an event given a parent span that is not entered).
struct Correlation {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// A span's `request_id`.
struct RequestIdField(String);

impl<S> Layer<S> for Correlation
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().fields().field("request_id").is_none() {
            return;
        }
        let mut found = RequestIdVisitor(None);
        attrs.record(&mut found);
        if let (Some(request_id), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(RequestIdField(request_id));
        }
    }
}

struct RequestIdVisitor(Option<String>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "request_id" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "request_id" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// An event format that appends the correlation ids to what `inner` writes: as fields of the
/// JSON object, or as `key=value` pairs at the end of a text line.
struct Correlated<F> {
    inner: F,
    json: bool,
    /// Set by [`Correlation`] when the subscriber is built.
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<S, N, F> FormatEvent<S, N> for Correlated<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let request_id = ctx.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| {
                span.extensions()
                    .get::<RequestIdField>()
                    .map(|id| id.0.clone())
            })
        });
        // Export off: the id layer's ids of the innermost span that has them. Export on: the
        // OpenTelemetry context active on the thread, else (inside the subscriber
        // `tracing::Span::current()` is no span: the dispatcher does not re-enter) the innermost
        // span's own, looked up through the subscriber.
        let ids = ctx
            .event_scope()
            .and_then(|scope| {
                scope.into_iter().find_map(|span| {
                    let ids = *span.extensions().get::<SpanIds>()?;
                    Some((ids.trace_id.to_string(), ids.span_id.to_string()))
                })
            })
            .or_else(otel::active_ids)
            .or_else(|| {
                let dispatch = self.dispatch.get()?.upgrade()?;
                let span = ctx.event_scope()?.next()?;
                let context = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
                otel::ids_of(&context)
            });
        if request_id.is_none() && ids.is_none() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        let mut pairs = Vec::with_capacity(3);
        if let Some(request_id) = &request_id {
            pairs.push(("request_id", request_id.as_str()));
        }
        if let Some((trace_id, span_id)) = &ids {
            pairs.push(("trace_id", trace_id.as_str()));
            pairs.push(("span_id", span_id.as_str()));
        }
        if self.json
            && let Some(open) = line.strip_suffix('}')
        {
            write!(writer, "{open}")?;
            for (key, value) in pairs {
                let value = serde_json::Value::from(value);
                write!(writer, ",\"{key}\":{value}")?;
            }
            writeln!(writer, "}}")
        } else {
            write!(writer, "{line}")?;
            for (key, value) in pairs {
                write!(writer, " {key}={value}")?;
            }
            writeln!(writer)
        }
    }
}

/// The environment variable that turns test logs on: `TEST_LOG=1 cargo test`.
pub const TEST_LOG: &str = "TEST_LOG";

/// Installs a log subscriber for tests when `TEST_LOG` is set (to anything but empty or `0`),
/// and only the tracing and SQL layers otherwise, so a passing test run stays quiet.
///
/// Lines go through the test harness's capture (shown for failing tests, or all with
/// `--nocapture`); `RUST_LOG` filters them (default `debug` for our crates, `info` for the
/// rest). Spans are not exported: they get ids as in production without an exporter
/// ([`id_layers`]). Safe to call from every test: the first call wins.
pub fn init_test_logging() {
    let wanted = std::env::var(TEST_LOG).is_ok_and(|value| !value.is_empty() && value != "0");
    if !wanted {
        // No logs, but the SQL timings still reach the metrics the scrape tests read, and trace
        // ids event metadata.
        let _ = tracing_subscriber::registry().with(id_layers()).try_init();
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
        .with(id_layers())
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
    // The service's read lanes count with its pool: the same database, the same budget.
    let lanes = crate::read_lane::status_of(service);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let open = pool.size().saturating_add(count(lanes.open));
    let idle = u32::try_from(pool.num_idle())
        .unwrap_or(u32::MAX)
        .saturating_add(count(lanes.idle))
        .min(open);
    metrics::gauge!(metric_names::DB_POOL_CONNECTIONS, "service" => service, "state" => "idle")
        .set(f64::from(idle));
    metrics::gauge!(metric_names::DB_POOL_CONNECTIONS, "service" => service, "state" => "used")
        .set(f64::from(open - idle));
    metrics::gauge!(metric_names::DB_POOL_MAX_CONNECTIONS, "service" => service).set(f64::from(
        pool.options()
            .get_max_connections()
            .saturating_add(count(lanes.max)),
    ));
}
