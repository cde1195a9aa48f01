//! Cancellation policies (`Start::cancellation`), on virtual time: `max_duration` cancels a
//! running instance (and its children) when its durable timer fires, and does nothing to one
//! that finished first; `max_pending` cancels an instance first taken too late, before its code
//! does anything.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{eventually, virtual_clock, virtual_options, DEADLINE};
use duraflow::prelude::*;
use duraflow::{EventKind, ManualClock, Store};

/// Starts a child that waits for an event, then sleeps for an hour.
async fn long_haul(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    let child = ctx
        .child_workflow::<()>("waiter", &())
        .id("long-haul-child");
    let nap = ctx.sleep(Duration::from_secs(3600));
    let _ = futures::join!(child.into_future(), nap);
    Ok(())
}

async fn waiter(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.wait_for_event::<()>("never").await
}

/// Calls `effect` (counted) and returns.
async fn quick(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.activity::<()>("effect", &()).await
}

async fn engine(
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    queue: &str,
    effects: Arc<AtomicU32>,
) -> Engine {
    Engine::builder()
        .shared_store(store)
        .clock(clock)
        .options(virtual_options())
        .queues([queue])
        .workflow("long-haul", long_haul)
        .workflow("waiter", waiter)
        .workflow("quick", quick)
        .activity("effect", move |_ctx: ActivityContext, _: ()| {
            let effects = effects.clone();
            async move {
                effects.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(())
            }
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_cancels_a_running_instance_and_its_children() {
    let clock = virtual_clock();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine(clock.clone(), store, "default", Arc::default()).await;
    let client = engine.client();
    let policy = CancellationPolicy::new().max_duration(Duration::from_secs(600));
    let run = client
        .start("long-haul", &())
        .cancellation(policy)
        .await
        .unwrap();
    let quick = client
        .start("quick", &())
        .cancellation(policy)
        .await
        .unwrap();
    client.wait::<()>(&quick).timeout(DEADLINE).await.unwrap();
    eventually("the child waits and the parent naps", || async {
        let child = client.history("long-haul-child", None).await.ok()?;
        let parent = client.history(&run, None).await.unwrap();
        let waiting = child
            .iter()
            .any(|e| matches!(e.kind, EventKind::EventWaitStarted { .. }));
        let napping = parent
            .iter()
            .any(|e| matches!(e.kind, EventKind::TimerCreated { .. }));
        (waiting && napping).then_some(())
    })
    .await;

    clock.advance(Duration::from_secs(599));
    // Not yet: the probe below completes only after the dispatcher looked at this time.
    let probe = client.start("quick", &()).await.unwrap();
    client.wait::<()>(&probe).timeout(DEADLINE).await.unwrap();
    assert_eq!(
        client.status(&run).await.unwrap().status,
        InstanceStatus::Running
    );

    clock.advance(Duration::from_secs(1));
    match client.wait::<()>(&run).timeout(DEADLINE).await {
        Err(ClientError::Cancelled(f)) => assert!(f.message.contains("max_duration"), "{f:?}"),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    match client.wait::<()>("long-haul-child").timeout(DEADLINE).await {
        Err(ClientError::Cancelled(f)) => assert!(f.message.contains("max_duration"), "{f:?}"),
        other => panic!("expected the child cancelled, got {other:?}"),
    }
    // The instance that finished first stays completed.
    assert_eq!(
        client.status(&quick).await.unwrap().status,
        InstanceStatus::Completed
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_cancels_an_instance_taken_too_late() {
    let clock = virtual_clock();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let effects = Arc::new(AtomicU32::new(0));
    // Nobody serves `batch` yet.
    let web = engine(clock.clone(), store.clone(), "default", effects.clone()).await;
    let client = web.client();
    let policy = CancellationPolicy::new().max_pending(Duration::from_secs(60));
    let late = client
        .start("quick", &())
        .queue("batch")
        .cancellation(policy)
        .await
        .unwrap();
    let in_time = client
        .start("quick", &())
        .queue("batch")
        .delay(Duration::from_secs(100))
        .cancellation(policy)
        .await
        .unwrap();

    clock.advance(Duration::from_secs(61));
    let batch = engine(clock.clone(), store, "batch", effects.clone()).await;
    match client.wait::<()>(&late).timeout(DEADLINE).await {
        Err(ClientError::Cancelled(f)) => assert!(f.message.contains("max_pending"), "{f:?}"),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert_eq!(effects.load(Ordering::SeqCst), 0, "the late instance ran");

    // Due at 100 s, taken at once then: within its max_pending.
    clock.advance(Duration::from_secs(40));
    client.wait::<()>(&in_time).timeout(DEADLINE).await.unwrap();
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    batch.shutdown().await;
    web.shutdown().await;
}
