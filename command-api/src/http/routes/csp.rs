//! Content Security Policy violation reports: `POST /csp-reports` (ACCOUNTS.md, "CSP reports").
//!
//! Browsers post here from any page that carries the frontend's policy, in either format:
//! `application/csp-report` (one report, from `report-uri`) or `application/reports+json` (a
//! batch of Reporting API reports, from `report-to`). Reports are counted
//! (`chronicle_csp_reports_total`, and `chronicle_security_events_total{kind="csp_violation"}`)
//! and logged, never stored: nothing reaches the event log or any table. A report's URLs may
//! carry tokens in their paths and query strings, so only their origins are logged.
//!
//! The route is anonymous and open to cross-origin posts from anywhere (a report comes from
//! whatever page the browser was showing), without credentials; the CORS layer is on this
//! route only.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Map, Value};
use service_kit::Problem;
use service_kit::security::{self, SecurityEvent};
use tower_http::cors::{Any, CorsLayer};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::limits;
use crate::http::fields::Fields;
use crate::http::input::request_ip;
use crate::http::openapi::ProblemDoc;
use crate::state::AppState;

/// The route's path.
pub const PATH: &str = "/api/v1/csp-reports";

/// The largest body this route accepts: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The most reports one `application/reports+json` batch may hold.
pub const MAX_REPORTS: usize = 100;

/// The counter of reports received, as exposed and catalogued in docs/metrics.md.
pub const CSP_REPORTS_TOTAL: &str = service_kit::metric_names::CSP_REPORTS_TOTAL;

/// `Content-Type` of a `report-uri` report.
pub const CSP_REPORT: &str = "application/csp-report";

/// `Content-Type` of a Reporting API batch.
pub const REPORTS_JSON: &str = "application/reports+json";

/// The directives a report's directive is counted under; any other is counted as `other`, so
/// the `directive` label stays a bounded set whatever a client sends.
const DIRECTIVES: &[&str] = &[
    "base-uri",
    "block-all-mixed-content",
    "child-src",
    "connect-src",
    "default-src",
    "fenced-frame-src",
    "font-src",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "img-src",
    "manifest-src",
    "media-src",
    "navigate-to",
    "object-src",
    "plugin-types",
    "prefetch-src",
    "report-to",
    "report-uri",
    "require-trusted-types-for",
    "sandbox",
    "script-src",
    "script-src-attr",
    "script-src-elem",
    "style-src",
    "style-src-attr",
    "style-src-elem",
    "trusted-types",
    "upgrade-insecure-requests",
    "webrtc",
    "worker-src",
];

/// What browsers write instead of a URL for a blocked resource that has none (inline code,
/// `eval`, ...) or, in `report-uri` reports, for a scheme-only source (`data`, `blob`): logged
/// as they are, since they reveal nothing.
const KEYWORDS: &[&str] = &[
    "inline",
    "eval",
    "wasm-eval",
    "trusted-types-policy",
    "trusted-types-sink",
    "self",
    "data",
    "blob",
    "filesystem",
    "mediastream",
];

/// Routes of CSP reports, with their own body limit and CORS policy.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive_reports))
        // An OPTIONS route of its own, so that the CORS layer below wraps it: a preflight
        // would otherwise reach the service-wide method-not-allowed fallback, which the plumbing
        // installs outside every route's layers, and be refused with 405.
        .route(PATH, axum::routing::options(allowed_methods))
        // Layered on the route itself, so it overrides the service-wide default.
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(cors())
}

/// Any origin may post a report; no credentials (no cookie, no `Authorization`) are accepted,
/// so `Access-Control-Allow-Credentials` is never sent.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(24 * 3600))
}

/// A plain `OPTIONS` (not a preflight, which the CORS layer answers): the methods it takes.
async fn allowed_methods() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"))],
    )
}

/// The per-IP limit `RATE_LIMIT_CSP_REPORTS` (ACCOUNTS.md, "Rate limits"), counted in
/// PostgreSQL so every replica shares it, before the body is read: over it, 429
/// `/problems/rate-limited` with `Retry-After`. A router built without accounts (some tests)
/// has no limits to apply.
async fn enforce_rate_limit(state: &AppState, request: &Parts) -> Result<(), Problem> {
    let Some(auth) = &state.auth else {
        return Ok(());
    };
    let ip = request_ip(state.settings.trust_forwarded_for, request);
    limits::csp_report(
        &state.pool,
        &auth.settings.rate_limits,
        limits::ip_of(ip.as_deref()),
    )
    .await?
}

