//! A workflow using every kind of operation, driven live to completion, replays to the same
//! result without issuing anything new — from the whole journal and from every prefix of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use duraflow_core::{
    check_replay, workflow_fn, EventKind, Outcome, Timestamp, WorkflowContext, WorkflowError,
    WorkflowFn,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    reserved: Value,
    quotes: Vec<Value>,
    slept_from: Timestamp,
    woke_at: Timestamp,
    approval: String,
    shipped: Value,
    charged: Value,
    finished_at: Timestamp,
}

async fn order_workflow(ctx: WorkflowContext, order: Order) -> Result<Summary, WorkflowError> {
    let reserved: Value = ctx.activity("reserve", &order.id).await?;
    let quotes: Vec<Value> = ctx
        .join_all(vec![
            ctx.activity("price", &order.amount),
            ctx.activity("tax", &order.amount),
        ])
        .await?;
    let slept_from = ctx.now();
    ctx.sleep(Duration::from_secs(3600)).await?;
    let woke_at = ctx.now();
    let approval: String = ctx.wait_for_event("approval").await?;
    let shipped: Value = ctx.child_workflow("ship", &order).await?;
    let charged: Value = ctx.activity("charge", &order.amount).await?;
    Ok(Summary {
        reserved,
        quotes,
        slept_from,
        woke_at,
        approval,
        shipped,
        charged,
        finished_at: ctx.now(),
    })
}

fn workflow() -> WorkflowFn {
    workflow_fn(order_workflow)
}

const ORDER: Order = Order { id: 7, amount: 250 };

fn completed_driver() -> Driver {
    let mut driver = Driver::start("order-7", workflow(), &ORDER);
    drive_to_end(&mut driver);
    driver
}

#[test]
fn live_run_completes_with_the_delivered_results() {
    let driver = completed_driver();
    let summary: Summary = driver.output();
    assert_eq!(summary.reserved, json!({"name": "reserve", "input": 7}));
    assert_eq!(
        summary.quotes,
        vec![
            json!({"name": "price", "input": 250}),
            json!({"name": "tax", "input": 250})
        ]
    );
    assert_eq!(summary.approval, "approval-data");
    assert_eq!(
        summary.shipped,
        json!({"name": "ship", "input": {"id": 7, "amount": 250}})
    );
    assert_eq!(summary.charged, json!({"name": "charge", "input": 250}));
    assert!(summary.woke_at > summary.slept_from);
    assert!(summary.finished_at > summary.woke_at);

    assert_eq!(
        types(&driver.journal),
        vec![
            "workflow_started",
            "activity_scheduled",
            "activity_completed",
            "activity_scheduled",
            "activity_scheduled",
            "activity_completed",
            "activity_completed",
            "timer_created",
            "timer_fired",
            "event_wait_started",
            "event_raised",
            "child_started",
            "child_completed",
            "activity_scheduled",
            "activity_completed",
            "workflow_completed",
        ]
    );
    // The timer fires an hour of workflow time after the moment it was created.
    let fire_at = driver
        .journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TimerCreated { fire_at, .. } => Some(*fire_at),
            _ => None,
        })
        .unwrap();
    assert_eq!(fire_at, summary.slept_from.plus(Duration::from_secs(3600)));
    // The child's id is derived from the parent's id and the operation.
    assert!(driver.journal.iter().any(|e| matches!(
        &e.kind,
        EventKind::ChildStarted { instance_id, .. } if instance_id == "order-7:child:5"
    )));
}

#[test]
fn check_replay_of_the_full_journal_issues_nothing_and_gives_the_same_output() {
    let driver = completed_driver();
    let outcome = driver.outcome().unwrap().clone();
    assert!(matches!(outcome, Outcome::Completed(_)));
    let report = check_replay(workflow(), "order-7", 1, driver.journal.clone());
    assert_clean_replay(&report, &outcome);
    assert!(report.nondeterminism().is_none());
}

#[test]
fn live_run_over_the_full_journal_issues_nothing_and_gives_the_same_output() {
    let driver = completed_driver();
    let resumed = Driver::resume("order-7", workflow(), driver.journal.clone());
    assert_eq!(resumed.outcome(), driver.outcome());
    assert!(resumed.run.uncommitted_events().is_empty());
    assert_eq!(resumed.run.journal_len(), driver.journal.len());
}

#[test]
fn every_prefix_replays_to_exactly_the_recorded_continuation() {
    let driver = completed_driver();
    let journal = &driver.journal;
    for k in 1..=journal.len() {
        let report = check_replay(workflow(), "order-7", 1, journal[..k].to_vec());
        // What the code asks for after the prefix is what it asked for at that point live: the
        // issued events up to the next delivered one.
        let next_delivered = (k..journal.len())
            .find(|&i| !journal[i].kind.is_issued())
            .unwrap_or(journal.len());
        assert_eq!(
            kinds(&report.new_events),
            kinds(&journal[k..next_delivered]),
            "prefix of {k} events"
        );
        if next_delivered == journal.len() {
            assert_eq!(
                report.outcome.as_ref(),
                driver.outcome(),
                "prefix of {k} events"
            );
        } else {
            assert_eq!(report.outcome, None, "prefix of {k} events");
        }
    }
}

#[test]
fn a_resumed_live_run_carries_on_where_the_journal_stops() {
    let full = completed_driver();
    // Cut the journal right after the timer fired and resume with a fresh run.
    let cut = full
        .journal
        .iter()
        .position(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .unwrap()
        + 1;
    let mut resumed = Driver::resume("order-7", workflow(), full.journal[..cut].to_vec());
    // Replaying the prefix re-issues the wait the live run issued after the timer fired.
    assert_eq!(
        kinds(&resumed.journal[cut..]),
        kinds(&full.journal[cut..cut + 1])
    );
    drive_to_end(&mut resumed);
    // The same history, apart from the output's last timestamp (the resumed run's deliveries
    // arrived at other times).
    let n = full.journal.len();
    assert_eq!(resumed.journal.len(), n);
    assert_eq!(
        kinds(&resumed.journal[..n - 1]),
        kinds(&full.journal[..n - 1])
    );
    let a: Summary = resumed.output();
    let b: Summary = full.output();
    assert_eq!(
        (a.reserved, a.quotes, a.slept_from, a.woke_at),
        (b.reserved, b.quotes, b.slept_from, b.woke_at)
    );
    assert_eq!(
        (a.approval, a.shipped, a.charged),
        (b.approval, b.shipped, b.charged)
    );
}

#[test]
fn concurrent_completions_in_either_order_replay_deterministically() {
    for reversed in [false, true] {
        let mut driver = Driver::start("order-8", workflow(), &ORDER);
        let first = driver.take_new_issued();
        assert_eq!(first.len(), 1);
        assert!(driver.deliver(auto_complete(&first[0]).unwrap()));
        let mut quotes: Vec<EventKind> = driver
            .take_new_issued()
            .iter()
            .filter_map(auto_complete)
            .collect();
        assert_eq!(quotes.len(), 2, "price and tax are scheduled together");
        if reversed {
            quotes.reverse();
        }
        for q in quotes {
            assert!(driver.deliver(q));
        }
        drive_to_end(&mut driver);
        let summary: Summary = driver.output();
        // The join keeps the order of the code, whatever order the results arrived in.
        assert_eq!(summary.quotes[0]["name"], "price");
        assert_eq!(summary.quotes[1]["name"], "tax");
        let report = driver.check();
        assert_clean_replay(&report, driver.outcome().unwrap());
    }
}
