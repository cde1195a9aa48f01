//! The engine on SQLite files: a database copied while the engine is stopped runs on
//! elsewhere, two engines can share one file without running anything twice or corrupting it,
//! and a corrupt journal fails its instance only.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::order;
use duraflow::prelude::*;
use duraflow::{EventKind, FailureKind, Store};

async fn approval(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    let receipt: String = ctx.activity("charge", &order).await?;
    let by: String = ctx.wait_for_event("approved").await?;
    Ok(format!("{receipt} approved by {by}"))
}

async fn charge(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
    Ok(format!("receipt-{order}"))
}

fn engine_on(store: SqliteStore) -> duraflow::EngineBuilder {
    Engine::builder()
        .store(store)
        .workflow("approval", approval)
        .activity("charge", charge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_copied_while_the_engine_is_stopped_runs_on_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("orders.db");
    let engine = engine_on(SqliteStore::open(&original).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("approval", "o-1").id("o-1").await.unwrap();
    common::history_with(&client, &run.id, "the workflow to wait for approval", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    drop(client);
    engine.shutdown().await;

    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("moved.db");
    std::fs::copy(&original, &copy).unwrap();
    assert!(
        !dir.path().join("orders.db-wal").exists(),
        "a stopped engine leaves everything in the database file"
    );

    let engine = engine_on(SqliteStore::open(&copy).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    client.raise_event(&run, "approved", "carol").await.unwrap();
    let out: String = client.wait(&run).await.unwrap();
    assert_eq!(out, "receipt-o-1 approved by carol");
    engine.shutdown().await;

    // The original is untouched by what happened to the copy.
    let store = SqliteStore::open(&original).await.unwrap();
    let info = store.instance("o-1").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_leaves_one_self_contained_file_while_its_clients_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    let engine = engine_on(SqliteStore::open(&path).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    for i in 0..20 {
        let run = client.start("approval", &format!("o-{i}")).await.unwrap();
        common::history_with(&client, &run.id, "the wait for approval", |k| {
            matches!(k, EventKind::EventWaitStarted { .. })
        })
        .await;
    }
    engine.shutdown().await;

    // The client still holds the store open, yet the log is folded into the file.
    let wal = dir.path().join("orders.db-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "the write-ahead log is empty after shutdown");
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let copied = SqliteStore::open(&copy).await.unwrap();
    assert_eq!(
        copied
            .management()
            .unwrap()
            .stats()
            .await
            .unwrap()
            .instances,
        vec![(InstanceStatus::Running, 20)],
        "the copy of the file alone holds every instance"
    );

    // And the client goes on using the store.
    let later = client.start("approval", "o-late").await.unwrap();
    assert_eq!(
        client.status(&later).await.unwrap().status,
        InstanceStatus::Pending
    );
}

async fn three_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut total = 0;
    for i in 0..3 {
        total += ctx.activity::<u32>("count", &(n * 10 + i)).await?;
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_file_share_the_work_without_running_anything_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let runs: Arc<Mutex<BTreeMap<(String, String), usize>>> = Arc::default();
    let mut engines = Vec::new();
    for _ in 0..2 {
        let runs = runs.clone();
        let options = duraflow::EngineOptions {
            poll_interval: Duration::from_millis(20),
            ..Default::default()
        };
        let engine = Engine::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .options(options)
            .workflow("three-steps", three_steps)
            .activity("count", move |ctx: ActivityContext, x: u32| {
                let runs = runs.clone();
                async move {
                    *runs
                        .lock()
                        .unwrap()
                        .entry((ctx.instance_id().to_owned(), ctx.op_id().to_string()))
                        .or_default() += 1;
                    Ok::<u32, ActivityError>(x)
                }
            })
            .start()
            .await
            .unwrap();
        engines.push(engine);
    }
    let n = 40u32;
    for i in 0..n {
        // Start half through each engine.
        let client = engines[(i % 2) as usize].client();
        client
            .start("three-steps", &i)
            .id(format!("w{i}"))
            .await
            .unwrap();
    }
    let client = engines[0].client();
    for i in 0..n {
        let out: u32 = client.wait(format!("w{i}")).await.unwrap();
        assert_eq!(out, 3 * (i * 10) + 3);
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 3 * n as usize);
    assert!(
        runs.values().all(|c| *c == 1),
        "an activity ran twice: {runs:?}"
    );
    for engine in engines {
        engine.shutdown().await;
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_journal_fails_its_instance_with_a_clear_error_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    {
        let engine = engine_on(SqliteStore::open(&path).await.unwrap())
            .start()
            .await
            .unwrap();
        let client = engine.client();
        for id in ["bad", "good"] {
            let run = client.start("approval", id).id(id).await.unwrap();
            common::history_with(&client, &run.id, "the workflow to wait for approval", |k| {
                matches!(k, EventKind::EventWaitStarted { .. })
            })
            .await;
        }
        drop(client);
        engine.shutdown().await;
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let changed = conn
            .execute(
                "UPDATE events SET data = 'not json' WHERE instance_id = 'bad' AND position = 2",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let engine = engine_on(SqliteStore::open(&path).await.unwrap())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    for id in ["bad", "good"] {
        client.raise_event(id, "approved", "dave").await.unwrap();
    }
    let out: String = client.wait("good").await.unwrap();
    assert_eq!(out, "receipt-good approved by dave");
    match client.wait::<String>("bad").await {
        Err(ClientError::WorkflowFailed(f)) => {
            assert_eq!(f.kind, FailureKind::Internal);
            assert!(f.message.contains("\"bad\""), "{}", f.message);
            assert!(f.message.contains("position 2"), "{}", f.message);
        }
        other => panic!("expected the corrupt instance to fail, got {other:?}"),
    }
    // The journal is kept as it was, for inspection.
    let store: Arc<dyn Store> = engine.store();
    assert!(store.journal("bad", None).await.is_err());
    engine.shutdown().await;
}

/// The order example's engine on the SQLite file at `path`.
async fn order_engine(path: &std::path::Path, clock: &Arc<duraflow::ManualClock>) -> Engine {
    order::register(Engine::builder().clock(clock.clone()))
        .store(SqliteStore::open(path).await.unwrap())
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_run_twice_finds_its_order_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.db");
    let clock = common::virtual_clock();
    let sample = order::sample_order();

    let engine = order_engine(&path, &clock).await;
    let client = engine.client();
    let run = client
        .start("fulfil", &sample)
        .id(sample.id.as_str())
        .await
        .unwrap();
    assert!(!run.existed);
    let first = common::approve_and_ship(&client, &clock, &run).await;
    let journal = client.history(&run, None).await.unwrap();
    drop(client);
    engine.shutdown().await;

    // The second run: same file, same id.
    let engine = order_engine(&path, &clock).await;
    let client = engine.client();
    let again = client
        .start("fulfil", &sample)
        .id(sample.id.as_str())
        .await
        .unwrap();
    assert!(again.existed, "the second run finds the order");
    assert!(matches!(
        client
            .raise_event(
                &again,
                "approved",
                &order::Approval {
                    approved_by: "eve".into()
                }
            )
            .await,
        Err(ClientError::InstanceFinished { .. })
    ));
    let second: order::Shipment = client.wait(&again).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        client.history(&again, None).await.unwrap(),
        journal,
        "nothing ran again"
    );
    engine.shutdown().await;
}

/// Steps, as many as asked, then the sum of their numbers and the event `go`'s.
async fn many_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.step("add", move |_| async move { Ok(i) }).await?;
    }
    let go: u32 = ctx.wait_for_event("go").await?;
    Ok(sum + go)
}

/// A journal longer than the store reads while it leases a turn (`INLINE_JOURNAL` events)
/// is left for the engine to read on a reader connection, and replays as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_journal_is_read_after_the_lease_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.db");
    let steps = u32::try_from(duraflow_store::INLINE_JOURNAL).unwrap();
    let open = || async {
        Engine::builder()
            .store(SqliteStore::open(&path).await.unwrap())
            .workflow("many-steps", many_steps)
            .start()
            .await
            .unwrap()
    };
    let engine = open().await;
    let client = engine.client();
    let run = client.start("many-steps", &steps).id("long").await.unwrap();
    common::history_with(&client, &run.id, "the steps, then the wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    drop(client);
    engine.shutdown().await;

    // A new engine holds no warm run: the next turn reads the whole journal.
    let engine = open().await;
    let client = engine.client();
    let store: Arc<dyn Store> = engine.store();
    assert!(store.journal("long", None).await.unwrap().len() > duraflow_store::INLINE_JOURNAL);
    client.raise_event(&run, "go", &1u32).await.unwrap();
    let out: u32 = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, steps * (steps - 1) / 2 + 1);
    engine.shutdown().await;
}
