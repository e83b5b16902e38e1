//! Commands over HTTP (create and update projects) against pgbench inserting the same event
//! row into a twin of the events table at the same concurrency, and against the same create
//! on the reference service (plain cqrs-es + postgres-es); fixed-rate latency from intended
//! send times; and the cost of an `Idempotency-Key` on every command.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use uuid::Uuid;

use crate::client::{Http, OpError};
use crate::load::{Outcome, closed_loop, fixed_rate};
use crate::pgbench;
use crate::report::{Measurement, Row, SideBySide};
use crate::scenarios::Context;
use crate::wrk;

/// Closed-loop concurrencies of the command figures (the issue's 8 and 32).
pub const CONCURRENCY: [usize; 2] = [8, 32];

/// The concurrency of the idempotency comparison.
const IDEMPOTENCY_CONCURRENCY: usize = 32;

/// Which command an operation sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
}

/// One command; with `keyed`, a fresh `Idempotency-Key` (every request is a first attempt, so
/// this measures the key recorded by the append, not replays).
async fn command(
    context: &Context,
    kind: Kind,
    i: u64,
    ids: &[Uuid],
    keyed: bool,
) -> Result<(), OpError> {
    let key = keyed.then(|| Uuid::new_v4().to_string());
    let headers: Vec<(&'static str, &str)> = key
        .as_deref()
        .map(|key| vec![("idempotency-key", key)])
        .unwrap_or_default();
    match kind {
        Kind::Create => {
            let id = Uuid::now_v7();
            let body = format!(
                r#"{{"id":"{id}","name":"bench project {i}","description":"created by the benchmark"}}"#
            );
            let url = format!("{}/api/v1/projects", context.command);
            context
                .http
                .send(Method::POST, &url, &headers, Some(Bytes::from(body)))
                .await?
                .expect(&[201])?;
            if let Ok(mut projects) = context.projects.lock() {
                projects.push(id);
            }
        }
        Kind::Update => {
            // Consecutive operations take consecutive projects, so concurrent updates hit
            // different streams: this measures the path, not optimistic-lock retries.
            let len = u64::try_from(ids.len()).unwrap_or(u64::MAX).max(1);
            let index = usize::try_from(i % len).unwrap_or_default();
            let id = ids
                .get(index)
                .ok_or_else(|| OpError::Invalid("no project to update".into()))?;
            // A name no earlier load gave this project: the loads cycle over the same
            // projects from i = 0, and a rename to the name a project has appends nothing
            // (the keyed half of the idempotency figure measured such no-ops before).
            let body = format!(r#"{{"name":"renamed {}"}}"#, Uuid::now_v7());
            let url = format!("{}/api/v1/projects/{id}", context.command);
            context
                .http
                .send(Method::PATCH, &url, &headers, Some(Bytes::from(body)))
                .await?
                .expect(&[200])?;
        }
    }
    Ok(())
}

async fn run_commands(
    context: &Context,
    kind: Kind,
    concurrency: usize,
    keyed: bool,
) -> anyhow::Result<Outcome> {
    let ids = context.project_ids();
    let shared = context.clone();
    closed_loop(concurrency, context.plan.step_budget(), move |i| {
        let (context, ids) = (shared.clone(), Arc::clone(&ids));
        async move { command(&context, kind, i, &ids, keyed).await }
    })
    .await
}

/// Creates at `concurrency` clients for one closed-loop step, for `--reads`: the peak the
/// fixed-rate loads take half of, and the projects the queries read, without the pgbench,
/// reference and wrk figures of [`throughput`].
pub async fn create_peak(context: &Context, concurrency: usize) -> anyhow::Result<Row> {
    let create = run_commands(context, Kind::Create, concurrency, false)
        .await?
        .measurement(1, "req/s");
    Ok(Row::new(
        "commands",
        "create project (POST)",
        format!("{concurrency} clients, closed loop"),
    )
    .measured(create))
}

/// The same create on the reference service; `None` when it is not running.
async fn run_reference(context: &Context, concurrency: usize) -> anyhow::Result<Option<Outcome>> {
    let Some(base) = context.reference.clone() else {
        return Ok(None);
    };
    let (http, url) = (context.plain.clone(), format!("{base}/api/v1/projects"));
    let outcome = closed_loop(concurrency, context.plan.step_budget(), move |i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = format!(
                r#"{{"id":"{}","name":"bench project {i}","description":"created by the benchmark"}}"#,
                Uuid::now_v7()
            );
            http.send(Method::POST, &url, &[], Some(Bytes::from(body)))
                .await?
                .expect(&[201])?;
            Ok(())
        }
    })
    .await?;
    Ok(Some(outcome))
}

