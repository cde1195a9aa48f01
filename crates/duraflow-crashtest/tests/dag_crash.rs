//! DAG runs under SIGKILL on SQLite: a worker process running several runs of a DAG template
//! (a fan-out of six, a decision, a batch of ten items four at a time, a convergence and a
//! join of the two branches; see `duraflow_crashtest::dag`) is killed with SIGKILL at points
//! drawn from a seed, and restarted, until a worker finishes every run. Afterwards:
//!
//! - every run completed, on the branch its decision chose, with the expected final result;
//! - no step is lost: every step is complete or skipped, and every step that was complete at a
//!   kill is still complete with the same result at the end;
//! - each step's result is recorded once: one `activity_completed` per step, one scheduled
//!   operation per step attempt (an attempt a kill cut short fails as `lease_expired`, the only
//!   failure allowed, and the interpreter retries the step as a new operation), and in the
//!   run's report (its output, and `dag_status` rebuilt from the journal) one transition to
//!   `complete` per step;
//! - handlers ran at least once, and again only after a kill that came before their result was
//!   journaled: the side-effect log shows every invocation, never two of one operation in one
//!   process, and a re-run only of an operation whose result the store did not hold when the
//!   process that ran it was killed;
//! - every journal replays with the interpreter to the same report with nothing new.
//!
//! `DURAFLOW_CRASH_KILLS` (default 5), `DURAFLOW_DAG_RUNS` (default 12) and
//! `DURAFLOW_CRASH_SEED` (default 14; the kill points follow it) set the run.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::dag::run::{self, dag_status, DagReport, StatusError};
use duraflow::dag::{Registry, RunState, StepState};
use duraflow::prelude::*;
use duraflow::{check_replay, workflow_fn, EventKind, FailureKind, Outcome, Payload, Store};
use duraflow_crashtest::dag::{
    expected_finish, launched_steps, read_dag_log, run_id, skipped_steps, template, DagLine,
    HANDLERS,
};
use duraflow_crashtest::process::{env_number, Worker};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);

/// Starts a DAG worker on the SQLite file `db`.
fn spawn_worker(db: &Path, log: &Path, generation: u32, runs: usize) -> Worker {
    let mut store = std::ffi::OsString::from("sqlite:");
    store.push(db);
    let child = Command::new(env!("CARGO_BIN_EXE_dag-worker"))
        .arg(store)
        .arg(log)
        .arg(generation.to_string())
        .arg(runs.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the DAG worker starts");
    Worker(child)
}

/// What the store held when a worker was killed.
struct AtKill {
    /// Handler invocations in the log.
    logged: usize,
    /// The report of each run that had resolved its template.
    reports: BTreeMap<String, DagReport>,
    /// The operations whose results were journaled, by run.
    journaled: BTreeSet<(String, String)>,
}

/// Reads every run's report (rebuilt from its journal, as `dag_status` does) and journaled
/// results from the store, with a client of its own, while no worker runs.
fn at_kill(rt: &tokio::runtime::Runtime, db: &Path, log: &Path, runs: usize) -> AtKill {
    let logged = read_dag_log(log).len();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(db).await.unwrap());
        let client = Client::new(store.clone() as Arc<dyn Store>);
        let mut reports = BTreeMap::new();
        let mut journaled = BTreeSet::new();
        for i in 0..runs {
            let id = run_id(i);
            // Not created yet, or created with its first turn not yet run: nothing journaled.
            let Ok(journal) = client.history(&id, None).await else {
                continue;
            };
            if journal.is_empty() {
                continue;
            }
            match run::rebuild(&id, &journal) {
                Ok(report) => {
                    reports.insert(id.clone(), report);
                }
                // Not past its template step yet.
                Err(StatusError::NotStarted) => continue,
                Err(e) => panic!("{id}: {e}"),
            }
            for e in &journal {
                if let EventKind::ActivityCompleted { op, .. } = &e.kind {
                    journaled.insert((id.clone(), op.to_string()));
                }
            }
        }
        drop(client);
        store.close();
        AtKill {
            logged,
            reports,
            journaled,
        }
    })
}

/// Whether the run's batch has expanded and some but not all of its workers are complete.
fn mid_batch(report: &DagReport) -> bool {
    let workers: Vec<StepState> = report
        .steps
        .iter()
        .filter(|(name, _)| name.starts_with("bulk["))
        .map(|(_, s)| s.state)
        .collect();
    let done = workers
        .iter()
        .filter(|s| **s == StepState::Complete)
        .count();
    done > 0 && done < workers.len()
}

fn complete_steps(report: &DagReport) -> usize {
    report
        .steps
        .values()
        .filter(|s| s.state == StepState::Complete)
        .count()
}

