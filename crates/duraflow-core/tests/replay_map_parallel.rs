//! Map and parallel in the replay machine: items in child contexts under a concurrency limit,
//! completion policies, cancellation of the rest, and replay that runs no finished item.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use duraflow_core::batch::ItemStatus;
use duraflow_core::context::branch;
use duraflow_core::{
    workflow_fn, BatchResult, CompletionConfig, CompletionReason, EventKind, WorkflowContext,
    WorkflowError, WorkflowFn,
};

/// A map over `n` items, each calling activity `work` with its item, at most `limit` at once.
fn mapping(n: u32, limit: usize, config: CompletionConfig, runs: Arc<AtomicUsize>) -> WorkflowFn {
    workflow_fn(move |ctx: WorkflowContext, _: ()| {
        let runs = runs.clone();
        let config = config.clone();
        async move {
            let batch: BatchResult<u32> = ctx
                .map(
                    "items",
                    (0..n).collect(),
                    move |c: WorkflowContext, item: u32, _| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        async move { c.activity::<u32>("work", &item).await }
                    },
                )
                .max_concurrency(limit)
                .completion(config)
                .await?;
            Ok::<_, WorkflowError>(batch)
        }
    })
}

/// The ops of the activities scheduled in `events`, in order.
fn scheduled(events: &[duraflow_core::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { op, .. } => Some(op.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn items_start_in_index_order_within_the_concurrency_limit() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut d = Driver::start(
        "map",
        mapping(5, 2, CompletionConfig::all_completed(), runs.clone()),
        &(),
    );
    assert_eq!(scheduled(&d.take_new()), vec!["0.0.0", "0.1.0"]);
    // Item 1 ends first: item 2 starts; then item 0: item 3.
    assert!(d.deliver(activity_completed("0.1.0", &10u32)));
    assert_eq!(scheduled(&d.take_new()), vec!["0.2.0"]);
    assert!(d.deliver(activity_completed("0.0.0", &0u32)));
    assert_eq!(scheduled(&d.take_new()), vec!["0.3.0"]);
    for op in ["0.2.0", "0.3.0"] {
        assert!(d.deliver(activity_completed(op, &1u32)));
    }
    assert_eq!(scheduled(&d.take_new()), vec!["0.4.0"]);
    assert!(d.deliver(activity_completed("0.4.0", &4u32)));
    let batch = d.output::<BatchResult<u32>>();
    assert_eq!(batch.completion_reason, CompletionReason::AllCompleted);
    assert_eq!(batch.results(), vec![&0, &10, &1, &1, &4]);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
    // A new process replays the finished map without running an item.
    let again = Driver::resume(
        "map",
        mapping(5, 2, CompletionConfig::all_completed(), runs.clone()),
        d.journal.clone(),
    );
    assert_eq!(again.output::<BatchResult<u32>>(), batch);
    assert_eq!(runs.load(Ordering::SeqCst), 5, "replay ran items");
}

#[test]
fn a_decided_batch_cancels_the_rest_and_refuses_their_late_results() {
    let runs = Arc::new(AtomicUsize::new(0));
    let wf = mapping(3, 3, CompletionConfig::first_successful(), runs);
    let mut d = Driver::start("first", wf, &());
    assert_eq!(scheduled(&d.take_new()), vec!["0.0.0", "0.1.0", "0.2.0"]);
    assert!(d.deliver(activity_completed("0.2.0", &7u32)));
    let batch = d.output::<BatchResult<u32>>();
    assert_eq!(
        batch.completion_reason,
        CompletionReason::MinSuccessfulReached
    );
    let statuses: Vec<ItemStatus> = batch.items.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        vec![
            ItemStatus::Cancelled,
            ItemStatus::Cancelled,
            ItemStatus::Succeeded
        ]
    );
    // The slow items' results arrive after the decision: refused, never journaled.
    assert!(!d.run.wants(&activity_completed("0.0.0", &1u32)));
    let len = d.journal.len();
    assert!(!d.deliver(activity_completed("0.1.0", &1u32)));
    assert_eq!(d.journal.len(), len);
}

#[test]
fn failures_are_items_of_the_result_and_the_map_itself_succeeds() {
    let runs = Arc::new(AtomicUsize::new(0));
    let wf = mapping(3, 1, CompletionConfig::tolerated_failures(0), runs);
    let mut d = Driver::start("ff", wf, &());
    assert!(d.deliver(activity_completed("0.0.0", &1u32)));
    assert!(d.deliver(activity_failed("0.1.0", "broken")));
    let batch = d.output::<BatchResult<u32>>();
    assert_eq!(
        batch.completion_reason,
        CompletionReason::FailureToleranceExceeded
    );
    assert_eq!(
        (
            batch.success_count(),
            batch.failure_count(),
            batch.total_count()
        ),
        (1, 1, 2)
    );
    assert_eq!(batch.items[2].status, ItemStatus::NotStarted);
    assert!(batch.errors()[0].message.contains("broken"));
    assert!(
        types(&d.journal)
            .iter()
            .filter(|t| **t == "context_completed")
            .count()
            >= 2
    );
}

#[test]
fn a_bad_concurrency_limit_fails_before_anything_is_recorded() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut d = Driver::start(
        "bad",
        mapping(3, 0, CompletionConfig::all_completed(), runs),
        &(),
    );
    let failure = d.failure();
    assert!(
        failure.message.contains("max_concurrency"),
        "{}",
        failure.message
    );
    assert_eq!(
        types(&d.take_new()),
        vec!["workflow_started", "workflow_failed"]
    );
}

