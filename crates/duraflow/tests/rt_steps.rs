//! Steps on an engine: an at-least-once step's result is stored before the workflow moves on
//! (a checkpoint in the middle of the turn), an at-most-once step's start is stored before its
//! closure runs, failed attempts retry on durable timers under virtual time, and a step longer
//! than the turn lease keeps its turn because the lease is renewed while it runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::observed::{Observed, Observer};
use common::{eventually, types, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, MemoryStore, Store, Timestamp};
use tokio::sync::Notify;

/// How many times a `second` step began, in any test of this file.
static SECOND_STEPS: AtomicUsize = AtomicUsize::new(0);

/// Two steps: `first` returns at once, `second` waits for the test's gate.
fn two_steps(
    gate: Arc<Notify>,
    semantics: StepSemantics,
) -> impl Fn(WorkflowContext, ()) -> futures::future::BoxFuture<'static, Result<u32, WorkflowError>>
       + Send
       + Sync
       + 'static {
    move |ctx: WorkflowContext, _: ()| {
        let gate = gate.clone();
        Box::pin(async move {
            let a: u32 = ctx
                .step("first", |_| async { Ok(1) })
                .semantics(semantics)
                .await?;
            let b: u32 = ctx
                .step("second", move |_| {
                    let gate = gate.clone();
                    async move {
                        SECOND_STEPS.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(2)
                    }
                })
                .await?;
            Ok(a + b)
        })
    }
}

