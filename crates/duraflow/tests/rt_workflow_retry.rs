//! Workflow-level retries (`Start::retry`), on virtual time: a failed attempt starts again after
//! the policy's backoff; what earlier attempts completed is not run again (counted), what failed
//! is; the attempt is visible in `ctx.attempt()`, in status and in history; non-retryable codes
//! and exhausted policies fail the instance; an event received by an earlier attempt reaches the
//! next one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{eventually, virtual_clock, virtual_options, DEADLINE};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, ManualClock, Timestamp};

/// How often each activity and step ran.
#[derive(Default)]
struct Runs {
    reserve: AtomicU32,
    charge: AtomicU32,
    step: AtomicU32,
}

/// Fails with a code, every time.
async fn refuse(_ctx: WorkflowContext, code: String) -> Result<(), WorkflowError> {
    Err(WorkflowError::application_with_code("refused", code))
}

/// Waits for `go`, then fails in attempt 1 and returns the event's data in attempt 2.
async fn waits_then_fails(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let data: String = ctx.wait_for_event("go").await?;
    if ctx.attempt() == 1 {
        return Err(WorkflowError::application("first attempt fails"));
    }
    Ok(format!("{data} in attempt {}", ctx.attempt()))
}

async fn engine(clock: Arc<ManualClock>, runs: Arc<Runs>) -> Engine {
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs);
    Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .options(virtual_options())
        .workflow("checkout", move |ctx: WorkflowContext, order: String| {
            checkout(ctx, order, r3.clone())
        })
        .workflow("refuse", refuse)
        .workflow("waits-then-fails", waits_then_fails)
        .activity("reserve", move |_ctx: ActivityContext, order: String| {
            let runs = r1.clone();
            async move {
                runs.reserve.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(format!("reserved {order}"))
            }
        })
        .activity("charge", move |_ctx: ActivityContext, order: String| {
            let runs = r2.clone();
            async move {
                if runs.charge.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(ActivityError::retryable("the card network is down"))
                } else {
                    Ok(format!("charged {order}"))
                }
            }
        })
        .start()
        .await
        .unwrap()
}

/// Reserves (an activity), records (a step, its runs counted), naps, then charges (an
/// activity that fails the first time it runs, and is not retried by its own policy), and
/// reports the attempt.
async fn checkout(
    ctx: WorkflowContext,
    order: String,
    runs: Arc<Runs>,
) -> Result<String, WorkflowError> {
    let reserved: String = ctx.activity("reserve", &order).await?;
    let recorded: u32 = ctx
        .step("record", move |_step| {
            let runs = runs.clone();
            async move {
                runs.step.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(7u32)
            }
        })
        .await?;
    ctx.sleep(Duration::from_secs(1)).await?;
    let charged: String = ctx
        .activity("charge", &order)
        .retry(RetryPolicy::none())
        .await?;
    Ok(format!(
        "{reserved}, {recorded}, {charged} in attempt {}",
        ctx.attempt()
    ))
}

/// Waits until the instance's current execution is `execution`, then until its journal holds
/// an event `pred` accepts.
async fn wait_for(client: &Client, id: &str, execution: u32, pred: fn(&EventKind) -> bool) {
    eventually("the expected event", || async {
        let info = client.status(id).await.unwrap();
        if info.execution != execution {
            return None;
        }
        let journal = client.history(id, Some(execution)).await.unwrap();
        journal.iter().any(|e| pred(&e.kind)).then_some(())
    })
    .await;
}

