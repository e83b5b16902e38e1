//! `--tracing-ab`: what tracing costs with export off, the services' default (no OpenTelemetry
//! SDK: the id layer gives our spans their W3C ids, the SQL layer times statements, nothing is
//! exported), against the SDK disabled (`OTEL_SDK_DISABLED=true`: no span layer, the SQL layer
//! timing statements only), in one run ([`crate::ab`]).
//!
//! Both variants are told that nothing is exported (an empty `OTEL_EXPORTER_OTLP_ENDPOINT`),
//! whatever the bench's own environment says, and the SDK switch is set either way, so an
//! inherited value cannot turn a variant into the other.

use crate::ab::{Ab, Variant};

/// The comparison: tracing as shipped, then the SDK disabled.
pub fn ab() -> Ab {
    let variant = |name, disabled: &str| Variant {
        name,
        env: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", String::new()),
            ("OTEL_SDK_DISABLED", disabled.to_owned()),
        ],
    };
    Ab {
        label: "tracing",
        database: "chronicle_bench_tracing",
        variants: vec![
            variant("tracing on", "false"),
            variant("tracing off", "true"),
        ],
    }
}
