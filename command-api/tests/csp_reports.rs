//! `POST /api/v1/csp-reports`: both report formats, every refusal, the counters, the log line
//! and the route's CORS policy, against the real PostgreSQL (one database per test).

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{Method, StatusCode};
use command_api::http::routes::csp::BODY_LIMIT;
use command_api::{AppState, Hooks, Settings};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::{Answer, Call};

const PATH: &str = "/api/v1/csp-reports";
const CSP_REPORT: &str = "application/csp-report";
const REPORTS_JSON: &str = "application/reports+json";

fn app(pool: &PgPool) -> Router {
    test_support::init_logging();
    // The defaults and the test keys: this route reads none of the settings.
    let settings = Settings {
        auth: test_support::auth::settings(),
        ..Settings::from_env().unwrap()
    };
    command_api::router(AppState::new(pool.clone(), settings, Hooks::default()).unwrap())
}

async fn post(app: &Router, content_type: &str, body: impl Into<String>) -> Answer {
    Call::post(PATH)
        .raw(content_type, body.into())
        .send(app)
        .await
}

/// A `report-uri` report.
fn csp_report(directive: &str, disposition: &str) -> Value {
    json!({ "csp-report": {
        "document-uri": "https://app.example/projects",
        "referrer": "",
        "violated-directive": directive,
        "effective-directive": directive,
        "original-policy": "default-src 'self'; report-uri /api/v1/csp-reports",
        "disposition": disposition,
        "blocked-uri": "https://cdn.example/lib.js",
        "status-code": 200,
    }})
}

/// A Reporting API `csp-violation` report.
fn violation(directive: &str, blocked: &str) -> Value {
    json!({
        "type": "csp-violation",
        "age": 12,
        "url": "https://app.example/projects",
        "user_agent": "Mozilla/5.0",
        "body": {
            "documentURL": "https://app.example/projects",
            "effectiveDirective": directive,
            "blockedURL": blocked,
            "disposition": "enforce",
            "originalPolicy": "default-src 'self'; report-to csp",
            "statusCode": 200,
            "sample": "",
        },
    })
}

/// Records this test's metrics apart from every other test's: the handler runs on the test's
/// thread (current-thread runtime), where the guard makes `recorder` the one counters go to.
fn local_recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

