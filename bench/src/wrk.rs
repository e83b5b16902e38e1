//! A second HTTP load generator for the create figures: `wrk`, in C, closed loop, with a Lua
//! script that makes every request a `POST` of a new project (no `id` in the body, so the
//! service generates one and every request is a first create).
//!
//! It cross-checks the bench's own client: if both agree, the Rust client is not what bounds
//! the figure. wrk sends the next request only when the previous answered, which hides queueing
//! latency; latency figures come from the bench's fixed-rate mode instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::cpu::run_measured;
use crate::report::Measurement;

/// The wrk binary (`BENCH_WRK` overrides).
fn program() -> PathBuf {
    std::env::var_os("BENCH_WRK").map_or_else(|| PathBuf::from("wrk"), PathBuf::from)
}

/// Makes every request the same create; the body has the shape the bench's own client sends.
const SCRIPT: &str = r#"wrk.method = "POST"
wrk.body = '{"name":"bench project wrk","description":"created by the benchmark"}'
wrk.headers["Content-Type"] = "application/json"
"#;

/// What wrk printed that a measurement needs.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    requests: u64,
    rate: Option<f64>,
    non_2xx: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.50s`, `1.00m`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1000.0),
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        "m" => Some(value * 60_000.0),
        _ => None,
    }
}

fn parse_summary(stdout: &str) -> Summary {
    let mut summary = Summary::default();
    for line in stdout.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => summary.max_ms = millis(max),
            ["50%", value] => summary.p50_ms = millis(value),
            ["99%", value] => summary.p99_ms = millis(value),
            ["Requests/sec:", value] => summary.rate = value.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", value] => {
                summary.non_2xx = value.parse().unwrap_or(0);
            }
            [requests, "requests", "in", ..] => summary.requests = requests.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                summary.errors = rest
                    .iter()
                    .filter_map(|field| field.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    summary
}

/// The script, sending `Authorization: Bearer <token>` too when there is a token.
fn script(token: Option<&str>) -> String {
    match token {
        // A token is base64url and dots: nothing in it needs escaping in a Lua string.
        Some(token) => format!("{SCRIPT}wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"),
        None => SCRIPT.to_owned(),
    }
}

/// Runs creates against `url` from `connections` connections on two threads for `duration`
/// (whole seconds, at least one), with the access token `token` when there is one.
pub async fn creates(
    url: &str,
    connections: usize,
    duration: Duration,
    work_dir: &Path,
    token: Option<&str>,
) -> anyhow::Result<Measurement> {
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let script_path = work_dir.join("wrk-create.lua");
    std::fs::write(&script_path, script(token))
        .with_context(|| format!("writing {}", script_path.display()))?;
    let seconds = duration.as_secs_f64().round().max(1.0);
    let mut command = tokio::process::Command::new(program());
    command
        .arg(format!("--threads={}", connections.min(2)))
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={seconds:.0}s"))
        .arg("--timeout=30s")
        .arg("--latency")
        .arg("--script")
        .arg(&script_path)
        .arg(url);
    let (stdout, cpu) = run_measured(command, "wrk").await?;
    let summary = parse_summary(&stdout);
    let failed = summary.non_2xx + summary.errors;
    let ok = summary.requests.saturating_sub(summary.non_2xx);
    let rate = summary.rate.unwrap_or(0.0);
    // wrk's rate counts every answer; only the successful ones count here.
    let ok_rate = if summary.requests > 0 {
        rate * ok as f64 / summary.requests as f64
    } else {
        0.0
    };
    Ok(Measurement {
        ops: ok,
        errors: failed,
        seconds,
        rate: ok_rate,
        unit: "req/s",
        p50_ms: summary.p50_ms,
        p99_ms: summary.p99_ms,
        max_ms: summary.max_ms,
        client_cores: None,
    }
    .with_client_cpu(cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_sends_the_token_only_when_there_is_one() {
        assert!(script(Some("a.b.c")).contains(r#"wrk.headers["Authorization"] = "Bearer a.b.c""#));
        assert!(!script(None).contains("Authorization"));
    }

    #[test]
    fn the_summary_gives_rate_percentiles_and_failures() {
        let stdout = "Running 3s test @ http://127.0.0.1:1/api/v1/projects
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.51ms   10.20ms 150.00ms   80.00%
    Req/Sec   800.00    100.00     1.00k    70.00%
  Latency Distribution
     50%   18.00ms
     75%   25.00ms
     90%   30.00ms
     99%  812.00us
  4800 requests in 3.00s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:   1600.00
Transfer/sec:    300.00KB
";
        assert_eq!(
            parse_summary(stdout),
            Summary {
                requests: 4800,
                rate: Some(1600.0),
                non_2xx: 5,
                errors: 3,
                p50_ms: Some(18.0),
                p99_ms: Some(0.812),
                max_ms: Some(150.0),
            }
        );
    }
}
