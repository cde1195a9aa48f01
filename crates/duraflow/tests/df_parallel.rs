//! Reference cases, section `parallel` (8-x) of `durable-functions-behaviours.md`: each case as
//! a test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - The parallel operation and each branch are child contexts: `context_started 0 <name>`,
//!   and `context_started 0.i <name>[i]` for branch `i`, with the branch's operations inside
//!   it (`0.i.0`...). The parent's `context_completed` carries the whole `BatchResult`
//!   (every branch's status and result or error, and the completion reason).
//! - `total_count` counts the started branches (succeeded, failed or cancelled), as R10 says;
//!   the batch's size is `items.len()`. Completion reasons are `CompletionReason` values
//!   (`AllCompleted`, `MinSuccessfulReached`, `FailureToleranceExceeded`), written here as
//!   AWS's names for the comparison with the case's expected result.
//! - Turn boundaries (`‖`) are not journaled.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use df_support::{assert_recs, finished, on_both_stores};
use duraflow::prelude::*;
use duraflow::{BatchStatus, Branch, CompletionReason};
use serde_json::{json, Value};

/// AWS's name of a completion reason.
fn reason(r: CompletionReason) -> &'static str {
    match r {
        CompletionReason::AllCompleted => "ALL_COMPLETED",
        CompletionReason::MinSuccessfulReached => "MIN_SUCCESSFUL_REACHED",
        CompletionReason::FailureToleranceExceeded => "FAILURE_TOLERANCE_EXCEEDED",
    }
}

/// AWS's name of a batch status.
fn status(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Succeeded => "SUCCEEDED",
        BatchStatus::Failed => "FAILED",
    }
}

/// A branch that returns `value` at once (no operation inside).
fn ok(value: &str) -> Branch<String> {
    let value = value.to_owned();
    branch(move |_: WorkflowContext| async move { Ok(value) })
}

/// A branch that fails at once.
fn fail() -> Branch<String> {
    branch(|_: WorkflowContext| async { Err(WorkflowError::application("branch failed")) })
}

/// The summary the cases return.
fn summary(r: &BatchResult<String>) -> Value {
    json!({
        "completionReason": reason(r.completion_reason),
        "status": status(r.status()),
        "successCount": r.success_count(),
        "failureCount": r.failure_count(),
        "totalCount": r.total_count(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_8_1_two_branches_each_a_step() {
    on_both_stores(
        |b| {
            b.workflow("parallel", |ctx: WorkflowContext, _: ()| async move {
                let task = |out: &'static str| {
                    branch(move |c: WorkflowContext| async move {
                        c.step("task", move |_| async move { Ok(out.to_owned()) })
                            .await
                    })
                };
                let r = ctx
                    .parallel("parallel", vec![task("task-1"), task("task-2")])
                    .max_concurrency(1)
                    .await?;
                Ok(r.results().into_iter().cloned().collect::<Vec<String>>())
            })
        },
        |rig| async move {
            let id = rig.client.start("parallel", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), json!(["task-1", "task-2"]));
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 parallel",
                    "context_started 0.0 parallel[0]",
                    "step_started 0.0.0 task",
                    "step_completed 0.0.0 \"task-1\"",
                    "context_completed 0.0 \"task-1\"",
                    "context_started 0.1 parallel[1]",
                    "step_started 0.1.0 task",
                    "step_completed 0.1.0 \"task-2\"",
                    "context_completed 0.1 \"task-2\"",
                    "context_completed 0 *",
                    "workflow_completed [\"task-1\",\"task-2\"]",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_8_5_empty_branch_list() {
    on_both_stores(
        |b| {
            b.workflow("empty", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx.parallel("empty", Vec::<Branch<String>>::new()).await?;
                Ok(json!({
                    "results": r.results(),
                    "completionReason": reason(r.completion_reason),
                    "totalCount": r.total_count(),
                }))
            })
        },
        |rig| async move {
            let id = rig.client.start("empty", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(
                out.unwrap(),
                json!({"results": [], "completionReason": "ALL_COMPLETED", "totalCount": 0})
            );
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 empty",
                    "context_completed 0 *",
                    "workflow_completed *",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_8_6_fail_fast() {
    on_both_stores(
        |b| {
            b.workflow("failfast", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .parallel("failfast", vec![ok("ok"), fail(), ok("never")])
                    .max_concurrency(1)
                    .completion(CompletionConfig::tolerated_failures(0))
                    .await?;
                Ok(summary(&r))
            })
        },
        |rig| async move {
            let id = rig.client.start("failfast", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            // The parallel returns normally; only started branches count.
            assert_eq!(
                out.unwrap(),
                json!({"completionReason": "FAILURE_TOLERANCE_EXCEEDED", "status": "FAILED",
                       "successCount": 1, "failureCount": 1, "totalCount": 2})
            );
            // Branch 2 never started; the parent succeeded.
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 failfast",
                    "context_started 0.0 failfast[0]",
                    "context_completed 0.0 \"ok\"",
                    "context_started 0.1 failfast[1]",
                    "context_failed 0.1 application",
                    "context_completed 0 *",
                    "workflow_completed *",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_8_8_min_successful_early_completion() {
    on_both_stores(
        |b| {
            b.workflow("min-successful", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .parallel("min-successful", vec![ok("a"), ok("b"), ok("c"), ok("d")])
                    .max_concurrency(1)
                    .completion(CompletionConfig::min_successful(2))
                    .await?;
                Ok(json!({
                    "completionReason": reason(r.completion_reason),
                    "successCount": r.success_count(),
                    "totalCount": r.total_count(),
                }))
            })
        },
        |rig| async move {
            let id = rig.client.start("min-successful", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(
                out.unwrap(),
                json!({"completionReason": "MIN_SUCCESSFUL_REACHED", "successCount": 2,
                       "totalCount": 2})
            );
            // Branches 2 and 3 never started.
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 min-successful",
                    "context_started 0.0 min-successful[0]",
                    "context_completed 0.0 \"a\"",
                    "context_started 0.1 min-successful[1]",
                    "context_completed 0.1 \"b\"",
                    "context_completed 0 *",
                    "workflow_completed *",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_8_20_batch_result_accessors() {
    on_both_stores(
        |b| {
            b.workflow("accessors", |ctx: WorkflowContext, _: ()| async move {
                let r = ctx
                    .parallel("accessors", vec![ok("a"), fail(), ok("c")])
                    .max_concurrency(1)
                    .completion(CompletionConfig::tolerated_failures(1))
                    .await?;
                Ok(json!({
                    "hasFailure": r.has_failure(),
                    "successCount": r.succeeded().len(),
                    "failureCount": r.failed().len(),
                    "errorCount": r.errors().len(),
                }))
            })
        },
        |rig| async move {
            let id = rig.client.start("accessors", &()).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(
                out.unwrap(),
                json!({"hasFailure": true, "successCount": 2, "failureCount": 1,
                       "errorCount": 1})
            );
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 accessors",
                    "context_started 0.0 accessors[0]",
                    "context_completed 0.0 \"a\"",
                    "context_started 0.1 accessors[1]",
                    "context_failed 0.1 application",
                    "context_started 0.2 accessors[2]",
                    "context_completed 0.2 \"c\"",
                    "context_completed 0 *",
                    "workflow_completed *",
                ],
            );
        },
    )
    .await;
}
