//! Code that no longer matches its journal fails with a nondeterminism failure naming the journal
//! position, the recorded event and what the code asked for; code that only adds operations after
//! all recorded history carries on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, Event, EventKind, FailureKind, Outcome, WorkflowContext,
    WorkflowError, WorkflowFn,
};
use serde_json::{json, Value};

/// One step of a scripted workflow.
#[derive(Clone, Debug)]
enum S {
    /// Await an activity.
    Act(&'static str),
    /// Await a timer of this many seconds.
    Timer(u64),
    /// Await an external event.
    Wait(&'static str),
    /// Await several activities together.
    Join(Vec<&'static str>),
}

/// A workflow that runs `script` in order and returns every result.
fn scripted(script: Vec<S>) -> WorkflowFn {
    let script = Arc::new(script);
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let script = script.clone();
        async move {
            let mut out: Vec<Value> = Vec::new();
            for step in script.iter() {
                match step {
                    S::Act(name) => out.push(ctx.activity(name, &()).await?),
                    S::Timer(secs) => {
                        ctx.sleep(Duration::from_secs(*secs)).await?;
                        out.push(json!("timer"));
                    }
                    S::Wait(name) => out.push(ctx.wait_for_event(name).await?),
                    S::Join(names) => out.extend(
                        ctx.join_all(names.iter().map(|n| ctx.activity::<Value>(n, &())))
                            .await?,
                    ),
                }
            }
            Ok::<_, WorkflowError>(out)
        }
    })
}

/// The complete journal of `script` driven live to its end.
fn recorded(script: Vec<S>) -> Vec<Event> {
    let mut driver = Driver::start("nd-1", scripted(script), &());
    drive_to_end(&mut driver);
    assert!(matches!(driver.outcome(), Some(Outcome::Completed(_))));
    driver.journal
}

/// Replays `journal` with `script` and checks the nondeterminism failure it must end with.
fn assert_nondeterminism(
    journal: Vec<Event>,
    script: Vec<S>,
    position: usize,
    recorded: &str,
    requested: &str,
    op_id: Option<&str>,
) {
    let report = check_replay(scripted(script.clone()), "nd-1", 1, journal.clone());
    let failure = nondeterminism(&report);
    assert_eq!(failure.kind, FailureKind::Nondeterminism);
    let expected = format!(
        "at journal position {position}: the journal recorded {recorded} but the workflow code \
         {requested}"
    );
    assert!(
        failure.message.starts_with(&expected),
        "message:  {}\nexpected: {expected}…",
        failure.message
    );
    // Each kind of mismatch has its stable code.
    let code = if requested.contains("before that event was delivered") {
        "DF1002"
    } else if requested.starts_with("asked for") {
        "DF1001"
    } else {
        "DF1003"
    };
    assert_eq!(failure.code.as_deref(), Some(code), "{}", failure.message);
    assert_eq!(
        failure.to_string().matches("nondeterminism").count(),
        1,
        "the failure says nondeterminism once: {failure}"
    );
    assert_eq!(failure.op, op_id.map(op));
    // The failure is the only thing the checker appends.
    assert_eq!(
        kinds(&report.new_events),
        vec![EventKind::WorkflowFailed {
            failure: Box::new(failure.clone())
        }]
    );

    // A live run over the same journal fails the same way, appends only the failure, and then
    // refuses anything delivered to it.
    let mut live = Driver::resume("nd-1", scripted(script), journal);
    assert_eq!(live.failure(), failure);
    assert_eq!(types(&live.take_new()), vec!["workflow_failed"]);
    assert!(!live.deliver(event_raised("anything", &1)));
    assert!(!live.deliver(activity_completed("0", &1)));
    assert!(live.take_new().is_empty());
}

#[test]
fn two_sequential_activities_in_changed_order() {
    assert_nondeterminism(
        recorded(vec![S::Act("first"), S::Act("second")]),
        vec![S::Act("second"), S::Act("first")],
        1,
        r#"activity_scheduled "first" (op 0)"#,
        r#"asked for activity_scheduled "second" (op 0) instead"#,
        Some("0"),
    );
}

#[test]
fn two_concurrent_activities_in_changed_order() {
    let journal = recorded(vec![S::Join(vec!["first", "second"])]);
    assert_nondeterminism(
        journal,
        vec![S::Join(vec!["second", "first"])],
        1,
        r#"activity_scheduled "first" (op 0)"#,
        r#"asked for activity_scheduled "second" (op 0) instead"#,
        Some("0"),
    );
}

#[test]
fn a_renamed_activity() {
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b"), S::Act("c")]),
        vec![S::Act("a"), S::Act("b2"), S::Act("c")],
        3,
        r#"activity_scheduled "b" (op 1)"#,
        r#"asked for activity_scheduled "b2" (op 1) instead"#,
        Some("1"),
    );
}

#[test]
fn an_operation_added_in_the_middle() {
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b")]),
        vec![S::Act("a"), S::Act("added"), S::Act("b")],
        3,
        r#"activity_scheduled "b" (op 1)"#,
        r#"asked for activity_scheduled "added" (op 1) instead"#,
        Some("1"),
    );
}

#[test]
fn an_operation_added_where_the_journal_has_a_completion_next() {
    // The recorded run scheduled "a" and then received its result; the new code schedules a
    // second activity before that result is delivered.
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b")]),
        vec![S::Join(vec!["a", "added"]), S::Act("b")],
        2,
        "activity_completed (op 0)",
        r#"asked for activity_scheduled "added" (op 1) before that event was delivered"#,
        Some("1"),
    );
}

