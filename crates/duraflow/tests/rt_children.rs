//! A detached child started with `ctx.start_child`: the parent completes with the child's id
//! while the child runs on to its own completion, unaffected by its parent finishing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use common::{history_with, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::EventKind;

/// Starts a detached child and completes with its id.
async fn parent(ctx: WorkflowContext, label: String) -> Result<String, WorkflowError> {
    let id = ctx.start_child("child", &label).await?;
    Ok(id)
}

/// Starts a detached child under a chosen id.
async fn parent_with_id(ctx: WorkflowContext, id: String) -> Result<String, WorkflowError> {
    ctx.start_child("child", "named").id(id).await
}

/// Sleeps a day, then waits for `release`, then reports.
async fn child(ctx: WorkflowContext, label: String) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(86_400)).await?;
    let by: String = ctx.wait_for_event("release").await?;
    Ok(format!("{label} released by {by}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_child_outlives_its_parent() {
    let clock = virtual_clock();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("parent", parent)
        .workflow("parent-with-id", parent_with_id)
        .workflow("child", child)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("parent", "job").id("p").await.unwrap();

    let child_id: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(child_id, "p:child:0");
    let journal = client.history(&run, None).await.unwrap();
    assert!(journal.iter().any(|e| matches!(
        &e.kind,
        EventKind::ChildStarted { instance_id, detached: true, .. } if *instance_id == child_id
    )));

    // The child runs on after its parent completed, and knows no parent.
    let info = client.status(&child_id).await.unwrap();
    assert!(!info.status.is_terminal(), "{info:?}");
    assert_eq!(info.parent, None);
    assert_eq!(info.name, "child");
    history_with(&client, &child_id, "the child's timer", |k| {
        matches!(k, EventKind::TimerCreated { .. })
    })
    .await;
    clock.advance(Duration::from_secs(86_400));
    history_with(&client, &child_id, "the child's wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    assert_eq!(
        client.status(&child_id).await.unwrap().status,
        InstanceStatus::Running
    );
    client
        .raise_event(&child_id, "release", "ops")
        .await
        .unwrap();
    let out: String = client
        .wait(&child_id)
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(out, "job released by ops");
    // The parent is untouched by its child finishing.
    let parent_info = client.status(&run).await.unwrap();
    assert_eq!(parent_info.status, InstanceStatus::Completed);
    assert_eq!(client.history(&run, None).await.unwrap(), journal);

    // A chosen id is used as given.
    let run = client.start("parent-with-id", "my-child").await.unwrap();
    let id: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(id, "my-child");
    assert_eq!(client.status("my-child").await.unwrap().name, "child");
    engine.shutdown().await;
}
