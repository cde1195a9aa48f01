//! Activity heartbeats under virtual time: the details an attempt records reach the next
//! attempt (after a failure, a lost lease); an attempt that stops heartbeating for its
//! heartbeat timeout fails with `heartbeat_timed_out` and is retried under its policy; one that
//! keeps heartbeating runs on, with its lease kept no longer than the timeout. The first two
//! run on the memory and SQLite stores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::{eventually, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{Clock, Failure, FailureKind, ManualClock, SqliteStore, Store, Timestamp};

#[derive(serde::Serialize, serde::Deserialize)]
struct Call {
    /// Seconds.
    heartbeat_timeout: Option<u64>,
    retry: RetryPolicy,
}

async fn call_work(ctx: WorkflowContext, call: Call) -> Result<u32, WorkflowError> {
    let mut activity = ctx.activity("work", &()).retry(call.retry);
    if let Some(s) = call.heartbeat_timeout {
        activity = activity.heartbeat_timeout(Duration::from_secs(s));
    }
    activity.await
}

/// What an attempt saw when it started.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    attempt: u32,
    details: Option<u32>,
    last_failure: Option<Failure>,
}

struct Setup {
    clock: Arc<ManualClock>,
    t0: Timestamp,
    store: Arc<dyn Store>,
    engine: Engine,
    client: Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Heartbeats the activity has sent (it counts them with [`beat`]).
    beats: Arc<AtomicU32>,
}

/// Sends a heartbeat with `details` and counts it.
fn beat(ctx: &ActivityContext, beats: &AtomicU32, details: u32) -> Result<(), ActivityError> {
    ctx.heartbeat(&details)?;
    beats.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A memory store, and a SQLite store in a temporary directory that lives as long as the
/// returned guard.
async fn stores() -> (Vec<Arc<dyn Store>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("heartbeats.db"))
        .await
        .unwrap();
    (vec![Arc::new(MemoryStore::new()), Arc::new(sqlite)], dir)
}

