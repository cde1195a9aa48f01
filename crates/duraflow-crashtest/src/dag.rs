//! Shared by the DAG worker and the DAG crash test: a mid-size DAG template with a fan-out,
//! a decision, a batch step and a convergence, its handlers, the results they must reach, and
//! the side-effect log the handlers write.
//!
//! Run `dag-<i>` runs [`template`] with the input `{ "run": i, "parts": [0, 1, ..] }`:
//!
//! ```text
//! intake ─┬─ check_0 ─┐
//!         ├─ ...      ├─ tally ── route ─┬─ bulk (batch of ITEMS, 4 at a time) ── seal ─┐
//!         └─ check_5 ─┘                  └─ single ──────────────────────────────────────┴─ finish
//! ```
//!
//! `route` chooses `bulk` for an even run and `single` for an odd one, so both branches run
//! and the other one is skipped. Every handler appends one line
//! `<generation> <instance> <op> <handler> <attempt>` to the side-effect log, synced, before it
//! returns, so the log records every invocation, including those whose result a SIGKILL lost.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duraflow::dag::run::DagStart;
use duraflow::dag::{Backoff, InputRef, RetrySpec, Step, Template};
use duraflow::prelude::*;
use serde_json::{json, Value};

/// The template's namespace.
pub const NAMESPACE: &str = "crashtest";
/// The template's name.
pub const NAME: &str = "fulfil";
/// Steps in the fan-out after `intake`.
pub const FAN: u64 = 6;
/// Items the batch step `bulk` returns.
pub const ITEMS: u64 = 10;
/// How many of `bulk`'s workers run at once.
pub const BATCH_CONCURRENCY: u32 = 4;

/// The environment variable setting how many activities a DAG worker runs at once (default
/// [`DEFAULT_ACTIVITY_CONCURRENCY`]): at most this many handlers are in flight at a kill.
pub const ACTIVITY_CONCURRENCY_VAR: &str = crate::ACTIVITY_CONCURRENCY_VAR;
/// Activities a DAG worker runs at once unless [`ACTIVITY_CONCURRENCY_VAR`] says otherwise.
pub const DEFAULT_ACTIVITY_CONCURRENCY: usize = 16;

/// Every handler the template names (the batch worker `pack` included).
pub const HANDLERS: [&str; 9] = [
    "intake",
    "check",
    "tally",
    "route",
    "list_parcels",
    "pack",
    "seal",
    "ship_single",
    "finish",
];

/// Each step's retries: a fixed 100 ms and attempts enough for any number of kills a run of
/// the test asks for. An attempt in flight at a kill counts as one, and the oldest steps are
/// taken first by every restarted worker, so one step can be in flight at every kill: with 20
/// attempts, `DURAFLOW_CRASH_KILLS=20` failed `check_0` of `dag-0` for good.
fn retry() -> RetrySpec {
    RetrySpec {
        max_attempts: 1_000,
        backoff: Backoff::Fixed,
        interval_ms: 100,
        max_interval_ms: 100,
        jitter: 0.0,
    }
}

fn input(path: &str) -> InputRef {
    InputRef::input(path)
}

fn result(step: &str) -> InputRef {
    InputRef::step_result(step, "")
}

/// The crash test's template, `crashtest/fulfil@1`.
pub fn template() -> Template {
    let mut b = Template::builder(NAMESPACE, NAME, "1")
        .description("A fan-out, a decision, a batch and a convergence, for the crash test")
        .input_schema(json!({ "type": "object", "required": ["run", "parts"] }))
        .step(
            Step::new("intake", "intake")
                .input("run", input("run"))
                .retry(retry()),
        );
    let mut tally = Step::new("tally", "tally").retry(retry());
    for k in 0..FAN {
        let name = format!("check_{k}");
        b = b.step(
            Step::new(&name, "check")
                .depends_on(["intake"])
                .input("run", input("run"))
                .input("part", input(&format!("parts.{k}")))
                .retry(retry()),
        );
        tally = tally
            .depends_on([name.clone()])
            .input(format!("c{k}"), result(&name));
    }
    b.step(tally)
        .step(
            Step::new("route", "route")
                .depends_on(["tally"])
                .input("run", input("run"))
                .decision(["bulk", "single"])
                .retry(retry()),
        )
        .step(
            Step::new("bulk", "list_parcels")
                .depends_on(["route"])
                .input("run", input("run"))
                .batch("pack", BATCH_CONCURRENCY)
                .retry(retry()),
        )
        .step(
            Step::new("seal", "seal")
                .depends_on(["bulk"])
                .convergence()
                .retry(retry()),
        )
        .step(
            Step::new("single", "ship_single")
                .depends_on(["route"])
                .input("run", input("run"))
                .retry(retry()),
        )
        .step(
            Step::new("finish", "finish")
                .depends_on(["seal", "single"])
                .input("tally", result("tally"))
                .input("sealed", result("seal"))
                .input("single", result("single"))
                .retry(retry()),
        )
        .build()
}

