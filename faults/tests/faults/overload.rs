//! Scenario 5: the command API (creates) and the query API (list reads) offered ten times the
//! load they can serve. A short ramp of closed-loop concurrency finds the knee (where throughput
//! stops growing) in the same run; then an open-loop load at ten times the knee's rate runs for
//! a few seconds. The contract, as properties that hold whatever the machine's speed: every
//! answer is 2xx, or 503/429 saying when to retry (`Retry-After` equal to the body's
//! `retry_after`); what is refused is refused by the admission bound, without waiting for the
//! database; no request, accepted or refused, is answered later than its deadline
//! (`REQUEST_TIMEOUT_MS`, counted by the service from the request's arrival) plus a margin for
//! the time outside the service; memory stays bounded; and afterwards the knee's load is served
//! again, every request 2xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use faults::{
    Bin, Http, HttpError, Outcome, Service, TestDb, create_project, quantile, status_histogram,
};
use uuid::Uuid;

const REQUEST_TIMEOUT_MS: u64 = 2000;
const RAMP_STEP: Duration = Duration::from_millis(1500);
const OVERLOAD: Duration = Duration::from_secs(4);
/// Requests the test keeps in flight at most (file descriptors); more are counted, not sent.
const CLIENT_IN_FLIGHT_CAP: usize = 3000;
/// How long the client waits for an answer: well past the deadline, to see hangs.
const CLIENT_WAIT: Duration = Duration::from_secs(15);
/// The latest an answer may come, seen from the client: the services' deadline, plus a margin
/// for the time a request spends outside the service (the test's own runtime, the kernel's
/// queues), which the service cannot count.
const LATEST: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 1000);
/// The bound on a service's peak resident memory (it starts at about 20 MiB).
const MEMORY_BOUND_KIB: u64 = 256 * 1024;

/// What the load sends: creates on the command API, or list reads on the query API.
#[derive(Debug, Clone, Copy)]
enum Target {
    Commands,
    Reads,
}

impl Target {
    async fn send(self, http: &Http, base: &str) -> Result<faults::Answer, HttpError> {
        match self {
            Self::Commands => {
                let id = Uuid::now_v7();
                create_project(http, base, id, &id.to_string(), CLIENT_WAIT).await
            }
            Self::Reads => {
                http.send(
                    http::Method::GET,
                    &format!("{base}/api/v1/projects?page_size=20&sort=-created_at"),
                    &[],
                    None,
                    CLIENT_WAIT,
                )
                .await
            }
        }
    }
}

/// Closed loop: `concurrency` clients, each sending its next request when the last is answered,
/// for `length`. Returns the outcomes.
async fn closed_loop(
    target: Target,
    http: &Http,
    base: &str,
    concurrency: usize,
    length: Duration,
) -> Vec<Outcome> {
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, base) = (http.clone(), base.to_owned());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while started.elapsed() < length {
                    let (outcome, _) = Outcome::of(started, target.send(&http, &base)).await;
                    outcomes.push(outcome);
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    outcomes
}

fn rate(outcomes: &[Outcome], length: Duration) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a count of requests")]
    let served = outcomes.iter().filter(|o| o.is_success()).count() as f64;
    served / length.as_secs_f64()
}

