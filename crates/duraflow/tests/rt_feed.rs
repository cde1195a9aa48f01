//! The feed through the engine: `ctx.publish` appends each record once, with the commit of the
//! turn that runs the code live, whether the run stays warm between turns or is replayed cold
//! every turn; `client.subscribe` delivers the records in order, at least once across a
//! subscriber's restart. On the memory store and SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::Arc;

use common::DEADLINE;
use duraflow::prelude::*;
use duraflow::{FeedEntry, Store, SubscribeOptions, Subscription};

/// Publishes around an activity and an external event.
async fn publisher(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.publish("test.started", &n)?;
    let doubled: u32 = ctx.activity("double", &n).await?;
    ctx.publish("test.doubled", &doubled)?;
    let extra: u32 = ctx.wait_for_event("go").await?;
    ctx.publish("other.done", &(doubled + extra))?;
    Ok(doubled + extra)
}

async fn engine_on(store: Arc<dyn Store>, warm_instances: usize) -> Engine {
    Engine::builder()
        .store(store)
        .options(EngineOptions {
            warm_instances,
            ..EngineOptions::default()
        })
        .workflow("publisher", publisher)
        .activity("double", |_ctx, n: u32| async move {
            Ok::<_, ActivityError>(n * 2)
        })
        .start()
        .await
        .unwrap()
}

/// The next batch of `sub`, within the deadline.
async fn next(sub: &mut Subscription) -> Vec<FeedEntry> {
    tokio::time::timeout(DEADLINE, sub.next_batch())
        .await
        .expect("a batch within the deadline")
        .unwrap()
}

/// Reads `sub` until it has handed out `n` records.
async fn take(sub: &mut Subscription, n: usize) -> Vec<FeedEntry> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(next(sub).await);
    }
    got
}

fn topics(entries: &[FeedEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.topic.as_str()).collect()
}

async fn each_record_once(store: Arc<dyn Store>, warm_instances: usize) {
    let engine = engine_on(store.clone(), warm_instances).await;
    let client = engine.client();
    let mut sub = client
        .subscribe("watcher", SubscribeOptions::default())
        .await
        .unwrap();
    let run = client.start("publisher", &5u32).await.unwrap();
    let first = take(&mut sub, 2).await;
    assert_eq!(topics(&first), ["test.started", "test.doubled"]);
    assert!(first.iter().all(|e| e.instance_id == run.id));
    client.raise_event(&run.id, "go", &1u32).await.unwrap();
    let out: u32 = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, 11);
    let last = take(&mut sub, 1).await;
    assert_eq!(topics(&last), ["other.done"]);
    assert_eq!(last[0].payload.decode::<u32>().unwrap(), 11);
    engine.shutdown().await;
    // Nothing more: each record was appended once, however often the code ran again.
    let every = store.read_feed(0, 100, None).await.unwrap();
    assert_eq!(
        topics(&every),
        ["test.started", "test.doubled", "other.done"]
    );
    assert!(every.windows(2).all(|w| w[0].position < w[1].position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_appended_once_with_a_warm_run() {
    each_record_once(Arc::new(MemoryStore::new()), 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_appended_once_when_every_turn_replays() {
    each_record_once(Arc::new(MemoryStore::new()), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_appended_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("feed.db")).await.unwrap();
    each_record_once(Arc::new(store), 0).await;
}

/// A subscriber that stops before acknowledging gets the unacknowledged records again from a
/// new subscription of its name, and loses none; a prefix filters topics.
async fn at_least_once_across_a_restart(store: Arc<dyn Store>) {
    let engine = engine_on(store.clone(), 1_000).await;
    let client = engine.client();
    let mut runs = Vec::new();
    for n in 0..4u32 {
        runs.push(client.start("publisher", &n).await.unwrap());
    }
    let options = || SubscribeOptions {
        topic_prefix: Some("test.".into()),
        batch: 3,
        ..SubscribeOptions::default()
    };
    let mut sub = client.subscribe("projector", options()).await.unwrap();
    let got = take(&mut sub, 8).await;
    assert_eq!(got.len(), 8, "two test.* records per run, none of other.*");
    assert!(got.iter().all(|e| e.topic.starts_with("test.")));
    // Processed and acknowledged the first five; crashed before acknowledging the rest.
    sub.ack(got[4].position).await.unwrap();
    drop(sub);
    let mut again = client.subscribe("projector", options()).await.unwrap();
    assert_eq!(again.delivered(), got[4].position);
    let redelivered = take(&mut again, 3).await;
    assert_eq!(
        redelivered,
        got[5..].to_vec(),
        "the unacknowledged ones, again"
    );
    again.ack_delivered().await.unwrap();
    // An acknowledgement never moves the cursor back.
    again.ack(got[0].position).await.unwrap();
    let fresh = client.subscribe("projector", options()).await.unwrap();
    assert_eq!(fresh.delivered(), got[7].position);
    for run in &runs {
        client.raise_event(&run.id, "go", &0u32).await.unwrap();
        let _: u32 = client.wait(run).timeout(DEADLINE).await.unwrap();
    }
    // Records of other topics are passed over: the subscription moves past them.
    let last = store.read_feed(0, 1_000, None).await.unwrap();
    let last = last.last().unwrap().position;
    let mut past = client.subscribe("projector", options()).await.unwrap();
    assert!(past.try_next_batch().await.unwrap().is_empty());
    assert_eq!(past.delivered(), last, "past the other.* records");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_at_least_once_across_a_subscriber_restart() {
    at_least_once_across_a_restart(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_at_least_once_across_a_subscriber_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("feed.db")).await.unwrap();
    at_least_once_across_a_restart(Arc::new(store)).await;
}