/// The id of run `i`.
pub fn run_id(i: usize) -> String {
    format!("dag-{i}")
}

/// The start of run `i`.
pub fn start(i: usize) -> DagStart {
    let parts: Vec<u64> = (0..FAN).collect();
    DagStart::named(NAMESPACE, NAME, json!({ "run": i, "parts": parts }))
}

/// Whether run `i` takes the `bulk` branch (even runs) or `single` (odd runs).
pub fn takes_bulk(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// The steps run `i` skips: the branch `route` did not choose.
pub fn skipped_steps(i: usize) -> Vec<&'static str> {
    if takes_bulk(i) {
        vec!["single"]
    } else {
        vec!["bulk", "seal"]
    }
}

/// How many steps run `i` launches (batch workers included): every handler invocation a
/// failure-free run makes.
pub fn launched_steps(i: usize) -> usize {
    let common = 1 + FAN as usize + 2 + 1; // intake, the checks, tally, route, finish
    if takes_bulk(i) {
        common + 2 + ITEMS as usize // bulk, seal and the workers
    } else {
        common + 1 // single
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// What `handler` returns for `input`: a pure function, so every invocation of a step, in
/// whichever process, returns the same result.
pub fn handle(handler: &str, input: &Value) -> Result<Value, String> {
    let run = number(&input["run"]);
    Ok(match handler {
        "intake" => json!({ "run": run }),
        "check" => json!(run * 100 + number(&input["part"])),
        "tally" => json!((0..FAN)
            .map(|k| number(&input[format!("c{k}")]))
            .sum::<u64>()),
        "route" => json!(if run.is_multiple_of(2) {
            "bulk"
        } else {
            "single"
        }),
        "list_parcels" => json!((0..ITEMS).map(|k| run * 10 + k).collect::<Vec<_>>()),
        "pack" => json!(number(input) * 2),
        "seal" => json!(input["results"]
            .as_array()
            .map_or(0, |r| r.iter().map(number).sum::<u64>())),
        "ship_single" => json!(run * 7),
        "finish" => {
            json!(number(&input["tally"]) + number(&input["sealed"]) + number(&input["single"]))
        }
        other => return Err(format!("no handler `{other}`")),
    })
}

/// The result of run `i`'s `finish` step.
pub fn expected_finish(i: usize) -> u64 {
    let run = i as u64;
    let tally: u64 = (0..FAN).map(|k| run * 100 + k).sum();
    let branch = if takes_bulk(i) {
        (0..ITEMS).map(|k| (run * 10 + k) * 2).sum()
    } else {
        run * 7
    };
    tally + branch
}

/// One line of the DAG log: one invocation of a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagLine {
    /// The worker process's generation (0 for the first start).
    pub generation: u32,
    /// The run (instance).
    pub instance: String,
    /// The activity's operation id.
    pub op: String,
    /// The handler.
    pub handler: String,
    /// The attempt the engine gave it.
    pub attempt: u32,
}

impl DagLine {
    /// The line as written.
    pub fn render(&self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.generation, self.instance, self.op, self.handler, self.attempt
        )
    }

    /// Parses a written line; `None` for a torn or malformed one.
    pub fn parse(line: &str) -> Option<DagLine> {
        let mut parts = line.split_whitespace();
        let line = DagLine {
            generation: parts.next()?.parse().ok()?,
            instance: parts.next()?.to_owned(),
            op: parts.next()?.to_owned(),
            handler: parts.next()?.to_owned(),
            attempt: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(line)
    }
}

/// Reads a DAG log (a missing file is empty); malformed lines are skipped.
pub fn read_dag_log(path: &Path) -> Vec<DagLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(DagLine::parse)
        .collect()
}

/// Runs `handler` for one invocation: a little work, the side effect (one synced log line),
/// a little more work, then the result. Kills land before, inside and after the window
/// between the side effect and the journaling of the result.
pub async fn invoke(
    ctx: ActivityContext,
    handler: &'static str,
    input: Value,
    log: Arc<Mutex<std::fs::File>>,
    generation: u32,
) -> Result<Value, ActivityError> {
    let op = ctx.op_id().to_string();
    let jitter = op.bytes().map(u64::from).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(1 + jitter % 3)).await;
    let line = DagLine {
        generation,
        instance: ctx.instance_id().to_owned(),
        op,
        handler: handler.to_owned(),
        attempt: ctx.attempt(),
    };
    {
        let mut file = log
            .lock()
            .map_err(|_| ActivityError::retryable("log poisoned"))?;
        // One write of a short line to a file opened with O_APPEND, then a sync.
        file.write_all(line.render().as_bytes())?;
        file.sync_data()?;
    }
    tokio::time::sleep(Duration::from_millis(1 + jitter % 4)).await;
    handle(handler, &input).map_err(ActivityError::terminal)
}