/// Creates the baselines' table and functions in the bench database.
pub async fn prepare(context: &Context) -> anyhow::Result<()> {
    pgbench::prepare(&context.pool).await
}

/// What [`throughput`] measured.
pub struct Throughput {
    /// The figures.
    pub rows: Vec<Row>,
    /// pgbench | Chronicle | reference per concurrency.
    pub side_by_side: Vec<SideBySide>,
    /// The best create rate (the fixed-rate loads run at half of it).
    pub peak: f64,
}

/// A measurement of an external load generator, or why there is none: a missing or failing
/// pgbench or wrk (say, PostgreSQL out of connections) costs its figures, not the run.
fn external(what: &str, result: anyhow::Result<Measurement>) -> Result<Measurement, String> {
    result.map_err(|error| {
        eprintln!("    {what} failed: {error:#}");
        format!("{what} failed: {error:#}")
    })
}

/// `row` measured by `measured`, against pgbench's `baseline`; failures become notes.
fn against_pgbench(
    row: Row,
    measured: &Result<Measurement, String>,
    baseline: &Result<Measurement, String>,
    name: &str,
    goal: bool,
) -> Row {
    let row = match measured {
        Ok(measured) => row.measured(measured.clone()),
        Err(failure) => return row.note(format!("skipped: {failure}")),
    };
    match baseline {
        Ok(baseline) => {
            let row = row.baseline(name, baseline.clone());
            match row.ratio {
                Some(ratio) if goal => row.goal(">= 0.5x raw INSERT", ratio, 0.5, true),
                _ => row,
            }
        }
        Err(failure) => row.note(format!("no baseline: {failure}")),
    }
}

/// Closed-loop throughput and latency at each concurrency: pgbench's INSERT first, at every
/// concurrency, then per concurrency Chronicle's create, the reference's create and
/// Chronicle's update, then the two creates again from wrk.
///
/// pgbench runs before any HTTP load because its 32 connections come on top of the services'
/// pools, which grow under load and keep idle connections for minutes: afterwards, a server
/// shared with other work may have no 32 connections left to give.
pub async fn throughput(context: &Context) -> anyhow::Result<Throughput> {
    let mut rows = Vec::new();
    let mut side_by_side = Vec::new();
    let mut peak = 0.0_f64;
    let step = context.plan.step;
    let mut baselines = Vec::new();
    for concurrency in CONCURRENCY {
        eprintln!("  pgbench at {concurrency} clients");
        baselines.push(external(
            "pgbench",
            pgbench::insert(&context.database, concurrency, step, &context.work_dir).await,
        ));
    }
    for (concurrency, baseline) in CONCURRENCY.into_iter().zip(baselines) {
        eprintln!("  commands at {concurrency} clients");
        let create = run_commands(context, Kind::Create, concurrency, false)
            .await?
            .measurement(1, "req/s");
        let reference = run_reference(context, concurrency)
            .await?
            .map(|outcome| outcome.measurement(1, "req/s"));
        let update = run_commands(context, Kind::Update, concurrency, false)
            .await?
            .measurement(1, "req/s");
        // The same creates from wrk: if its figures match the bench client's, the client is
        // not what bounds them.
        let command_url = format!("{}/api/v1/projects", context.command);
        let create_wrk = external(
            "wrk",
            wrk::creates(
                &command_url,
                concurrency,
                step,
                &context.work_dir,
                Some(&context.bearer),
            )
            .await,
        );
        let reference_wrk = match &context.reference {
            Some(base) => Some(external(
                "wrk",
                wrk::creates(
                    &format!("{base}/api/v1/projects"),
                    concurrency,
                    step,
                    &context.work_dir,
                    None,
                )
                .await,
            )),
            None => None,
        };
        peak = peak.max(create.rate);
        side_by_side.push(SideBySide {
            clients: concurrency,
            pgbench: baseline.as_ref().ok().map(|m| m.rate),
            chronicle: Some(create.rate),
            reference: reference.as_ref().map(|m| m.rate),
            chronicle_wrk: create_wrk.as_ref().ok().map(|m| m.rate),
            reference_wrk: reference_wrk
                .as_ref()
                .and_then(|m| m.as_ref().ok())
                .map(|m| m.rate),
        });
        let load = format!("{concurrency} clients, closed loop");
        let name = format!("pgbench INSERT of the event row ({concurrency} conns)");
        let row = |figure: &str| Row::new("commands", figure, load.clone());
        rows.push(against_pgbench(
            row("create project (POST)"),
            &Ok(create.clone()),
            &baseline,
            &name,
            true,
        ));
        rows.push(against_pgbench(
            row("create project (POST), wrk"),
            &create_wrk,
            &baseline,
            &name,
            true,
        ));
        match reference {
            Some(reference) => {
                rows.push(against_pgbench(
                    row("reference create (cqrs-es + postgres-es + view)"),
                    &Ok(reference.clone()),
                    &baseline,
                    &name,
                    false,
                ));
                if let Some(reference_wrk) = &reference_wrk {
                    rows.push(against_pgbench(
                        row("reference create, wrk"),
                        reference_wrk,
                        &baseline,
                        &name,
                        false,
                    ));
                }
                rows.push(
                    row("create project (POST) vs reference")
                        .measured(create)
                        .baseline("reference create, same load", reference),
                );
            }
            None => rows.push(
                row("reference create").note("skipped: the reference service is not running"),
            ),
        }
        rows.push(against_pgbench(
            row("update project (PATCH)"),
            &Ok(update),
            &baseline,
            &name,
            true,
        ));
    }
    Ok(Throughput {
        rows,
        side_by_side,
        peak,
    })
}

