//! Typed calls: activities scheduled by their signature (`ctx.call::<A>`), child workflows
//! started and invoked by type (`ctx.child::<W>`, `ctx.invoke_typed::<W>`,
//! `ctx.start_child_typed::<W>`), and `client.start_typed::<W>` whose handle waits for a
//! `W::Output`. No output in this file carries a type annotation: each is inferred from the
//! signature, and the fields read from it would not compile otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::EventKind;
use serde::{Deserialize, Serialize};

/// What the workflows know of the activities: signatures only, from `duraflow-core`, as a
/// crate of workflows that does not depend on the runtime would declare them.
mod signatures {
    use duraflow::crates::core::ActivitySignature;
    use serde::{Deserialize, Serialize};

    /// Charges an amount; returns a receipt.
    pub(crate) struct Charge;

    impl ActivitySignature for Charge {
        const NAME: &'static str = "charge";
        type Input = u64;
        type Output = Receipt;
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Receipt {
        pub(crate) number: String,
        pub(crate) cents: u64,
    }
}

use signatures::{Charge, Receipt};

/// The worker's side: the code of `Charge`, failing its first attempt. `Charge` is another
/// module's type here as it would be another crate's, so the code is registered against the
/// signature with `activity_for` (the orphan rule would forbid `impl Activity for Charge` in
/// another crate).
async fn charge(
    attempts: Arc<AtomicU32>,
    ctx: ActivityContext,
    cents: u64,
) -> Result<Receipt, ActivityError> {
    attempts.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("the card network is busy"));
    }
    Ok(Receipt {
        number: format!("R-{cents}"),
        cents,
    })
}

/// Doubles a number.
struct Double;

impl Workflow for Double {
    const NAME: &'static str = "double";
    type Input = u64;
    type Output = u64;

    async fn run(&self, _ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
        Ok(2 * n)
    }
}

/// Describes a number.
struct Describe;

impl Workflow for Describe {
    const NAME: &'static str = "describe";
    type Input = u64;
    type Output = String;

    async fn run(&self, _ctx: WorkflowContext, n: u64) -> Result<String, WorkflowError> {
        Ok(format!("n={n}"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Summary {
    receipt: Receipt,
    doubled: u64,
    described: String,
    detached: String,
}

/// Uses every typed call.
struct Checkout;

impl Workflow for Checkout {
    const NAME: &'static str = "checkout";
    type Input = u64;
    type Output = Summary;

    async fn run(&self, ctx: WorkflowContext, cents: u64) -> Result<Summary, WorkflowError> {
        let receipt = ctx
            .call::<Charge>(&cents)
            .retry(RetryPolicy::exponential(Duration::from_millis(1)).max_attempts(3))
            .attempt_timeout(Duration::from_secs(60))
            .await?;
        let doubled = ctx.child::<Double>(&receipt.cents).await?;
        let described = ctx
            .invoke_typed::<Describe>(&doubled)
            .timeout(Duration::from_secs(3600))
            .await?;
        let detached = ctx
            .start_child_typed::<Double>(&1)
            .id(format!("{}-detached", ctx.instance_id()))
            .await?;
        Ok(Summary {
            receipt,
            doubled,
            described,
            detached,
        })
    }
}

async fn engine(attempts: &Arc<AtomicU32>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .register_workflow(Checkout)
        .register_workflow(Double)
        .register_workflow(Describe)
        .activity_for::<Charge>({
            let attempts = attempts.clone();
            move |ctx: ActivityContext, cents: u64| charge(attempts.clone(), ctx, cents)
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_infer_their_outputs() {
    let attempts = Arc::new(AtomicU32::new(0));
    let engine = engine(&attempts).await;
    let client = engine.client();
    let run = client
        .start_typed::<Checkout>(&250)
        .id("checkout-1")
        .await
        .unwrap();
    assert_eq!(run.id, "checkout-1");
    assert!(!run.existed);
    let summary = run.wait().timeout(common::DEADLINE).await.unwrap();
    // Field access compiles only because the output's type is known.
    assert_eq!(summary.receipt.number, "R-250");
    assert_eq!(summary.doubled, 500);
    assert_eq!(summary.described, "n=500");
    assert_eq!(summary.detached, "checkout-1-detached");
    // The retry policy set on the typed call applied: one failed attempt, then success.
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    let journal = client.history(&run, None).await.unwrap();
    let children: Vec<_> = journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ChildStarted { name, detached, .. } => Some((name.as_str(), *detached)),
            _ => None,
        })
        .collect();
    assert_eq!(
        children,
        [("double", false), ("describe", false), ("double", true)]
    );
    assert!(journal.iter().any(|e| matches!(
        &e.kind,
        EventKind::ActivityScheduled { name, .. } if name == "charge"
    )));
    let detached = client
        .wait_finished("checkout-1-detached", Some(common::DEADLINE))
        .await
        .unwrap();
    assert_eq!(detached.status, InstanceStatus::Completed);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_handle_is_a_run_handle() {
    let attempts = Arc::new(AtomicU32::new(0));
    let engine = engine(&attempts).await;
    let client = engine.client();
    let run = client.start_typed::<Double>(&21).id("d-1").await.unwrap();
    assert_eq!(run.wait().await.unwrap(), 42);
    assert_eq!(run.to_string(), "d-1");
    assert_eq!(client.status(&run).await.unwrap().name, "double");

    // Starting the id again returns the existing instance, typed the same way.
    let again = client.start_typed::<Double>(&5).id("d-1").await.unwrap();
    assert!(again.existed);
    assert_eq!(again.wait().await.unwrap(), 42);
    assert_eq!(again.clone().into_handle().id, run.handle().id);

    // Any option of the untyped start is reachable through `configure`.
    let err = client
        .start_typed::<Double>(&5)
        .configure(|start| start.id("d-1").if_exists(IfExists::Fail))
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::AlreadyExists("d-1".into()));
    engine.shutdown().await;
}

#[tokio::test]
async fn an_engine_without_a_store_says_what_to_do() {
    let err = Engine::builder()
        .register_workflow(Double)
        .start()
        .await
        .err()
        .expect("no store is refused");
    assert!(matches!(err, duraflow::EngineError::NoStore));
    let message = err.to_string();
    for hint in [
        "no store is set",
        "SqliteStore::open",
        "PostgresStore::connect",
        "DURAFLOW_DATABASE_URL",
        "MemoryStore::new()",
    ] {
        assert!(message.contains(hint), "{hint:?} missing from: {message}");
    }
}
