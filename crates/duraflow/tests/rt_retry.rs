//! Activity retries under virtual time: the backoff schedule is followed to the millisecond,
//! retries stop at `max_attempts` with a failure naming the activity, and terminal errors and
//! non-retryable codes are never retried.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{quiet, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, FailureKind, ManualClock, Timestamp};

/// Every attempt an activity saw: its number and the engine time it started at.
type Attempts = Arc<Mutex<Vec<(u32, Timestamp)>>>;

fn attempts_of(log: &Attempts) -> Vec<(u32, Timestamp)> {
    log.lock().unwrap().clone()
}

/// Calls `flaky` with the retry policy it is given and returns its output.
async fn call_flaky(ctx: WorkflowContext, policy: RetryPolicy) -> Result<String, WorkflowError> {
    ctx.activity("flaky", &()).retry(policy).await
}

/// An engine whose `flaky` activity records each attempt and fails the first `failures` of
/// them with `error`.
async fn engine_with_flaky(
    clock: Arc<ManualClock>,
    failures: u32,
    error: ActivityError,
) -> (Engine, Attempts) {
    let log: Attempts = Arc::default();
    let (l, c) = (log.clone(), clock.clone());
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .options(virtual_options())
        .workflow("call-flaky", call_flaky)
        .activity("flaky", move |ctx: ActivityContext, _: ()| {
            let (l, c, error) = (l.clone(), c.clone(), error.clone());
            async move {
                l.lock().unwrap().push((ctx.attempt(), c.now()));
                if ctx.attempt() <= failures {
                    Err(error)
                } else {
                    Ok(format!("succeeded on attempt {}", ctx.attempt()))
                }
            }
        })
        .start()
        .await
        .unwrap();
    (engine, log)
}

fn secs(t0: Timestamp, s: u64) -> Timestamp {
    t0.plus(Duration::from_secs(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_backoff_runs_attempts_at_exactly_1_3_and_7_seconds() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let (engine, log) = engine_with_flaky(
        clock.clone(),
        3,
        ActivityError::retryable("service unavailable"),
    )
    .await;
    let client = engine.client();
    let store = engine.store();
    let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(4);
    assert_eq!(policy.jitter, 0.0);
    let run = client.start("call-flaky", &policy).await.unwrap();

    let schedule = [t0, secs(t0, 1), secs(t0, 3), secs(t0, 7)];
    let step = Duration::from_millis(500);
    // Walk the clock forward half a second at a time; at each step let the engine do all it can
    // and check that exactly the attempts due by then have run, each at its scheduled time.
    for n in 0..=14u32 {
        if n > 0 {
            clock.advance(step);
        }
        let now = clock.now();
        let (info, retry_at) = quiet(&client, store.as_ref(), &clock, &run.id).await;
        let due: Vec<(u32, Timestamp)> = schedule
            .iter()
            .filter(|t| **t <= now)
            .enumerate()
            .map(|(i, t)| (i as u32 + 1, *t))
            .collect();
        assert_eq!(attempts_of(&log), due, "attempts by {now}");
        let next = schedule.iter().find(|t| **t > now).copied();
        assert_eq!(retry_at, next, "the next retry as scheduled at {now}");
        assert_eq!(info.status.is_terminal(), next.is_none(), "{info:?}");
    }
    assert_eq!(clock.now(), secs(t0, 7));
    let out: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "succeeded on attempt 4");
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        common::types(&journal),
        [
            "workflow_started",
            "activity_scheduled",
            "activity_completed",
            "workflow_completed"
        ],
        "failed attempts are not journaled; only the final result is"
    );
    assert_eq!(journal[2].at, secs(t0, 7));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausting_max_attempts_fails_the_workflow_with_retries_exhausted() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let (engine, log) = engine_with_flaky(
        clock.clone(),
        u32::MAX,
        ActivityError::retryable("still down").with_code("unavailable"),
    )
    .await;
    let client = engine.client();
    let store = engine.store();
    let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(3);
    let run = client.start("call-flaky", &policy).await.unwrap();

    // Move the clock to each retry as soon as the engine has scheduled it.
    let mut retries = Vec::new();
    loop {
        let (info, retry_at) = quiet(&client, store.as_ref(), &clock, &run.id).await;
        match retry_at {
            Some(at) => {
                retries.push(at);
                clock.set(at);
            }
            None => {
                assert_eq!(info.status, InstanceStatus::Failed);
                break;
            }
        }
        assert!(retries.len() < 10, "too many retries: {retries:?}");
    }
    assert_eq!(retries, [secs(t0, 1), secs(t0, 3)]);
    assert_eq!(
        attempts_of(&log),
        [(1, t0), (2, secs(t0, 1)), (3, secs(t0, 3))]
    );

    let failure = match client.wait::<String>(&run).timeout(common::DEADLINE).await {
        Err(ClientError::WorkflowFailed(f)) => f,
        other => panic!("expected the workflow to fail, got {other:?}"),
    };
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.attempts, Some(3));
    assert_eq!(failure.message, "still down");
    assert_eq!(failure.code.as_deref(), Some("unavailable"));
    assert!(
        failure
            .source
            .as_deref()
            .is_some_and(|s| s.contains("\"flaky\"")),
        "{failure:?}"
    );
    assert!(failure.to_string().contains("flaky"), "{failure}");
    let journal = client.history(&run, None).await.unwrap();
    assert!(journal.iter().any(|e| matches!(
        &e.kind,
        EventKind::ActivityFailed { failure: f, .. } if f.kind == FailureKind::RetriesExhausted
    )));
    assert_eq!(
        store.management().unwrap().stats().await.unwrap().tasks,
        0,
        "the task is gone"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_replaces_the_policy_backoff() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let asked = Duration::from_secs(30);
    let (engine, log) = engine_with_flaky(
        clock.clone(),
        1,
        ActivityError::retryable("429 Too Many Requests").retry_after(asked),
    )
    .await;
    let client = engine.client();
    let store = engine.store();
    // The policy alone would retry after 1 s.
    let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(3);
    let run = client.start("call-flaky", &policy).await.unwrap();
    let (_, retry_at) = quiet(&client, store.as_ref(), &clock, &run.id).await;
    assert_eq!(
        retry_at,
        Some(secs(t0, 30)),
        "the retry waits what was asked"
    );
    clock.advance(asked - Duration::from_millis(1));
    let (_, retry_at) = quiet(&client, store.as_ref(), &clock, &run.id).await;
    assert_eq!(retry_at, Some(secs(t0, 30)));
    assert_eq!(
        attempts_of(&log),
        [(1, t0)],
        "no attempt before the asked time"
    );
    clock.advance(Duration::from_millis(1));
    let out: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "succeeded on attempt 2");
    assert_eq!(attempts_of(&log), [(1, t0), (2, secs(t0, 30))]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_failure_records_the_retry_after_it_asked_for() {
    let error = ActivityError::retryable("busy").retry_after(Duration::from_secs(5));
    let failure = fails_without_retry(error, RetryPolicy::none()).await;
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.retry_after(), Some(Duration::from_secs(5)));
}