#[test]
fn parallel_runs_each_branch_in_its_own_context() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let batch = ctx
            .parallel(
                "both",
                vec![
                    branch(|c: WorkflowContext| async move { c.activity::<String>("a", &1).await }),
                    branch(|_c: WorkflowContext| async move { Ok("inline".to_owned()) }),
                ],
            )
            .await?;
        batch.into_result().map_err(WorkflowError::Context)
    });
    let mut d = Driver::start("par", wf, &());
    assert_eq!(scheduled(&d.take_new()), vec!["0.0.0"]);
    assert!(d.deliver(activity_completed("0.0.0", &"remote".to_owned())));
    assert_eq!(
        d.output::<Vec<String>>(),
        vec!["remote".to_owned(), "inline".to_owned()]
    );
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn map_batched_runs_one_context_per_batch_of_items() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let batcher = duraflow_core::ItemBatcher::new(Some(2), None).unwrap();
        let batch = ctx
            .map_batched(
                "sums",
                (1..=5u32).collect(),
                &batcher,
                |c: WorkflowContext, items: Vec<u32>, index| async move {
                    c.step("sum", move |_| {
                        let items = items.clone();
                        async move { Ok(items.iter().sum::<u32>() * 100 + index as u32) }
                    })
                    .await
                },
            )
            .await?;
        batch.into_result().map_err(WorkflowError::Context)
    });
    let d = Driver::start("batched", wf, &());
    // [1, 2], [3, 4], [5]: three batches.
    assert_eq!(d.output::<Vec<u32>>(), vec![300, 701, 502]);
    assert_clean_replay(&d.check(), d.outcome().unwrap());
}

#[test]
fn a_bad_item_batcher_fails_before_anything_is_recorded() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let batcher = duraflow_core::ItemBatcher {
            max_items: Some(0),
            max_bytes: None,
        };
        ctx.map_batched(
            "bad",
            vec![1u32],
            &batcher,
            |_c: WorkflowContext, _items: Vec<u32>, _| async move { Ok(0u32) },
        )
        .await?;
        Ok::<_, WorkflowError>(())
    });
    let mut d = Driver::start("bad-batcher", wf, &());
    let failure = d.failure();
    assert!(
        failure.message.contains("misconfigured"),
        "{}",
        failure.message
    );
    assert_eq!(
        types(&d.take_new()),
        vec!["workflow_started", "workflow_failed"]
    );
}
