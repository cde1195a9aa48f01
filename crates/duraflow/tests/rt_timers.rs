//! Durable timers under virtual time: a timer fires exactly when the clock reaches its fire time
//! and never before, workflow time after a sleep is the fire time (or later), and a timer whose
//! time has passed fires at once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use common::{count, history_with, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, Timestamp};

const HOUR: Duration = Duration::from_secs(3600);

/// Sleeps an hour and reports workflow time before and after.
async fn sleeper(ctx: WorkflowContext, _: ()) -> Result<(Timestamp, Timestamp), WorkflowError> {
    let before = ctx.now();
    ctx.sleep(HOUR).await?;
    Ok((before, ctx.now()))
}

/// Sleeps until a minute before it started.
async fn sleep_into_the_past(
    ctx: WorkflowContext,
    _: (),
) -> Result<(Timestamp, Timestamp), WorkflowError> {
    let before = ctx.now();
    ctx.sleep_until(Timestamp::from_millis(before.as_millis() - 60_000))
        .await?;
    Ok((before, ctx.now()))
}

/// Two ten-minute sleeps in a row, reporting workflow time after each.
async fn two_naps(ctx: WorkflowContext, _: ()) -> Result<Vec<Timestamp>, WorkflowError> {
    let mut seen = Vec::new();
    for _ in 0..2 {
        ctx.sleep(Duration::from_secs(600)).await?;
        seen.push(ctx.now());
    }
    Ok(seen)
}

/// Sleeps one second.
async fn one_second(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await
}

/// Completes at once: starting it and waiting for it proves the dispatcher has looked for work
/// at the clock's current time.
async fn probe(_ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    Ok(())
}

fn is_timer_created(k: &EventKind) -> bool {
    matches!(k, EventKind::TimerCreated { .. })
}

fn is_timer_fired(k: &EventKind) -> bool {
    matches!(k, EventKind::TimerFired { .. })
}

