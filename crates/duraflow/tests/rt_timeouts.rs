//! Activity timeouts under virtual time: an attempt that outlives `attempt_timeout` fails and
//! is retried; `schedule_to_close` ends the activity for good with a timeout failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{quiet, task_state, virtual_clock, virtual_options, TaskState};
use duraflow::prelude::*;
use duraflow::{Clock, FailureKind, ManualClock, Store, Timestamp};

type Attempts = Arc<Mutex<Vec<(u32, Timestamp)>>>;

/// Counts live activity futures: dropped futures decrement it.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Call {
    attempt_timeout: Option<u64>,
    schedule_to_close: Option<u64>,
    retry: RetryPolicy,
}

async fn call_slow(ctx: WorkflowContext, call: Call) -> Result<u32, WorkflowError> {
    let mut activity = ctx.activity("slow", &()).retry(call.retry);
    if let Some(s) = call.attempt_timeout {
        activity = activity.attempt_timeout(Duration::from_secs(s));
    }
    if let Some(s) = call.schedule_to_close {
        activity = activity.schedule_to_close(Duration::from_secs(s));
    }
    activity.await
}

struct Setup {
    clock: Arc<ManualClock>,
    t0: Timestamp,
    store: Arc<dyn Store>,
    engine: Engine,
    client: Client,
    attempts: Attempts,
    live: Arc<AtomicUsize>,
    /// The previous attempt's failure as each attempt saw it.
    seen_failures: Arc<Mutex<Vec<Option<duraflow::Failure>>>>,
}