fn timer_created(k: &EventKind) -> bool {
    matches!(k, EventKind::TimerCreated { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_workflow_reuses_what_its_first_attempt_completed() {
    let clock = virtual_clock();
    let runs = Arc::new(Runs::default());
    let engine = engine(clock.clone(), runs.clone()).await;
    let client = engine.client();
    let run = client
        .start("checkout", "order-9")
        .id("checkout-9")
        .retry(RetryPolicy::fixed(Duration::from_secs(30)).max_attempts(3))
        .await
        .unwrap();

    // Attempt 1: reserve, record, nap, then charge fails.
    wait_for(&client, &run.id, 1, timer_created).await;
    clock.advance(Duration::from_secs(1));
    let failed_at: Timestamp = eventually("attempt 1 failed", || async {
        let info = client.status(&run).await.unwrap();
        (info.attempt == 2).then_some(info.updated_at)
    })
    .await;
    let first = client.history(&run, Some(1)).await.unwrap();
    assert!(
        matches!(first.last().unwrap().kind, EventKind::WorkflowFailed { .. }),
        "attempt 1 ends failed: {:?}",
        common::types(&first)
    );
    let info = client.status(&run).await.unwrap();
    assert_eq!(info.status, InstanceStatus::Running);
    assert_eq!(info.execution, 2);
    assert_eq!(
        engine.store().next_due(clock.now()).await.unwrap().turn,
        Some(failed_at.plus(Duration::from_secs(30))),
        "the next attempt starts after the backoff"
    );

    // Attempt 2, after the backoff: only the charge runs again.
    clock.advance(Duration::from_secs(30));
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "reserved order-9, 7, charged order-9 in attempt 2");
    assert_eq!(runs.reserve.load(Ordering::SeqCst), 1, "reserve ran again");
    assert_eq!(runs.step.load(Ordering::SeqCst), 1, "the step ran again");
    assert_eq!(runs.charge.load(Ordering::SeqCst), 2, "charge is retried");
    let info = client.status(&run).await.unwrap();
    assert_eq!((info.attempt, info.status), (2, InstanceStatus::Completed));
    let second = client.history(&run, Some(2)).await.unwrap();
    match &second[0].kind {
        EventKind::WorkflowStarted { retry: Some(r), .. } => {
            assert_eq!(r.attempt, 2);
            assert_eq!(r.recorded.len(), 3, "reserve, the step and the timer");
        }
        other => panic!("attempt 2 begins with {other:?}"),
    }
    // Nothing but the charge (and its completion) is scheduled in attempt 2.
    assert_eq!(
        common::count(&second, |k| matches!(
            k,
            EventKind::ActivityScheduled { .. }
        )),
        1
    );
    assert_eq!(common::count(&second, timer_created), 0);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_codes_and_exhausted_policies_fail_the_instance() {
    let clock = virtual_clock();
    let engine = engine(clock.clone(), Arc::default()).await;
    let client = engine.client();
    let policy = RetryPolicy::fixed(Duration::from_secs(5))
        .max_attempts(2)
        .non_retryable(["invalid"]);

    let invalid = client
        .start("refuse", "invalid")
        .retry(policy.clone())
        .await
        .unwrap();
    let err = client.wait::<()>(&invalid).timeout(DEADLINE).await;
    assert!(
        matches!(err, Err(ClientError::WorkflowFailed(_))),
        "{err:?}"
    );
    assert_eq!(client.status(&invalid).await.unwrap().attempt, 1);

    let busy = client.start("refuse", "busy").retry(policy).await.unwrap();
    eventually("attempt 2 scheduled", || async {
        (client.status(&busy).await.unwrap().attempt == 2).then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(5));
    let err = client.wait::<()>(&busy).timeout(DEADLINE).await;
    match err {
        Err(ClientError::WorkflowFailed(f)) => {
            assert_eq!(f.code.as_deref(), Some("busy"));
        }
        other => panic!("expected the last attempt's failure, got {other:?}"),
    }
    let info = client.status(&busy).await.unwrap();
    assert_eq!((info.attempt, info.execution), (2, 2));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_taken_by_a_failed_attempt_reaches_the_next() {
    let clock = virtual_clock();
    let engine = engine(clock.clone(), Arc::default()).await;
    let client = engine.client();
    let run = client
        .start("waits-then-fails", &())
        .retry(RetryPolicy::fixed(Duration::from_secs(10)).max_attempts(2))
        .await
        .unwrap();
    wait_for(&client, &run.id, 1, |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    client.raise_event(&run, "go", "green").await.unwrap();
    eventually("attempt 2 scheduled", || async {
        (client.status(&run).await.unwrap().attempt == 2).then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(10));
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "green in attempt 2");
    engine.shutdown().await;
}
