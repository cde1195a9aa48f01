//! DAG retries the interpreter schedules itself, on virtual time: each failed attempt shows as
//! error → waiting_for_retry → enqueued with its attempt number, the backoff is a durable
//! timer (with a jitter replay repeats), a handler's Retry-After replaces the computed wait,
//! and a terminal error fails the step after one attempt.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::sync::{Arc, Mutex};

use common::{eventually, virtual_clock, virtual_options, DEADLINE};
use dag_support::{assert_replays, start_inline};
use duraflow::dag::run::{self, dag_status, DagReport};
use duraflow::dag::{Backoff, Registry, RetrySpec, RunState, Step, StepState, Template};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, ManualClock, Timestamp};
use serde_json::{json, Value};

/// When each call of the flaky handler started (engine time).
type Calls = Arc<Mutex<Vec<Timestamp>>>;

/// An engine on a virtual `clock` whose `flaky` handler fails its first `failures` calls with
/// what `error` makes of the call number, and whose `after` handler echoes its input.
async fn engine(
    clock: Arc<ManualClock>,
    registry: Arc<Registry>,
    failures: usize,
    error: fn(usize) -> ActivityError,
) -> (Engine, Calls) {
    let calls: Calls = Arc::default();
    let (log, c) = (calls.clone(), clock.clone());
    let engine = run::register(
        Engine::builder()
            .store(MemoryStore::new())
            .clock(clock)
            .options(virtual_options()),
        registry,
    )
    .workflow("probe", |_ctx: WorkflowContext, _: ()| async {
        Ok::<_, WorkflowError>(())
    })
    .activity("flaky", move |_ctx: ActivityContext, _: Value| {
        let n = {
            let mut log = log.lock().unwrap();
            log.push(c.now());
            log.len()
        };
        async move {
            if n <= failures {
                Err(error(n))
            } else {
                Ok(json!(format!("ok on call {n}")))
            }
        }
    })
    .activity("after", |_ctx: ActivityContext, input: Value| async move {
        Ok::<_, ActivityError>(input)
    })
    .start()
    .await
    .unwrap();
    (engine, calls)
}

fn template(retry: RetrySpec) -> Template {
    Template::builder("t", "retries", "1")
        .step(Step::new("flaky", "flaky").retry(retry))
        .step(
            Step::new("after", "after")
                .depends_on(["flaky"])
                .input("got", "$.steps.flaky.result".parse().unwrap()),
        )
        .build()
}

fn fixed(max_attempts: u32, interval_ms: u64, jitter: f64) -> RetrySpec {
    RetrySpec {
        max_attempts,
        backoff: Backoff::Fixed,
        interval_ms,
        max_interval_ms: 3_600_000,
        jitter,
    }
}

fn calls_of(calls: &Calls) -> Vec<Timestamp> {
    calls.lock().unwrap().clone()
}

/// Waits for the run's `n`-th backoff timer and returns its fire time.
async fn nth_timer(client: &Client, id: &str, n: usize) -> Timestamp {
    eventually(&format!("backoff timer {n} of {id}"), || async {
        let journal = client.history(id, None).await.ok()?;
        journal
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TimerCreated { fire_at, .. } => Some(*fire_at),
                _ => None,
            })
            .nth(n - 1)
    })
    .await
}

/// Shows that the dispatcher has looked for work at the clock's current time: a workflow
/// started now completes.
async fn probe(client: &Client) {
    let p = client.start("probe", &()).await.unwrap();
    client.wait::<()>(&p).timeout(DEADLINE).await.unwrap();
}