/// Creates at a fixed rate, latency from each request's intended send time.
pub async fn fixed(context: &Context, rate: f64) -> anyhow::Result<Row> {
    eprintln!("  commands at a fixed {rate:.0}/s");
    let shared = context.clone();
    let outcome = fixed_rate(rate, context.plan.fixed_budget(), move |i| {
        let context = shared.clone();
        async move { command(&context, Kind::Create, i, &[], false).await }
    })
    .await?;
    Ok(Row::new(
        "commands",
        "create project, fixed rate (latency from intended send)",
        format!("{rate:.0}/s = half of peak"),
    )
    .measured(outcome.measurement(1, "req/s")))
}

/// The same loads with and without an `Idempotency-Key`, interleaved (A B A B) so that drift
/// of the shared machine hits both alike.
pub async fn idempotency(context: &Context) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (kind, figure) in [
        (Kind::Create, "create with Idempotency-Key"),
        (Kind::Update, "update with Idempotency-Key"),
    ] {
        eprintln!("  {figure}");
        let mut plain: Option<Outcome> = None;
        let mut keyed: Option<Outcome> = None;
        for _ in 0..2 {
            for (slot, with_key) in [(&mut plain, false), (&mut keyed, true)] {
                let outcome =
                    run_commands(context, kind, IDEMPOTENCY_CONCURRENCY, with_key).await?;
                match slot {
                    Some(total) => total.merge(&outcome)?,
                    None => *slot = Some(outcome),
                }
            }
        }
        let (Some(plain), Some(keyed)) = (plain, keyed) else {
            anyhow::bail!("idempotency runs produced nothing");
        };
        let mut row = Row::new(
            "idempotency",
            figure,
            format!("{IDEMPOTENCY_CONCURRENCY} clients, closed loop, 2x interleaved"),
        )
        .measured(keyed.measurement(1, "req/s"))
        .baseline("same load without keys", plain.measurement(1, "req/s"));
        if let Some(ratio) = row.ratio {
            row = row.goal("overhead <= 10%", (1.0 - ratio) * 100.0, 10.0, false);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// One create whose answer carries a consistency token (used to wait for the projector).
pub async fn create_one(http: &Http, command: &str) -> anyhow::Result<(Uuid, String)> {
    let id = Uuid::now_v7();
    let body = format!(r#"{{"id":"{id}","name":"bench marker"}}"#);
    let answer = http
        .send(
            Method::POST,
            &format!("{command}/api/v1/projects"),
            &[],
            Some(Bytes::from(body)),
        )
        .await?
        .expect(&[201])?;
    let token = answer
        .header("x-consistency-token")
        .ok_or_else(|| anyhow::anyhow!("a create answered without X-Consistency-Token"))?
        .to_owned();
    Ok((id, token))
}