/// Receives CSP violation reports: counts and logs each, stores nothing.
#[utoipa::path(
    post, path = "/api/v1/csp-reports", tag = "security",
    request_body(
        description = "One `report-uri` report, or a batch of 1 to 100 Reporting API reports \
                       (reports of types other than `csp-violation` are accepted and ignored; \
                       at least one must be a `csp-violation`). At most 64 KiB.",
        content(
            (CspReportDoc = "application/csp-report"),
            (ReportBatchDoc = "application/reports+json"),
        )
    ),
    responses(
        (status = 204, description = "Received (counted and logged; nothing is stored)"),
        CspReportErrors,
    )
)]
async fn receive_reports(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, Problem> {
    let (parts, body) = request.into_parts();
    enforce_rate_limit(&state, &parts).await?;
    let format = Format::of(&parts.headers)?;
    let body = Bytes::from_request(Request::from_parts(parts, body), &state)
        .await
        .map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large()
            } else {
                Problem::bad_request(rejection.body_text())
            }
        })?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|error| Problem::bad_request(format!("malformed JSON: {error}")))?;
    let violations = match format {
        Format::CspReport => vec![csp_report(&json)?],
        Format::ReportsJson => reports_json(&json)?,
    };
    for violation in &violations {
        violation.record();
    }
    security::record(SecurityEvent::CspViolation, violations.len() as u64);
    Ok(StatusCode::NO_CONTENT)
}

/// The two report formats, by `Content-Type`.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// `application/csp-report`.
    CspReport,
    /// `application/reports+json`.
    ReportsJson,
}

impl Format {
    /// The request's format; any other `Content-Type` (or none) is a 415.
    fn of(headers: &HeaderMap) -> Result<Self, Problem> {
        let essence = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::trim);
        match essence {
            Some(kind) if kind.eq_ignore_ascii_case(CSP_REPORT) => Ok(Self::CspReport),
            Some(kind) if kind.eq_ignore_ascii_case(REPORTS_JSON) => Ok(Self::ReportsJson),
            _ => Err(Problem::unsupported_media_type()
                .detail(format!("send the report as {CSP_REPORT} or {REPORTS_JSON}"))),
        }
    }
}

/// Whether the policy that was violated blocks (`enforce`) or only reports (`report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// `Content-Security-Policy`.
    Enforce,
    /// `Content-Security-Policy-Report-Only`.
    Report,
}

impl Disposition {
    /// The `disposition` label.
    fn label(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Report => "report",
        }
    }
}

/// One violation, reduced to what may be counted and logged.
#[derive(Debug)]
struct Violation {
    /// A known directive's name, or `other`.
    directive: &'static str,
    /// Enforced or report-only.
    disposition: Disposition,
    /// The violating page's origin.
    document: String,
    /// The blocked resource's origin, or the keyword standing for it (`inline`, `eval`, ...).
    blocked: String,
}

impl Violation {
    /// Counts and logs the report.
    fn record(&self) {
        // Described with every other family when the recorder is installed (metric_names).
        metrics::counter!(
            CSP_REPORTS_TOTAL,
            "directive" => self.directive,
            "disposition" => self.disposition.label(),
        )
        .increment(1);
        tracing::info!(
            directive = self.directive,
            disposition = self.disposition.label(),
            document = %self.document,
            blocked = %self.blocked,
            "csp violation reported"
        );
    }
}

/// Parses an `application/csp-report` body: `{"csp-report": {...}}`.
fn csp_report(json: &Value) -> Result<Violation, Problem> {
    let mut fields = Fields::default();
    let report = json.get("csp-report").and_then(Value::as_object);
    let Some(report) = report else {
        fields.refuse("csp-report", "must be an object holding the report");
        return Err(fields.problem());
    };
    let violation = violation(
        &mut fields,
        report,
        &Names {
            prefix: "csp-report.",
            document: "document-uri",
            directive: "effective-directive",
            fallback_directive: Some("violated-directive"),
            blocked: "blocked-uri",
            disposition: "disposition",
        },
    );
    // `violation` is `None` only after recording why.
    match violation {
        Some(violation) => fields.finish().map(|()| violation),
        None => Err(fields.problem()),
    }
}

