//! An activity the workflow stops waiting for (the loser of a race, the branches of a decided
//! batch) has its task cancelled: deleted from the store so it does not run again, and the
//! running attempt told to stop; its result, if it comes, is never journaled.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{EventKind, Store};
use futures::future::Either;

/// Races a slow activity against a ten-second timer, then waits for event `done`.
async fn race(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let slow = ctx.activity::<String>("slow", &());
    let timer = ctx.sleep(Duration::from_secs(10));
    let winner = match ctx.select(slow, timer).await {
        Either::Left(out) => out?,
        Either::Right(fired) => {
            fired?;
            "timer".to_owned()
        }
    };
    let () = ctx.wait_for_event("done").await?;
    Ok(winner)
}

/// `first_successful` over a fast branch and two slow ones.
async fn first_of_three(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let batch = ctx
        .parallel(
            "three",
            vec![
                branch(|c: WorkflowContext| async move {
                    c.activity::<u32>("slow", &()).await.map(|_| 0)
                }),
                branch(|c: WorkflowContext| async move { c.activity::<u32>("fast", &()).await }),
                branch(|c: WorkflowContext| async move {
                    c.activity::<u32>("slow", &()).await.map(|_| 0)
                }),
            ],
        )
        .completion(CompletionConfig::first_successful())
        .await?;
    let () = ctx.wait_for_event("done").await?;
    Ok(*batch.results()[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_activities_are_cancelled_and_their_tasks_deleted() {
    let clock = virtual_clock();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let (s1, s2) = (started.clone(), stopped.clone());
    let engine = Engine::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("race", race)
        .workflow("first-of-three", first_of_three)
        .activity("slow", move |ctx: ActivityContext, _: ()| {
            let (started, stopped) = (s1.clone(), s2.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                ctx.cancelled().await;
                stopped.fetch_add(1, Ordering::SeqCst);
                Err::<String, _>(ActivityError::Cancelled)
            }
        })
        .activity("fast", |_ctx: ActivityContext, _: ()| async move {
            Ok::<_, ActivityError>(7u32)
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();

    // A race lost to a timer.
    let id = client.start("race", &()).await.unwrap();
    eventually("the slow activity runs", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(10));
    eventually("the dropped activity is told to stop", || async {
        (stopped.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(
        store.management().unwrap().stats().await.unwrap().tasks,
        0,
        "the task is still stored"
    );
    client.raise_event(&id, "done", &()).await.unwrap();
    let out: String = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "timer");

    // A batch decided by its fast branch: the slow branches' activities are cancelled, whether
    // they had started (then they are told to stop) or not (their tasks are deleted).
    let id = client.start("first-of-three", &()).await.unwrap();
    eventually("the batch is decided", || async {
        let journal = client.history(&id, None).await.ok()?;
        journal
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ContextCompleted { op, .. } if op.to_string() == "0"))
            .then_some(())
    })
    .await;
    eventually("no slow branch is left running or stored", || async {
        let tasks = store.management().unwrap().stats().await.ok()?.tasks;
        (tasks == 0 && started.load(Ordering::SeqCst) == stopped.load(Ordering::SeqCst))
            .then_some(())
    })
    .await;
    client.raise_event(&id, "done", &()).await.unwrap();
    let out: u32 = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 7);
    let journal = client.history(&id, None).await.unwrap();
    assert_eq!(
        common::count(&journal, |k| matches!(k, EventKind::ActivityFailed { .. })),
        0,
        "a cancelled branch's result was journaled"
    );
    engine.shutdown().await;
}