async fn overload(target: Target) {
    let db = TestDb::create(&faults::pg_server()).await;
    let http = Http::new();
    let timeout = REQUEST_TIMEOUT_MS.to_string();
    let env = [
        ("REQUEST_TIMEOUT_MS", timeout.as_str()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "1000"),
        ("DATABASE_MAX_CONNECTIONS", "8"),
    ];
    let mut command = Service::start(Bin::CommandApi, &db.url, &env);
    command.wait_ready(&http).await;
    if let Target::Reads = target {
        // Something to list: 50 projects, projected.
        for n in 0..50 {
            let id = Uuid::now_v7();
            let answer = create_project(
                &http,
                &command.base(),
                id,
                &format!("seed-{n}"),
                CLIENT_WAIT,
            )
            .await
            .unwrap();
            assert_eq!(answer.status, 201, "{}", answer.snippet());
        }
        let projector = Service::start(Bin::Projector, &db.url, &[]);
        faults::eventually(
            Duration::from_secs(30),
            "the projector applies the seed",
            || async { db.checkpoint("projects").await.is_some_and(|c| c.0 >= 50) },
        )
        .await;
        drop(projector);
        drop(command);
        command = Service::start(Bin::QueryApi, &db.url, &env);
        command.wait_ready(&http).await;
    }
    let name = command.bin.name();
    let base = command.base();
    let hwm_before = command.vm_hwm_kib().unwrap_or_default();

    // The knee: double the concurrency until throughput grows by less than 15 %.
    let (mut knee_rate, mut knee_concurrency, mut knee_p99) = (0.0_f64, 1, Duration::ZERO);
    for concurrency in [1, 2, 4, 8, 16, 32] {
        let outcomes = closed_loop(target, &http, &base, concurrency, RAMP_STEP).await;
        let served = rate(&outcomes, RAMP_STEP);
        let latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
        let p99 = quantile(&latencies, 0.99);
        eprintln!(
            "{name} ramp: concurrency {concurrency}: {served:.0}/s, p50 {} ms, p99 {} ms ({})",
            quantile(&latencies, 0.5).as_millis(),
            p99.as_millis(),
            status_histogram(&outcomes)
        );
        if served < knee_rate * 1.15 {
            break;
        }
        (knee_rate, knee_concurrency, knee_p99) = (served, concurrency, p99);
    }
    let offered = knee_rate * 10.0;
    eprintln!(
        "{name} knee: {knee_rate:.0}/s at concurrency {knee_concurrency} (p99 {} ms); \
         offering {offered:.0}/s open loop for {OVERLOAD:?}",
        knee_p99.as_millis()
    );

    // Ten times the knee, open loop: a request every 1/offered s whatever the answers do.
    // The ramp past the bound is refused too: count only the overload's refusals.
    let shed_before = metric_sum(&http, &base, "chronicle_http_requests_shed_total").await;
    let cpu_before = command.cpu_time().unwrap_or_default();
    let client_cpu_before = faults::cpu_time(std::process::id()).unwrap_or_default();
    let started = Instant::now();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak_in_flight = Arc::new(AtomicUsize::new(0));
    let not_sent = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let rss_sampler = {
        let (sampling, pid) = (Arc::clone(&sampling), command.pid());
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                {
                    peak = peak.max(kib);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };
    let interval = Duration::from_secs_f64(1.0 / offered.max(1.0));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::new();
    while started.elapsed() < OVERLOAD {
        ticker.tick().await;
        if in_flight.load(Ordering::Relaxed) >= CLIENT_IN_FLIGHT_CAP {
            not_sent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (http, base) = (http.clone(), base.clone());
        let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let in_flight = Arc::clone(&in_flight);
        requests.push(tokio::spawn(async move {
            let (outcome, _) = Outcome::of(started, target.send(&http, &base)).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            outcome
        }));
    }
    let sent_for = started.elapsed();
    let mut outcomes = Vec::new();
    for request in requests {
        outcomes.push(request.await.unwrap());
    }
    let drained = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak_rss = rss_sampler.await.unwrap();
    let hwm_after = command.vm_hwm_kib().unwrap_or_default();
    let service_cpu = command
        .cpu_time()
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let client_cpu = faults::cpu_time(std::process::id())
        .unwrap_or_default()
        .saturating_sub(client_cpu_before);

    let accepted: Vec<&Outcome> = outcomes.iter().filter(|o| o.is_success()).collect();
    let refused: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.status, Ok(429 | 503)))
        .collect();
    let other: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.is_success() && !matches!(o.status, Ok(429 | 503)))
        .collect();
    let accepted_latency: Vec<Duration> = accepted.iter().map(|o| o.latency).collect();
    let refused_latency: Vec<Duration> = refused.iter().map(|o| o.latency).collect();
    let late_accepted = accepted.iter().filter(|o| o.latency > LATEST).count();
    let late_refusals = refused.iter().filter(|o| o.latency > LATEST).count();
    eprintln!(
        "{name} overload: {} sent in {} ms ({} not sent: client cap {CLIENT_IN_FLIGHT_CAP}, peak in \
         flight {}), all answered after {} ms: {}",
        outcomes.len(),
        sent_for.as_millis(),
        not_sent.load(Ordering::Relaxed),
        peak_in_flight.load(Ordering::Relaxed),
        drained.as_millis(),
        status_histogram(&outcomes)
    );
    eprintln!(
        "accepted {}: p50 {} ms, p99 {} ms, max {} ms, {late_accepted} later than {} ms; \
         refused {}: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms, {late_refusals} later than {} \
         ms, {} saying when to retry; other {}",
        accepted.len(),
        quantile(&accepted_latency, 0.5).as_millis(),
        quantile(&accepted_latency, 0.99).as_millis(),
        quantile(&accepted_latency, 1.0).as_millis(),
        LATEST.as_millis(),
        refused.len(),
        quantile(&refused_latency, 0.5).as_millis(),
        quantile(&refused_latency, 0.9).as_millis(),
        quantile(&refused_latency, 0.99).as_millis(),
        quantile(&refused_latency, 1.0).as_millis(),
        LATEST.as_millis(),
        refused.iter().filter(|o| o.retry_after).count(),
        other.len()
    );
    #[expect(clippy::cast_precision_loss, reason = "counts of requests")]
    let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / outcomes.len().max(1) as f64;
    eprintln!(
        "{name} CPU during the overload: service {} ms ({:.0} us a request), test client {} ms \
         ({:.0} us a request)",
        service_cpu.as_millis(),
        per_request(service_cpu),
        client_cpu.as_millis(),
        per_request(client_cpu),
    );
    eprintln!(
        "{name} memory: VmHWM {hwm_before} KiB before the ramp, {hwm_after} KiB after the \
         overload (peak VmRSS sampled during it {peak_rss} KiB)"
    );
    // Which 503s the admission bound gave (the rest waited for the database or the deadline).
    let shed = metric_sum(&http, &base, "chronicle_http_requests_shed_total").await - shed_before;
    let timed_out = metric_sum(&http, &base, "chronicle_http_requests_timed_out_total").await;
    eprintln!(
        "{name} shed at admission (chronicle_http_requests_shed_total): {shed}; cut off at the deadline \
         (chronicle_http_requests_timed_out_total): {timed_out}"
    );

    // Recovery: the knee's load again, served as before.
    let recovery_started = Instant::now();
    let after = closed_loop(target, &http, &base, knee_concurrency, RAMP_STEP).await;
    let after_latencies: Vec<Duration> = after.iter().map(|o| o.latency).collect();
    let after_rate = rate(&after, RAMP_STEP);
    eprintln!(
        "{name} after: concurrency {knee_concurrency}: {after_rate:.0}/s (knee {knee_rate:.0}), \
         p99 {} ms ({}), measured from {} ms after the overload drained",
        quantile(&after_latencies, 0.99).as_millis(),
        status_histogram(&after),
        recovery_started
            .elapsed()
            .saturating_sub(RAMP_STEP)
            .as_millis()
    );
    assert!(command.is_running(), "{name} survived");

    assert!(
        other.is_empty(),
        "answers other than 2xx/429/503: {}",
        status_histogram(&other.iter().map(|o| (*o).clone()).collect::<Vec<_>>())
    );
    assert!(
        refused.iter().all(|o| o.retry_after),
        "refusals without Retry-After equal to the body's retry_after"
    );
    assert_eq!(
        late_accepted, 0,
        "accepted requests answered later than the deadline + margin"
    );
    assert_eq!(
        late_refusals, 0,
        "refusals answered later than the deadline + margin"
    );
    // Fast refusals: what cannot be served is refused by the bound, at once, not after
    // waiting for a connection or for the deadline.
    #[expect(clippy::cast_precision_loss, reason = "a count of requests")]
    let refused_count = refused.len() as f64;
    assert!(
        shed >= refused_count * 0.9,
        "{shed} of {refused_count} refusals by the admission bound"
    );
    assert!(
        hwm_after < MEMORY_BOUND_KIB,
        "VmHWM {hwm_after} KiB, over {MEMORY_BOUND_KIB} KiB"
    );
    assert!(
        !after.is_empty() && after.iter().all(Outcome::is_success),
        "after: {}",
        status_histogram(&after)
    );
    drop(command);
    db.drop_database().await;
}

/// The sum of a counter's series in the service's `/metrics` (`NaN` when unreadable).
async fn metric_sum(http: &Http, base: &str, family: &str) -> f64 {
    match http
        .send(
            http::Method::GET,
            &format!("{base}/metrics"),
            &[],
            None,
            CLIENT_WAIT,
        )
        .await
    {
        Ok(answer) => String::from_utf8_lossy(&answer.body)
            .lines()
            .filter(|line| {
                line.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            // Not `sum`, which gives -0 for no series.
            .fold(0.0, |total, value| total + value),
        Err(_) => f64::NAN,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/faults.sh: a load test, run alone and with release builds (in plain \
            `cargo test` it would share the cores with every other test)"]
async fn ten_times_the_knee_on_the_command_api_is_refused_fast_with_bounded_memory_and_full_recovery()
 {
    overload(Target::Commands).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/faults.sh: a load test, run alone and with release builds (in plain \
            `cargo test` it would share the cores with every other test)"]
async fn ten_times_the_knee_on_the_query_api_is_refused_fast_with_bounded_memory_and_full_recovery()
{
    overload(Target::Reads).await;
}
