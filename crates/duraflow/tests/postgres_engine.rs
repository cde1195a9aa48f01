//! The engine on PostgreSQL: the order example end to end, and wakeups that cross processes
//! through LISTEN/NOTIFY.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;

use common::order;
use duraflow::crates::postgres::testing::{test_url, unique_schema};
use duraflow::prelude::*;
use duraflow::{
    check_replay, workflow_fn, EngineOptions, Outcome, Payload, PostgresOptions, Store,
};

async fn connect(schema: &str) -> PostgresStore {
    let options = PostgresOptions {
        schema: schema.to_owned(),
        max_connections: 5,
        ..PostgresOptions::default()
    };
    PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests ({e}); run scripts/test"))
}

async fn drop_schema(store: &PostgresStore) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{}\" CASCADE",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_runs_on_postgres_and_replays() {
    let schema = unique_schema("dft_order");
    let clock = common::virtual_clock();
    let engine = order::register(Engine::builder().clock(clock.clone()))
        .store(connect(&schema).await)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let sample = order::sample_order();
    let run = client
        .start("fulfil", &sample)
        .id("pg-order")
        .await
        .unwrap();
    let shipment = common::approve_and_ship(&client, &clock, &run).await;
    assert_eq!(shipment.parcels.len(), 3);
    let journal = client.history(&run, None).await.unwrap();
    let report = check_replay(workflow_fn(order::fulfil), &run.id, 1, journal);
    assert!(report.new_events.is_empty());
    assert_eq!(
        report.outcome,
        Some(Outcome::Completed(Payload::encode(&shipment).unwrap()))
    );
    engine.shutdown().await;
    drop_schema(&connect(&schema).await).await;
}

async fn echo(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.activity("double", &n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_started_by_another_process_is_picked_up_through_notifications() {
    let schema = unique_schema("dft_notify");
    // The engine never polls (an hour between looks): only notifications can wake it.
    let options = EngineOptions {
        poll_interval: Duration::from_secs(3600),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .store(connect(&schema).await)
        .options(options)
        .workflow("echo", echo)
        .activity("double", |_ctx: ActivityContext, n: u32| async move {
            Ok::<u32, ActivityError>(n * 2)
        })
        .start()
        .await
        .unwrap();
    // A client in "another process": its own store, its own connections.
    let other: Arc<dyn Store> = Arc::new(connect(&schema).await);
    let client = Client::new(other);
    for i in 0..20u32 {
        let run = client.start("echo", &i).await.unwrap();
        let out: u32 = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
        assert_eq!(out, i * 2);
    }
    engine.shutdown().await;
    drop_schema(&connect(&schema).await).await;
}

/// Runs `k` inline steps, each adding its index, then waits for `go` and adds its data.
async fn steps_then_wait(ctx: WorkflowContext, k: u64) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 0..k {
        sum += ctx.step("add", move |_| async move { Ok(i) }).await?;
    }
    let go: u64 = ctx.wait_for_event("go").await?;
    Ok(sum + go)
}

/// The journal rows of `id`'s first execution: (position, span), in position order.
async fn journal_rows(store: &PostgresStore, id: &str) -> Vec<(i32, i32)> {
    sqlx::query_as(
        "SELECT position, span FROM events WHERE instance_id = $1 AND execution = 1
          ORDER BY position",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// A workflow of 300 steps commits 301 journal rows (its start, then each step's result with
/// the next step's start); every 64 events, a commit merges the rows since the last long one
/// (`ops/commit/runs.rs`). The rows then tile the journal with far fewer of them, the journal
/// reads back event for event as it was written, and a new engine, which must replay it whole,
/// takes the workflow to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_journal_is_merged_into_runs_and_replays_cold() {
    const STEPS: u64 = 300;
    let schema = unique_schema("dft_runs");
    let engine = Engine::builder()
        .store(connect(&schema).await)
        .workflow("steps", steps_then_wait)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("steps", &STEPS).id("long").await.unwrap();
    // Parked: the start, two events a step, the wait.
    let parked = 2 * STEPS + 2;
    common::eventually("the workflow waits for its event", || async {
        let info = client.describe(&run).await.unwrap();
        (info.journal_len == Some(parked)).then_some(())
    })
    .await;
    let written = client.history(&run, None).await.unwrap();
    engine.shutdown().await;

    let store = connect(&schema).await;
    let rows = journal_rows(&store, "long").await;
    let mut next = 0;
    for (position, span) in &rows {
        assert_eq!(*position, next, "the rows tile the journal: {rows:?}");
        next += span;
    }
    assert_eq!(i64::from(next), parked as i64, "{rows:?}");
    let long = rows
        .iter()
        .filter(|(_, span)| i64::from(*span) >= 64)
        .count();
    assert!(
        rows.len() < 40 && long >= 8,
        "602 events in {} rows, {long} of them runs: {rows:?}",
        rows.len()
    );
    // The rows after the last run hold fewer than 64 events: the commit that reached past
    // the last multiple of 64 merged everything before it.
    let unmerged: i32 = rows
        .iter()
        .rev()
        .take_while(|(_, span)| *span < 64)
        .map(|(_, span)| span)
        .sum();
    assert!(unmerged < 64, "{unmerged} events unmerged: {rows:?}");
    let read = store.journal("long", Some(1)).await.unwrap();
    assert_eq!(
        read, written,
        "the merged journal reads back as it was written"
    );

    // A new engine has the workflow in no cache: its next turn replays the merged journal.
    let engine = Engine::builder()
        .store(store)
        .workflow("steps", steps_then_wait)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    client.raise_event(&run, "go", &7u64).await.unwrap();
    let out: u64 = client.wait(&run).await.unwrap();
    assert_eq!(out, STEPS * (STEPS - 1) / 2 + 7);
    engine.shutdown().await;
    drop_schema(&connect(&schema).await).await;
}