/// Parses an `application/reports+json` body: an array of 1 to [`MAX_REPORTS`] reports, of
/// which the `csp-violation` ones are kept (at least one is needed).
fn reports_json(json: &Value) -> Result<Vec<Violation>, Problem> {
    let mut fields = Fields::default();
    let Some(reports) = json.as_array() else {
        fields.refuse("reports", "must be an array of 1 to 100 reports");
        return Err(fields.problem());
    };
    // The size first: a batch of the wrong size is refused without looking at its reports.
    if !(1..=MAX_REPORTS).contains(&reports.len()) {
        fields.refuse("reports", "must hold 1 to 100 reports");
        return Err(fields.problem());
    }
    let mut violations = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        let kind = report.get("type").and_then(Value::as_str);
        let Some(kind) = kind else {
            fields.refuse(&format!("reports[{i}].type"), "must be a string");
            continue;
        };
        if kind != "csp-violation" {
            continue;
        }
        let Some(body) = report.get("body").and_then(Value::as_object) else {
            fields.refuse(&format!("reports[{i}].body"), "must be an object");
            continue;
        };
        let prefix = format!("reports[{i}].body.");
        let names = Names {
            prefix: &prefix,
            document: "documentURL",
            directive: "effectiveDirective",
            fallback_directive: None,
            blocked: "blockedURL",
            disposition: "disposition",
        };
        if let Some(violation) = violation(&mut fields, body, &names) {
            violations.push(violation);
        }
    }
    fields.finish()?;
    if violations.is_empty() {
        let mut fields = Fields::default();
        fields.refuse("reports", "holds no report of type csp-violation");
        return Err(fields.problem());
    }
    Ok(violations)
}

/// What a format calls a report's members.
struct Names<'a> {
    /// Put before each member's name in a 422 (`csp-report.`, `reports[3].body.`).
    prefix: &'a str,
    /// The violating page's URL (required).
    document: &'static str,
    /// The directive that was violated (required, or its fallback).
    directive: &'static str,
    /// The member taken when `directive` is absent (`violated-directive`).
    fallback_directive: Option<&'static str>,
    /// The blocked resource's URL (optional).
    blocked: &'static str,
    /// `enforce` or `report` (optional; `enforce` when absent).
    disposition: &'static str,
}

/// Reads one report's members, recording each invalid one in `fields`.
fn violation(
    fields: &mut Fields,
    report: &Map<String, Value>,
    names: &Names<'_>,
) -> Option<Violation> {
    let name = |member: &str| format!("{}{member}", names.prefix);
    let document = match report.get(names.document) {
        Some(Value::String(url)) => Some(origin(url)),
        _ => {
            fields.refuse(
                &name(names.document),
                "must be the document's URL, a string",
            );
            None
        }
    };
    let directive = report
        .get(names.directive)
        .filter(|value| !value.is_null())
        .or_else(|| {
            names
                .fallback_directive
                .and_then(|member| report.get(member))
        });
    let directive = match directive {
        Some(Value::String(directive)) => Some(known_directive(directive)),
        _ => {
            let message = match names.fallback_directive {
                Some(fallback) => format!("must be a string (or {fallback} one)"),
                None => "must be a string".to_owned(),
            };
            fields.refuse(&name(names.directive), &message);
            None
        }
    };
    let disposition = match report.get(names.disposition) {
        None | Some(Value::Null) => Some(Disposition::Enforce),
        Some(Value::String(value)) if value == "enforce" => Some(Disposition::Enforce),
        Some(Value::String(value)) if value == "report" => Some(Disposition::Report),
        Some(_) => {
            fields.refuse(&name(names.disposition), "must be enforce or report");
            None
        }
    };
    let blocked = match report.get(names.blocked) {
        None | Some(Value::Null) => Some("none".to_owned()),
        Some(Value::String(url)) => Some(origin(url)),
        Some(_) => {
            fields.refuse(&name(names.blocked), "must be a string");
            None
        }
    };
    Some(Violation {
        directive: directive?,
        disposition: disposition?,
        document: document?,
        blocked: blocked?,
    })
}

/// The directive's name when it is a known one, else `other`. A CSP2 `violated-directive`
/// holds the directive with its sources (`script-src 'self'`): only its first word names it.
fn known_directive(raw: &str) -> &'static str {
    let name = raw.split_ascii_whitespace().next().unwrap_or_default();
    DIRECTIVES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("other")
}

/// What of a reported URL may be logged: its origin (`scheme://host[:port]`, no user, path,
/// query or fragment), a scheme alone for a URL without a host (`data:`), a keyword as it is
/// (`inline`, `eval`), `none` for nothing and `unparsable` for anything else.
fn origin(raw: &str) -> String {
    let raw = raw.trim();
    if raw.is_empty() {
        return "none".to_owned();
    }
    if let Some(keyword) = KEYWORDS
        .iter()
        .find(|keyword| keyword.eq_ignore_ascii_case(raw))
    {
        return (*keyword).to_owned();
    }
    if let Ok(uri) = raw.parse::<Uri>()
        && let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host())
    {
        let origin = match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        return origin.to_ascii_lowercase();
    }
    match raw.split_once(':') {
        Some((scheme, _)) if is_scheme(scheme) => format!("{}:", scheme.to_ascii_lowercase()),
        _ => "unparsable".to_owned(),
    }
}

