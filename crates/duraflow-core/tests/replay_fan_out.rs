//! A fan-out of 10,000 activities: distinct deterministic op ids, results in code order whatever
//! the delivery order, and a replay that issues nothing new.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, EventKind, Outcome, WorkflowContext, WorkflowError, WorkflowFn,
};

const N: u64 = 10_000;

/// Fans out `n + extra` activities (`extra` stands for a code change).
fn fan_out_changed(extra: i64) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, n: u64| async move {
        let n = n.checked_add_signed(extra).unwrap();
        let outputs: Vec<u64> = ctx
            .join_all((0..n).map(|i| ctx.activity::<u64>("square", &i)))
            .await?;
        Ok::<_, WorkflowError>(outputs)
    })
}

fn fan_out() -> WorkflowFn {
    fan_out_changed(0)
}

#[test]
fn ten_thousand_activities_fan_out_and_in() {
    let mut run = Driver::start("fan-1", fan_out(), &N);
    let issued = run.take_new_issued();
    assert_eq!(issued.len(), N as usize);
    let mut inputs = Vec::with_capacity(issued.len());
    for (i, kind) in issued.iter().enumerate() {
        match kind {
            EventKind::ActivityScheduled {
                op: o, name, input, ..
            } => {
                assert_eq!(o.to_string(), i.to_string());
                assert_eq!(name, "square");
                inputs.push(d::<u64>(input));
            }
            other => panic!("expected activity_scheduled, got {other:?}"),
        }
    }
    assert_eq!(inputs, (0..N).collect::<Vec<_>>());

    // Deliver every result, the last scheduled first.
    for i in (0..N).rev() {
        assert!(run.outcome().is_none(), "finished before result {i}");
        assert!(run.deliver(activity_completed(&i.to_string(), &(i * i))));
    }
    let outputs: Vec<u64> = run.output();
    assert_eq!(outputs, (0..N).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(run.journal.len(), 2 * N as usize + 2);

    // Nothing left to deliver: a duplicate is refused.
    assert!(!run.deliver(activity_completed("0", &0)));

    let report = run.check();
    assert_clean_replay(&report, run.outcome().unwrap());
    assert!(matches!(report.outcome, Some(Outcome::Completed(_))));

    // One activity fewer: the last recorded schedule is never asked for.
    let n = N as usize;
    let fewer = check_replay(fan_out_changed(-1), "fan-1", 1, run.journal.clone());
    let failure = nondeterminism(&fewer);
    assert!(
        failure.message.starts_with(&format!(
            "at journal position {n}: the journal recorded activity_scheduled \"square\" (op \
             9999) but the workflow code waits for something else"
        )),
        "{}",
        failure.message
    );
    // One more: it is asked for where the journal has the first result.
    let more = check_replay(fan_out_changed(1), "fan-1", 1, run.journal.clone());
    let failure = nondeterminism(&more);
    assert!(
        failure.message.starts_with(&format!(
            "at journal position {}: the journal recorded activity_completed (op 9999) but the \
             workflow code asked for activity_scheduled \"square\" (op 10000) before that event \
             was delivered",
            n + 1
        )),
        "{}",
        failure.message
    );
    assert_eq!(failure.op, Some(op("10000")));
}