/// An engine on a memory store and a virtual clock whose `work` activity records what each
/// attempt saw and then runs `body` (given the heartbeat counter).
async fn setup<F, Fut>(body: F) -> Setup
where
    F: Fn(ActivityContext, Arc<AtomicU32>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u32, ActivityError>> + Send + 'static,
{
    setup_on(Arc::new(MemoryStore::new()), body).await
}

/// [`setup`] on `store`.
async fn setup_on<F, Fut>(store: Arc<dyn Store>, body: F) -> Setup
where
    F: Fn(ActivityContext, Arc<AtomicU32>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u32, ActivityError>> + Send + 'static,
{
    let clock = virtual_clock();
    let t0 = clock.now();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let beats = Arc::new(AtomicU32::new(0));
    let counter = beats.clone();
    let engine = Engine::builder()
        .clock(clock.clone())
        .shared_store(store.clone())
        .options(virtual_options())
        .workflow("call-work", call_work)
        .activity("work", move |ctx: ActivityContext, _: ()| {
            record.lock().unwrap().push(Seen {
                attempt: ctx.attempt(),
                details: ctx.heartbeat_details().unwrap(),
                last_failure: ctx.last_failure().cloned(),
            });
            body(ctx, counter.clone())
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
        seen,
        beats,
    }
}

impl Setup {
    fn at(&self, millis: u64) -> Timestamp {
        self.t0.plus(Duration::from_millis(millis))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until attempt `n` runs and the activity has sent `beats` heartbeats in all.
    async fn wait_running(&self, n: usize, beats: u32) {
        eventually(
            &format!("attempt {n} to run after heartbeat {beats}"),
            || async {
                (self.seen.lock().unwrap().len() == n
                    && self.engine.running_activities() == 1
                    && self.beats.load(Ordering::SeqCst) == beats)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until attempt `n` has ended and its task waits for the retry; returns when that
    /// is due.
    async fn wait_retry(&self, n: usize) -> Timestamp {
        eventually(
            &format!("attempt {n} to end and its retry to wait"),
            || async {
                if self.seen.lock().unwrap().len() != n || self.engine.running_activities() != 0 {
                    return None;
                }
                self.store.next_due(self.clock.now()).await.ok()?.task
            },
        )
        .await
    }

    /// When the running attempt's lease runs out, as the store shows it.
    async fn lease_until(&self) -> Option<Timestamp> {
        self.store.next_due(self.clock.now()).await.unwrap().task
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_resumes_from_the_details_its_failed_attempt_recorded() {
    let (stores, _dir) = stores().await;
    for store in stores {
        resume_from_details(store).await;
    }
}

async fn resume_from_details(store: Arc<dyn Store>) {
    let s = setup_on(
        store,
        |ctx: ActivityContext, beats: Arc<AtomicU32>| async move {
            let done = ctx.heartbeat_details::<u32>()?.unwrap_or(0);
            if ctx.attempt() == 1 {
                for item in 1..=3 {
                    beat(&ctx, &beats, item)?;
                }
                return Err(ActivityError::retryable("lost the connection at item 4"));
            }
            Ok(done + 100)
        },
    )
    .await;
    let call = Call {
        heartbeat_timeout: None,
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(3),
    };
    let run = s.client.start("call-work", &call).await.unwrap();
    // The clock has not moved, so no renewal wrote the details: the failed attempt left them
    // before giving its task back.
    assert_eq!(s.wait_retry(1).await, s.at(1_000));
    s.clock.set(s.at(1_000));
    let out: u32 = s.client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 103, "the second attempt resumed after item 3");
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].details, None);
    assert_eq!(seen[1].details, Some(3));
    assert_eq!(seen[1].attempt, 2);
    s.engine.shutdown().await;
}

/// An engine whose activity heartbeats its attempt number once and then hangs until it is
/// cancelled, counting the cancellations, up to attempt `succeed_from`, which returns at once
/// (ten times its attempt number plus the details it found).
async fn hanging(store: Arc<dyn Store>, succeed_from: u32, cancelled: Arc<AtomicU32>) -> Setup {
    setup_on(store, move |ctx: ActivityContext, beats: Arc<AtomicU32>| {
        let cancelled = cancelled.clone();
        async move {
            let earlier = ctx.heartbeat_details::<u32>()?.unwrap_or(0);
            if ctx.attempt() >= succeed_from {
                return Ok(ctx.attempt() * 10 + earlier);
            }
            beat(&ctx, &beats, ctx.attempt())?;
            ctx.cancelled().await;
            cancelled.fetch_add(1, Ordering::SeqCst);
            // Its heartbeats now say it should stop.
            assert_eq!(ctx.heartbeat(&0), Err(ActivityError::Cancelled));
            Err(ActivityError::Cancelled)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_stops_heartbeating_fails_and_is_retried() {
    let (stores, _dir) = stores().await;
    for store in stores {
        silent_attempts_are_retried(store).await;
    }
}

async fn silent_attempts_are_retried(store: Arc<dyn Store>) {
    let cancelled = Arc::new(AtomicU32::new(0));
    let s = hanging(store, 3, cancelled.clone()).await;
    let call = Call {
        heartbeat_timeout: Some(10),
        retry: RetryPolicy::fixed(Duration::from_secs(2)).max_attempts(3),
    };
    let run = s.client.start("call-work", &call).await.unwrap();
    s.wait_running(1, 1).await;

    // Just short of the timeout the attempt still runs.
    s.clock.advance(Duration::from_millis(9_999));
    assert_eq!(s.engine.running_activities(), 1);
    assert_eq!(cancelled.load(Ordering::SeqCst), 0);
    // At the timeout it is cancelled and fails; the retry waits for the policy's backoff.
    s.clock.advance(Duration::from_millis(1));
    assert_eq!(s.wait_retry(1).await, s.at(12_000));
    assert_eq!(cancelled.load(Ordering::SeqCst), 1);

    s.clock.set(s.at(12_000));
    s.wait_running(2, 2).await;
    s.clock.set(s.at(22_000));
    assert_eq!(s.wait_retry(2).await, s.at(24_000));
    s.clock.set(s.at(24_000));
    let out: u32 = s.client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 32, "the third attempt saw the second one's details");

    let seen = s.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].details, Some(1));
    let failure = seen[1]
        .last_failure
        .clone()
        .expect("the first attempt's failure");
    assert_eq!(failure.kind, FailureKind::HeartbeatTimedOut, "{failure:?}");
    assert_eq!(failure.kind.to_string(), "heartbeat_timed_out");
    assert_eq!(failure.code.as_deref(), Some("heartbeat_timed_out"));
    assert!(
        failure.message.contains("no heartbeat for 10s"),
        "{failure:?}"
    );
    assert_eq!(failure.attempts, Some(1));
    assert_eq!(seen[2].last_failure.as_ref().unwrap().attempts, Some(2));
    assert_eq!(cancelled.load(Ordering::SeqCst), 2);
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_timeouts_use_up_the_retries() {
    let s = hanging(Arc::new(MemoryStore::new()), u32::MAX, Arc::default()).await;
    let call = Call {
        heartbeat_timeout: Some(5),
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(2),
    };
    let run = s.client.start("call-work", &call).await.unwrap();
    s.wait_running(1, 1).await;
    s.clock.set(s.at(5_000));
    assert_eq!(s.wait_retry(1).await, s.at(6_000));
    s.clock.set(s.at(6_000));
    s.wait_running(2, 2).await;
    s.clock.set(s.at(11_000));
    let failure = common::failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::HeartbeatTimedOut, "{failure:?}");
    assert_eq!(failure.code.as_deref(), Some("heartbeat_timed_out"));
    assert_eq!(failure.attempts, Some(2));
    assert!(failure.source.unwrap().contains("work"));
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_that_keeps_heartbeating_is_not_failed() {
    let (go, steps) = tokio::sync::watch::channel(0u32);
    let s = setup(move |ctx: ActivityContext, beats: Arc<AtomicU32>| {
        let mut steps = steps.clone();
        async move {
            for i in 1..=6 {
                beat(&ctx, &beats, i)?;
                steps.wait_for(|step| *step >= i).await.unwrap();
            }
            Ok(ctx.attempt())
        }
    })
    .await;
    let call = Call {
        heartbeat_timeout: Some(10),
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(3),
    };
    let run = s.client.start("call-work", &call).await.unwrap();
    s.wait_running(1, 1).await;
    // Six heartbeats 6 s apart: 36 s in all, more than three timeouts.
    for i in 1..=6 {
        eventually(&format!("heartbeat {i}"), || async {
            (s.beats.load(Ordering::SeqCst) == i).then_some(())
        })
        .await;
        s.clock.advance(Duration::from_secs(6));
        if i == 2 {
            // The worker renews the lease for no longer than the heartbeat timeout, so that
            // another worker would take the task over soon after the heartbeats stopped.
            let until = s.clock.now().plus(Duration::from_secs(10));
            eventually("the lease renewed to the heartbeat timeout", || async {
                (s.lease_until().await == Some(until)).then_some(())
            })
            .await;
        }
        go.send(i).unwrap();
    }
    let out: u32 = s.client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 1, "the first attempt finished");
    assert_eq!(s.seen().len(), 1);
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_after_the_lease_was_lost_tells_the_activity_to_stop() {
    let stopped = Arc::new(AtomicU32::new(0));
    let st = stopped.clone();
    let s = setup(move |ctx: ActivityContext, beats: Arc<AtomicU32>| {
        let stopped = st.clone();
        async move {
            if ctx.attempt() > 1 {
                return Ok(ctx.heartbeat_details::<u32>()?.unwrap_or(0));
            }
            beat(&ctx, &beats, 7)?;
            ctx.cancelled().await;
            if ctx.heartbeat(&8) == Err(ActivityError::Cancelled) {
                stopped.fetch_add(1, Ordering::SeqCst);
            }
            Err(ActivityError::Cancelled)
        }
    })
    .await;
    // No heartbeat timeout: the lease is the engine's hour (TASK_LEASE), renewed every 20 min.
    let call = Call {
        heartbeat_timeout: None,
        retry: RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(3),
    };
    let run = s.client.start("call-work", &call).await.unwrap();
    s.wait_running(1, 1).await;
    // A third of the lease in, the worker renews it (writing the details) to an hour from then.
    let minutes = |m: u64| s.at(m * 60_000);
    s.clock.set(minutes(20));
    eventually("the first renewal", || async {
        (s.lease_until().await == Some(minutes(80))).then_some(())
    })
    .await;
    // The worker's renewals cannot keep up with this jump (as when its thread is blocked):
    // its lease runs out, its next renewal is refused, and the activity is told to stop.
    // Another attempt takes the task over with the details the renewal wrote.
    s.clock.set(minutes(80));
    let out: u32 = s.client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 7);
    eventually("the first attempt to stop", || async {
        (stopped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let seen = s.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].attempt, 2);
    assert_eq!(seen[1].last_failure, None, "a lost attempt reports nothing");
    s.engine.shutdown().await;
}
