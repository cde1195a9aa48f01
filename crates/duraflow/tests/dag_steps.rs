//! DAG runs on the engine: parallel steps, a step that fails for good (and the siblings it
//! cancels), a decision that names no target, and a batch of 1,000 items.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, DEADLINE};
use dag_support::{assert_replays, on, run_dag, start_inline};
use duraflow::dag::run::{self, dag_status, DagReport, DagStart, WORKFLOW_NAME};
use duraflow::dag::{Backoff, Registry, RetrySpec, RunState, Step, StepState, Template};
use duraflow::prelude::*;
use futures::future::BoxFuture;
use serde_json::{json, Value};

fn engine() -> EngineBuilder {
    run::register(on(MemoryStore::new()), Arc::new(Registry::default()))
}

fn ok(
    value: Value,
) -> impl Fn(ActivityContext, Value) -> futures::future::Ready<Result<Value, ActivityError>>
       + Send
       + Sync
       + 'static {
    move |_, _| futures::future::ready(Ok(value.clone()))
}

/// An activity that counts its starts, waits until it is cancelled, and counts that.
fn until_cancelled(
    started: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
) -> impl Fn(ActivityContext, Value) -> BoxFuture<'static, Result<Value, ActivityError>>
       + Send
       + Sync
       + 'static {
    move |ctx, _| {
        let (s, c) = (started.clone(), cancelled.clone());
        Box::pin(async move {
            s.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            c.fetch_add(1, Ordering::SeqCst);
            Err(ActivityError::retryable("cancelled"))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_steps_of_a_diamond_run_at_once() {
    let template = Template::builder("t", "diamond", "1")
        .step(Step::new("a", "first"))
        .step(Step::new("b", "middle").depends_on(["a"]))
        .step(Step::new("c", "middle").depends_on(["a"]))
        .step(
            Step::new("d", "last")
                .depends_on(["b", "c"])
                .input("b", "$.steps.b.result".parse().unwrap()),
        )
        .build();
    // Each middle step waits for the other to be running too: run one after the other, they
    // would time out.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let engine = engine()
        .activity("first", ok(json!(1)))
        .activity("middle", move |_ctx: ActivityContext, _: Value| {
            let barrier = barrier.clone();
            async move {
                match tokio::time::timeout(DEADLINE, barrier.wait()).await {
                    Ok(_) => Ok(json!("together")),
                    Err(_) => Err(ActivityError::terminal("the other middle step never ran")),
                }
            }
        })
        .activity("last", |_ctx: ActivityContext, input: Value| async move {
            Ok::<_, ActivityError>(input)
        })
        .start()
        .await
        .unwrap();
    let start = DagStart::inline(template, json!({}));
    let report = run_dag(&engine.client(), &start).await.unwrap();
    assert_eq!(report.results["d"], json!({"b": "together"}));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_for_good_fails_the_run_and_cancels_its_siblings() {
    let retry = RetrySpec {
        max_attempts: 3,
        backoff: Backoff::Fixed,
        interval_ms: 0,
        max_interval_ms: 0,
        jitter: 0.0,
    };
    let template = Template::builder("t", "fails", "1")
        .step(Step::new("a", "first"))
        .step(Step::new("boom", "boom").depends_on(["a"]).retry(retry))
        .step(Step::new("slow", "slow").depends_on(["a"]))
        .step(Step::new("after", "first").depends_on(["boom", "slow"]))
        .build();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (started, cancelled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, s, c) = (attempts.clone(), started.clone(), cancelled.clone());
    let engine = engine()
        .activity("first", ok(json!(1)))
        .activity("boom", move |_ctx: ActivityContext, _: Value| {
            let a = a.clone();
            let s = s.clone();
            async move {
                // Fail only once the sibling runs, so that there is something to cancel.
                while s.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                a.fetch_add(1, Ordering::SeqCst);
                Err::<Value, _>(ActivityError::retryable("out of order"))
            }
        })
        .activity("slow", until_cancelled(started, cancelled))
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = start_inline(&client, template).await;
    let err = client
        .wait::<DagReport>(&run)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("step `boom` failed for good"), "{err}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "every attempt of the policy ran"
    );
    eventually("the sibling in flight to be cancelled", || async {
        (c.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let status = dag_status(&client, &run.id).await.unwrap();
    assert_eq!(status.state, RunState::Error);
    assert_eq!(status.steps["boom"].state, StepState::Error);
    assert_eq!(status.steps["boom"].attempts, 3);
    assert_eq!(status.steps["slow"].state, StepState::Cancelled);
    assert_eq!(status.steps["after"].state, StepState::Pending);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_naming_an_undeclared_target_fails_its_step() {
    let template = Template::builder("t", "decide", "1")
        .step(Step::new("pick", "pick").decision(["x", "y"]))
        .step(Step::new("x", "first").depends_on(["pick"]))
        .step(Step::new("y", "first").depends_on(["pick"]))
        .build();
    let engine = engine()
        .activity("pick", ok(json!(["z"])))
        .activity("first", ok(json!(1)))
        .start()
        .await
        .unwrap();
    let start = DagStart::inline(template, json!({}));
    let err = run_dag(&engine.client(), &start).await.unwrap_err();
    assert!(
        err.contains("chose `z`, which is not one of its targets [x, y]"),
        "{err}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_a_thousand_items_converges_in_order_and_replays() {
    let template = Template::builder("t", "batch", "1")
        .step(
            Step::new("list", "list")
                .input("n", "$.input.n".parse().unwrap())
                .batch("double", 0),
        )
        .step(Step::new("sum", "sum").depends_on(["list"]).convergence())
        .build();
    let registry = Arc::new(Registry::default());
    let engine = run::register(on(MemoryStore::new()), registry.clone())
        .activity("list", |_ctx: ActivityContext, input: Value| async move {
            let n = input["n"].as_u64().unwrap_or(0);
            Ok::<_, ActivityError>(json!((0..n).collect::<Vec<_>>()))
        })
        .activity("double", |_ctx: ActivityContext, item: Value| async move {
            Ok::<_, ActivityError>(json!(item.as_u64().unwrap_or(0) * 2))
        })
        .activity("sum", |_ctx: ActivityContext, input: Value| async move {
            Ok::<_, ActivityError>(input["results"].clone())
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client
        .start(
            WORKFLOW_NAME,
            &DagStart::inline(template, json!({ "n": 1000 })),
        )
        .id("batch")
        .await
        .unwrap();
    let report: DagReport = client.wait(&run).await.unwrap();
    let expected: Vec<u64> = (0..1000).map(|i| i * 2).collect();
    assert_eq!(report.results["sum"], json!(expected));
    assert_eq!(report.steps.len(), 1002);

    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_fails_the_run_with_a_timeout() {
    let clock = common::virtual_clock();
    let template = Template::builder("t", "slow", "1")
        .step(
            Step::new("wait", "wait")
                .timeout_ms(1_000)
                .retry(RetrySpec::none()),
        )
        .build();
    let started = Arc::new(AtomicUsize::new(0));
    let builder = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone());
    let engine = run::register(builder, Arc::new(Registry::default()))
        .activity(
            "wait",
            until_cancelled(started.clone(), Arc::new(AtomicUsize::new(0))),
        )
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = start_inline(&client, template).await;
    eventually("the step to start", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(2));
    let err = client
        .wait::<DagReport>(&run)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step `wait` failed for good") && err.contains("attempt timed out after 1s"),
        "{err}"
    );
    assert_eq!(started.load(Ordering::SeqCst), 1, "no retry");
    engine.shutdown().await;
}
