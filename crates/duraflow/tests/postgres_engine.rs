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
