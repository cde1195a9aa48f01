//! Cancellation cascades from a parent to its children and grandchildren, and running
//! activities observe it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::eventually;
use duraflow::prelude::*;
use duraflow::FailureKind;

async fn parent(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.child_workflow("child", &()).id("cascade-child").await
}

async fn child(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.child_workflow("grandchild", &())
        .id("cascade-grandchild")
        .await
}

async fn grandchild(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.activity("wait-for-cancel", &()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_the_grandchild_and_its_activity_sees_it() {
    let started = Arc::new(AtomicUsize::new(0));
    let observed = Arc::new(AtomicUsize::new(0));
    let (s, o) = (started.clone(), observed.clone());
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("parent", parent)
        .workflow("child", child)
        .workflow("grandchild", grandchild)
        .activity("wait-for-cancel", move |ctx: ActivityContext, _: ()| {
            let (s, o) = (s.clone(), o.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                ctx.cancelled().await;
                o.fetch_add(1, Ordering::SeqCst);
                Err::<String, _>(ActivityError::Cancelled)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("parent", &()).id("cascade").await.unwrap();
    eventually("the grandchild's activity to start", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    client
        .cancel(&run, "customer changed their mind")
        .await
        .unwrap();
    match client.wait::<String>(&run).await {
        Err(ClientError::Cancelled(f)) => {
            assert_eq!(f.kind, FailureKind::Cancelled);
            assert_eq!(f.message, "customer changed their mind");
        }
        other => panic!("expected cancelled, got {other:?}"),
    }
    for id in ["cascade-child", "cascade-grandchild"] {
        let info = client.wait_finished(id, None).await.unwrap();
        assert_eq!(info.status, InstanceStatus::Cancelled, "{id}");
        // The parent is named once, however deep the nesting.
        assert_eq!(
            info.failure.unwrap().message,
            "the parent workflow was cancelled: customer changed their mind",
            "{id}"
        );
    }
    eventually("the activity to observe the cancellation", || async {
        (observed.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    eventually("no activity task left", || async {
        let stats = engine.store().management().unwrap().stats().await.unwrap();
        (stats.tasks == 0 && engine.running_activities() == 0).then_some(())
    })
    .await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the activity was not re-run"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_an_instance_and_its_children() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("parent", parent)
        .workflow("child", child)
        .workflow("grandchild", grandchild)
        .activity(
            "wait-for-cancel",
            |ctx: ActivityContext, _: ()| async move {
                ctx.cancelled().await;
                Err::<String, _>(ActivityError::Cancelled)
            },
        )
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("parent", &()).id("cascade").await.unwrap();
    eventually("the grandchild to start", || async {
        client.status("cascade-grandchild").await.ok().map(|_| ())
    })
    .await;
    client.terminate(&run, "operator").await.unwrap();
    assert!(matches!(
        client.wait::<String>(&run).await,
        Err(ClientError::Terminated(_))
    ));
    for id in ["cascade-child", "cascade-grandchild"] {
        let info = client.wait_finished(id, None).await.unwrap();
        assert_eq!(info.status, InstanceStatus::Terminated, "{id}");
    }
    engine.shutdown().await;
}