async fn engine_on(store: Arc<dyn Store>, gate: Arc<Notify>, semantics: StepSemantics) -> Engine {
    Engine::builder()
        .shared_store(store)
        .workflow("two-steps", two_steps(gate, semantics))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_least_once_steps_result_is_stored_before_the_workflow_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        duraflow::SqliteStore::open(dir.path().join("steps.db"))
            .await
            .unwrap(),
    );
    for store in [Arc::new(MemoryStore::new()) as Arc<dyn Store>, sqlite] {
        let gate = Arc::new(Notify::new());
        let engine = engine_on(
            store.clone(),
            gate.clone(),
            StepSemantics::AtLeastOncePerRetry,
        )
        .await;
        let client = engine.client();
        let id = client.start("two-steps", &()).await.unwrap();
        // While the second step runs, in the same turn, the first one's result is stored.
        let stored = eventually("the first step's result is stored mid-turn", || {
            let store = store.clone();
            let id = id.clone();
            async move {
                let journal = store.journal(id.as_ref(), None).await.ok()?;
                let t = types(&journal);
                t.contains(&"step_completed").then_some(t)
            }
        })
        .await;
        assert_eq!(
            stored,
            ["workflow_started", "step_started", "step_completed"],
            "{}",
            store.backend()
        );
        gate.notify_one();
        let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
        assert_eq!(out, 3);
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_turn_semantics_nothing_is_stored_until_the_turn_commits() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let gate = Arc::new(Notify::new());
    let engine = engine_on(
        store.clone(),
        gate.clone(),
        StepSemantics::AtLeastOnceWithTurn,
    )
    .await;
    let client = engine.client();
    // The first step ran and the second is running: with the first's result kept for the
    // turn's commit (the second's own checkpoint comes only once it ends), nothing is stored.
    let before = SECOND_STEPS.load(Ordering::SeqCst);
    let id = client.start("two-steps", &()).await.unwrap();
    eventually("the second step runs", || async {
        (SECOND_STEPS.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    assert!(store.journal(id.as_ref(), None).await.unwrap().is_empty());
    gate.notify_one();
    let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 3);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_most_once_step_finds_its_start_stored_when_it_runs() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let (s, st) = (seen.clone(), store.clone());
    let engine = Engine::builder()
        .shared_store(store.clone())
        .workflow("once", move |ctx: WorkflowContext, _: ()| {
            let (seen, store) = (s.clone(), st.clone());
            async move {
                let id = ctx.instance_id().to_owned();
                ctx.step("charge", move |_| {
                    let (seen, store, id) = (seen.clone(), store.clone(), id.clone());
                    async move {
                        let journal = store.journal(id.as_ref(), None).await.unwrap();
                        seen.lock().unwrap().extend(types(&journal));
                        Ok(())
                    }
                })
                .semantics(StepSemantics::AtMostOncePerRetry)
                .await?;
                Ok::<_, WorkflowError>(())
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let id = client.start("once", &()).await.unwrap();
    client
        .wait::<()>(&id)
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["workflow_started", "step_started"]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_retry_after_their_backoff_on_virtual_time() {
    let clock = virtual_clock();
    let attempts: Arc<Mutex<Vec<(u32, Timestamp)>>> = Arc::default();
    let (a, c) = (attempts.clone(), clock.clone());
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("flaky", move |ctx: WorkflowContext, _: ()| {
            let (attempts, clock) = (a.clone(), c.clone());
            async move {
                let n: u32 = ctx
                    .step("flaky", move |step| {
                        let (attempts, clock) = (attempts.clone(), clock.clone());
                        async move {
                            attempts.lock().unwrap().push((step.attempt(), clock.now()));
                            if step.attempt() < 3 {
                                Err(ActivityError::retryable("not yet"))
                            } else {
                                Ok(step.attempt())
                            }
                        }
                    })
                    .retry(RetryPolicy::fixed(Duration::from_secs(5)))
                    .await?;
                Ok::<_, WorkflowError>(n)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let id = client.start("flaky", &()).await.unwrap();
    let t0 = clock.now();
    for n in 1..3usize {
        eventually("the attempt ran and its retry was stored", || {
            let (client, id, attempts) = (client.clone(), id.clone(), attempts.clone());
            async move {
                let journal = client.history(&id, None).await.ok()?;
                let retries =
                    common::count(&journal, |k| matches!(k, EventKind::StepRetrying { .. }));
                (attempts.lock().unwrap().len() == n && retries == n).then_some(())
            }
        })
        .await;
        clock.advance(Duration::from_secs(5));
    }
    let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 3);
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(
        attempts,
        vec![
            (1, t0),
            (2, t0.plus(Duration::from_secs(5))),
            (3, t0.plus(Duration::from_secs(10)))
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_retry_after_replaces_the_policy_backoff() {
    let clock = virtual_clock();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("limited", |ctx: WorkflowContext, _: ()| async move {
            let n: u32 = ctx
                .step("call", |step| async move {
                    if step.attempt() == 1 {
                        Err(ActivityError::retryable("429").retry_after(Duration::from_secs(30)))
                    } else {
                        Ok(step.attempt())
                    }
                })
                .retry(RetryPolicy::fixed(Duration::from_secs(5)))
                .await?;
            Ok::<_, WorkflowError>(n)
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let t0 = clock.now();
    let id = client.start("limited", &()).await.unwrap();
    let retry_at = eventually("the retry to be journaled", || {
        let (client, id) = (client.clone(), id.clone());
        async move {
            let journal = client.history(&id, None).await.ok()?;
            journal.iter().find_map(|e| match &e.kind {
                EventKind::StepRetrying {
                    retry_at, failure, ..
                } => Some((*retry_at, failure.retry_after())),
                _ => None,
            })
        }
    })
    .await;
    assert_eq!(
        retry_at,
        (
            t0.plus(Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        )
    );
    clock.advance(Duration::from_secs(30));
    let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 2);
    engine.shutdown().await;
}

/// Counts the turn lease renewals that succeeded.
#[derive(Default)]
struct Renewals(AtomicUsize);

impl Observer for Renewals {
    fn renewed(&self, result: &duraflow::crates::store::StoreResult<Timestamp>) {
        if result.is_ok() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_longer_than_the_turn_lease_keeps_its_turn() {
    let clock = virtual_clock();
    let store = Arc::new(Observed::<Renewals>::default());
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let (g, r) = (gate.clone(), runs.clone());
    let engine = Engine::builder()
        .clock(clock.clone())
        .options(virtual_options())
        .shared_store(store.clone() as Arc<dyn Store>)
        .workflow("long", move |ctx: WorkflowContext, _: ()| {
            let (gate, runs) = (g.clone(), r.clone());
            async move {
                ctx.step("long", move |_| {
                    let (gate, runs) = (gate.clone(), runs.clone());
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(())
                    }
                })
                .await?;
                Ok::<_, WorkflowError>(())
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let id = client.start("long", &()).await.unwrap();
    eventually("the step runs", || {
        let runs = runs.clone();
        async move { (runs.load(Ordering::SeqCst) == 1).then_some(()) }
    })
    .await;
    // Three minutes in 25-second moves: three times the 60-second turn lease. Each move wakes
    // the renewal (due every 20 seconds); the next waits until it has happened.
    for n in 1..=7 {
        clock.advance(Duration::from_secs(25));
        eventually("the turn lease is renewed", || {
            let store = store.clone();
            async move { (store.0.load(Ordering::SeqCst) >= n).then_some(()) }
        })
        .await;
    }
    gate.notify_one();
    client
        .wait::<()>(&id)
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the step ran again: the turn was lost"
    );
    engine.shutdown().await;
}

/// Counts the direct turns the store accepted.
#[derive(Default)]
struct DirectTurns(AtomicUsize);

impl Observer for DirectTurns {
    fn direct(&self, accepted: bool) {
        if accepted {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A step after an activity, in the turn run directly on the activity's result: the at-most-once
/// step's checkpoint stores the result with the step's start (the direct turn's checkpoint takes
/// the instance's lease), the step finds both stored when it runs and runs once, and the turn
/// goes on to its next activity, whose result is again taken directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_a_direct_turn_checkpoints_with_the_activity_result() {
    let store = Arc::new(Observed::<DirectTurns>::default());
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let (s, st, r) = (seen.clone(), store.clone(), runs.clone());
    let engine = Engine::builder()
        .shared_store(store.clone())
        .activity("double", |_ctx: ActivityContext, n: u32| async move {
            Ok::<_, ActivityError>(n * 2)
        })
        .workflow("mixed", move |ctx: WorkflowContext, n: u32| {
            let (seen, store, runs) = (s.clone(), st.clone(), r.clone());
            async move {
                let a: u32 = ctx.activity("double", &n).await?;
                let id = ctx.instance_id().to_owned();
                ctx.step("charge", move |_| {
                    let (seen, store, runs, id) =
                        (seen.clone(), store.clone(), runs.clone(), id.clone());
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let journal = store.journal(id.as_ref(), None).await.unwrap();
                        seen.lock().unwrap().extend(types(&journal));
                        Ok(())
                    }
                })
                .semantics(StepSemantics::AtMostOncePerRetry)
                .await?;
                let b: u32 = ctx.activity("double", &a).await?;
                Ok::<_, WorkflowError>(b)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let id = client.start("mixed", &3u32).await.unwrap();
    let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 12);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the step ran once");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "workflow_started",
            "activity_scheduled",
            "activity_completed",
            "step_started"
        ]
    );
    // After the shutdown, which waits for the last commit's task to end.
    engine.shutdown().await;
    assert_eq!(
        store.0.load(Ordering::SeqCst),
        2,
        "both results were taken directly"
    );
}