/// An engine whose `slow` activity records its attempts and waits for cancellation (which a
/// timeout never sends) until attempt `succeed_from`, which returns at once.
async fn setup(succeed_from: u32) -> Setup {
    let clock = virtual_clock();
    let t0 = clock.now();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let attempts: Attempts = Arc::default();
    let live = Arc::new(AtomicUsize::new(0));
    let seen_failures: Arc<Mutex<Vec<Option<duraflow::Failure>>>> = Arc::default();
    let (a, l, c, f) = (
        attempts.clone(),
        live.clone(),
        clock.clone(),
        seen_failures.clone(),
    );
    let engine = Engine::builder()
        .clock(clock.clone())
        .shared_store(store.clone())
        .options(virtual_options())
        .workflow("call-slow", call_slow)
        .activity("slow", move |ctx: ActivityContext, _: ()| {
            let (a, l, c, f) = (a.clone(), l.clone(), c.clone(), f.clone());
            async move {
                f.lock().unwrap().push(ctx.last_failure().cloned());
                a.lock().unwrap().push((ctx.attempt(), c.now()));
                if ctx.attempt() >= succeed_from {
                    return Ok(ctx.attempt());
                }
                l.fetch_add(1, Ordering::SeqCst);
                let _live = Live(l);
                ctx.cancelled().await;
                Err(ActivityError::Cancelled)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    Setup {
        clock,
        t0,
        store,
        engine,
        client,
        attempts,
        live,
        seen_failures,
    }
}

impl Setup {
    fn attempts(&self) -> Vec<(u32, Timestamp)> {
        self.attempts.lock().unwrap().clone()
    }

    async fn wait_attempts(&self, n: usize) {
        common::eventually(&format!("{n} attempt(s) to start"), || async {
            (self.attempts.lock().unwrap().len() == n && self.engine.running_activities() == 1)
                .then_some(())
        })
        .await;
    }

    fn at(&self, secs: u64) -> Timestamp {
        self.t0.plus(Duration::from_secs(secs))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_outlives_its_timeout_fails_and_is_retried() {
    let s = setup(2).await;
    let call = Call {
        attempt_timeout: Some(5),
        schedule_to_close: None,
        retry: RetryPolicy::fixed(Duration::from_secs(2)).max_attempts(3),
    };
    let run = s.client.start("call-slow", &call).await.unwrap();
    s.wait_attempts(1).await;
    assert_eq!(s.attempts(), [(1, s.t0)]);

    // Just short of the timeout the attempt still runs.
    s.clock.advance(Duration::from_millis(4_999));
    let journal = s.client.history(&run, None).await.unwrap();
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(s.engine.running_activities(), 1);
    assert_eq!(
        task_state(s.store.as_ref(), s.clock.now()).await,
        TaskState::Busy
    );

    // At the timeout the attempt fails and a retry is scheduled after the backoff.
    s.clock.advance(Duration::from_millis(1));
    let (info, retry_at) = quiet(&s.client, s.store.as_ref(), &s.clock, &run.id).await;
    assert_eq!(info.status, InstanceStatus::Running);
    assert_eq!(retry_at, Some(s.at(7)));
    common::eventually("the timed-out attempt to be dropped", || async {
        (s.live.load(Ordering::SeqCst) == 0 && s.engine.running_activities() == 0).then_some(())
    })
    .await;

    s.clock.set(s.at(7));
    let out: u32 = s.client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 2);
    assert_eq!(s.attempts(), [(1, s.t0), (2, s.at(7))]);
    // The retry sees why the first attempt failed.
    let seen = s.seen_failures.lock().unwrap().clone();
    assert_eq!(seen[0], None);
    let last = seen[1].clone().expect("the first attempt's failure");
    assert!(last.message.contains("timed out after 5s"), "{last:?}");
    assert_eq!(last.attempts, Some(1));
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_timeouts_use_up_the_retries() {
    let s = setup(u32::MAX).await;
    let call = Call {
        attempt_timeout: Some(5),
        schedule_to_close: None,
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(2),
    };
    let run = s.client.start("call-slow", &call).await.unwrap();
    s.wait_attempts(1).await;
    s.clock.set(s.at(5));
    let (_, retry_at) = quiet(&s.client, s.store.as_ref(), &s.clock, &run.id).await;
    assert_eq!(retry_at, Some(s.at(6)));
    s.clock.set(s.at(6));
    s.wait_attempts(2).await;
    s.clock.set(s.at(11));
    let failure = common::failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.attempts, Some(2));
    assert!(
        failure.message.contains("timed out after 5s"),
        "{failure:?}"
    );
    assert_eq!(s.attempts(), [(1, s.t0), (2, s.at(6))]);
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_to_close_ends_a_hanging_activity_with_a_timeout() {
    let s = setup(u32::MAX).await;
    let call = Call {
        attempt_timeout: None,
        schedule_to_close: Some(10),
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(5),
    };
    let run = s.client.start("call-slow", &call).await.unwrap();
    s.wait_attempts(1).await;

    s.clock.advance(Duration::from_millis(9_999));
    assert_eq!(s.engine.running_activities(), 1);
    s.clock.advance(Duration::from_millis(1));
    let failure = common::failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert!(failure.message.contains("schedule-to-close"), "{failure:?}");
    assert_eq!(failure.attempts, Some(1));
    assert!(failure.source.unwrap().contains("slow"));
    assert_eq!(s.attempts(), [(1, s.t0)]);
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_to_close_stops_retries_that_would_come_too_late() {
    let s = setup(u32::MAX).await;
    // Attempt 1 runs from 0 s and times out at 5 s; attempt 2 runs from 6 s and times out at
    // 11 s; a third would start at 12 s, when the activity must have closed. The policy still
    // allows it, so this is a timeout, not exhausted retries.
    let call = Call {
        attempt_timeout: Some(5),
        schedule_to_close: Some(12),
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(10),
    };
    let run = s.client.start("call-slow", &call).await.unwrap();
    s.wait_attempts(1).await;
    s.clock.set(s.at(5));
    let (_, retry_at) = quiet(&s.client, s.store.as_ref(), &s.clock, &run.id).await;
    assert_eq!(retry_at, Some(s.at(6)));
    s.clock.set(s.at(6));
    s.wait_attempts(2).await;
    s.clock.set(s.at(11));
    let failure = common::failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert!(failure.message.contains("schedule-to-close"), "{failure:?}");
    assert!(
        failure
            .message
            .contains("the last attempt failed: attempt timed out after 5s"),
        "{failure:?}"
    );
    assert_eq!(failure.attempts, Some(2));
    assert_eq!(s.attempts(), [(1, s.t0), (2, s.at(6))]);
    s.engine.shutdown().await;
}