/// Runs `flaky` failing with `error` under a generous retry policy and returns the workflow's
/// failure and the attempts made. The clock is never moved, so a retry could never run; the
/// workflow failing at all shows that none was scheduled.
async fn fails_without_retry(error: ActivityError, policy: RetryPolicy) -> duraflow::Failure {
    let clock = virtual_clock();
    let t0 = clock.now();
    let (engine, log) = engine_with_flaky(clock.clone(), u32::MAX, error).await;
    let client = engine.client();
    let run = client.start("call-flaky", &policy).await.unwrap();
    let failure = common::failure_of(&client, &run.id).await;
    assert_eq!(attempts_of(&log), [(1, t0)], "exactly one attempt");
    assert_eq!(
        engine
            .store()
            .management()
            .unwrap()
            .stats()
            .await
            .unwrap()
            .tasks,
        0
    );
    // The attempt ends (and leaves the registry) just after its result is recorded.
    common::eventually("the last attempt to end", || async {
        (engine.running_activities() == 0).then_some(())
    })
    .await;
    engine.shutdown().await;
    assert_eq!(attempts_of(&log).len(), 1);
    failure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_error_is_not_retried() {
    let policy = RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(5);
    let failure =
        fails_without_retry(ActivityError::terminal("card number is invalid"), policy).await;
    assert_eq!(failure.kind, FailureKind::ActivityTerminal);
    assert_eq!(failure.attempts, Some(1));
    assert_eq!(failure.message, "card number is invalid");
    assert!(failure.source.unwrap().contains("flaky"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_code_is_not_retried() {
    let policy = RetryPolicy::exponential(Duration::from_secs(1))
        .max_attempts(5)
        .non_retryable(["card_declined"]);
    let failure = fails_without_retry(
        ActivityError::retryable("declined by the bank").with_code("card_declined"),
        policy,
    )
    .await;
    assert_eq!(failure.kind, FailureKind::ActivityTerminal);
    assert_eq!(failure.attempts, Some(1));
    assert_eq!(failure.code.as_deref(), Some("card_declined"));
    assert_eq!(failure.message, "declined by the bank");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_of_one_attempt_fails_after_the_first() {
    let failure =
        fails_without_retry(ActivityError::retryable("flaked once"), RetryPolicy::none()).await;
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.attempts, Some(1));
}

/// A workflow can catch an activity's final failure and carry on.
async fn catch_flaky(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let out: Result<String, WorkflowError> =
        ctx.activity("flaky", &()).retry(RetryPolicy::none()).await;
    match out {
        Err(WorkflowError::Activity(f)) => Ok(format!("handled {}: {}", f.kind, f.message)),
        other => Err(WorkflowError::application(format!("unexpected {other:?}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_can_handle_an_activity_failure() {
    let clock = virtual_clock();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .workflow("catch", catch_flaky)
        .activity("flaky", |_ctx: ActivityContext, _: ()| async {
            Err::<String, _>(ActivityError::terminal("nope"))
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("catch", &()).await.unwrap();
    let out: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "handled activity_terminal: nope");
    engine.shutdown().await;
}