/// Checks that the dispatcher has looked for work at the clock's current time and that the
/// instance's one timer, due at `fire_at`, has not fired: it is still pending, due then.
async fn assert_timer_pending(
    client: &duraflow::Client,
    store: &dyn duraflow::Store,
    clock: &duraflow::ManualClock,
    run: &duraflow::RunHandle,
    fire_at: Timestamp,
) {
    // A workflow started now completes, so the dispatcher has fetched at the new time; the
    // timer's message would have been in that fetch had it been visible.
    let p = client.start("probe", &()).await.unwrap();
    client
        .wait::<()>(&p)
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    // And any turn fetched with it has been committed: asked about a moment at or after the
    // timer's message, the store would show only an instance lease, and there is none.
    common::eventually("no turn in flight", || async {
        store
            .next_due(fire_at)
            .await
            .unwrap()
            .turn
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        store.management().unwrap().stats().await.unwrap().messages,
        1,
        "only the timer's message is waiting"
    );
    let due = store.next_due(clock.now()).await.unwrap();
    assert_eq!(
        due.turn,
        Some(fire_at),
        "the timer is still pending, due at its fire time"
    );
    let journal = client.history(run, None).await.unwrap();
    assert_eq!(
        count(&journal, is_timer_fired),
        0,
        "fired early: {journal:?}"
    );
    assert_eq!(
        client.status(run).await.unwrap().status,
        InstanceStatus::Running
    );
}

async fn engine(clock: std::sync::Arc<duraflow::ManualClock>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .options(virtual_options())
        .workflow("sleeper", sleeper)
        .workflow("past", sleep_into_the_past)
        .workflow("two-naps", two_naps)
        .workflow("probe", probe)
        .workflow("one-second", one_second)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_timer_fires_at_its_fire_time_and_not_a_millisecond_before() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let fire_at = t0.plus(HOUR);
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let store = engine.store();
    let run = client.start("sleeper", &()).id("sleeper").await.unwrap();

    let journal = history_with(&client, &run.id, "timer_created", is_timer_created).await;
    assert_eq!(
        journal[0].at, t0,
        "the execution started at the virtual time"
    );
    let created: Vec<Timestamp> = journal
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::TimerCreated { fire_at, .. } => Some(fire_at),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        vec![fire_at],
        "one timer, due exactly an hour after the start"
    );

    // One millisecond short of the hour.
    clock.advance(HOUR - Duration::from_millis(1));
    assert_timer_pending(&client, &*store, &clock, &run, fire_at).await;

    // The last millisecond.
    clock.advance(Duration::from_millis(1));
    let (before, after): (Timestamp, Timestamp) =
        client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(before, t0);
    assert_eq!(after, fire_at, "ctx.now() after the sleep is the fire time");
    let journal = client.history(&run, None).await.unwrap();
    let fired: Vec<Timestamp> = journal
        .iter()
        .filter(|e| is_timer_fired(&e.kind))
        .map(|e| e.at)
        .collect();
    assert_eq!(fired, vec![fire_at]);
    assert_eq!(
        store.next_due(clock.now()).await.unwrap().turn,
        None,
        "nothing is left pending"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_until_a_time_in_the_past_fires_at_once() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("past", &()).await.unwrap();

    // The clock is never moved.
    let (before, after): (Timestamp, Timestamp) =
        client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(before, t0);
    assert_eq!(after, t0, "workflow time does not go back with the timer");
    assert_eq!(clock.now(), t0);
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        common::types(&journal),
        [
            "workflow_started",
            "timer_created",
            "timer_fired",
            "workflow_completed"
        ]
    );
    assert!(matches!(
        journal[1].kind,
        EventKind::TimerCreated { fire_at, .. } if fire_at == Timestamp::from_millis(t0.as_millis() - 60_000)
    ));
    assert_eq!(journal[2].at, t0);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_time_after_a_late_timer_is_the_time_it_was_delivered() {
    let clock = virtual_clock();
    let t0 = clock.now();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("two-naps", &()).await.unwrap();
    history_with(&client, &run.id, "the first timer", is_timer_created).await;

    // The clock jumps well past the first nap: the timer fires late, and the second nap is
    // measured from when the first one was delivered.
    clock.advance(HOUR);
    let journal = history_with(
        &client,
        &run.id,
        "the second timer",
        |k| matches!(k, EventKind::TimerCreated { op, .. } if op.to_string() == "1"),
    )
    .await;
    let second_fire_at = journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TimerCreated { op, fire_at } if op.to_string() == "1" => Some(*fire_at),
            _ => None,
        })
        .unwrap();
    assert_eq!(second_fire_at, t0.plus(HOUR).plus(Duration::from_secs(600)));

    clock.advance(Duration::from_secs(600));
    let seen: Vec<Timestamp> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(seen, vec![t0.plus(HOUR), second_fire_at]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_asked_for_in_the_middle_of_a_millisecond_fires_only_once_it_has_all_passed() {
    let clock = virtual_clock();
    let t0 = clock.now();
    // The present is 0.6 ms past a whole millisecond: journal times show t0, but a one-second
    // sleep asked for now must not end before t0 + 1000.6 ms.
    clock.advance(Duration::from_micros(600));
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client.start("one-second", &()).await.unwrap();
    let journal = history_with(&client, &run.id, "timer_created", is_timer_created).await;
    assert_eq!(journal[0].at, t0, "journal times are whole milliseconds");
    let fire_at = journal
        .iter()
        .find_map(|e| match e.kind {
            EventKind::TimerCreated { fire_at, .. } => Some(fire_at),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        fire_at,
        t0.plus(Duration::from_millis(1_001)),
        "the fire time is rounded up, not down"
    );

    // t0 + 1000.3 ms: a whole second after t0, but not after the call.
    clock.advance(Duration::from_micros(999_700));
    assert_timer_pending(&client, &*engine.store(), &clock, &run, fire_at).await;

    clock.advance(Duration::from_micros(700));
    let () = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    engine.shutdown().await;
}
