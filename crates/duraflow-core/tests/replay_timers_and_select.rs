//! Durable timers and races: `ctx.select` between a timer and an event resolves by delivery order
//! and resolves the same way on replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, EventKind, Outcome, Timestamp, WorkflowContext, WorkflowError,
    WorkflowFn,
};
use futures::future::Either;

/// Races a 30 s timer against event "go", reports the winner to an activity, then waits for
/// "go" (again).
fn race() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let winner = match ctx
            .select(
                ctx.sleep(Duration::from_secs(30)),
                ctx.wait_for_event::<String>("go"),
            )
            .await
        {
            Either::Left(fired) => {
                fired?;
                "timer".to_owned()
            }
            Either::Right(event) => format!("event {}", event?),
        };
        let _: () = ctx.activity("after", &winner).await?;
        let next: String = ctx.wait_for_event("go").await?;
        Ok::<_, WorkflowError>((winner, next))
    })
}

fn after_input(kinds: &[EventKind]) -> String {
    match kinds {
        [EventKind::ActivityScheduled {
            op: o, name, input, ..
        }] if *o == op("2") && name == "after" => d(input),
        other => panic!("expected the \"after\" activity alone, got {other:?}"),
    }
}

fn assert_race_start(run: &mut Driver) {
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), 2, "{issued:?}");
    assert!(matches!(&issued[0], EventKind::TimerCreated { op: o, .. } if *o == op("0")));
    assert!(
        matches!(&issued[1], EventKind::EventWaitStarted { op: o, name } if *o == op("1") && name == "go")
    );
}

/// Replays every prefix of the run's journal that ends with a delivery and checks that the code
/// asks for exactly what it asked for live at that point.
fn assert_prefixes_replay_the_same(run: &Driver) {
    let journal = &run.journal;
    for k in 1..=journal.len() {
        if journal[k - 1].kind.is_issued() {
            continue;
        }
        let report = check_replay(race(), &run.instance_id, 1, journal[..k].to_vec());
        let end = (k..journal.len())
            .find(|&i| !journal[i].kind.is_issued())
            .unwrap_or(journal.len());
        assert_eq!(
            kinds(&report.new_events),
            kinds(&journal[k..end]),
            "prefix of {k}"
        );
    }
}

#[test]
fn the_timer_wins_when_it_fires_first_and_replay_agrees() {
    let mut run = Driver::start("race-1", race(), &());
    assert_race_start(&mut run);
    assert!(run.deliver(timer_fired("0")));
    assert_eq!(after_input(&run.take_new_issued()), "timer");
    // The event comes too late for the race; it stays buffered for the later wait.
    assert!(run.deliver(event_raised("go", &"g1")));
    assert!(run.take_new_issued().is_empty());
    assert!(run.deliver(activity_completed("2", &())));
    assert_eq!(
        run.output::<(String, String)>(),
        ("timer".into(), "g1".into())
    );

    assert_clean_replay(&run.check(), run.outcome().unwrap());
    let resumed = Driver::resume("race-1", race(), run.journal.clone());
    assert_eq!(resumed.outcome(), run.outcome());
    assert_prefixes_replay_the_same(&run);
}

#[test]
fn the_event_wins_when_it_arrives_first_and_replay_agrees() {
    let mut run = Driver::start("race-2", race(), &());
    assert_race_start(&mut run);
    assert!(run.deliver(event_raised("go", &"g1")));
    assert_eq!(after_input(&run.take_new_issued()), "event g1");
    // The timer lost the race: its firing is refused and not journaled.
    let len = run.run.journal_len();
    assert!(!run.deliver(timer_fired("0")));
    assert_eq!(run.run.journal_len(), len);
    assert!(run.deliver(activity_completed("2", &())));
    assert!(run.outcome().is_none(), "g1 was taken by the race");
    assert!(run.deliver(event_raised("go", &"g2")));
    assert_eq!(
        run.output::<(String, String)>(),
        ("event g1".into(), "g2".into())
    );

    assert_clean_replay(&run.check(), run.outcome().unwrap());
    let resumed = Driver::resume("race-2", race(), run.journal.clone());
    assert_eq!(resumed.outcome(), run.outcome());
    assert_prefixes_replay_the_same(&run);
}

#[test]
fn the_two_orders_give_different_journals_that_each_replay_to_their_own_winner() {
    let mut timer_first = Driver::start("race-3", race(), &());
    assert!(timer_first.deliver(timer_fired("0")));
    let mut event_first = Driver::start("race-3", race(), &());
    assert!(event_first.deliver(event_raised("go", &"g")));
    // Replaying each journal so far with a checker picks the winner its journal recorded.
    let a = timer_first.check();
    let b = event_first.check();
    assert!(a.new_events.is_empty() && b.new_events.is_empty());
    assert_eq!(
        types(&timer_first.journal[..4]),
        vec![
            "workflow_started",
            "timer_created",
            "event_wait_started",
            "timer_fired"
        ]
    );
    assert_eq!(
        types(&event_first.journal[..4]),
        vec![
            "workflow_started",
            "timer_created",
            "event_wait_started",
            "event_raised"
        ]
    );
    assert_eq!(after_input(&kinds(&timer_first.journal[4..])), "timer");
    assert_eq!(after_input(&kinds(&event_first.journal[4..])), "event g");
    // Cutting each journal before its issued "after" activity makes the checker issue it again,
    // with the same winner.
    let cut_a = check_replay(race(), "race-3", 1, timer_first.journal[..4].to_vec());
    assert_eq!(after_input(&kinds(&cut_a.new_events)), "timer");
    let cut_b = check_replay(race(), "race-3", 1, event_first.journal[..4].to_vec());
    assert_eq!(after_input(&kinds(&cut_b.new_events)), "event g");
}

#[test]
fn a_timer_fires_at_workflow_time_plus_its_duration_and_moves_workflow_time() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let before = ctx.now();
        ctx.sleep(Duration::from_millis(1_500)).await?;
        let after_sleep = ctx.now();
        ctx.sleep_until(Timestamp(before.0 + 1_000_000)).await?;
        Ok::<_, WorkflowError>((before, after_sleep, ctx.now()))
    });
    let mut run = Driver::start("timer-1", wf, &());
    let start = run.journal[0].at;
    assert_eq!(
        run.take_new_issued(),
        vec![EventKind::TimerCreated {
            op: op("0"),
            fire_at: start.plus(Duration::from_millis(1_500))
        }]
    );
    // The clock is not consulted by the code: whatever the engine time, the fire time stands.
    run.clock.set(start.0 + 1_500);
    assert!(run.deliver(timer_fired("0")));
    let fired_at = run.journal.last().map(|e| e.at).unwrap();
    let issued = run.take_new_issued();
    assert_eq!(
        issued,
        vec![EventKind::TimerCreated {
            op: op("1"),
            fire_at: Timestamp(start.0 + 1_000_000)
        }]
    );
    assert!(run.deliver(timer_fired("1")));
    let last_fired = run.journal[run.journal.len() - 2].at;
    let (before, after_sleep, end): (Timestamp, Timestamp, Timestamp) = run.output();
    assert_eq!(before, start);
    assert_eq!(after_sleep, fired_at);
    assert_eq!(end, last_fired);
    assert!(matches!(run.outcome(), Some(Outcome::Completed(_))));
    assert_clean_replay(&run.check(), run.outcome().unwrap());
}
