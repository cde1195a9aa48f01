//! Flow control through the engine: a queue's concurrency limit admits only so many instances
//! at once and finishing one admits the next; instances with the same concurrency key run one
//! at a time; a full queue admits the pending instance of highest priority first; a queue's
//! task concurrency limit of 1 runs its activities one at a time, however many workflows call
//! them.
//!
//! Every workflow waits for an event, so the tests decide when each instance finishes. The
//! engines run on a virtual clock (nothing waits on a timer), and every check is a condition
//! waited for with a deadline; each check along the way also asserts that no limit is exceeded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{EngineError, Store};

/// Waits for the event `go`, then completes with its input.
async fn waiter(ctx: WorkflowContext, input: String) -> Result<String, WorkflowError> {
    let () = ctx.wait_for_event("go").await?;
    Ok(input)
}

async fn engine(store: Arc<dyn Store>, configs: Vec<QueueConfig>) -> Engine {
    let mut builder = Engine::builder()
        .shared_store(store)
        .clock(virtual_clock())
        .options(virtual_options())
        .workflow("waiter", waiter);
    for config in configs {
        builder = builder.queue_config(config);
    }
    builder.start().await.unwrap()
}

/// The statuses of `ids`, in order.
async fn statuses(client: &Client, ids: &[String]) -> Vec<InstanceStatus> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(client.status(id).await.unwrap().status);
    }
    out
}

/// The ids among `ids` that are running.
async fn running(client: &Client, ids: &[String]) -> Vec<String> {
    let st = statuses(client, ids).await;
    ids.iter()
        .zip(st)
        .filter(|(_, s)| *s == InstanceStatus::Running)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Raises `go` for `id` and waits until it has completed.
async fn finish(client: &Client, id: &str) {
    client.raise_event(id, "go", &()).await.unwrap();
    eventually(&format!("{id} completed"), || async move {
        (client.status(id).await.unwrap().status == InstanceStatus::Completed).then_some(())
    })
    .await;
}

/// With a concurrency limit of 2, of 10 started instances exactly 2 run at a time, and each
/// one that finishes admits the next, until all have completed.
async fn queue_limit(store: Arc<dyn Store>) {
    let engine = engine(store, vec![QueueConfig::new("limited").concurrency(2)]).await;
    let client = engine.client();
    assert_eq!(
        client.queue_config("limited").await.unwrap(),
        Some(QueueConfig::new("limited").concurrency(2))
    );
    let mut ids = Vec::new();
    for i in 0..10 {
        let run = client
            .start("waiter", &format!("w{i}"))
            .id(format!("w{i}"))
            .queue("limited")
            .await
            .unwrap();
        ids.push(run.id);
    }
    for done in 0..10 {
        let expected = (10 - done).min(2);
        let now_running = eventually(&format!("{expected} running after {done} done"), || {
            let (client, ids) = (&client, &ids);
            async move {
                let st = statuses(client, ids).await;
                let n = st.iter().filter(|s| **s == InstanceStatus::Running).count();
                assert!(n <= 2, "{n} running at once with a limit of 2: {st:?}");
                let completed = st
                    .iter()
                    .filter(|s| **s == InstanceStatus::Completed)
                    .count();
                assert_eq!(completed, done, "{st:?}");
                (n == expected).then_some(())
            }
        })
        .await;
        let () = now_running;
        let first = running(&client, &ids).await.remove(0);
        finish(&client, &first).await;
    }
    engine.shutdown().await;
}

/// Instances with the same concurrency key run one at a time (no queue configuration needed);
/// another key runs alongside.
async fn key_serialises(store: Arc<dyn Store>) {
    let engine = engine(store, Vec::new()).await;
    let client = engine.client();
    let mut same = Vec::new();
    for i in 0..4 {
        let run = client
            .start("waiter", &format!("a{i}"))
            .id(format!("a{i}"))
            .concurrency_key("account-1")
            .await
            .unwrap();
        same.push(run.id);
    }
    let other = client
        .start("waiter", "b")
        .id("b")
        .concurrency_key("account-2")
        .await
        .unwrap();
    let other = vec![other.id];
    for done in 0..4 {
        let next = eventually(&format!("one of account-1 running after {done}"), || {
            let (client, same, other) = (&client, &same, &other);
            async move {
                let now = running(client, same).await;
                assert!(now.len() <= 1, "{now:?} of one key ran at once");
                let other_running = !running(client, other).await.is_empty();
                (now.len() == 1 && other_running).then(|| now[0].clone())
            }
        })
        .await;
        // The key admits in start order.
        assert_eq!(next, same[done]);
        finish(&client, &next).await;
    }
    engine.shutdown().await;
}

/// A full queue (concurrency 1) admits its pending instances highest priority first.
async fn priority_order(store: Arc<dyn Store>) {
    let engine = engine(store, vec![QueueConfig::new("single").concurrency(1)]).await;
    let client = engine.client();
    let start = |id: &'static str, priority: i32| {
        let client = client.clone();
        async move {
            client
                .start("waiter", &id)
                .id(id)
                .queue("single")
                .priority(priority)
                .await
                .unwrap();
        }
    };
    start("blocker", 0).await;
    let all: Vec<String> = ["blocker", "low", "high", "mid"]
        .map(str::to_owned)
        .to_vec();
    eventually("the blocker running", || {
        let client = &client;
        async move {
            (client.status("blocker").await.unwrap().status == InstanceStatus::Running)
                .then_some(())
        }
    })
    .await;
    start("low", 1).await;
    start("high", 10).await;
    start("mid", 5).await;
    for (finish, expected) in [("blocker", "high"), ("high", "mid"), ("mid", "low")] {
        client.raise_event(finish, "go", &()).await.unwrap();
        let admitted = eventually(&format!("{expected} admitted after {finish}"), || {
            let (client, all) = (&client, &all);
            async move {
                // One reading of every status, the finished one's first.
                let finished =
                    client.status(finish).await.unwrap().status == InstanceStatus::Completed;
                let now = running(client, all).await;
                assert!(now.len() <= 1, "{now:?} ran at once with a limit of 1");
                (finished && now.len() == 1).then(|| now[0].clone())
            }
        })
        .await;
        let now = statuses(&client, &all).await;
        assert_eq!(admitted, expected, "after {finish}: {all:?} are {now:?}");
    }
    client.raise_event("low", "go", &()).await.unwrap();
    engine.shutdown().await;
}

