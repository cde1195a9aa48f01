//! Reference cases, section `map` (9-x) of `durable-functions-behaviours.md`: each case as a
//! test named after its id, on the memory and SQLite stores under virtual time, comparing the
//! journal record by record (see `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - The map and each item are child contexts: `context_started 0 <name>`, and
//!   `context_started 0.i <name>[i]` for item `i`, with the item's operations inside it
//!   (`0.i.0`...). The map's `context_completed` carries the whole `BatchResult`.
//! - `total_count` counts the started items (succeeded, failed or cancelled), as R10 says.
//!   Completion reasons are written as AWS's names for the comparison.
//! - Turn boundaries (`‖`) are not journaled: a suspension is checked by the journal standing
//!   still at that record with the instance running, until the test moves the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use df_support::{assert_recs, finished, on_both_stores, suspended_at};
use duraflow::prelude::*;
use duraflow::CompletionReason;
use serde_json::json;

/// AWS's name of a completion reason.
fn reason(r: CompletionReason) -> &'static str {
    match r {
        CompletionReason::AllCompleted => "ALL_COMPLETED",
        CompletionReason::MinSuccessfulReached => "MIN_SUCCESSFUL_REACHED",
        CompletionReason::FailureToleranceExceeded => "FAILURE_TOLERANCE_EXCEEDED",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_9_1_one_step_per_item() {
    on_both_stores(
        |b| {
            b.workflow(
                "map",
                |ctx: WorkflowContext, items: Vec<String>| async move {
                    let r = ctx
                        .map(
                            "map",
                            items,
                            |c: WorkflowContext, item: String, _| async move {
                                c.step("greet", move |_| {
                                    let out = format!("Hello, {item}!");
                                    async move { Ok(out) }
                                })
                                .await
                            },
                        )
                        .max_concurrency(1)
                        .await?;
                    Ok(r.results().into_iter().cloned().collect::<Vec<String>>())
                },
            )
        },
        |rig| async move {
            let id = rig.client.start("map", &["World", "Kiro"]).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), json!(["Hello, World!", "Hello, Kiro!"]));
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 map",
                    "context_started 0.0 map[0]",
                    "step_started 0.0.0 greet",
                    "step_completed 0.0.0 \"Hello, World!\"",
                    "context_completed 0.0 \"Hello, World!\"",
                    "context_started 0.1 map[1]",
                    "step_started 0.1.0 greet",
                    "step_completed 0.1.0 \"Hello, Kiro!\"",
                    "context_completed 0.1 \"Hello, Kiro!\"",
                    "context_completed 0 *",
                    "workflow_completed [\"Hello, World!\",\"Hello, Kiro!\"]",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_9_3_item_and_index() {
    on_both_stores(
        |b| {
            b.workflow(
                "indexed",
                |ctx: WorkflowContext, items: Vec<u64>| async move {
                    let r = ctx
                        .map("indexed", items, |_, item: u64, i| async move {
                            Ok(item + i as u64)
                        })
                        .max_concurrency(1)
                        .await?;
                    Ok(r.results().into_iter().copied().collect::<Vec<u64>>())
                },
            )
        },
        |rig| async move {
            let id = rig.client.start("indexed", &[10, 20, 30]).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), json!([10, 21, 32]));
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    "context_started 0 indexed",
                    "context_started 0.0 indexed[0]",
                    "context_completed 0.0 10",
                    "context_started 0.1 indexed[1]",
                    "context_completed 0.1 21",
                    "context_started 0.2 indexed[2]",
                    "context_completed 0.2 32",
                    "context_completed 0 *",
                    "workflow_completed [10,21,32]",
                ],
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_9_4_empty_items_list() {
    on_both_stores(
        |b| {
            b.workflow(
                "empty",
                |ctx: WorkflowContext, items: Vec<String>| async move {
                    let r = ctx
                        .map("empty", items, |_, item: String, _| async move { Ok(item) })
                        .await?;
                    Ok(json!({
                        "results": r.results(),
                        "completionReason": reason(r.completion_reason),
                        "totalCount": r.total_count(),
                    }))
                },
            )
        },
        |rig| async move {
            let id = rig
                .client
                .start("empty", &Vec::<String>::new())
                .await
                .unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(
                out.unwrap(),
                json!({"results": [], "completionReason": "ALL_COMPLETED", "totalCount": 0})
            );
            // The parent's records are there even with nothing to map.
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
async fn map_9_7_min_successful_early_completion() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("min-successful", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    let r = ctx
                        .map(
                            "min-successful",
                            vec!["i0", "i1", "i2", "i3"],
                            move |_, _: &str, _| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                async { Ok("const".to_owned()) }
                            },
                        )
                        .max_concurrency(1)
                        .completion(CompletionConfig::min_successful(2))
                        .await?;
                    Ok(json!({
                        "completionReason": reason(r.completion_reason),
                        "successCount": r.success_count(),
                        "totalCount": r.total_count(),
                    }))
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("min-successful", &()).await.unwrap();
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(
                    out.unwrap(),
                    json!({"completionReason": "MIN_SUCCESSFUL_REACHED", "successCount": 2,
                           "totalCount": 2})
                );
                // Items 2 and 3 never started.
                assert_recs(
                    &rig.backend,
                    &journal,
                    &[
                        "workflow_started",
                        "context_started 0 min-successful",
                        "context_started 0.0 min-successful[0]",
                        "context_completed 0.0 \"const\"",
                        "context_started 0.1 min-successful[1]",
                        "context_completed 0.1 \"const\"",
                        "context_completed 0 *",
                        "workflow_completed *",
                    ],
                );
                assert_eq!(runs.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_9_17_wait_after_successful_map() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    on_both_stores(
        |b| {
            let runs = r.clone();
            b.workflow("then-wait", move |ctx: WorkflowContext, _: ()| {
                let runs = runs.clone();
                async move {
                    let r = ctx
                        .map("then-wait", vec!["a", "b"], move |_, item: &str, _| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            let out = item.to_uppercase();
                            async move { Ok(out) }
                        })
                        .max_concurrency(1)
                        .await?;
                    ctx.sleep(Duration::from_secs(1)).await?;
                    Ok(r.results().into_iter().cloned().collect::<Vec<String>>())
                }
            })
        },
        |rig| {
            let runs = runs.clone();
            async move {
                runs.store(0, Ordering::SeqCst);
                let id = rig.client.start("then-wait", &()).await.unwrap();
                let before = [
                    "workflow_started",
                    "context_started 0 then-wait",
                    "context_started 0.0 then-wait[0]",
                    "context_completed 0.0 \"A\"",
                    "context_started 0.1 then-wait[1]",
                    "context_completed 0.1 \"B\"",
                    "context_completed 0 *",
                    "timer_created 1 1000ms",
                ];
                suspended_at(&rig, id.as_ref(), &before).await;
                rig.clock.advance(Duration::from_secs(1));
                let (out, journal) = finished(&rig, id.as_ref()).await;
                assert_eq!(out.unwrap(), json!(["A", "B"]));
                let mut all = before.to_vec();
                all.extend(["timer_fired 1", "workflow_completed [\"A\",\"B\"]"]);
                assert_recs(&rig.backend, &journal, &all);
                // The second turn took the map's result from its record: no item ran again.
                assert_eq!(runs.load(Ordering::SeqCst), 2, "[{}]", rig.backend);
            }
        },
    )
    .await;
}
