//! Queue-wide events through the engine: `client.emit_event` and `ctx.emit_event` wake every
//! workflow of the queue in `ctx.await_event`, an event emitted before the await is returned at
//! once, the first emit wins, and an await's timeout is journaled so that replay takes the same
//! branch. On the memory store, and on SQLite and PostgreSQL for the main path.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{count, history_with, virtual_clock, virtual_options, DEADLINE};
use duraflow::prelude::*;
use duraflow::{check_replay, workflow_fn, Clock, EventKind, ManualClock, Outcome, Payload, Store};

/// Awaits `go` and returns its data.
async fn awaiter(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.await_event("go").await
}

/// Emits `go` with `data` and returns what the emit did.
async fn emitter(ctx: WorkflowContext, data: String) -> Result<EmitOutcome, WorkflowError> {
    ctx.emit_event("go", &data).await
}

/// Awaits `late` for an hour; says whether it came or the await timed out.
async fn patient(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    match ctx
        .await_event::<String>("late")
        .timeout(Duration::from_secs(3600))
        .await
    {
        Ok(data) => Ok(format!("got {data}")),
        Err(WorkflowError::Timeout(message)) => {
            assert!(message.contains("late"), "{message}");
            Ok("timed out".to_owned())
        }
        Err(e) => Err(e),
    }
}

/// Awaits `late` for a minute; after the timeout (or the event) awaits `other`.
async fn retrier(ctx: WorkflowContext, _: ()) -> Result<(bool, String), WorkflowError> {
    let timed_out = ctx
        .await_event::<String>("late")
        .timeout(Duration::from_secs(60))
        .await
        .is_err();
    Ok((timed_out, ctx.await_event("other").await?))
}

