//! The steps crash test, shared by its SQLite and PostgreSQL variants: a worker running
//! workflows of at-most-once and at-least-once steps is killed with SIGKILL at random moments
//! and restarted. Afterwards every workflow has completed with the right output and its journal
//! replays cleanly; no attempt of an at-most-once step ran twice; and every repeated call of an
//! at-least-once attempt is explained by a kill: it came after a call in a killed process,
//! never twice in one process, and each kill repeated at most the steps that process had in
//! flight.
//!
//! `DURAFLOW_CRASH_KILLS` (default 8), `DURAFLOW_CRASH_WORKFLOWS` (default 100) and
//! `DURAFLOW_CRASH_SEED` (default: random, printed) set the run.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow::prelude::*;
use duraflow::{check_replay, EventKind, Outcome, Payload, Store};
use duraflow_crashtest::process::{env_number, Worker};
use duraflow_crashtest::steps::{
    expected_output, read_step_log, steps_workflow, workflow_id, Effects, Semantics, StepLine,
    DEFAULT_WORKFLOW_CONCURRENCY, STEPS, WORKFLOW_CONCURRENCY_VAR,
};

const DEADLINE: Duration = Duration::from_secs(120);

fn spawn_worker(
    store: &OsStr,
    env: &[(&str, &str)],
    log: &Path,
    generation: u32,
    workflows: usize,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_steps-worker"))
        .env(
            WORKFLOW_CONCURRENCY_VAR,
            DEFAULT_WORKFLOW_CONCURRENCY.to_string(),
        )
        .envs(env.iter().copied())
        .arg(store)
        .arg(log)
        .arg(generation.to_string())
        .arg(workflows.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the steps worker starts")
}

type Key = (String, String, u32);

/// Runs the steps crash test against `store` (a worker's store argument; `env` is added to the
/// workers' environment), then checks the store `open_check` opens (on `rt`) and the log.
pub(crate) fn sigkill_steps(
    label: &str,
    store: &OsStr,
    env: &[(&str, &str)],
    rt: &tokio::runtime::Runtime,
    open_check: impl FnOnce() -> Arc<dyn Store>,
) {
    let began = Instant::now();
    let kills_wanted = env_number("DURAFLOW_CRASH_KILLS", 8) as usize;
    let workflows = env_number("DURAFLOW_CRASH_WORKFLOWS", 100) as usize;
    let seed = env_number("DURAFLOW_CRASH_SEED", fastrand::u64(..));
    println!("{label}: seed {seed} (DURAFLOW_CRASH_SEED={seed} repeats the kill points)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let total_steps = workflows * STEPS as usize;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.log");

    let mut kills = 0;
    let mut generation = 0u32;
    while kills < kills_wanted {
        let mut worker = Worker(spawn_worker(store, env, &log, generation, workflows));
        // Kill once a random share of the remaining work has been done, a random few
        // milliseconds after a step body wrote its line (so kills land before, inside and after
        // the window between a side effect and the checkpoint of its result).
        let done = read_step_log(&log).len();
        let remaining = total_steps.saturating_sub(done);
        let share = (remaining / (kills_wanted - kills + 1)).max(2);
        let target = done + rng.usize(share / 2..=share);
        if !worker.wait_for_lines(|| read_step_log(&log).len(), target, DEADLINE) {
            break; // It finished everything before the kill point.
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..8_000)));
        worker.0.kill().expect("SIGKILL the worker");
        worker.0.wait().unwrap();
        kills += 1;
        generation += 1;
    }
    let mut last = Worker(spawn_worker(store, env, &log, generation, workflows));
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

    // Every workflow completed with the right output; each step's result is journaled once;
    // the journal replays to the same outcome with nothing new; and the attempt each result
    // came from was really called.
    let lines = read_step_log(&log);
    let called: BTreeSet<Key> = lines
        .iter()
        .map(|l| (l.instance.clone(), l.op.clone(), l.attempt))
        .collect();
    let mut started_attempts: BTreeSet<Key> = BTreeSet::new();
    let mut interrupted = 0;
    let store = open_check();
    rt.block_on(async {
        for i in 0..workflows {
            let id = workflow_id(i);
            let info = store.instance(&id).await.unwrap().expect("instance exists");
            assert_eq!(
                info.status,
                InstanceStatus::Completed,
                "{id}: {:?}",
                info.failure
            );
            let output: u64 = info.output.expect("an output").decode().unwrap();
            assert_eq!(output, expected_output(i), "{id}");
            let journal = store.journal(&id, None).await.unwrap();
            let mut last_start: BTreeMap<String, u32> = BTreeMap::new();
            let mut completed: BTreeMap<String, usize> = BTreeMap::new();
            for e in &journal {
                match &e.kind {
                    EventKind::StepStarted { op, attempt, .. } => {
                        started_attempts.insert((id.clone(), op.to_string(), *attempt));
                        last_start.insert(op.to_string(), *attempt);
                    }
                    EventKind::StepCompleted { op, .. } => {
                        *completed.entry(op.to_string()).or_default() += 1;
                        let attempt = last_start[&op.to_string()];
                        assert!(
                            called.contains(&(id.clone(), op.to_string(), attempt)),
                            "{id} {op}: the result of attempt {attempt} is journaled, but its \
                             body never ran"
                        );
                    }
                    EventKind::StepRetrying { failure, .. }
                        if failure.kind == FailureKind::StepInterrupted =>
                    {
                        interrupted += 1;
                    }
                    _ => {}
                }
            }
            assert!(
                completed.len() == STEPS as usize && completed.values().all(|n| *n == 1),
                "{id}: each step's result must be journaled exactly once: {completed:?}"
            );
            let report = check_replay(steps_workflow(Effects::none()), &id, 1, journal);
            assert!(
                report.new_events.is_empty(),
                "{id}: replay issued {:?}",
                report.new_events
            );
            assert_eq!(
                report.outcome,
                Some(Outcome::Completed(
                    Payload::encode(&expected_output(i)).unwrap()
                )),
                "{id}: replay reached another outcome"
            );
        }
    });

    // The calls of each attempt, by the generations that made them, in log order.
    let mut calls: BTreeMap<(Key, Semantics), Vec<u32>> = BTreeMap::new();
    for StepLine {
        generation,
        instance,
        op,
        attempt,
        semantics,
    } in &lines
    {
        calls
            .entry(((instance.clone(), op.clone(), *attempt), *semantics))
            .or_default()
            .push(*generation);
    }
    let mut duplicates = 0;
    let mut duplicates_by_kill: BTreeMap<u32, usize> = BTreeMap::new();
    for (((instance, op, attempt), semantics), generations) in &calls {
        // An at-most-once body runs only once its attempt's start is stored, and never twice.
        if *semantics == Semantics::AtMostOnce {
            assert_eq!(
                generations.len(),
                1,
                "at-most-once {instance} {op} attempt {attempt} ran {} times (generations \
                 {generations:?})",
                generations.len()
            );
            assert!(
                started_attempts.contains(&(instance.clone(), op.clone(), *attempt)),
                "at-most-once {instance} {op} attempt {attempt} ran without a stored start"
            );
            continue;
        }
        // An at-least-once attempt runs again only in a later process than a killed one: never
        // twice in one process, and never after a call in the last (unkilled) process.
        let mut distinct = generations.clone();
        distinct.dedup();
        assert_eq!(
            &distinct, generations,
            "{instance} {op} attempt {attempt} ran twice in one process: {generations:?}"
        );
        assert!(
            generations.windows(2).all(|w| w[0] < w[1]),
            "{instance} {op} attempt {attempt}: calls out of generation order {generations:?}"
        );
        for g in &generations[..generations.len() - 1] {
            assert!(
                *g < generation,
                "{instance} {op} attempt {attempt} ran again after generation {g}, which was \
                 not killed"
            );
            *duplicates_by_kill.entry(*g).or_default() += 1;
        }
        duplicates += generations.len() - 1;
    }
    // A killed process leaves at most one step per instance it was running with a result not
    // yet stored: at most its workflow concurrency, and never more instances than exist.
    let per_kill = DEFAULT_WORKFLOW_CONCURRENCY.min(workflows);
    for (g, n) in &duplicates_by_kill {
        assert!(
            *n <= per_kill,
            "the kill of generation {g} left {n} at-least-once attempts to run again; at most \
             {per_kill} steps were in flight"
        );
    }
    assert!(duplicates <= kills * per_kill);
    let amo_calls = lines
        .iter()
        .filter(|l| l.semantics == Semantics::AtMostOnce)
        .count();
    println!(
        "{label}: seed {seed}, {kills} kills, {workflows} workflows, {total_steps} \
         steps, {} calls ({amo_calls} at most once, none repeated; {interrupted} interrupted \
         attempts retried), {duplicates} at-least-once attempts repeated after a kill (by killed \
         generation: {duplicates_by_kill:?}), in {:?}",
        lines.len(),
        began.elapsed()
    );
}
