//! Queues and registrations: two engines on one store, each serving its own queues and running
//! only the workflows and activities it registered. Every instance completes on the engine that
//! serves it, nothing fails as unknown, and an instance that no engine serves stays pending.
//!
//! Nothing here waits on a timer, so the engines keep the system clock, which the client that
//! belongs to no engine uses too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{eventually, virtual_options};
use duraflow::prelude::*;
use duraflow::{EventKind, SqliteStore, Store};

/// Which engine ran what.
#[derive(Default)]
struct Ran {
    web: AtomicUsize,
    gpu: AtomicUsize,
}

/// On the web engine: charges (default queue), renders on the `gpu` queue, ships in a child
/// workflow, which inherits the default queue, and mails in a child on the `emails` queue,
/// which the gpu engine runs.
async fn order(ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
    let charged: String = ctx.activity("charge", &item).await?;
    let rendered: String = ctx.activity("render", &item).queue("gpu").await?;
    let shipped: String = ctx.child_workflow("ship", &item).await?;
    let mailed: String = ctx.child_workflow("mail", &item).queue("emails").await?;
    Ok(format!("{charged}, {rendered}, {shipped}, {mailed}"))
}

/// On the web engine.
async fn ship(_ctx: WorkflowContext, item: String) -> Result<String, WorkflowError> {
    Ok(format!("shipped {item}"))
}

/// On the gpu engine, started on the `emails` queue: sends on the `emails` queue.
async fn mail(ctx: WorkflowContext, to: String) -> Result<String, WorkflowError> {
    ctx.activity("send", &to).queue("emails").await
}

/// The web engine serves `default`: `order` and `ship`, and the activity `charge`.
async fn web_engine(store: Arc<dyn Store>, ran: Arc<Ran>) -> Engine {
    Engine::builder()
        .shared_store(store)
        .options(virtual_options())
        .workflow("order", order)
        .workflow("ship", ship)
        .activity("charge", move |_ctx: ActivityContext, item: String| {
            let ran = ran.clone();
            async move {
                ran.web.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(format!("charged {item}"))
            }
        })
        .start()
        .await
        .unwrap()
}

/// The gpu engine serves `gpu` and `emails`: `mail`, and the activities `render` and `send`.
async fn gpu_engine(store: Arc<dyn Store>, ran: Arc<Ran>) -> Engine {
    let (r1, r2) = (ran.clone(), ran);
    Engine::builder()
        .shared_store(store)
        .options(virtual_options())
        .queues(["gpu", "emails"])
        .workflow("mail", mail)
        .activity("render", move |_ctx: ActivityContext, item: String| {
            let ran = r1.clone();
            async move {
                ran.gpu.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(format!("rendered {item}"))
            }
        })
        .activity("send", move |_ctx: ActivityContext, to: String| {
            let ran = r2.clone();
            async move {
                ran.gpu.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ActivityError>(format!("sent to {to}"))
            }
        })
        .start()
        .await
        .unwrap()
}

async fn two_engines_share_one_store(store: Arc<dyn Store>) {
    let ran = Arc::new(Ran::default());
    let web = web_engine(store.clone(), ran.clone()).await;
    let gpu = gpu_engine(store.clone(), ran.clone()).await;
    // A client of no engine starts anything; the engines' clients take the first turn along
    // when their engine serves it.
    let client = Client::new(store.clone());
    let mut orders = Vec::new();
    for i in 0..4 {
        let via = if i % 2 == 0 {
            web.client()
        } else {
            client.clone()
        };
        orders.push(via.start("order", &format!("item-{i}")).await.unwrap());
    }
    let mut mails = Vec::new();
    for i in 0..4 {
        let via = if i % 2 == 0 {
            gpu.client()
        } else {
            client.clone()
        };
        let run = via
            .start("mail", &format!("user-{i}"))
            .queue("emails")
            .await
            .unwrap();
        mails.push(run);
    }
    // Nobody serves `mail` on the default queue, `order` on `nowhere`, or `orphan` at all.
    let stranded = [
        client
            .start("mail", "lost")
            .id("mail-on-default")
            .await
            .unwrap(),
        client
            .start("order", "lost")
            .id("order-on-nowhere")
            .queue("nowhere")
            .await
            .unwrap(),
        client.start("orphan", &()).id("orphan").await.unwrap(),
    ];

    for (i, run) in orders.iter().enumerate() {
        let out: String = client.wait(run).timeout(common::DEADLINE).await.unwrap();
        let item = format!("item-{i}");
        assert_eq!(
            out,
            format!("charged {item}, rendered {item}, shipped {item}, sent to {item}")
        );
        let children: Vec<String> = client
            .history(run, None)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::ChildStarted { instance_id, .. } => Some(instance_id),
                _ => None,
            })
            .collect();
        assert_eq!(children.len(), 2);
        assert_eq!(client.status(&children[0]).await.unwrap().queue, "default");
        assert_eq!(client.status(&children[1]).await.unwrap().queue, "emails");
    }
    for (i, run) in mails.iter().enumerate() {
        let out: String = client.wait(run).timeout(common::DEADLINE).await.unwrap();
        assert_eq!(out, format!("sent to user-{i}"));
        assert_eq!(client.status(run).await.unwrap().queue, "emails");
    }
    assert_eq!(
        ran.web.load(Ordering::SeqCst),
        4,
        "charge ran on the web engine"
    );
    assert_eq!(
        ran.gpu.load(Ordering::SeqCst),
        12,
        "render and send ran on the gpu engine"
    );

    // The stranded instances are untouched: pending, with their start message still waiting,
    // and nothing failed for being unknown.
    for run in &stranded {
        let info = client.status(run).await.unwrap();
        assert_eq!(info.status, InstanceStatus::Pending, "{info:?}");
        assert!(client.history(run, None).await.unwrap().is_empty());
    }
    let stats = store.management().unwrap().stats().await.unwrap();
    assert_eq!(stats.messages, 3, "{stats:?}");
    let count = |status| {
        stats
            .instances
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    assert_eq!(count(InstanceStatus::Failed), 0);
    assert_eq!(count(InstanceStatus::Completed), 16);

    // An engine that serves them picks them up.
    let late = Engine::builder()
        .shared_store(store.clone())
        .options(virtual_options())
        .queues(["default"])
        .workflow("orphan", |_ctx: WorkflowContext, _: ()| async {
            Ok::<_, WorkflowError>("adopted".to_owned())
        })
        .start()
        .await
        .unwrap();
    let out: String = client
        .wait(&stranded[2])
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(out, "adopted");
    eventually("the other stranded instances stay pending", || async {
        let pending = client.status(&stranded[0]).await.unwrap().status == InstanceStatus::Pending
            && client.status(&stranded[1]).await.unwrap().status == InstanceStatus::Pending;
        pending.then_some(())
    })
    .await;

    late.shutdown().await;
    web.shutdown().await;
    gpu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_with_different_queues_and_registrations_share_a_memory_store() {
    two_engines_share_one_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_with_different_queues_and_registrations_share_a_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("queues.db"))
        .await
        .unwrap();
    two_engines_share_one_store(Arc::new(store)).await;
}
