//! OpenTelemetry: the exporting tracer provider (installed only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set), W3C trace-context propagation in and out (HTTP
//! headers, event metadata, AMQP headers), and the ids a log line is correlated by.
//!
//! When exporting, the `tracing` spans of our crates become OpenTelemetry spans through
//! `tracing-opentelemetry`, and SQL statements become spans in [`crate::sql_metrics`], from the
//! same sqlx events that time them. When not, no SDK is installed: our spans get their W3C ids
//! from [`crate::trace_ids`]'s layer, which is all that propagation and logs need. The functions
//! here read and set a span's context in either case ([`crate::telemetry`] installs the layers);
//! with `OTEL_SDK_DISABLED=true` there is neither, and spans have no ids. See docs/tracing.md and
//! docs/decisions/0011-tracing.md.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::trace_ids;

/// The standard variable that turns exporting on: the collector's base URL (`/v1/traces` is
/// appended).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard per-signal variable, used as it is when set.
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The instrumentation scope of every span we make.
pub const SCOPE: &str = "chronicle";
/// The service name when `OTEL_SERVICE_NAME` does not give one.
pub const DEFAULT_SERVICE_NAME: &str = "chronicle";
/// The W3C header (and event metadata key) carrying a span context.
pub const TRACEPARENT: &str = "traceparent";
/// The standard variable that turns the SDK off: `true` (any case) for no OpenTelemetry spans.
pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

/// Whether `OTEL_SDK_DISABLED` is `true`: then no span of ours gets ids or becomes an
/// OpenTelemetry span, and no statement span is made (see [`crate::telemetry::init_tracing`]).
pub fn sdk_disabled() -> bool {
    is_true(std::env::var(SDK_DISABLED).ok().as_deref())
}

