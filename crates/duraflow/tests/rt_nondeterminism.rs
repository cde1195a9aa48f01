//! Code that no longer matches a running instance's journal fails the instance with a
//! nondeterminism failure naming the journal position; the instance is failed, not stuck.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::{EventKind, FailureKind, Store};

async fn ok(_ctx: ActivityContext, x: u32) -> Result<u32, ActivityError> {
    Ok(x)
}

async fn v1(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let a: u32 = ctx.activity("first", &1).await?;
    let go: u32 = ctx.wait_for_event("go").await?;
    Ok(a + go)
}

/// The same workflow with the activity renamed.
async fn v2_renamed(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let a: u32 = ctx.activity("second", &1).await?;
    let go: u32 = ctx.wait_for_event("go").await?;
    Ok(a + go)
}

/// The same workflow with a timer added before the activity.
async fn v2_added(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    let a: u32 = ctx.activity("first", &1).await?;
    let go: u32 = ctx.wait_for_event("go").await?;
    Ok(a + go)
}

/// The same workflow with the activity removed.
async fn v2_removed(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let go: u32 = ctx.wait_for_event("go").await?;
    Ok(go)
}

/// Runs v1 until it waits for the event, stops that engine, then resumes the instance with
/// `v2` on the same store and returns the failure.
async fn resume_with<F, Fut>(v2: F) -> duraflow::Failure
where
    F: Fn(WorkflowContext, ()) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u32, WorkflowError>> + Send + 'static,
{
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .shared_store(store.clone())
        .workflow("wf", v1)
        .activity("first", ok)
        .activity("second", ok)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("wf", &()).id("nd").await.unwrap();
    common::history_with(&client, &run.id, "v1 to wait for its event", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    engine.shutdown().await;

    let engine = Engine::builder()
        .shared_store(store)
        .workflow("wf", v2)
        .activity("first", ok)
        .activity("second", ok)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    client.raise_event(&run, "go", &2).await.unwrap();
    let err = client.wait::<u32>(&run).await.unwrap_err();
    let status = client.status(&run).await.unwrap();
    assert_eq!(status.status, InstanceStatus::Failed, "failed, not stuck");
    engine.shutdown().await;
    match err {
        ClientError::WorkflowFailed(f) => {
            assert_eq!(f.kind, FailureKind::Nondeterminism, "{f}");
            assert_eq!(status.failure.as_ref(), Some(&f));
            f
        }
        other => panic!("expected a nondeterminism failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_activity_is_nondeterminism_at_its_position() {
    let f = resume_with(v2_renamed).await;
    assert!(f.message.contains("journal position 1"), "{}", f.message);
    assert!(
        f.message.contains("\"first\"") && f.message.contains("\"second\""),
        "{}",
        f.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_operation_is_nondeterminism_at_its_position() {
    let f = resume_with(v2_added).await;
    assert!(f.message.contains("journal position 1"), "{}", f.message);
    assert!(f.message.contains("timer_created"), "{}", f.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_operation_is_nondeterminism_at_its_position() {
    let f = resume_with(v2_removed).await;
    assert!(f.message.contains("journal position 1"), "{}", f.message);
    assert!(
        f.message.contains("activity_scheduled \"first\""),
        "{}",
        f.message
    );
}
