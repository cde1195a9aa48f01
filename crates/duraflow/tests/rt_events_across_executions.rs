//! External events raised while a workflow continues as new reach the next executions in the
//! order they were raised, on every store: the reproduction of the bug where an event queued
//! ahead of the next execution's start stranded the instance forever (its execution 2 journal
//! held only `event_raised` and no `workflow_started`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use duraflow::prelude::*;
use duraflow::{EventKind, Store};

/// How many events each instance is sent, and so how many executions it runs.
const EVENTS: u32 = 5;
/// How many instances each round starts at once.
const INSTANCES: u32 = 8;
/// How many rounds each store runs.
const ROUNDS: u32 = 5;

/// Takes one event `e` per execution, carrying what it took so far, until it has taken
/// [`EVENTS`] of them; returns them in the order it took them.
async fn looper(ctx: WorkflowContext, taken: Vec<u32>) -> Result<Vec<u32>, WorkflowError> {
    if taken.len() == EVENTS as usize {
        return Ok(taken);
    }
    let next: u32 = ctx.wait_for_event("e").await?;
    let mut taken = taken;
    taken.push(next);
    ctx.continue_as_new(&taken).await
}

/// Starts [`INSTANCES`] loopers at once, raises their events back to back right after each
/// start (so that most arrive while a continue-as-new turn runs), and checks that every
/// instance took every event in the order raised, with each execution's journal beginning with
/// its start.
async fn events_follow_every_continue_as_new(store: impl Store, label: &str) {
    let engine = Engine::builder()
        .store(store)
        .workflow("looper", looper)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    for round in 0..ROUNDS {
        let runs = futures::future::join_all((0..INSTANCES).map(|i| {
            let client = client.clone();
            async move {
                let run = client
                    .start("looper", &Vec::<u32>::new())
                    .id(format!("{label}-{round}-{i}"))
                    .await
                    .unwrap();
                for value in 1..=EVENTS {
                    client.raise_event(&run, "e", &value).await.unwrap();
                }
                run
            }
        }))
        .await;
        for run in runs {
            let taken: Vec<u32> = client
                .wait(&run)
                .timeout(common::DEADLINE)
                .await
                .unwrap_or_else(|e| panic!("{label}: instance {:?} did not finish: {e}", run.id));
            assert_eq!(
                taken,
                (1..=EVENTS).collect::<Vec<_>>(),
                "{label}: instance {:?} took its events out of order",
                run.id
            );
            let info = client.status(&run).await.unwrap();
            assert_eq!(info.execution, EVENTS + 1);
            for execution in 1..=info.execution {
                let journal = client.history(&run, Some(execution)).await.unwrap();
                assert!(
                    matches!(
                        journal.first().map(|e| &e.kind),
                        Some(EventKind::WorkflowStarted { .. })
                    ),
                    "{label}: execution {execution} of {:?} begins with {:?}",
                    run.id,
                    common::types(&journal)
                );
            }
        }
    }
    drop(client);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_memory() {
    events_follow_every_continue_as_new(MemoryStore::new(), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("loop.db")).await.unwrap();
    events_follow_every_continue_as_new(store, "sqlite").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    use duraflow::crates::postgres::testing::{test_url, unique_schema};
    let options = duraflow::PostgresOptions {
        schema: unique_schema("dft_can_events"),
        max_connections: 5,
        ..duraflow::PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests ({e}); run scripts/test"));
    let pool = store.pool().clone();
    let schema = store.schema().to_owned();
    events_follow_every_continue_as_new(store, "postgres").await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}