#[test]
fn a_sigkilled_dag_worker_loses_no_step_and_records_each_result_once() {
    let began = Instant::now();
    let kills_wanted = env_number("DURAFLOW_CRASH_KILLS", 5) as usize;
    let runs = env_number("DURAFLOW_DAG_RUNS", 12) as usize;
    let seed = env_number("DURAFLOW_CRASH_SEED", 14);
    let mut rng = fastrand::Rng::with_seed(seed);
    let total: usize = (0..runs).map(launched_steps).sum();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dag.db");
    let log = dir.path().join("effects.log");
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Kill, restart, and read every run's report while no worker runs.
    // `at_kills[g]` is what the store held when generation `g` was killed.
    let mut at_kills: Vec<AtKill> = Vec::new();
    let mut generation = 0u32;
    while at_kills.len() < kills_wanted {
        let mut worker = spawn_worker(&db, &log, generation, runs);
        let done = read_dag_log(&log).len();
        let remaining = total.saturating_sub(done);
        let share = (remaining / (kills_wanted - at_kills.len() + 1)).max(2);
        let target = done + rng.usize(share / 2..=share);
        if !worker.wait_for_lines(|| read_dag_log(&log).len(), target, DEADLINE) {
            break; // It finished everything before the kill point.
        }
        // Where the kill lands after that line, drawn from the seed too: before, inside or
        // after the window between a handler's side effect and the journaling of its result.
        std::thread::sleep(Duration::from_micros(rng.u64(0..6_000)));
        worker.0.kill().expect("SIGKILL the worker");
        worker.0.wait().unwrap();
        at_kills.push(at_kill(&rt, &db, &log, runs));
        generation += 1;
    }
    let kills = at_kills.len();
    assert!(kills > 0, "no kill landed before the worker finished");
    let mut last = spawn_worker(&db, &log, generation, runs);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = last.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the last worker did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "the last worker failed: {status}");

    let lines = read_dag_log(&log);
    let invoked: BTreeSet<(String, String)> = lines
        .iter()
        .map(|l| (l.instance.clone(), l.op.clone()))
        .collect();
    let mut registry = Registry::new(HANDLERS);
    registry.register(template()).unwrap();
    let registry = Arc::new(registry);

    let (finals, completed): (BTreeMap<String, DagReport>, BTreeSet<(String, String)>) = rt
        .block_on(async {
            let store = Arc::new(SqliteStore::open(&db).await.unwrap());
            let client = Client::new(store.clone() as Arc<dyn Store>);
            let mut finals = BTreeMap::new();
            let mut completed = BTreeSet::new();
            for i in 0..runs {
                let id = run_id(i);
                let info = client.status(&id).await.unwrap();
                assert_eq!(
                    info.status,
                    InstanceStatus::Completed,
                    "{id}: {:?}",
                    info.failure
                );
                let report: DagReport = info.output.expect("an output").decode().unwrap();
                assert_eq!(report.state, RunState::Complete, "{id}");
                assert_eq!(
                    report.results["finish"],
                    json!(expected_finish(i)),
                    "{id}: the final result"
                );

                // Each step is complete exactly once, or skipped when its branch was not chosen.
                let skipped = skipped_steps(i);
                for (name, step) in &report.steps {
                    let completions = step
                        .transitions
                        .iter()
                        .filter(|t| t.to == StepState::Complete)
                        .count();
                    if skipped.contains(&name.as_str()) {
                        assert_eq!(step.state, StepState::Skipped, "{id} {name}");
                        assert_eq!(completions, 0, "{id} {name}");
                    } else {
                        assert_eq!(step.state, StepState::Complete, "{id} {name}: {step:?}");
                        assert_eq!(completions, 1, "{id} {name}: {:?}", step.transitions);
                        assert!(report.results.contains_key(name), "{id} {name}: no result");
                    }
                }
                assert_eq!(complete_steps(&report), launched_steps(i), "{id}");

                // The journal: one scheduled operation per step attempt, one result per step, and
                // every recorded result comes from an invocation that really ran. Each attempt is
                // an activity of one attempt (the interpreter schedules the retries), so an attempt
                // a kill cut short fails as `lease_expired` and the step runs again as a new
                // operation: that is the only failure allowed.
                let journal = client.history(&id, None).await.unwrap();
                let mut scheduled = 0;
                let mut lost = 0;
                let mut results: BTreeMap<String, usize> = BTreeMap::new();
                for e in &journal {
                    match &e.kind {
                        EventKind::ActivityScheduled { .. } => scheduled += 1,
                        EventKind::ActivityCompleted { op, .. } => {
                            *results.entry(op.to_string()).or_default() += 1;
                            completed.insert((id.clone(), op.to_string()));
                            assert!(
                                invoked.contains(&(id.clone(), op.to_string())),
                                "{id} {op}: a result is journaled, but no handler invocation is \
                             in the log"
                            );
                        }
                        EventKind::ActivityFailed { op, failure } => {
                            assert_eq!(
                                failure.kind,
                                FailureKind::LeaseExpired,
                                "{id} {op} failed, and not for a kill: {failure:?}"
                            );
                            lost += 1;
                        }
                        _ => {}
                    }
                }
                assert_eq!(
                    scheduled,
                    launched_steps(i) + lost,
                    "{id}: one operation per step, and one more for each attempt a kill cut short"
                );
                assert_eq!(
                    results.len(),
                    launched_steps(i),
                    "{id}: every step's operation has one result"
                );
                assert!(
                    results.values().all(|n| *n == 1),
                    "{id}: each result must be journaled exactly once: {results:?}"
                );

                // The report rebuilt from the journal is the output, and the journal replays to
                // it with nothing new.
                assert_eq!(dag_status(&client, &id).await.unwrap(), report, "{id}");
                let replay = check_replay(
                    workflow_fn(run::interpreter(registry.clone())),
                    &id,
                    1,
                    journal,
                );
                assert!(
                    replay.new_events.is_empty(),
                    "{id}: {:?}",
                    replay.new_events
                );
                assert_eq!(
                    replay.outcome,
                    Some(Outcome::Completed(Payload::encode(&report).unwrap())),
                    "{id}"
                );
                finals.insert(id, report);
            }
            drop(client);
            store.close();
            (finals, completed)
        });

    // No step is lost: whatever was complete at a kill is complete at the end, with the same
    // result and the same completion.
    for (k, at_kill) in at_kills.iter().enumerate() {
        for (id, report) in &at_kill.reports {
            let end = &finals[id];
            for (name, step) in &report.steps {
                if step.state == StepState::Complete {
                    assert_eq!(
                        end.results.get(name),
                        report.results.get(name),
                        "kill {k}: {id} {name}'s result changed"
                    );
                    assert_eq!(
                        end.steps[name].transitions[..step.transitions.len()],
                        step.transitions[..],
                        "kill {k}: {id} {name}'s history changed"
                    );
                }
            }
        }
    }

    // At least once, and again only after a kill that lost its result: the invocations of
    // each operation, by the generations that made them, in log order.
    let mut by_op: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    for DagLine {
        generation,
        instance,
        op,
        ..
    } in &lines
    {
        by_op
            .entry((instance.clone(), op.clone()))
            .or_default()
            .push(*generation);
    }
    assert_eq!(
        by_op.keys().filter(|k| completed.contains(*k)).count(),
        total,
        "every step's handler ran"
    );
    // An operation with no result ran in a generation that was killed before the result was
    // journaled (the step's next attempt is a new operation).
    let mut cut_short = 0;
    for (key @ (instance, op), generations) in &by_op {
        if completed.contains(key) {
            continue;
        }
        for g in generations {
            assert!(
                *g < generation && !at_kills[*g as usize].journaled.contains(key),
                "{instance} {op} ran in generation {g} and has no result, but was not cut \
                 short by a kill"
            );
            cut_short += 1;
        }
    }
    let mut reruns_by_kill: BTreeMap<u32, usize> = BTreeMap::new();
    for ((instance, op), generations) in by_op.iter().filter(|(k, _)| completed.contains(*k)) {
        assert!(
            generations.windows(2).all(|w| w[0] < w[1]),
            "{instance} {op} ran twice in one process, or out of order: {generations:?}"
        );
        for g in &generations[..generations.len() - 1] {
            assert!(
                *g < generation,
                "{instance} {op} ran again after generation {g}, which was not killed"
            );
            // It ran again because the kill came before its result was journaled.
            assert!(
                !at_kills[*g as usize]
                    .journaled
                    .contains(&(instance.clone(), op.clone())),
                "{instance} {op} ran again although its result was journaled before \
                 generation {g} was killed"
            );
            *reruns_by_kill.entry(*g).or_default() += 1;
        }
    }
    let reruns: usize = reruns_by_kill.values().sum();
    let most = by_op.values().map(Vec::len).max().unwrap_or(0);
    assert_eq!(lines.len(), total + reruns + cut_short);

    let points: Vec<String> = at_kills
        .iter()
        .map(|k| {
            let complete: usize = k.reports.values().map(complete_steps).sum();
            let mid_run = k
                .reports
                .values()
                .filter(|r| r.state == RunState::InProgress)
                .count();
            let mid_batch = k.reports.values().filter(|r| mid_batch(r)).count();
            format!(
                "{} invocations logged, {complete} of {total} steps complete, {mid_run} runs \
                 in progress, {mid_batch} of them inside their batch",
                k.logged
            )
        })
        .collect();
    println!(
        "DAG crash test: seed {seed}, {kills} kills, {runs} runs, {total} steps, {} handler \
         invocations, {reruns} re-run after a kill (by killed generation: {reruns_by_kill:?}; \
         at most {most} invocations of one step), {cut_short} attempts cut short by a kill and \
         retried as new operations; kills at: [{}]; in {:?}",
        lines.len(),
        points.join("; "),
        began.elapsed()
    );
}
