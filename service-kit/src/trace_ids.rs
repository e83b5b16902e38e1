//! Trace ids without the OpenTelemetry SDK: what every span of ours carries when nothing is
//! exported (see [`crate::telemetry::id_layers`]).
//!
//! Event metadata, AMQP headers and log lines need each span's W3C ids whether or not spans are
//! exported; building them through `tracing-opentelemetry` and a non-recording SDK span cost
//! about 1 µs a span (docs/PERFORMANCE.md, "Tracing with export off"). This layer gives a span of
//! ours, when it is created, its parent's trace id and sampled flag (the nearest span of ours
//! above it) or, for a root, a fresh trace id, not sampled; and always a fresh span id. A
//! caller's context replaces the trace id and flag before the span is entered
//! ([`crate::otel::continue_from`]). Nothing else is kept: no attributes, no links, no timing.
//!
//! The ids live in the span's extensions. Code outside the subscriber reaches them the way
//! `tracing-opentelemetry` reaches its data: the layer is found by downcasting the span's
//! dispatcher, and holds a function, made for the subscriber's concrete type, that looks the
//! span up.

use std::cell::RefCell;
use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tracing::span::{Attributes, Id};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A span's W3C ids, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id, never invalid.
    pub span_id: SpanId,
    /// Whether the trace's root (or the caller) sampled it; passed on, never decided here.
    pub sampled: bool,
}

impl SpanIds {
    /// The W3C `traceparent` naming this span.
    pub fn traceparent(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpanIds {
    /// `00-{trace id}-{span id}-{flags}`, as the W3C propagator writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags = u8::from(self.sampled);
        write!(f, "00-{}-{}-{flags:02x}", self.trace_id, self.span_id)
    }
}

/// Runs a closure on a span's ids, looked up through the subscriber the layer was made for.
type WithIds = fn(&Dispatch, &Id, &mut dyn FnMut(&mut SpanIds));

/// The layer giving each span it sees [`SpanIds`]; wrap it in a filter for the spans wanted.
pub struct IdLayer {
    /// See [`WithIds`].
    with_ids: WithIds,
}

impl IdLayer {
    /// The layer for a subscriber of type `S` (the one it is added to).
    pub fn new<S>() -> Self
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Self {
            with_ids: with_ids_in::<S>,
        }
    }
}

/// Runs `f` on the ids of span `id` of `dispatch`, whose subscriber is (or wraps) an `S`.
fn with_ids_in<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanIds))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    let Some(span) = subscriber.span(id) else {
        return;
    };
    let mut extensions = span.extensions_mut();
    if let Some(ids) = extensions.get_mut::<SpanIds>() {
        f(ids);
    }
}

impl<S> Layer<S> for IdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Behind a per-layer filter, `parent` skips the spans the filter left out, so this is
        // the nearest span of ours: the registry records the explicit or contextual parent.
        let inherited = span
            .parent()
            .and_then(|parent| parent.extensions().get::<SpanIds>().copied());
        let ids = match inherited {
            Some(parent) => SpanIds {
                span_id: fresh_span_id(),
                ..parent
            },
            None => SpanIds {
                trace_id: fresh_trace_id(),
                span_id: fresh_span_id(),
                sampled: false,
            },
        };
        span.extensions_mut().insert(ids);
    }
}

/// `span`'s ids, when the id layer is installed and gave it some (it is one of ours).
pub fn of(span: &tracing::Span) -> Option<SpanIds> {
    let mut found = None;
    with_ids(span, |ids| found = Some(*ids));
    found
}

/// Whether `span` has ids of this layer: then it has no OpenTelemetry context to set or read.
pub fn has_ids(span: &tracing::Span) -> bool {
    of(span).is_some()
}

/// Makes `span` (not yet entered, so no child has copied its ids) continue the trace
/// `traceparent` names: its trace id and sampled flag become the remote's, its span id stays; a
/// `traceparent` that does not parse ([`parse`]) changes nothing. False when `span` has no ids
/// of this layer (then it may have an OpenTelemetry context to set instead).
pub fn continue_from(span: &tracing::Span, traceparent: &str) -> bool {
    let mut has_ids = false;
    with_ids(span, |ids| {
        has_ids = true;
        if let Some(remote) = parse(traceparent) {
            ids.trace_id = remote.trace_id;
            ids.sampled = remote.sampled;
        }
    });
    has_ids
}