/// RFC 3986 `scheme`, at most 32 characters.
fn is_scheme(scheme: &str) -> bool {
    scheme.len() <= 32
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// An `application/csp-report` body, as `report-uri` sends it. Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CspReport)]
pub struct CspReportDoc {
    /// The report.
    #[serde(rename = "csp-report")]
    pub csp_report: CspReportBodyDoc,
}

/// The members of a `report-uri` report this route reads; others are accepted and ignored.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CspReportBody)]
#[serde(rename_all = "kebab-case")]
pub struct CspReportBodyDoc {
    /// The violating page's URL (only its origin is logged).
    pub document_uri: String,
    /// The directive violated; required unless `violated-directive` is given.
    pub effective_directive: Option<String>,
    /// The directive violated (CSP2; may be followed by its sources).
    pub violated_directive: Option<String>,
    /// The blocked resource's URL, or `inline`, `eval`, ... (only its origin is logged).
    pub blocked_uri: Option<String>,
    /// `enforce` (default) or `report`.
    pub disposition: Option<DispositionDoc>,
}

/// An `application/reports+json` body: 1 to 100 Reporting API reports. Documentation only.
/// (Written by hand: utoipa's derive takes no item bounds on a newtype's field.)
pub struct ReportBatchDoc;

impl utoipa::PartialSchema for ReportBatchDoc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("Report"))
            .min_items(Some(1))
            .max_items(Some(MAX_REPORTS))
            .into()
    }
}

impl ToSchema for ReportBatchDoc {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            ReportDoc::name().into_owned(),
            <ReportDoc as utoipa::PartialSchema>::schema(),
        ));
        ReportDoc::schemas(schemas);
    }
}

/// One Reporting API report (`application/reports+json` holds an array of them).
/// Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Report)]
pub struct ReportDoc {
    /// The report's type; only `csp-violation` reports are read, others are ignored.
    #[serde(rename = "type")]
    pub kind: String,
    /// The URL of the page that generated the report.
    pub url: Option<String>,
    /// Milliseconds between the violation and the report's dispatch.
    pub age: Option<i64>,
    /// The browser's `User-Agent`.
    pub user_agent: Option<String>,
    /// For `csp-violation`, the violation; the bodies of other types are not read.
    pub body: CspViolationDoc,
}

/// The body of a `csp-violation` report: the members this route reads; others are accepted
/// and ignored.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CspViolation)]
#[serde(rename_all = "camelCase")]
pub struct CspViolationDoc {
    /// The violating page's URL (required; only its origin is logged).
    #[serde(rename = "documentURL")]
    pub document_url: String,
    /// The directive violated (required).
    pub effective_directive: String,
    /// The blocked resource's URL, or `inline`, `eval`, ... (only its origin is logged).
    #[serde(rename = "blockedURL")]
    pub blocked_url: Option<String>,
    /// `enforce` (default) or `report`.
    pub disposition: Option<DispositionDoc>,
}

/// Whether the violated policy was enforced or report-only. Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CspDisposition)]
#[serde(rename_all = "lowercase")]
pub enum DispositionDoc {
    /// `Content-Security-Policy`.
    Enforce,
    /// `Content-Security-Policy-Report-Only`.
    Report,
}

/// The errors of `POST /csp-reports`.
#[derive(IntoResponses)]
pub enum CspReportErrors {
    /// Malformed JSON.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemDoc),
    /// The body is over 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(ProblemDoc),
    /// The body is neither `application/csp-report` nor `application/reports+json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDoc),
    /// JSON of the wrong shape (each invalid member named, e.g. `reports[2].body.documentURL`),
    /// a batch of no or over 100 reports, or one without a `csp-violation` report.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(ProblemDoc),
    /// Over the per-IP limit (`RATE_LIMIT_CSP_REPORTS`, 120 per minute); with `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying, equal to the body's `retry_after`")))]
    RateLimited(ProblemDoc),
    /// More requests are in flight than the service admits; with `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying, equal to the body's `retry_after`")))]
    Unavailable(ProblemDoc),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_keeps_no_user_path_query_or_fragment() {
        assert_eq!(
            origin("https://User:secret@CDN.example:8443/a/b.js?token=x#frag"),
            "https://cdn.example:8443"
        );
        assert_eq!(origin("http://evil.example/x?y"), "http://evil.example");
        assert_eq!(origin("data:image/png;base64,AAAA"), "data:");
        assert_eq!(origin("inline"), "inline");
        assert_eq!(origin("eval"), "eval");
        assert_eq!(origin(""), "none");
        assert_eq!(origin("not a url at all?q=1"), "unparsable");
    }

    #[test]
    fn a_directive_is_known_or_other() {
        assert_eq!(known_directive("script-src-elem"), "script-src-elem");
        assert_eq!(known_directive("script-src 'self' https://x"), "script-src");
        assert_eq!(known_directive("IMG-SRC"), "img-src");
        assert_eq!(known_directive("made-up-src"), "other");
        assert_eq!(known_directive(""), "other");
    }
}
