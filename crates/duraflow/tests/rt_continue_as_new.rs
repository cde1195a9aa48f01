//! Continue-as-new through the engine: executions are counted, every execution's journal is
//! kept, and external events not taken by one execution reach the next, including events and
//! requests that arrive in the very turn that continues.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{history_with, virtual_clock};
use duraflow::prelude::*;
use duraflow::{EventKind, Store};

/// Counts to 3, one execution per step, with an activity in each.
async fn counter(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let doubled: u32 = ctx.activity("double", &n).await?;
    if n < 3 {
        return ctx.continue_as_new(&(n + 1)).await;
    }
    Ok(n * 100 + doubled)
}

async fn double(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n * 2)
}

/// Execution 1 waits for `kick` and continues; execution 2 waits for `carry`.
async fn carrier(ctx: WorkflowContext, phase: u32) -> Result<String, WorkflowError> {
    if phase == 1 {
        let () = ctx.wait_for_event("kick").await?;
        return ctx.continue_as_new(&2u32).await;
    }
    let first: String = ctx.wait_for_event("carry").await?;
    let second: String = ctx.wait_for_event("carry").await?;
    Ok(format!(
        "execution {} got {first} and {second}",
        ctx.execution()
    ))
}

/// Gates for [`held`]: its step says it has started, then waits to be let go.
fn gates() -> &'static (tokio::sync::Notify, tokio::sync::Notify) {
    static GATES: OnceLock<(tokio::sync::Notify, tokio::sync::Notify)> = OnceLock::new();
    GATES.get_or_init(Default::default)
}

/// Execution 1 holds its only turn in a step until the test lets it go, then continues;
/// execution 2 waits for `late`.
async fn held(ctx: WorkflowContext, phase: u32) -> Result<String, WorkflowError> {
    if phase == 1 {
        let () = ctx
            .step("hold", |_| async {
                let (started, release) = gates();
                started.notify_one();
                release.notified().await;
                Ok(())
            })
            .await?;
        return ctx.continue_as_new(&2u32).await;
    }
    let late: String = ctx.wait_for_event("late").await?;
    Ok(format!("execution {} got {late}", ctx.execution()))
}

fn engine_builder() -> duraflow::EngineBuilder {
    Engine::builder()
        .store(MemoryStore::new())
        .workflow("counter", counter)
        .workflow("carrier", carrier)
        .workflow("held", held)
        .activity("double", double)
}