async fn engine_on(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Engine {
    Engine::builder()
        .store(store)
        .clock(clock)
        .options(virtual_options())
        .queues(["default", "other"])
        .workflow("awaiter", awaiter)
        .workflow("emitter", emitter)
        .workflow("patient", patient)
        .workflow("retrier", retrier)
        .start()
        .await
        .unwrap()
}

async fn engine(clock: Arc<ManualClock>) -> Engine {
    engine_on(Arc::new(MemoryStore::new()), clock).await
}

/// Waits until instance `id` awaits (its await is journaled, and so registered with the store
/// by the same commit).
async fn awaiting(client: &Client, id: &str) {
    history_with(client, id, "the await", |k| {
        matches!(k, EventKind::QueueEventAwaitStarted { .. })
    })
    .await;
}

async fn woken_by_the_client(store: Arc<dyn Store>) {
    let engine = engine_on(store, virtual_clock()).await;
    let client = engine.client();
    let run = client.start("awaiter", &()).await.unwrap();
    awaiting(&client, &run.id).await;
    let outcome = client.emit_event("go", "hello", "default").await.unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 1 });
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "hello");
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        count(&journal, |k| matches!(
            k,
            EventKind::QueueEventReceived { .. }
        )),
        1
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_awaiting_an_event_is_woken_by_the_client() {
    woken_by_the_client(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_awaiting_an_event_is_woken_by_the_client_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("queue-events.db"))
        .await
        .unwrap();
    woken_by_the_client(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_awaiting_an_event_is_woken_by_the_client_on_postgres() {
    use duraflow::crates::postgres::testing::{test_url, unique_schema};
    let options = duraflow::PostgresOptions {
        schema: unique_schema("dft_queue_events"),
        max_connections: 5,
        ..duraflow::PostgresOptions::default()
    };
    let store = PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests ({e}); run scripts/test"));
    let schema = store.schema().to_owned();
    let pool = store.pool().clone();
    woken_by_the_client(Arc::new(store)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_emitted_before_the_await_is_returned_at_once() {
    let engine = engine(virtual_clock()).await;
    let client = engine.client();
    let first = client.emit_event("go", "early", "default").await.unwrap();
    assert_eq!(first, EmitOutcome::Emitted { woken: 0 });
    let run = client.start("awaiter", &()).await.unwrap();
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "early");
    // A second emit changes nothing: later awaits get the first emit's data.
    let second = client
        .emit_event("go", "too late", "default")
        .await
        .unwrap();
    assert_eq!(second, EmitOutcome::AlreadyEmitted);
    let again = client.start("awaiter", &()).await.unwrap();
    let out: String = client.wait(&again).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "early");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workflow_emits_and_every_awaiting_workflow_of_its_queue_wakes() {
    let engine = engine(virtual_clock()).await;
    let client = engine.client();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let run = client.start("awaiter", &()).await.unwrap();
        awaiting(&client, &run.id).await;
        waiting.push(run);
    }
    // An awaiter of another queue is not woken by an emit in `default`.
    let elsewhere = client.start("awaiter", &()).queue("other").await.unwrap();
    awaiting(&client, &elsewhere.id).await;

    let emit = client.start("emitter", &"from a workflow").await.unwrap();
    let outcome: EmitOutcome = client.wait(&emit).timeout(DEADLINE).await.unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 3 });
    for run in &waiting {
        let out: String = client.wait(run).timeout(DEADLINE).await.unwrap();
        assert_eq!(out, "from a workflow");
    }
    assert_eq!(
        client.status(&elsewhere).await.unwrap().status,
        InstanceStatus::Running
    );
    // The emitter's outcome is journaled: its replay does not emit again.
    let journal = client.history(&emit, None).await.unwrap();
    let report = check_replay(workflow_fn(emitter), &emit.id, 1, journal);
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert_eq!(
        report.outcome,
        Some(Outcome::Completed(
            Payload::encode(&EmitOutcome::Emitted { woken: 3 }).unwrap()
        ))
    );

    let other = client.emit_event("go", "for other", "other").await.unwrap();
    assert_eq!(other, EmitOutcome::Emitted { woken: 1 });
    let out: String = client.wait(&elsewhere).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "for other");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_emit_reports_already_emitted() {
    let engine = engine(virtual_clock()).await;
    let client = engine.client();
    let first = client.start("emitter", &"first").await.unwrap();
    let outcome: EmitOutcome = client.wait(&first).timeout(DEADLINE).await.unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 0 });
    let second = client.start("emitter", &"second").await.unwrap();
    let outcome: EmitOutcome = client.wait(&second).timeout(DEADLINE).await.unwrap();
    assert_eq!(outcome, EmitOutcome::AlreadyEmitted);
    let journal = client.history(&second, None).await.unwrap();
    assert!(journal.iter().any(|e| matches!(
        e.kind,
        EventKind::QueueEventEmitCompleted {
            outcome: EmitOutcome::AlreadyEmitted,
            ..
        }
    )));
    assert_eq!(
        client.emit_event("go", "third", "default").await.unwrap(),
        EmitOutcome::AlreadyEmitted
    );
    let stored = engine
        .store()
        .queue_event("default", "go")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.data.decode::<String>().unwrap(), "first");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_await_times_out_in_virtual_time_and_replay_takes_the_same_branch() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("patient", &()).await.unwrap();
    let journal = history_with(&client, &run.id, "the await", |k| {
        matches!(k, EventKind::QueueEventAwaitStarted { .. })
    })
    .await;
    assert!(journal.iter().any(|e| matches!(
        e.kind,
        EventKind::QueueEventAwaitStarted { timeout_at: Some(at), .. }
            if at == t0.plus(Duration::from_secs(3600))
    )));
    clock.advance(Duration::from_secs(3599));
    assert_eq!(
        client.status(&run).await.unwrap().status,
        InstanceStatus::Running
    );
    clock.advance(Duration::from_secs(1));
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "timed out");

    // The timer, not an event, is journaled; replay reads it and times out again.
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        count(&journal, |k| matches!(k, EventKind::TimerFired { .. })),
        1
    );
    assert_eq!(
        count(&journal, |k| matches!(
            k,
            EventKind::QueueEventReceived { .. }
        )),
        0
    );
    let report = check_replay(workflow_fn(patient), &run.id, 1, journal);
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert_eq!(
        report.outcome,
        Some(Outcome::Completed(Payload::encode(&"timed out").unwrap()))
    );
    // The finished instance's waiter is gone: a later emit wakes nobody.
    let late = client.emit_event("late", "now", "default").await.unwrap();
    assert_eq!(late, EmitOutcome::Emitted { woken: 0 });
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_within_the_timeout_wins() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("patient", &()).await.unwrap();
    awaiting(&client, &run.id).await;
    clock.advance(Duration::from_secs(3599));
    let outcome = client
        .emit_event("late", "in time", "default")
        .await
        .unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 1 });
    let out: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "got in time");
    // The timer fires later and is refused as stale: nothing more is journaled.
    clock.advance(Duration::from_secs(10));
    let journal = client.history(&run, None).await.unwrap();
    let report = check_replay(workflow_fn(patient), &run.id, 1, journal.clone());
    assert!(report.new_events.is_empty(), "{:?}", report.new_events);
    assert_eq!(
        report.outcome,
        Some(Outcome::Completed(Payload::encode(&"got in time").unwrap()))
    );
    assert_eq!(
        count(&journal, |k| matches!(k, EventKind::TimerFired { .. })),
        0
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_await_loses_its_waiter_while_the_workflow_goes_on() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("retrier", &()).await.unwrap();
    awaiting(&client, &run.id).await;
    clock.advance(Duration::from_secs(60));
    // The timeout's turn commits the second await and deletes the first one's waiter.
    history_with(
        &client,
        &run.id,
        "the second await",
        |k| matches!(k, EventKind::QueueEventAwaitStarted { name, .. } if name == "other"),
    )
    .await;
    let late = client
        .emit_event("late", "too late", "default")
        .await
        .unwrap();
    assert_eq!(late, EmitOutcome::Emitted { woken: 0 });
    let other = client.emit_event("other", "next", "default").await.unwrap();
    assert_eq!(other, EmitOutcome::Emitted { woken: 1 });
    let out: (bool, String) = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(out, (true, "next".to_owned()));
    engine.shutdown().await;
}
