//! Replay determinism through the engine: journals written by real runs replay to the same
//! result with no new operations, and races resolve the same way on replay.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use common::order;
use common::{eventually, virtual_clock};
use duraflow::prelude::*;
use duraflow::{check_replay, workflow_fn, EventKind, Outcome, Payload};
use futures::future::Either;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_example_replays_to_the_same_output_without_new_operations() {
    let clock = virtual_clock();
    let engine = order::register(
        Engine::builder()
            .store(MemoryStore::new())
            .clock(clock.clone()),
    )
    .start()
    .await
    .unwrap();
    let client = engine.client();
    let sample = order::sample_order();
    let run = client
        .start("fulfil", &sample)
        .id("order-replay")
        .await
        .unwrap();
    let shipment = common::approve_and_ship(&client, &clock, &run).await;
    assert_eq!(shipment.parcels.len(), 3);

    let journal = client.history(&run, None).await.unwrap();
    let report = check_replay(workflow_fn(order::fulfil), &run.id, 1, journal.clone());
    assert!(
        report.new_events.is_empty(),
        "replay issued {:?}",
        report.new_events
    );
    let expected = Payload::encode(&shipment).unwrap();
    assert_eq!(report.outcome, Some(Outcome::Completed(expected)));

    // The child's journal holds an inline step: replay reads its result back.
    let child_id = journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ChildStarted { instance_id, .. } => Some(instance_id.clone()),
            _ => None,
        })
        .expect("the order starts a child");
    let child_journal = client.history(&child_id, None).await.unwrap();
    assert!(child_journal
        .iter()
        .any(|e| matches!(e.kind, EventKind::StepCompleted { .. })));
    let report = check_replay(workflow_fn(order::ship), &child_id, 1, child_journal);
    assert!(report.new_events.is_empty());
    assert_eq!(
        report.outcome,
        Some(Outcome::Completed(
            Payload::encode(&shipment.tracking).unwrap()
        ))
    );
    engine.shutdown().await;
}

async fn race(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let timer = ctx.sleep(Duration::from_secs(3600));
    let event = ctx.wait_for_event::<String>("go");
    Ok(match ctx.select(timer, event).await {
        Either::Left(fired) => {
            fired?;
            "timer".to_owned()
        }
        Either::Right(data) => format!("event:{}", data?),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_between_a_timer_and_an_event_resolves_the_same_on_replay() {
    let clock = virtual_clock();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .workflow("race", race)
        .start()
        .await
        .unwrap();
    let client = engine.client();

    let by_event = client.start("race", &()).id("race-event").await.unwrap();
    let by_timer = client.start("race", &()).id("race-timer").await.unwrap();
    for run in [&by_event, &by_timer] {
        eventually("both waits to be issued", || async {
            let history = client.history(run, None).await.unwrap();
            (history.len() >= 3).then_some(())
        })
        .await;
    }
    client.raise_event(&by_event, "go", "now").await.unwrap();
    let won: String = client.wait(&by_event).await.unwrap();
    assert_eq!(won, "event:now");

    clock.advance(Duration::from_secs(3600));
    let won: String = client.wait(&by_timer).await.unwrap();
    assert_eq!(won, "timer");
    // The event that arrives after the timer won is refused: the instance has finished.
    assert!(matches!(
        client.raise_event(&by_timer, "go", "late").await,
        Err(ClientError::InstanceFinished { .. })
    ));

    for (run, expected) in [(&by_event, "event:now"), (&by_timer, "timer")] {
        let journal = client.history(run, None).await.unwrap();
        let report = check_replay(workflow_fn(race), &run.id, 1, journal);
        assert!(report.new_events.is_empty());
        assert_eq!(
            report.outcome,
            Some(Outcome::Completed(Payload::encode(expected).unwrap()))
        );
    }
    engine.shutdown().await;
}
