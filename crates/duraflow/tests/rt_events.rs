//! External events: buffered until a wait takes them, delivered in order, waits that time out
//! under virtual time, and the client's errors for instances that cannot take events.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use common::{history_with, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, ManualClock};

/// Sleeps ten minutes, then waits for `go`.
async fn nap_then_wait(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(600)).await?;
    ctx.wait_for_event("go").await
}

/// Takes two `step` events in a row.
async fn two_steps(ctx: WorkflowContext, _: ()) -> Result<Vec<u32>, WorkflowError> {
    let first: u32 = ctx.wait_for_event("step").await?;
    let second: u32 = ctx.wait_for_event("step").await?;
    Ok(vec![first, second])
}

/// Waits an hour for `approve`, handles the timeout, then waits for `approve` again.
async fn approve_or_timeout(ctx: WorkflowContext, _: ()) -> Result<(bool, String), WorkflowError> {
    let timed_out = match ctx
        .wait_for_event::<String>("approve")
        .timeout(Duration::from_secs(3600))
        .await
    {
        Ok(early) => return Ok((false, early)),
        Err(WorkflowError::Timeout(message)) => {
            assert!(message.contains("approve"), "{message}");
            true
        }
        Err(e) => return Err(e),
    };
    let late: String = ctx.wait_for_event("approve").await?;
    Ok((timed_out, late))
}

async fn done(_ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    Ok(1)
}

async fn engine(clock: std::sync::Arc<ManualClock>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .options(virtual_options())
        .workflow("nap-then-wait", nap_then_wait)
        .workflow("two-steps", two_steps)
        .workflow("approve", approve_or_timeout)
        .workflow("done", done)
        .start()
        .await
        .unwrap()
}

fn position(journal: &[duraflow::Event], pred: impl Fn(&EventKind) -> bool) -> usize {
    journal
        .iter()
        .position(|e| pred(&e.kind))
        .unwrap_or_else(|| panic!("not in the journal: {journal:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_before_the_workflow_waits_is_delivered() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("nap-then-wait", &()).await.unwrap();
    history_with(&client, &run.id, "the nap", |k| {
        matches!(k, EventKind::TimerCreated { .. })
    })
    .await;

    client.raise_event(&run, "go", "early bird").await.unwrap();
    // The event is journaled (buffered) while the workflow still naps.
    let journal = history_with(&client, &run.id, "the event", |k| {
        matches!(k, EventKind::EventRaised { .. })
    })
    .await;
    assert!(!journal
        .iter()
        .any(|e| matches!(e.kind, EventKind::EventWaitStarted { .. })));
    assert_eq!(
        client.status(&run).await.unwrap().status,
        InstanceStatus::Running
    );

    clock.advance(Duration::from_secs(600));
    let out: String = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, "early bird");
    let journal = client.history(&run, None).await.unwrap();
    let raised = position(&journal, |k| matches!(k, EventKind::EventRaised { .. }));
    let waited = position(&journal, |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    });
    assert!(raised < waited, "{journal:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_raised_back_to_back_reach_successive_waits_in_order() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();

    // While the workflow waits.
    let run = client.start("two-steps", &()).await.unwrap();
    history_with(&client, &run.id, "the first wait", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    client.raise_event(&run, "step", &1u32).await.unwrap();
    client.raise_event(&run, "step", &2u32).await.unwrap();
    let out: Vec<u32> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, [1, 2]);

    // Before the workflow has even started.
    let run = client.start("two-steps", &()).await.unwrap();
    client.raise_event(&run, "step", &10u32).await.unwrap();
    client.raise_event(&run, "step", &20u32).await.unwrap();
    let out: Vec<u32> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, [10, 20]);

    // Many at once still keep their order (the instance may finish before the last arrive).
    let run = client.start("two-steps", &()).await.unwrap();
    for n in 100..110u32 {
        match client.raise_event(&run, "step", &n).await {
            Ok(()) => {}
            Err(ClientError::InstanceFinished { .. }) if n > 101 => {}
            Err(e) => panic!("raising event {n}: {e}"),
        }
    }
    let out: Vec<u32> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, [100, 101]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_times_out_in_virtual_time_and_a_later_event_reaches_the_next_wait() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("approve", &()).await.unwrap();
    let journal = history_with(&client, &run.id, "the wait's timer", |k| {
        matches!(k, EventKind::TimerCreated { .. })
    })
    .await;
    assert!(journal.iter().any(|e| matches!(
        e.kind,
        EventKind::TimerCreated { fire_at, .. } if fire_at == t0.plus(Duration::from_secs(3600))
    )));

    clock.advance(Duration::from_secs(3600));
    // The timeout is handled and the workflow waits again.
    let journal = history_with(
        &client,
        &run.id,
        "the second wait",
        |k| matches!(k, EventKind::EventWaitStarted { op, .. } if op.to_string() == "2"),
    )
    .await;
    assert_eq!(
        common::count(&journal, |k| matches!(k, EventKind::TimerFired { .. })),
        1
    );
    assert_eq!(
        client.status(&run).await.unwrap().status,
        InstanceStatus::Running
    );

    client
        .raise_event(&run, "approve", "late approval")
        .await
        .unwrap();
    let out: (bool, String) = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, (true, "late approval".to_owned()));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_within_the_timeout_wins() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("approve", &()).await.unwrap();
    history_with(&client, &run.id, "the wait's timer", |k| {
        matches!(k, EventKind::TimerCreated { .. })
    })
    .await;
    clock.advance(Duration::from_secs(3599));
    client
        .raise_event(&run, "approve", "just in time")
        .await
        .unwrap();
    let out: (bool, String) = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, (false, "just in time".to_owned()));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_an_event_on_an_unknown_or_finished_instance_is_an_error() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();

    match client.raise_event("no-such-instance", "go", &1).await {
        Err(ClientError::NotFound(id)) => assert_eq!(id, "no-such-instance"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    let run = client.start("done", &()).id("finished").await.unwrap();
    assert_eq!(
        client
            .wait::<u32>(&run)
            .timeout(common::DEADLINE)
            .await
            .unwrap(),
        1
    );
    match client.raise_event(&run, "go", &1).await {
        Err(ClientError::InstanceFinished { id, status }) => {
            assert_eq!(id, "finished");
            assert_eq!(status, "completed");
        }
        other => panic!("expected InstanceFinished, got {other:?}"),
    }
    engine.shutdown().await;
}
