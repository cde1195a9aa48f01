//! Bad input, undecodable results, failed operations and panics end the run as failed with a
//! clear failure; none of them escapes as a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use duraflow_core::{
    workflow_fn, EventKind, Failure, FailureKind, Outcome, WorkflowContext, WorkflowError,
    WorkflowFn,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Invoice {
    number: u32,
    lines: Vec<String>,
}

fn invoice_workflow() -> WorkflowFn {
    workflow_fn(|ctx: WorkflowContext, invoice: Invoice| async move {
        let total: u32 = ctx.activity("total", &invoice.lines).await?;
        Ok::<_, WorkflowError>(total)
    })
}

fn assert_last_event_is_failure(run: &Driver, failure: &Failure) {
    assert_eq!(
        run.journal.last().map(|e| &e.kind),
        Some(&EventKind::WorkflowFailed {
            failure: Box::new(failure.clone())
        })
    );
}

#[test]
fn an_input_that_does_not_decode_fails_with_a_payload_failure_naming_the_type() {
    let run = Driver::start("bad-1", invoice_workflow(), &"not an invoice");
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(
        failure
            .message
            .contains(&format!("the input of workflow {WF:?} is invalid")),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("Invoice"), "{}", failure.message);
    assert_eq!(
        types(&run.journal),
        vec!["workflow_started", "workflow_failed"]
    );
    assert_last_event_is_failure(&run, &failure);
    assert_clean_replay(&run.check(), &Outcome::Failed(failure));
}

#[test]
fn an_activity_output_the_workflow_cannot_decode_fails_with_a_payload_failure_naming_it() {
    let mut run = Driver::start(
        "bad-2",
        invoice_workflow(),
        &Invoice {
            number: 1,
            lines: vec!["x".into()],
        },
    );
    assert!(run.deliver(activity_completed("0", &"forty-two")));
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(
        failure.message.contains("activity \"total\" (op 0)"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("u32"), "{}", failure.message);
    assert!(failure.message.contains("forty-two"), "{}", failure.message);
    assert_last_event_is_failure(&run, &failure);
    assert_clean_replay(&run.check(), &Outcome::Failed(failure));
}

#[test]
fn a_failed_activity_fails_the_workflow_with_the_activity_failure() {
    let mut run = Driver::start(
        "bad-3",
        invoice_workflow(),
        &Invoice {
            number: 1,
            lines: vec![],
        },
    );
    let activity_failure = Failure::new(FailureKind::RetriesExhausted, "db down")
        .at("activity \"total\"", &op("0"))
        .with_attempts(3);
    assert!(run.deliver(EventKind::ActivityFailed {
        op: op("0"),
        failure: Box::new(activity_failure.clone())
    }));
    assert_eq!(run.failure(), activity_failure);
    assert_clean_replay(&run.check(), &Outcome::Failed(activity_failure));
}

#[test]
fn a_failed_child_is_reported_as_a_child_failure() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let out: u32 = ctx.child_workflow("sub", &()).await?;
        Ok::<_, WorkflowError>(out)
    });
    let mut run = Driver::start("bad-4", wf, &());
    assert_eq!(run.run.open_children(), vec!["bad-4:child:0".to_owned()]);
    let child_failure = Failure::new(FailureKind::Application, "child broke");
    assert!(run.deliver(EventKind::ChildFailed {
        op: op("0"),
        failure: Box::new(child_failure)
    }));
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::ChildFailed);
    assert_eq!(failure.message, "child broke");
    assert!(run.run.open_children().is_empty());
}

fn assert_panic_failure(run: &Driver, text: &str) {
    let failure = run.failure();
    assert_eq!(failure.kind, duraflow_core::FailureKind::Panic, "{failure}");
    assert!(failure.message.contains(text), "{}", failure.message);
    assert!(failure.message.contains("panicked"), "{}", failure.message);
    assert_last_event_is_failure(run, &failure);
    // Replaying the journal panics the same way and agrees with it.
    assert_clean_replay(&run.check(), &Outcome::Failed(failure));
}

#[test]
fn a_workflow_that_panics_on_its_first_poll_fails_with_the_panic_text() {
    let wf = workflow_fn(|_ctx: WorkflowContext, n: u32| async move {
        if n > 0 {
            panic!("boom with {n} on first poll");
        }
        Ok::<_, WorkflowError>(())
    });
    let run = Driver::start("panic-1", wf, &3u32);
    assert_panic_failure(&run, "boom with 3 on first poll");
}

#[test]
fn a_workflow_function_that_panics_before_returning_its_future_fails_with_the_panic_text() {
    let wf = workflow_fn(|_ctx: WorkflowContext, _: ()| {
        panic!("panic while creating the future");
        #[allow(unreachable_code)]
        async move {
            Ok::<_, WorkflowError>(())
        }
    });
    let run = Driver::start("panic-2", wf, &());
    assert_panic_failure(&run, "panic while creating the future");
}

#[test]
fn a_workflow_that_panics_after_a_delivery_fails_with_the_panic_text() {
    let wf = workflow_fn(|ctx: WorkflowContext, _: ()| async move {
        let v: u32 = ctx.activity("a", &()).await?;
        assert!(v < 10, "value {v} is too large");
        Ok::<_, WorkflowError>(v)
    });
    let mut run = Driver::start("panic-3", wf, &());
    assert!(run.deliver(activity_completed("0", &11)));
    assert_panic_failure(&run, "value 11 is too large");
}

/// A user's own error type, to show that `?` takes any `std::error::Error`.
#[derive(Debug)]
struct OutOfStock(String);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is out of stock", self.0)
    }
}

impl std::error::Error for OutOfStock {}

#[test]
fn question_mark_on_an_ordinary_error_fails_the_workflow_with_an_application_error() {
    // A serde error.
    let parse = workflow_fn(|_ctx: WorkflowContext, text: String| async move {
        let n: u32 = serde_json::from_str(&text)?;
        Ok::<_, WorkflowError>(n)
    });
    let run = Driver::start("q-1", parse, &"not a number");
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::Application);
    assert!(failure.message.contains("expected"), "{}", failure.message);
    assert_last_event_is_failure(&run, &failure);

    // An I/O error and a user's error type.
    let stock = workflow_fn(|_ctx: WorkflowContext, item: String| async move {
        if item == "io" {
            std::fs::read("/this/path/does/not/exist")?;
        }
        Err::<(), _>(OutOfStock(item))?;
        Ok::<_, WorkflowError>(())
    });
    let run = Driver::start("q-2", stock.clone(), &"io");
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::Application);
    assert!(
        failure.message.contains("No such file"),
        "{}",
        failure.message
    );
    let run = Driver::start("q-3", stock, &"widget");
    let failure = run.failure();
    assert_eq!(failure.kind, FailureKind::Application);
    assert_eq!(failure.message, "widget is out of stock");
    assert_clean_replay(&run.check(), &Outcome::Failed(failure));
}