fn moves(report: &DagReport, step: &str) -> Vec<(StepState, StepState, u32)> {
    report.steps[step]
        .transitions
        .iter()
        .map(|t| (t.from, t.to, t.attempt))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_waits_its_backoff_and_every_attempt_is_visible() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let registry = Arc::new(Registry::default());
    let (engine, calls) = engine(clock.clone(), registry.clone(), 2, |n| {
        ActivityError::retryable(format!("unavailable ({n})"))
    })
    .await;
    let client = engine.client();
    let run = start_inline(&client, template(fixed(3, 1_000, 0.0))).await;

    for n in 1..=2u64 {
        let fire_at = nth_timer(&client, &run.id, n as usize).await;
        let failed_at = clock.now();
        assert_eq!(fire_at, failed_at.plus(Duration::from_secs(1)));
        let status = dag_status(&client, &run.id).await.unwrap();
        assert_eq!(status.steps["flaky"].state, StepState::WaitingForRetry);
        assert_eq!(status.steps["flaky"].attempts, n as u32);
        clock.advance(Duration::from_millis(999));
        probe(&client).await;
        assert_eq!(calls_of(&calls).len(), n as usize, "not before the backoff");
        clock.advance(Duration::from_millis(1));
    }
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(
        calls_of(&calls),
        [
            t0,
            t0.plus(Duration::from_secs(1)),
            t0.plus(Duration::from_secs(2))
        ]
    );
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.results["after"], json!({ "got": "ok on call 3" }));
    use StepState::*;
    assert_eq!(
        moves(&report, "flaky"),
        [
            (Pending, Enqueued, 0),
            (Enqueued, InProgress, 1),
            (InProgress, Error, 1),
            (Error, WaitingForRetry, 1),
            (WaitingForRetry, Enqueued, 1),
            (Enqueued, InProgress, 2),
            (InProgress, Error, 2),
            (Error, WaitingForRetry, 2),
            (WaitingForRetry, Enqueued, 2),
            (Enqueued, InProgress, 3),
            (InProgress, Complete, 3),
        ]
    );
    let flaky = &report.steps["flaky"];
    assert_eq!(flaky.attempts, 3);
    assert!(flaky.transitions[2].reason.contains("unavailable (1)"));
    assert!(flaky.transitions[3]
        .reason
        .contains("attempt 1 of 3 failed"));
    assert_eq!(flaky.transitions[5].at, t0.as_millis() + 1_000);
    let journal = assert_replays(&client, &registry, &run.id, &report).await;
    let attempts = journal
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityScheduled { .. }))
        .count();
    assert_eq!(attempts, 4, "three attempts of flaky and one of after");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jittered_backoff_is_within_its_spread_and_replays_the_same() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let registry = Arc::new(Registry::default());
    let (engine, calls) = engine(clock.clone(), registry.clone(), 1, |_| {
        ActivityError::retryable("flaky")
    })
    .await;
    let client = engine.client();
    let run = start_inline(&client, template(fixed(2, 10_000, 0.5))).await;
    let fire_at = nth_timer(&client, &run.id, 1).await;
    let wait = fire_at.since(t0);
    assert!(
        (Duration::from_secs(5)..=Duration::from_secs(15)).contains(&wait),
        "{wait:?}"
    );
    clock.advance(wait);
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(calls_of(&calls), [t0, fire_at]);
    // Replay recomputes the jitter (from the instance id, the step and the attempt): the
    // timer it asks for is the recorded one, so there is no new event, and the same report.
    assert_replays(&client, &registry, &run.id, &report).await;
    let retry_at = report.steps["flaky"].transitions[3].reason.clone();
    assert!(
        retry_at.contains(&fire_at.as_millis().to_string()),
        "{retry_at}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_the_handler_replaces_the_backoff() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let registry = Arc::new(Registry::default());
    let (engine, calls) = engine(clock.clone(), registry.clone(), 1, |_| {
        ActivityError::retryable("429 Too Many Requests").retry_after(Duration::from_secs(45))
    })
    .await;
    let client = engine.client();
    // The step's own backoff would retry after one second.
    let run = start_inline(&client, template(fixed(3, 1_000, 0.0))).await;
    let fire_at = nth_timer(&client, &run.id, 1).await;
    assert_eq!(fire_at, t0.plus(Duration::from_secs(45)));
    clock.advance(Duration::from_millis(44_999));
    probe(&client).await;
    assert_eq!(calls_of(&calls), [t0], "no attempt before the asked time");
    clock.advance(Duration::from_millis(1));
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(calls_of(&calls), [t0, t0.plus(Duration::from_secs(45))]);
    assert_eq!(report.steps["flaky"].attempts, 2);
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_error_fails_the_step_after_one_attempt() {
    let clock = virtual_clock();
    let registry = Arc::new(Registry::default());
    let (engine, calls) = engine(clock.clone(), registry, usize::MAX, |_| {
        ActivityError::terminal("card number is invalid")
    })
    .await;
    let client = engine.client();
    let run = start_inline(&client, template(fixed(5, 1_000, 0.0))).await;
    let failure = common::failure_of(&client, &run.id).await;
    assert_eq!(failure.code.as_deref(), Some("dag_step_failed"));
    assert!(
        failure.message.contains("card number is invalid"),
        "{failure:?}"
    );
    assert_eq!(calls_of(&calls).len(), 1, "one attempt of five allowed");
    let status = dag_status(&client, &run.id).await.unwrap();
    assert_eq!(status.state, RunState::Error);
    let flaky = &status.steps["flaky"];
    assert_eq!((flaky.state, flaky.attempts), (StepState::Error, 1));
    assert!(flaky
        .transitions
        .last()
        .unwrap()
        .reason
        .contains("not retryable"));
    assert_eq!(status.steps["after"].state, StepState::Pending);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waiting_for_its_backoff_holds_no_other_step_back() {
    let clock = virtual_clock();
    let registry = Arc::new(Registry::default());
    let (engine, calls) = engine(clock.clone(), registry.clone(), 1, |_| {
        ActivityError::retryable("later")
    })
    .await;
    let client = engine.client();
    let template = Template::builder("t", "parallel", "1")
        .step(Step::new("flaky", "flaky").retry(fixed(2, 3_600_000, 0.0)))
        .step(Step::new("other", "after"))
        .step(Step::new("then", "after").depends_on(["other"]))
        .build();
    let run = start_inline(&client, template).await;
    // The clock stands still: the hour's backoff cannot elapse, yet the other branch ends.
    eventually("the other branch to finish while flaky waits", || async {
        let status = dag_status(&client, &run.id).await.ok()?;
        (status.steps["flaky"].state == StepState::WaitingForRetry
            && status.steps["then"].state == StepState::Complete)
            .then_some(())
    })
    .await;
    assert_eq!(calls_of(&calls).len(), 1);
    clock.advance(Duration::from_secs(3_600));
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.steps["flaky"].attempts, 2);
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}