fn started_input(journal: &[duraflow::Event]) -> String {
    match &journal[0].kind {
        EventKind::WorkflowStarted { input, .. } => input.as_json().to_owned(),
        other => panic!("the journal starts with {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_continues_three_times_and_keeps_every_journal() {
    let engine = engine_builder()
        .clock(virtual_clock())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("counter", &0u32).id("counter").await.unwrap();
    let out: u32 = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 306);

    let info = client.status(&run).await.unwrap();
    assert_eq!(info.execution, 4);
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.input.as_json(), "3");

    for execution in 1..=3u32 {
        let journal = client.history(&run, Some(execution)).await.unwrap();
        assert_eq!(
            common::types(&journal),
            [
                "workflow_started",
                "activity_scheduled",
                "activity_completed",
                "continued_as_new"
            ],
            "execution {execution}"
        );
        assert_eq!(started_input(&journal), (execution - 1).to_string());
        assert!(matches!(
            &journal[3].kind,
            EventKind::ContinuedAsNew { input } if input.as_json() == execution.to_string()
        ));
    }
    let last = client.history(&run, Some(4)).await.unwrap();
    assert_eq!(last, client.history(&run, None).await.unwrap());
    assert_eq!(started_input(&last), "3");
    assert!(matches!(
        &last.last().unwrap().kind,
        EventKind::WorkflowCompleted { output } if output.as_json() == "306"
    ));
    assert!(matches!(
        client.history(&run, Some(5)).await,
        Err(ClientError::NotFound(_))
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_not_taken_by_one_execution_is_delivered_to_the_next() {
    let engine = engine_builder()
        .clock(virtual_clock())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("carrier", &1u32).await.unwrap();
    history_with(&client, &run.id, "the wait for kick", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    client.raise_event(&run, "carry", "parcel-1").await.unwrap();
    client.raise_event(&run, "carry", "parcel-2").await.unwrap();
    history_with(
        &client,
        &run.id,
        "both parcels buffered in execution 1",
        |k| matches!(k, EventKind::EventRaised { data, .. } if data.as_json() == "\"parcel-2\""),
    )
    .await;
    client.raise_event(&run, "kick", &()).await.unwrap();

    let out: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "execution 2 got parcel-1 and parcel-2");
    let first = client.history(&run, Some(1)).await.unwrap();
    assert_eq!(
        common::count(
            &first,
            |k| matches!(k, EventKind::EventRaised { name, .. } if name == "carry")
        ),
        2
    );
    let second = client.history(&run, Some(2)).await.unwrap();
    assert_eq!(
        common::count(
            &second,
            |k| matches!(k, EventKind::EventRaised { name, .. } if name == "carry")
        ),
        2
    );
    assert_eq!(
        common::count(
            &second,
            |k| matches!(k, EventKind::EventRaised { name, .. } if name == "kick")
        ),
        0,
        "the event execution 1 took is not carried"
    );
    engine.shutdown().await;
}

/// Creates a `carrier` instance and queues `messages` for it before any engine runs, so that
/// the first turn takes the start, `kick` and the rest all at once.
async fn queued_before_start(store: &Arc<dyn Store>, id: &str, messages: &[(&str, &str)]) {
    let client = Client::new(store.clone());
    client.start("carrier", &1u32).id(id).await.unwrap();
    client.raise_event(id, "kick", &()).await.unwrap();
    for (what, arg) in messages {
        match *what {
            "event" => client.raise_event(id, "carry", arg).await.unwrap(),
            "cancel" => client.cancel(id, arg).await.unwrap(),
            "terminate" => client.terminate(id, arg).await.unwrap(),
            other => unreachable!("{other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_in_the_turn_that_continues_are_carried_over() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    queued_before_start(&store, "same-turn", &[("event", "a"), ("event", "b")]).await;
    // No timers are involved: the engine uses the system clock, like `Client::new`.
    let engine = engine_builder()
        .shared_store(store.clone())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let out: String = client
        .wait("same-turn")
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out, "execution 2 got a and b");
    let first = client.history("same-turn", Some(1)).await.unwrap();
    assert_eq!(
        common::types(&first),
        [
            "workflow_started",
            "event_wait_started",
            "event_raised",
            "continued_as_new"
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_arriving_in_the_turn_that_continues_cancels_the_next_execution() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    queued_before_start(&store, "c", &[("event", "a"), ("cancel", "stop it")]).await;
    queued_before_start(&store, "t", &[("terminate", "kill it")]).await;
    let engine = engine_builder()
        .shared_store(store.clone())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    match client
        .wait::<String>("c")
        .timeout(Duration::from_secs(10))
        .await
    {
        Err(ClientError::Cancelled(f)) => assert_eq!(f.message, "stop it"),
        other => panic!("expected the instance to be cancelled, got {other:?}"),
    }
    assert_eq!(client.status("c").await.unwrap().execution, 2);
    match client
        .wait::<String>("t")
        .timeout(Duration::from_secs(10))
        .await
    {
        Err(ClientError::Terminated(f)) => assert_eq!(f.message, "kill it"),
        other => panic!("expected the instance to be terminated, got {other:?}"),
    }
    // Execution 2 got the event before the cancellation, in the order they were sent, and
    // both with its start: they arrived before it began, so it was cancelled before its code
    // ran.
    let second = client.history("c", Some(2)).await.unwrap();
    assert_eq!(
        common::types(&second),
        ["workflow_started", "event_raised", "cancel_requested"]
    );
    engine.shutdown().await;
}

/// An event sent while the turn that continues as new is running is not in that turn's
/// messages, and it was sent before the commit wrote the next execution's start, so it sits
/// ahead of the start in the inbox. Execution 2 still begins with its start and then takes the
/// event. (It used to journal the event first and refuse the start, and never started.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_during_the_turn_that_continues_does_not_keep_the_next_from_starting() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = engine_builder()
        .shared_store(store.clone())
        .start()
        .await
        .unwrap();
    let client = engine.client();
    client.start("held", &1u32).id("held-1").await.unwrap();
    let (started, release) = gates();
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the step of execution 1 started");
    client.raise_event("held-1", "late", &"e").await.unwrap();
    release.notify_one();
    let out: String = client
        .wait("held-1")
        .timeout(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(out, "execution 2 got e");
    let second = client.history("held-1", Some(2)).await.unwrap();
    assert_eq!(
        common::types(&second)[..2],
        ["workflow_started", "event_wait_started"]
    );
    engine.shutdown().await;
}
