//! Typed workflows and activities: registered through the `Workflow` and `Activity` traits,
//! scheduled with `ctx.call` and started with `start_typed`, so input and output types are
//! checked at compile time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use common::virtual_clock;
use duraflow::prelude::*;
use duraflow::EventKind;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Invoice {
    customer: String,
    lines: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    customer: String,
    total: u64,
    reference: String,
}

/// Adds up invoice lines, with a configurable tax rate held by the activity value itself.
struct SumLines {
    tax_percent: u64,
}

impl ActivitySignature for SumLines {
    const NAME: &'static str = "sum-lines";
    type Input = Vec<u64>;
    type Output = u64;
}

impl Activity for SumLines {
    async fn run(&self, _ctx: ActivityContext, lines: Vec<u64>) -> Result<u64, ActivityError> {
        if lines.is_empty() {
            return Err(ActivityError::terminal(
                "an invoice needs at least one line",
            ));
        }
        let net: u64 = lines.iter().sum();
        Ok(net + net * self.tax_percent / 100)
    }
}

/// Bills an invoice: sums it through the typed activity and issues a receipt.
struct Bill {
    prefix: &'static str,
}

impl Workflow for Bill {
    const NAME: &'static str = "bill";
    type Input = Invoice;
    type Output = Receipt;

    async fn run(&self, ctx: WorkflowContext, invoice: Invoice) -> Result<Receipt, WorkflowError> {
        let total = ctx.call::<SumLines>(&invoice.lines).await?;
        Ok(Receipt {
            customer: invoice.customer,
            total,
            reference: format!("{}-{}", self.prefix, ctx.instance_id()),
        })
    }
}

async fn engine() -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .clock(virtual_clock())
        .register_workflow(Bill { prefix: "INV" })
        .register_activity(SumLines { tax_percent: 10 })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_workflow_calls_a_typed_activity() {
    let engine = engine().await;
    let client = engine.client();
    let invoice = Invoice {
        customer: "ada".into(),
        lines: vec![100, 250, 650],
    };
    let run = client
        .start_typed::<Bill>(&invoice)
        .id("b-1")
        .await
        .unwrap();
    let receipt = run.wait().timeout(common::DEADLINE).await.unwrap();
    assert_eq!(
        receipt,
        Receipt {
            customer: "ada".into(),
            total: 1100,
            reference: "INV-b-1".into(),
        }
    );
    let info = client.status(&run).await.unwrap();
    assert_eq!(info.name, "bill");
    let journal = client.history(&run, None).await.unwrap();
    assert!(journal.iter().any(|e| matches!(
        &e.kind,
        EventKind::ActivityScheduled { name, .. } if name == "sum-lines"
    )));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_activity_error_reaches_the_typed_workflow() {
    let engine = engine().await;
    let client = engine.client();
    let run = client
        .start_typed::<Bill>(&Invoice {
            customer: "bob".into(),
            lines: vec![],
        })
        .await
        .unwrap();
    let failure = common::failure_of(&client, &run.id).await;
    assert_eq!(failure.kind, duraflow::FailureKind::ActivityTerminal);
    assert_eq!(failure.message, "an invoice needs at least one line");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_names_are_checked_like_plain_ones() {
    // Registering the same typed workflow twice is refused.
    let err = Engine::builder()
        .store(MemoryStore::new())
        .register_workflow(Bill { prefix: "A" })
        .register_workflow(Bill { prefix: "B" })
        .start()
        .await
        .err()
        .expect("a duplicate name is refused");
    assert!(matches!(
        err,
        duraflow::EngineError::DuplicateName { kind: "workflow", ref name } if name == "bill"
    ));
    let err = Engine::builder()
        .store(MemoryStore::new())
        .register_activity(SumLines { tax_percent: 0 })
        .activity("sum-lines", |_ctx: ActivityContext, _: ()| async {
            Ok::<u64, ActivityError>(0)
        })
        .start()
        .await
        .err()
        .expect("a duplicate name is refused");
    assert!(matches!(
        err,
        duraflow::EngineError::DuplicateName {
            kind: "activity",
            ..
        }
    ));
}