#[test]
fn an_operation_added_before_the_recorded_end() {
    assert_nondeterminism(
        recorded(vec![S::Act("a")]),
        vec![S::Act("a"), S::Act("added")],
        3,
        "workflow_completed",
        r#"asked for activity_scheduled "added" (op 1) instead"#,
        Some("1"),
    );
}

#[test]
fn an_operation_removed_from_the_middle() {
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b"), S::Act("c")]),
        vec![S::Act("a"), S::Act("c")],
        3,
        r#"activity_scheduled "b" (op 1)"#,
        r#"asked for activity_scheduled "c" (op 1) instead"#,
        Some("1"),
    );
}

#[test]
fn an_operation_removed_from_a_concurrent_group() {
    // The code waits for "a" alone while the journal still records "b" being scheduled with it.
    assert_nondeterminism(
        recorded(vec![S::Join(vec!["a", "b"])]),
        vec![S::Join(vec!["a"])],
        2,
        r#"activity_scheduled "b" (op 1)"#,
        "waits for something else without asking for it",
        Some("1"),
    );
}

#[test]
fn an_operation_removed_from_the_end() {
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b")]),
        vec![S::Act("a")],
        3,
        r#"activity_scheduled "b" (op 1)"#,
        "asked for workflow_completed instead",
        Some("1"),
    );
}

#[test]
fn a_timer_changed_into_an_activity() {
    assert_nondeterminism(
        recorded(vec![S::Timer(60), S::Act("a")]),
        vec![S::Act("t"), S::Act("a")],
        1,
        "timer_created (op 0)",
        r#"asked for activity_scheduled "t" (op 0) instead"#,
        Some("0"),
    );
}

#[test]
fn an_activity_changed_into_an_event_wait() {
    assert_nondeterminism(
        recorded(vec![S::Act("a"), S::Act("b")]),
        vec![S::Act("a"), S::Wait("b")],
        3,
        r#"activity_scheduled "b" (op 1)"#,
        r#"asked for event_wait_started "b" (op 1) instead"#,
        Some("1"),
    );
}

#[test]
fn a_journal_without_a_start_event() {
    let journal = recorded(vec![S::Act("a")]);
    assert_nondeterminism(
        journal[1..].to_vec(),
        vec![S::Act("a")],
        0,
        r#"activity_scheduled "a" (op 0)"#,
        "has not started",
        Some("0"),
    );
}

#[test]
fn the_unchanged_code_replays_every_script_cleanly() {
    // The scripts above, replayed with the code that wrote them: no failure, nothing new. This
    // shows that the failures above come from the changes alone.
    for script in [
        vec![S::Act("first"), S::Act("second")],
        vec![S::Join(vec!["first", "second"])],
        vec![S::Act("a"), S::Act("b"), S::Act("c")],
        vec![S::Timer(60), S::Act("a")],
        vec![S::Act("a"), S::Wait("b")],
    ] {
        let journal = recorded(script.clone());
        let expected = Driver::resume("nd-1", scripted(script.clone()), journal.clone());
        let report = check_replay(scripted(script), "nd-1", 1, journal);
        assert_clean_replay(&report, expected.outcome().unwrap());
    }
}

#[test]
fn an_operation_added_after_all_recorded_history_is_appended() {
    // The instance waits for an event when new code, which schedules one more activity after
    // that event, is deployed.
    let mut old = Driver::start("nd-1", scripted(vec![S::Act("a"), S::Wait("e")]), &());
    let first = old.take_new_issued();
    assert!(old.deliver(auto_complete(&first[0]).unwrap()));
    assert_eq!(
        types(&old.take_new()),
        vec!["activity_completed", "event_wait_started"]
    );
    let journal = old.journal.clone();

    let new_code = || scripted(vec![S::Act("a"), S::Wait("e"), S::Act("added")]);
    let report = check_replay(new_code(), "nd-1", 1, journal.clone());
    assert!(report.new_events.is_empty());
    assert_eq!(report.outcome, None);

    let mut new = Driver::resume("nd-1", new_code(), journal);
    assert!(new.take_new().is_empty());
    assert!(new.deliver(event_raised("e", &"go")));
    let issued = new.take_new_issued();
    assert!(
        matches!(&issued[..], [EventKind::ActivityScheduled { op: o, name, .. }] if *o == op("2") && name == "added"),
        "{issued:?}"
    );
    assert!(new.deliver(activity_completed("2", &"done")));
    let out: Vec<Value> = new.output();
    assert_eq!(
        out,
        vec![
            json!({"name": "a", "input": null}),
            json!("go"),
            json!("done")
        ]
    );
    assert_clean_replay(&new.check(), new.outcome().unwrap());
}

#[test]
fn an_operation_added_right_after_the_last_recorded_delivery_is_appended() {
    // The journal stops right after a delivery (the turn that followed was never committed). New
    // code that asks for something else there is not contradicting anything recorded.
    let mut full = recorded(vec![S::Act("a"), S::Act("b")]);
    full.truncate(3); // started, scheduled a, completed a
    assert_eq!(
        types(&full),
        vec![
            "workflow_started",
            "activity_scheduled",
            "activity_completed"
        ]
    );

    let code = || scripted(vec![S::Act("a"), S::Timer(5), S::Act("c")]);
    let report = check_replay(code(), "nd-1", 1, full.clone());
    assert_eq!(types(&report.new_events), vec!["timer_created"]);
    assert_eq!(report.outcome, None);

    let mut run = Driver::resume("nd-1", code(), full);
    assert_eq!(types(&run.journal[3..]), vec!["timer_created"]);
    drive_to_end(&mut run);
    let out: Vec<Value> = run.output();
    assert_eq!(out.len(), 3);
    assert_eq!(out[2], json!({"name": "c", "input": null}));
}