/// The value of `family`'s series carrying every one of `labels`, 0 when it has none.
fn counter(recorder: &PrometheusRecorder, family: &str, labels: &[(&str, &str)]) -> f64 {
    recorder
        .handle()
        .render()
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .filter(|line| {
            labels
                .iter()
                .all(|(name, value)| line.contains(&format!("{name}=\"{value}\"")))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn csp_count(recorder: &PrometheusRecorder, directive: &str, disposition: &str) -> f64 {
    counter(
        recorder,
        "chronicle_csp_reports_total",
        &[("directive", directive), ("disposition", disposition)],
    )
}

fn threat_count(recorder: &PrometheusRecorder) -> f64 {
    counter(
        recorder,
        "chronicle_security_events_total",
        &[("kind", "csp_violation")],
    )
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn assert_no_content(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text());
    assert!(answer.body.is_empty());
}

/// The one invalid field a 422 names.
fn invalid_field(answer: &Answer) -> String {
    let body = answer.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "/problems/validation", "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    errors[0]["field"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_report_uri_report_is_counted_by_directive_and_disposition(pool: PgPool) {
    let app = app(&pool);
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let answer = post(
        &app,
        CSP_REPORT,
        csp_report("img-src", "report").to_string(),
    )
    .await;
    assert_no_content(&answer);
    // A CSP2 report names the directive with its sources, and may lack effective-directive.
    let mut csp2 = csp_report("", "enforce");
    let report = csp2["csp-report"].as_object_mut().unwrap();
    report.remove("effective-directive");
    report.insert("violated-directive".into(), "img-src 'self' data:".into());
    let answer = post(
        &app,
        "application/csp-report; charset=utf-8",
        csp2.to_string(),
    )
    .await;
    assert_no_content(&answer);

    assert_eq!(csp_count(&recorder, "img-src", "report"), 1.0);
    assert_eq!(csp_count(&recorder, "img-src", "enforce"), 1.0);
    assert_eq!(threat_count(&recorder), 2.0);
    assert_eq!(event_count(&pool).await, 0, "a report is never stored");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_reporting_api_batch_counts_its_csp_violations_and_ignores_other_types(pool: PgPool) {
    let app = app(&pool);
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut report_only = violation("script-src-elem", "eval");
    report_only["body"]["disposition"] = "report".into();
    let batch = json!([
        violation("script-src-elem", "inline"),
        report_only,
        violation("made-up-src", "https://x.example/a.js"),
        { "type": "deprecation", "url": "https://app.example/", "body": { "id": "x" } },
        { "type": "intervention", "body": null },
    ]);

    let answer = post(&app, REPORTS_JSON, batch.to_string()).await;

    assert_no_content(&answer);
    assert_eq!(csp_count(&recorder, "script-src-elem", "enforce"), 1.0);
    assert_eq!(csp_count(&recorder, "script-src-elem", "report"), 1.0);
    assert_eq!(csp_count(&recorder, "other", "enforce"), 1.0);
    assert_eq!(threat_count(&recorder), 3.0);
    assert_eq!(event_count(&pool).await, 0, "a report is never stored");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn malformed_json_is_400_in_either_format(pool: PgPool) {
    let app = app(&pool);
    for content_type in [CSP_REPORT, REPORTS_JSON] {
        for body in ["{\"csp-report\": {", "[1,", "", "nope"] {
            let answer = post(&app, content_type, body).await;
            let problem = answer.problem(StatusCode::BAD_REQUEST);
            assert_eq!(problem["type"], "/problems/bad-request", "{body:?}");
        }
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_body_of_64_kib_is_taken_and_one_byte_more_is_413(pool: PgPool) {
    let app = app(&pool);
    let padded = |size: usize| {
        let mut report = csp_report("font-src", "enforce");
        report["csp-report"]["script-sample"] = "".into();
        let bare = report.to_string().len();
        report["csp-report"]["script-sample"] = "x".repeat(size - bare).into();
        let body = report.to_string();
        assert_eq!(body.len(), size);
        body
    };

    let answer = post(&app, CSP_REPORT, padded(BODY_LIMIT)).await;
    assert_no_content(&answer);
    let answer = post(&app, CSP_REPORT, padded(BODY_LIMIT + 1)).await;
    let problem = answer.problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["type"], "/problems/payload-too-large");
    assert_eq!(BODY_LIMIT, 64 * 1024);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn any_other_content_type_is_415(pool: PgPool) {
    let app = app(&pool);
    let body = csp_report("img-src", "enforce").to_string();
    for content_type in [
        "application/json",
        "text/plain",
        "application/reports",
        "application/csp-reports",
    ] {
        let answer = post(&app, content_type, body.clone()).await;
        let problem = answer.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            problem["type"], "/problems/unsupported-media-type",
            "{content_type}"
        );
    }
    let answer = Call::post(PATH).send(&app).await;
    answer.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_body_of_the_wrong_shape_is_422_naming_the_field(pool: PgPool) {
    let app = app(&pool);
    let recorder = local_recorder();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let hundred_and_one = Value::Array(vec![violation("img-src", "inline"); 101]);
    let mut no_document = violation("img-src", "inline");
    no_document["body"]
        .as_object_mut()
        .unwrap()
        .remove("documentURL");
    let mut no_directive = violation("img-src", "inline");
    no_directive["body"]
        .as_object_mut()
        .unwrap()
        .remove("effectiveDirective");
    let only_others = json!([{ "type": "deprecation", "body": {} }]);
    let cases = [
        (REPORTS_JSON, json!([]), "reports"),
        (REPORTS_JSON, hundred_and_one, "reports"),
        (REPORTS_JSON, json!({ "csp-report": {} }), "reports"),
        (
            REPORTS_JSON,
            json!([{ "type": "deprecation", "body": {} }, no_document]),
            "reports[1].body.documentURL",
        ),
        (
            REPORTS_JSON,
            json!([no_directive]),
            "reports[0].body.effectiveDirective",
        ),
        (REPORTS_JSON, json!([{ "body": {} }]), "reports[0].type"),
        (REPORTS_JSON, only_others, "reports"),
        (
            CSP_REPORT,
            json!({ "csp-report": { "document-uri": "https://app.example/" } }),
            "csp-report.effective-directive",
        ),
        (
            CSP_REPORT,
            json!({ "csp-report": { "effective-directive": "img-src" } }),
            "csp-report.document-uri",
        ),
        (CSP_REPORT, json!({ "report": {} }), "csp-report"),
        (CSP_REPORT, json!([]), "csp-report"),
    ];
    for (content_type, body, field) in cases {
        let answer = post(&app, content_type, body.to_string()).await;
        assert_eq!(invalid_field(&answer), field, "{body}");
    }
    // 100 reports is the most a batch may hold.
    let hundred = Value::Array(vec![violation("media-src", "inline"); 100]);
    assert_no_content(&post(&app, REPORTS_JSON, hundred.to_string()).await);
    assert_eq!(csp_count(&recorder, "media-src", "enforce"), 100.0);
    assert_eq!(
        threat_count(&recorder),
        100.0,
        "a refused report counts nothing"
    );
}

/// Log lines written while the guard lives, on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_log_line_has_the_origins_of_the_urls_and_never_a_path_or_query(pool: PgPool) {
    let app = app(&pool);
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let legacy = json!({ "csp-report": {
        "document-uri": "https://app.example/reset-password?token=SECRET-1#frag",
        "effective-directive": "script-src-elem",
        "blocked-uri": "https://user:SECRET-2@cdn.example:8443/private/lib.js?key=SECRET-3",
        "source-file": "https://app.example/private/app.js?SECRET-4",
    }});
    let mut inline = violation("style-src-attr", "inline");
    inline["body"]["documentURL"] = "https://app.example/verify-email?token=SECRET-5".into();
    inline["body"]["sourceFile"] = "https://app.example/private/app.js?SECRET-6".into();

    assert_no_content(&post(&app, CSP_REPORT, legacy.to_string()).await);
    assert_no_content(&post(&app, REPORTS_JSON, json!([inline]).to_string()).await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("csp violation reported"))
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines[0].contains("https://app.example"), "{}", lines[0]);
    assert!(
        lines[0].contains("https://cdn.example:8443"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("script-src-elem"), "{}", lines[0]);
    assert!(lines[1].contains("blocked=inline"), "{}", lines[1]);
    assert!(lines[1].contains("style-src-attr"), "{}", lines[1]);
    for secret in [
        "SECRET",
        "token",
        "/private",
        "reset-password",
        "verify-email",
        "user:",
    ] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
    }
}

fn preflight(path: &str, origin: &str) -> Call {
    Call::new(Method::OPTIONS, path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn any_origin_may_post_reports_without_credentials_and_only_here(pool: PgPool) {
    let app = app(&pool);
    for origin in [
        "https://app.example",
        "https://anything.example:8443",
        "null",
    ] {
        let answer = preflight(PATH, origin).send(&app).await;
        assert!(answer.status.is_success(), "{origin}: {}", answer.status);
        assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
        let methods = answer.header("access-control-allow-methods").unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let headers = answer.header("access-control-allow-headers").unwrap();
        assert!(
            headers.to_ascii_lowercase().contains("content-type"),
            "{headers}"
        );
        assert_eq!(answer.header("access-control-allow-credentials"), None);
    }
    let answer = Call::post(PATH)
        .header("origin", "https://elsewhere.example")
        .raw(CSP_REPORT, csp_report("frame-src", "enforce").to_string())
        .send(&app)
        .await;
    assert_no_content(&answer);
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    assert_eq!(answer.header("access-control-allow-credentials"), None);
    // A refusal is readable cross-origin too, so a browser's console shows why.
    let answer = Call::post(PATH)
        .header("origin", "https://elsewhere.example")
        .raw("text/plain", "x")
        .send(&app)
        .await;
    answer.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));

    // Every other route stays closed to other origins.
    for path in ["/api/v1/projects", "/api/v1/analytics/events"] {
        let answer = preflight(path, "https://app.example").send(&app).await;
        assert_eq!(answer.header("access-control-allow-origin"), None, "{path}");
        let answer = Call::post(path)
            .header("origin", "https://app.example")
            .json(&json!({}))
            .send(&app)
            .await;
        assert_eq!(answer.header("access-control-allow-origin"), None, "{path}");
    }
}

#[test]
fn the_openapi_document_describes_both_formats_and_every_answer() {
    let document = serde_json::to_value(command_api::document()).unwrap();
    let operation = &document["paths"][PATH]["post"];
    let content = &operation["requestBody"]["content"];
    assert_eq!(
        content[CSP_REPORT]["schema"]["$ref"],
        "#/components/schemas/CspReport"
    );
    // A batch is 1 to 100 reports, stated in the schema (an empty or oversized one is a 422).
    let batch_ref = content[REPORTS_JSON]["schema"]["$ref"].as_str().unwrap();
    let batch_name = batch_ref.rsplit('/').next().unwrap();
    let batch = &document["components"]["schemas"][batch_name];
    assert_eq!(batch["items"]["$ref"], "#/components/schemas/Report");
    assert_eq!(batch["minItems"], 1);
    assert_eq!(batch["maxItems"], 100);
    let responses = &operation["responses"];
    assert!(responses["204"].is_object(), "{responses}");
    for status in ["400", "413", "415", "422", "429", "503"] {
        assert_eq!(
            responses[status]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "{status}"
        );
    }
    for schema in ["CspReport", "CspReportBody", "Report", "CspViolation"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}