/// The trace id, span id and sampled flag a W3C `traceparent` names, when it is valid.
///
/// Accepts exactly what the SDK's `TraceContextPropagator` accepts (a test holds them equal),
/// without its allocations: a version below `ff`, with exactly four parts for version `00`;
/// lower-case hex; ids that are not all zeros. Flags other than sampled are dropped.
pub fn parse(traceparent: &str) -> Option<SpanIds> {
    const MAX_VERSION: u8 = 254;
    let mut parts = traceparent.trim().split_terminator('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version = u8::from_str_radix(version, 16).ok()?;
    if version > MAX_VERSION || (version == 0 && parts.next().is_some()) {
        return None;
    }
    let lower = |part: &str| !part.bytes().any(|byte| byte.is_ascii_uppercase());
    if !(lower(trace_id) && lower(span_id) && lower(flags)) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(SpanIds {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Runs `f` on `span`'s ids, if it has some.
fn with_ids(span: &tracing::Span, mut f: impl FnMut(&mut SpanIds)) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(layer) = dispatch.downcast_ref::<IdLayer>() {
            (layer.with_ids)(dispatch, id, &mut f);
        }
    });
}

thread_local! {
    /// Ids need to be unique, not secret: a fast generator per thread, seeded from the OS, as
    /// the OpenTelemetry SDK's own id generator does.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// A random trace id, never the invalid (all-zero) one.
fn fresh_trace_id() -> TraceId {
    TraceId::from(nonzero::<u128>())
}

/// A random span id, never the invalid (all-zero) one.
fn fresh_span_id() -> SpanId {
    SpanId::from(nonzero::<u64>())
}

/// A random integer other than zero (which W3C reserves for "no id").
fn nonzero<T>() -> T
where
    T: Default + PartialEq,
    rand::distr::StandardUniform: rand::distr::Distribution<T>,
{
    RNG.with_borrow_mut(|rng| {
        loop {
            let id: T = rng.random();
            if id != T::default() {
                return id;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A subscriber with only the id layer, on every span.
    fn subscriber() -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(IdLayer::new::<tracing_subscriber::Registry>())
    }

    #[test]
    fn a_root_gets_fresh_valid_ids_and_a_child_shares_its_trace_only() {
        tracing::subscriber::with_default(subscriber(), || {
            let root = tracing::info_span!("root");
            let root_ids = of(&root).expect("the root has ids");
            assert_ne!(root_ids.trace_id, TraceId::INVALID);
            assert_ne!(root_ids.span_id, SpanId::INVALID);
            assert!(!root_ids.sampled);
            let child = root.in_scope(|| tracing::info_span!("child"));
            let child_ids = of(&child).expect("the child has ids");
            assert_eq!(child_ids.trace_id, root_ids.trace_id);
            assert_ne!(child_ids.span_id, root_ids.span_id);
            let other = tracing::info_span!(parent: None, "other root");
            let other_ids = of(&other).expect("the other root has ids");
            assert_ne!(other_ids.trace_id, root_ids.trace_id);
        });
    }

    #[test]
    fn an_adopted_remote_context_is_passed_to_children() {
        tracing::subscriber::with_default(subscriber(), || {
            let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("server");
            let own = of(&span).expect("ids").span_id;
            assert!(continue_from(&span, remote));
            let ids = of(&span).expect("ids");
            let remote_trace = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
            assert_eq!(ids.trace_id, remote_trace);
            assert_eq!(ids.span_id, own, "the span keeps its own id");
            assert!(ids.sampled);
            let child = span.in_scope(|| tracing::info_span!("child"));
            let child_ids = of(&child).expect("ids");
            assert_eq!(child_ids.trace_id, remote_trace);
            assert!(child_ids.sampled);
            assert_eq!(
                ids.traceparent(),
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{own}-01")
            );
        });
    }

    #[test]
    fn without_the_layer_a_span_has_no_ids() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let span = tracing::info_span!("plain");
            assert_eq!(of(&span), None);
            assert!(!has_ids(&span));
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            assert!(!continue_from(&span, traceparent));
        });
    }
}