/// A zero limit is refused when the engine starts, before anything is stored.
async fn zero_limit_is_refused(store: Arc<dyn Store>) {
    let result = Engine::builder()
        .shared_store(store.clone())
        .workflow("waiter", waiter)
        .queue_config(QueueConfig::new("broken").concurrency(0))
        .start()
        .await;
    match result {
        Err(EngineError::InvalidOption(message)) => {
            assert!(message.contains("broken"), "{message}")
        }
        Err(other) => panic!("expected InvalidOption, got {other:?}"),
        Ok(_) => panic!("a zero concurrency limit was accepted"),
    }
    assert_eq!(store.queue_config("broken").await.unwrap(), None);
}

/// The attempts of the `render` activity running now, the most seen at once, and how many ran.
#[derive(Default)]
struct Renders {
    running: AtomicUsize,
    max: AtomicUsize,
    ran: AtomicUsize,
}

/// Renders `0..n` one after another on the `gpu` queue; returns their sum.
async fn render_all(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut total = 0;
    for i in 0..n {
        let out: u32 = ctx.activity("render", &i).queue("gpu").await?;
        total += out;
    }
    Ok(total)
}

/// With a task concurrency limit of 1 on `gpu`, the `render` attempts of 4 workflows running
/// at once never overlap (each attempt takes a few milliseconds of work, so attempts leased
/// together would be seen running together), and every workflow completes: each completion
/// wakes the fetchers for the next task (the clock is virtual, so no polling interval
/// passes).
async fn task_limit_runs_activities_one_at_a_time(store: Arc<dyn Store>) {
    let renders = Arc::new(Renders::default());
    let seen = renders.clone();
    let engine = Engine::builder()
        .shared_store(store)
        .clock(virtual_clock())
        .options(virtual_options())
        .queues(["default", "gpu"])
        .queue_config(QueueConfig::new("gpu").task_concurrency(1))
        .workflow("render_all", render_all)
        .activity("render", move |_ctx: ActivityContext, i: u32| {
            let r = seen.clone();
            async move {
                let now = r.running.fetch_add(1, Ordering::SeqCst) + 1;
                r.max.fetch_max(now, Ordering::SeqCst);
                // The attempt's work.
                tokio::time::sleep(Duration::from_millis(3)).await;
                r.running.fetch_sub(1, Ordering::SeqCst);
                r.ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(i)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    assert_eq!(
        client.queue_config("gpu").await.unwrap(),
        Some(QueueConfig::new("gpu").task_concurrency(1))
    );
    let mut ids = Vec::new();
    for i in 0..4 {
        let run = client
            .start("render_all", &3_u32)
            .id(format!("r{i}"))
            .await
            .unwrap();
        ids.push(run.id);
    }
    eventually("every render_all completed", || {
        let (client, ids, renders) = (&client, &ids, &renders);
        async move {
            let max = renders.max.load(Ordering::SeqCst);
            assert!(
                max <= 1,
                "{max} render attempts ran at once with a limit of 1"
            );
            let st = statuses(client, ids).await;
            st.iter()
                .all(|s| *s == InstanceStatus::Completed)
                .then_some(())
        }
    })
    .await;
    assert_eq!(renders.max.load(Ordering::SeqCst), 1);
    assert_eq!(renders.ran.load(Ordering::SeqCst), 12);
    engine.shutdown().await;
}

async fn on(store: Arc<dyn Store>) {
    task_limit_runs_activities_one_at_a_time(store.clone()).await;
    zero_limit_is_refused(store.clone()).await;
    queue_limit(store.clone()).await;
    key_serialises(store.clone()).await;
    priority_order(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    on(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("flow.db")).await.unwrap();
    on(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let (store, drop_schema) = common::postgres_store("dft_flow_control").await;
    on(Arc::new(store)).await;
    drop_schema.run().await;
}
