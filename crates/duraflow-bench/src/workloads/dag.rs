//! The DAG workloads: the orchestration overhead per step of a DAG run on the engine
//! (`dag-chain`, `dag-fan-out`), and the cost of ready-step discovery alone, as DAGs grow
//! (`dag-readiness`).
//!
//! - `dag-chain`: one run of a registered template of N no-op steps, each depending on the one
//!   before, started by name. Timed from the start to the report; per step = total / steps.
//!   The same engine then runs the `sequential-activities` workflow of N no-op activities (no
//!   DAG), and the difference is what the DAG layer adds per step; then the same template again
//!   as an inline template (`DagStart::inline`), whose start input carries the whole template.
//! - `dag-fan-out`: the same with a root, N no-op steps that each depend on the root, and a
//!   join depending on all of them (N + 2 steps), against the `fan-out` workflow joining N
//!   activities.
//! - `dag-readiness`: no engine. For N/100, N/10 and N steps and three shapes (a chain; a root,
//!   a wide middle and a join; layers of [`LAYER_WIDTH`] steps each depending on every step of
//!   the layer before), times full validation of the template, and a walk of the whole graph
//!   through the `Readiness` tracker (every ready step completed in turn until the run is
//!   finished), and reports nanoseconds per step: flat as N grows means linear.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::dag::run::{dag_status, DagReport, DagStart, WORKFLOW_NAME};
use duraflow::dag::{Dag, Readiness, Registry, RunState, StepState, Template};
use duraflow::Client;
use serde_json::json;

use crate::engine::{DAG_NOOP, FAN_OUT, SEQUENTIAL_ACTIVITIES};
use crate::report::Figures;
use crate::stats;
use crate::store::StoreEnv;
use crate::workloads::Session;
use crate::Result;

/// The width of each layer of the `layered` shape of `dag-readiness`.
pub(crate) const LAYER_WIDTH: usize = 8;

/// How many times `dag-readiness` walks each graph (the median is reported).
pub(crate) const WALKS: usize = 5;

/// The per-step overhead target of issue 14, in milliseconds.
const TARGET_MS_PER_STEP: f64 = 1.0;

/// A graph shape of `dag-readiness`.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Chain,
    Wide,
    Layered,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::Chain, Shape::Wide, Shape::Layered];

    fn key(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Wide => "wide",
            Shape::Layered => "layered",
        }
    }

    /// The parents of step `i` of `n`.
    fn parents(self, i: usize, n: usize) -> Vec<usize> {
        match self {
            Shape::Chain => i.checked_sub(1).into_iter().collect(),
            Shape::Wide if i == 0 => Vec::new(),
            Shape::Wide if i == n - 1 && n > 2 => (1..n - 1).collect(),
            Shape::Wide => vec![0],
            Shape::Layered => {
                let layer = i / LAYER_WIDTH;
                if layer == 0 {
                    Vec::new()
                } else {
                    ((layer - 1) * LAYER_WIDTH..layer * LAYER_WIDTH).collect()
                }
            }
        }
    }

    /// A template of `n` no-op steps `s0 .. s<n-1>` of this shape.
    fn template(self, n: usize) -> Template {
        let mut b = Template::builder("bench", self.key(), "1");
        for i in 0..n {
            let step = duraflow::dag::Step::new(format!("s{i}"), DAG_NOOP)
                .depends_on(self.parents(i, n).into_iter().map(|p| format!("s{p}")));
            b = b.step(step);
        }
        b.build()
    }
}

/// Runs `dag-chain` with `n` steps.
pub(crate) async fn chain(env: &StoreEnv, n: u64) -> Result<Figures> {
    let template = Shape::Chain.template(n as usize);
    on_engine(
        env,
        template,
        n,
        SEQUENTIAL_ACTIVITIES,
        "n sequential activities",
    )
    .await
}

/// Runs `dag-fan-out` with `n` steps between the root and the join.
pub(crate) async fn fan_out(env: &StoreEnv, n: u64) -> Result<Figures> {
    let template = Shape::Wide.template(n as usize + 2);
    on_engine(env, template, n, FAN_OUT, "a workflow joining n activities").await
}