/// The specification's reading of a boolean variable: `true` in any case is true, anything
/// else (unset, empty, `false`, a typo) false.
fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Whether spans are exported: `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and not empty.
pub fn export_enabled() -> bool {
    [OTLP_ENDPOINT, OTLP_TRACES_ENDPOINT]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// A provider exporting in batches over OTLP/HTTP (protobuf, blocking client on the batch
/// thread) to `endpoint` (the full URL, `.../v1/traces`), or where the standard variables say
/// when `None`: what [`crate::telemetry::init_tracing`] installs when [`export_enabled`]. The SDK
/// reads the standard variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, headers, timeouts);
/// sampling is parent-based always-on by default.
///
/// # Errors
///
/// The exporter cannot be built (a malformed endpoint).
pub fn exporting_provider(
    endpoint: Option<&str>,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;

    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(exporter.build()?)
        .build())
}

/// The resource spans are reported under: `OTEL_SERVICE_NAME` (read by the SDK), else
/// [`DEFAULT_SERVICE_NAME`].
fn resource() -> Resource {
    let resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        resource.build()
    } else {
        resource.with_service_name(DEFAULT_SERVICE_NAME).build()
    }
}

/// The tracer every span of ours comes from.
pub fn tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer(SCOPE)
}

/// The caller's context from `traceparent` (and `tracestate`) in `headers`; an empty context
/// when there is none or it does not parse, so the server span starts a new trace.
pub fn extract(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers))
}

/// The caller's `traceparent` in `headers`, written anew from what parsed (so a malformed one
/// is dropped, never stored), when it names a valid context. With the SDK disabled no span of
/// ours has a context, and this is what an event's metadata carries: the caller's trace passes
/// through the service unchanged, as the OpenTelemetry API without an SDK propagates it.
pub fn caller_traceparent(headers: &axum::http::HeaderMap) -> Option<String> {
    traceparent_in(&extract(headers))
}

/// The W3C `traceparent` of `span`'s context, when it has a valid one (a span of ours, with the
/// id layer or the OpenTelemetry layer installed).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if let Some(ids) = trace_ids::of(span) {
        return Some(ids.traceparent());
    }
    traceparent_in(&span.context())
}

/// The `traceparent` naming `context`'s span, when it is valid.
fn traceparent_in(context: &opentelemetry::Context) -> Option<String> {
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The W3C `traceparent` of the current span: what an event's metadata and an outgoing
/// message carry, so that a consumer continues this trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The span context a stored `traceparent` names (remote), when it parses.
pub fn span_context_of(traceparent: &str) -> Option<SpanContext> {
    let carrier = Single(traceparent);
    let context = TraceContextPropagator::new().extract(&carrier);
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Writes `span`'s context into `carrier` as `traceparent` (and `tracestate`), through `set`.
pub fn inject(span: &tracing::Span, mut set: impl FnMut(&str, String)) {
    struct Setter<'a>(&'a mut dyn FnMut(&str, String));
    impl Injector for Setter<'_> {
        fn set(&mut self, key: &str, value: String) {
            (self.0)(key, value);
        }
    }
    if let Some(ids) = trace_ids::of(span) {
        set(TRACEPARENT, ids.traceparent());
        return;
    }
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut Setter(&mut set));
    }
}

/// Makes `span` (not yet entered) a child of the context a stored `traceparent` names, so it
/// continues that trace; a `traceparent` that does not parse changes nothing. With the id layer
/// the span takes the trace id and sampled flag (its own span id stays); with the OpenTelemetry
/// layer the context becomes its remote parent.
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    if !trace_ids::continue_from(span, traceparent)
        && let Some(context) = span_context_of(traceparent)
    {
        // Fails only when no OpenTelemetry layer is installed, or the span is not ours.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
    }
}

/// Makes `span` (a server span, not yet entered) continue the caller's trace from the request's
/// `traceparent` (and, with the OpenTelemetry layer, `tracestate`), as [`continue_from`] does; a
/// request without a valid one leaves the span a root.
pub fn continue_from_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    // The id layer keeps no `tracestate`: nothing it makes is exported.
    let traceparent = headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !trace_ids::continue_from(span, traceparent) {
        // Fails only when no OpenTelemetry layer is installed (`OTEL_SDK_DISABLED=true`, a bare
        // test subscriber).
        let _ = span.set_parent(extract(headers));
    }
}

/// The most links a span is given ([`link_each`]): a batch of 500 events would otherwise
/// carry 500.
pub const MAX_LINKS: usize = 128;

/// Links `span` (not yet entered) to each context the `traceparents` name, at most
/// [`MAX_LINKS`] of them; those that do not parse are skipped. Only the OpenTelemetry layer
/// (exporting) keeps links: with the id layer, or none, this does nothing.
pub fn link_each<'a>(span: &tracing::Span, traceparents: impl IntoIterator<Item = &'a str>) {
    if span.is_disabled() || trace_ids::has_ids(span) {
        return;
    }
    for context in traceparents
        .into_iter()
        .filter_map(span_context_of)
        .take(MAX_LINKS)
    {
        span.add_link(context);
    }
}

/// A carrier holding only a `traceparent`.
struct Single<'a>(&'a str);

impl Extractor for Single<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The trace and span ids (lower-case hex) of the innermost entered span of ours: the current
/// `tracing` span's ids from the id layer (export off), else the OpenTelemetry context active on
/// this thread (export on: spans activate theirs), else the current span's own context. `None`
/// outside any.
pub fn current_ids() -> Option<(String, String)> {
    let current = tracing::Span::current();
    if let Some(ids) = trace_ids::of(&current) {
        return Some((ids.trace_id.to_string(), ids.span_id.to_string()));
    }
    active_ids().or_else(|| ids_of(&current.context()))
}

/// The ids of the OpenTelemetry context active on this thread (set only when spans activate
/// theirs, i.e. when exporting).
pub(crate) fn active_ids() -> Option<(String, String)> {
    ids_of(&opentelemetry::Context::current())
}

/// The trace and span ids of `context`'s span, when it is valid.
pub(crate) fn ids_of(context: &opentelemetry::Context) -> Option<(String, String)> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_traceparent_parses_into_a_remote_span_context() {
        let context = span_context_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("parses");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_remote());
        assert!(span_context_of("nonsense").is_none());
    }

    #[test]
    fn the_id_layers_parser_accepts_what_the_propagator_accepts() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let span = "00f067aa0ba902b7";
        let cases = [
            format!("00-{trace}-{span}-01"),
            format!("00-{trace}-{span}-00"),
            format!("00-{trace}-{span}-03"),
            format!(" 00-{trace}-{span}-01 "),
            format!("00-{trace}-{span}-01-"),
            format!("00-{trace}-{span}-01-more"),
            format!("01-{trace}-{span}-01-more"),
            format!("fe-{trace}-{span}-01"),
            format!("ff-{trace}-{span}-01"),
            format!("00-{}-{span}-01", trace.to_uppercase()),
            format!("00-{trace}-{}-01", span.to_uppercase()),
            format!("00-{trace}-{span}-0A"),
            format!("00-00000000000000000000000000000000-{span}-01"),
            format!("00-{trace}-0000000000000000-01"),
            format!("00-{trace}-{span}"),
            format!("00-{trace}-{span}-zz"),
            format!("0x-{trace}-{span}-01"),
            "00-1-2-01".to_owned(),
            "00-+1-+2-01".to_owned(),
            "00-zz-01".to_owned(),
            String::new(),
        ];
        for traceparent in cases {
            let sdk = span_context_of(&traceparent)
                .map(|context| (context.trace_id(), context.span_id(), context.is_sampled()));
            let ours =
                trace_ids::parse(&traceparent).map(|ids| (ids.trace_id, ids.span_id, ids.sampled));
            assert_eq!(ours, sdk, "{traceparent:?}");
        }
    }

    #[test]
    fn only_true_in_any_case_disables_the_sdk() {
        assert!(is_true(Some("true")));
        assert!(is_true(Some(" TRUE ")));
        assert!(!is_true(Some("false")));
        assert!(!is_true(Some("1")));
        assert!(!is_true(Some("")));
        assert!(!is_true(None));
    }

    #[test]
    fn the_callers_traceparent_is_kept_when_it_parses_and_dropped_when_not() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(caller_traceparent(&headers), None);
        let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT, axum::http::HeaderValue::from_static(sent));
        assert_eq!(caller_traceparent(&headers).as_deref(), Some(sent));
        headers.insert(
            TRACEPARENT,
            axum::http::HeaderValue::from_static("00-zz-01"),
        );
        assert_eq!(caller_traceparent(&headers), None);
    }
}
