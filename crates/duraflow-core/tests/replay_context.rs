//! Deterministic time, ids and random numbers: the same on every replay, different per instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, Outcome, Timestamp, WorkflowContext, WorkflowError, WorkflowFn,
    WorkflowRun,
};
use futures::executor::block_on;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    started_at: Timestamp,
    ids: Vec<uuid::Uuid>,
    randoms: Vec<u64>,
    after_activity: Timestamp,
    id_after_activity: uuid::Uuid,
    instance: String,
    execution: u32,
    workflow: String,
}

fn observer() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let started_at = ctx.now();
        let ids = vec![ctx.uuid(), ctx.uuid()];
        let randoms = vec![ctx.random_u64(), ctx.random_u64(), ctx.random_u64()];
        let _: () = ctx.activity("tick", &ids[0]).await?;
        Ok::<_, WorkflowError>(Seen {
            started_at,
            ids,
            randoms,
            after_activity: ctx.now(),
            id_after_activity: ctx.uuid(),
            instance: ctx.instance_id().to_owned(),
            execution: ctx.execution(),
            workflow: ctx.workflow_name(),
        })
    })
}

fn run_observer(instance: &str) -> Driver {
    let mut run = Driver::start(instance, observer(), &());
    assert!(run.deliver(activity_completed("0", &())));
    run
}

#[test]
fn time_ids_and_random_numbers_come_from_the_journal_and_the_instance() {
    let run = run_observer("ctx-1");
    let seen: Seen = run.output();
    assert_eq!(seen.started_at, run.journal[0].at);
    assert_eq!(seen.after_activity, run.journal[2].at);
    assert!(seen.after_activity > seen.started_at);
    assert_eq!(
        (
            seen.instance.as_str(),
            seen.execution,
            seen.workflow.as_str()
        ),
        ("ctx-1", 1, WF)
    );
    assert_ne!(seen.ids[0], seen.ids[1]);
    assert_ne!(seen.ids[1], seen.id_after_activity);
    assert!(seen.ids.iter().all(|id| id.get_version_num() == 4));
    assert_ne!(seen.randoms[0], seen.randoms[1]);
    assert_ne!(seen.randoms[1], seen.randoms[2]);
}

#[test]
fn replay_sees_the_same_time_ids_and_random_numbers() {
    let run = run_observer("ctx-2");
    let outcome = run.outcome().unwrap().clone();
    assert_clean_replay(&run.check(), &outcome);

    // A live run much later, with a clock far from the recorded times, sees the same values.
    let clock = TestClock::new(9_000_000_000);
    let mut later = WorkflowRun::live("ctx-2", 1, run.journal.clone(), observer(), clock);
    block_on(later.replay());
    assert_eq!(later.outcome(), Some(&outcome));
    assert!(later.uncommitted_events().is_empty());
}

#[test]
fn a_resumed_run_repeats_the_values_from_before_the_cut() {
    let full = run_observer("ctx-3");
    let a: Seen = full.output();
    // Resume from the journal as it stood while the activity ran; its result now arrives later.
    let mut resumed = Driver::resume("ctx-3", observer(), full.journal[..2].to_vec());
    resumed.clock.set(50_000_000);
    assert!(resumed.deliver(activity_completed("0", &())));
    let b: Seen = resumed.output();
    assert_eq!(
        (a.started_at, &a.ids, &a.randoms),
        (b.started_at, &b.ids, &b.randoms)
    );
    assert_eq!(a.id_after_activity, b.id_after_activity);
    assert_eq!(b.after_activity, resumed.journal[2].at);
    assert_ne!(a.after_activity, b.after_activity);
}

#[test]
fn other_instances_and_executions_get_other_ids_and_random_numbers() {
    let a: Seen = run_observer("ctx-a").output();
    let b: Seen = run_observer("ctx-b").output();
    assert_ne!(a.ids, b.ids);
    assert_ne!(a.randoms, b.randoms);
    assert_ne!(a.id_after_activity, b.id_after_activity);

    let again: Seen = run_observer("ctx-a").output();
    assert_eq!(a.ids, again.ids);
    assert_eq!(a.randoms, again.randoms);

    // The same instance in its second execution (after continue-as-new) draws other values.
    let mut second = WorkflowRun::live("ctx-a", 2, Vec::new(), observer(), TestClock::new(5));
    assert!(block_on(second.deliver(Timestamp(10), started(&()))));
    assert!(block_on(
        second.deliver(Timestamp(20), activity_completed("0", &()))
    ));
    let c: Seen = match second.outcome() {
        Some(Outcome::Completed(p)) => d(p),
        other => panic!("{other:?}"),
    };
    assert_eq!(c.execution, 2);
    assert_ne!(a.ids, c.ids);
    assert_ne!(a.randoms, c.randoms);
}

#[test]
fn a_checker_is_deterministic_too() {
    let run = run_observer("ctx-4");
    let journal = run.journal.clone();
    let workflow = Arc::new(observer());
    let first = check_replay((*workflow).clone(), "ctx-4", 1, journal.clone());
    let second = check_replay((*workflow).clone(), "ctx-4", 1, journal);
    assert_eq!(first.outcome, second.outcome);
    assert_eq!(first.outcome.as_ref(), run.outcome());
}