/// Runs `template` as a DAG run started by name (registered), then `baseline` with input
/// `n`, then `template` again as an inline run, on one engine.
async fn on_engine(
    env: &StoreEnv,
    template: Template,
    n: u64,
    baseline: &str,
    baseline_is: &str,
) -> Result<Figures> {
    let steps = template.steps.len();
    let mut registry = Registry::new([DAG_NOOP]);
    registry.register(template.clone())?;
    let session = Session::start_with(env, Arc::new(registry)).await?;
    let client = &session.client;

    let named = DagStart::named(&template.namespace, &template.name, json!({}));
    let (elapsed, report) = dag_run(client, "dag", &named, steps).await?;
    let status_started = Instant::now();
    let rebuilt = dag_status(client, "dag").await?;
    let status_elapsed = status_started.elapsed();
    if rebuilt != report {
        return Err("dag_status rebuilt another report than the run's output".into());
    }
    let journal_events = client.history("dag", None).await?.len();

    let started = Instant::now();
    let run = client.start(baseline, &n).id("baseline").await?;
    let _: u64 = client.wait(&run).await?;
    let baseline_elapsed = started.elapsed();

    let inline = DagStart::inline(template, json!({}));
    let inline_bytes = serde_json::to_vec(&inline)?.len();
    let (inline_elapsed, _) = dag_run(client, "dag-inline", &inline, steps).await?;
    session.stop().await?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let per_step = ms(elapsed) / steps as f64;
    let baseline_per_op = ms(baseline_elapsed) / n as f64;
    let mut f = Figures::new();
    f.int("steps", steps as u64)
        .num("ms_per_step", per_step, 3)
        .num("total_s", elapsed.as_secs_f64(), 3)
        .num("steps_per_s", steps as f64 / elapsed.as_secs_f64(), 1)
        .num("baseline_ms_per_activity", baseline_per_op, 3)
        .num("baseline_total_s", baseline_elapsed.as_secs_f64(), 3)
        .num("dag_extra_ms_per_step", per_step - baseline_per_op, 3)
        .text("baseline", baseline_is)
        .num("inline_ms_per_step", ms(inline_elapsed) / steps as f64, 3)
        .int("inline_start_input_bytes", inline_bytes as u64)
        .num("dag_status_ms", ms(status_elapsed), 1)
        .int("journal_events", journal_events as u64)
        .num("target_ms_per_step", TARGET_MS_PER_STEP, 1)
        .flag("target_met", per_step < TARGET_MS_PER_STEP);
    Ok(f)
}

/// Starts the DAG run `id` and waits for its report; checks that every one of its `steps`
/// completed. Returns the time from the start to the report, and the report.
async fn dag_run(
    client: &Client,
    id: &str,
    start: &DagStart,
    steps: usize,
) -> Result<(Duration, DagReport)> {
    let started = Instant::now();
    let run = client.start(WORKFLOW_NAME, start).id(id).await?;
    let report: DagReport = client.wait(&run).await?;
    let elapsed = started.elapsed();
    let complete = report
        .steps
        .values()
        .filter(|s| s.state == StepState::Complete)
        .count();
    if report.state != RunState::Complete || complete != steps {
        return Err(format!(
            "the DAG run {id} ended {} with {complete} of {steps} steps complete",
            report.state
        )
        .into());
    }
    Ok((elapsed, report))
}

/// The sizes `dag-readiness` measures for `n`: N/100, N/10 and N (at least 2 steps each, no
/// size twice).
pub(crate) fn readiness_sizes(n: u64) -> Vec<usize> {
    let n = n as usize;
    let mut sizes: Vec<usize> = [n / 100, n / 10, n].iter().map(|&s| s.max(2)).collect();
    sizes.dedup();
    sizes
}

/// Runs `dag-readiness` up to `n` steps.
pub(crate) fn readiness(n: u64) -> Result<Figures> {
    let sizes = readiness_sizes(n);
    let mut f = Figures::new();
    f.text(
        "sizes",
        sizes
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    for shape in Shape::ALL {
        let mut walk_per_step = Vec::new();
        for &size in &sizes {
            let template = shape.template(size);
            let validate_started = Instant::now();
            let dag = duraflow::dag::validate(&template, [DAG_NOOP])?;
            let validate_elapsed = validate_started.elapsed();
            let edges: usize = dag.ids().map(|id| dag.parents(id).len()).sum();
            let mut samples = Vec::with_capacity(WALKS);
            for _ in 0..WALKS {
                let copy = dag.clone();
                let started = Instant::now();
                let visits = walk(copy)?;
                samples.push(started.elapsed().as_secs_f64() * 1e9);
                if visits != edges {
                    return Err(format!(
                        "{} of {size}: the walk followed {visits} edges, the graph has {edges}",
                        shape.key()
                    )
                    .into());
                }
            }
            samples.sort_by(f64::total_cmp);
            let per_step = stats::median(&samples) / size as f64;
            walk_per_step.push(per_step);
            let key = shape.key();
            f.num(&format!("{key}_walk_ns_per_step_{size}"), per_step, 1)
                .num(
                    &format!("{key}_validate_ns_per_step_{size}"),
                    validate_elapsed.as_secs_f64() * 1e9 / size as f64,
                    1,
                )
                .int(&format!("{key}_edges_{size}"), edges as u64);
        }
        let first = walk_per_step.first().copied().unwrap_or(0.0);
        let last = walk_per_step.last().copied().unwrap_or(0.0);
        f.num(&format!("{}_walk_flatness", shape.key()), last / first, 2);
    }
    Ok(f)
}

/// Completes every step of `dag` through a fresh `Readiness` tracker, each as soon as it is
/// ready; returns the edges it followed.
fn walk(dag: Dag) -> Result<usize> {
    let (mut tracker, mut ready) = Readiness::new(dag);
    while let Some(id) = ready.pop() {
        ready.extend(tracker.complete(id)?.ready);
    }
    if !tracker.is_finished() {
        return Err("the walk ended before every step was resolved".into());
    }
    Ok(tracker.edge_visits())
}
