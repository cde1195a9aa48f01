//! Graceful shutdown: work in flight finishes or is handed back, and no task is left running.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::eventually;
use duraflow::prelude::*;
use duraflow::{EngineOptions, Store};
use tokio::sync::Notify;

/// Counts live activity futures: incremented when one starts, decremented when it is dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn one(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.activity("slow", &()).await
}

fn options(grace: Duration) -> EngineOptions {
    EngineOptions {
        shutdown_grace: grace,
        ..EngineOptions::default()
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_activity_finish_within_the_grace_period() {
    let baseline = alive_tasks();
    let live = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (l, r) = (live.clone(), release.clone());
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .options(options(Duration::from_secs(30)))
        .workflow("one", one)
        .activity("slow", move |_ctx: ActivityContext, _: ()| {
            let (l, r) = (l.clone(), r.clone());
            async move {
                l.fetch_add(1, Ordering::SeqCst);
                let _live = Live(l);
                r.notified().await;
                Ok::<u32, ActivityError>(7)
            }
        })
        .start()
        .await
        .unwrap();
    let store = engine.store();
    let client = engine.client();
    let run = client.start("one", &()).await.unwrap();
    eventually("the activity to start", || async {
        (live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let shutdown = tokio::spawn(engine.shutdown());
    release.notify_one();
    let report = shutdown.await.unwrap();
    assert!(report.drained);
    assert_eq!(report.activities_handed_back, 0);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    // The result was recorded; the workflow's last turn runs on the next engine.
    assert_eq!(store.management().unwrap().stats().await.unwrap().tasks, 0);
    eventually("every engine task to end", || async {
        (alive_tasks() <= baseline).then_some(())
    })
    .await;

    let engine = Engine::builder()
        .shared_store(store)
        .workflow("one", one)
        .activity("slow", |_ctx: ActivityContext, _: ()| async {
            Err::<u32, _>(ActivityError::terminal("must not run again"))
        })
        .start()
        .await
        .unwrap();
    let out: u32 = engine.client().wait(&run).await.unwrap();
    assert_eq!(out, 7);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_an_activity_that_outlives_the_grace_period() {
    let baseline = alive_tasks();
    let live = Arc::new(AtomicUsize::new(0));
    let l = live.clone();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .shared_store(store.clone())
        .options(options(Duration::from_millis(50)))
        .workflow("one", one)
        .activity("slow", move |ctx: ActivityContext, _: ()| {
            let l = l.clone();
            async move {
                l.fetch_add(1, Ordering::SeqCst);
                let _live = Live(l);
                ctx.cancelled().await;
                Err::<u32, _>(ActivityError::Cancelled)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("one", &()).await.unwrap();
    eventually("the activity to start", || async {
        (live.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let report = engine.shutdown().await;
    assert!(!report.drained);
    assert_eq!(report.activities_handed_back, 1);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "the activity future was dropped"
    );
    eventually("every engine task to end", || async {
        (alive_tasks() <= baseline).then_some(())
    })
    .await;

    // The task is visible again at once, and its attempt did not count.
    let tasks = store
        .fetch_tasks(
            &duraflow_store::FetchFilter::default(),
            duraflow::Timestamp::now_system(),
            10,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].attempt, 1);
    store
        .release_task(
            tasks[0].id,
            tasks[0].token,
            duraflow::crates::store::TaskRelease::HandBack,
        )
        .await
        .unwrap();

    let engine = Engine::builder()
        .shared_store(store)
        .workflow("one", one)
        .activity("slow", |_ctx: ActivityContext, _: ()| async {
            Ok::<u32, ActivityError>(9)
        })
        .start()
        .await
        .unwrap();
    let out: u32 = engine.client().wait(&run).await.unwrap();
    assert_eq!(out, 9);
    engine.shutdown().await;
}
