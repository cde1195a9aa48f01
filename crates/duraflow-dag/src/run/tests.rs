//! The run machine without an engine: results in, launches out.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use serde_json::{json, Value};

use super::machine::{Launch, Order, RunMachine};
use super::retry::AttemptFailure;
use super::workflow::prepare;
use crate::state::{RunState, StepState};
use crate::template::{Step, Template};

fn start(template: Template, input: Value) -> (RunMachine, Vec<Launch>) {
    let registered = prepare(&template, &input).unwrap();
    let (m, orders) = RunMachine::new(&registered, input, 0, 0);
    (m, launches(orders))
}

/// The launches among `orders` (panics on a timer: these tests expect none).
fn launches(orders: Vec<Order>) -> Vec<Launch> {
    orders
        .into_iter()
        .map(|o| match o {
            Order::Launch(l) => l,
            Order::Sleep { .. } => panic!("unexpected timer {o:?}"),
        })
        .collect()
}

fn handlers(launches: &[Launch]) -> Vec<&str> {
    launches.iter().map(|l| l.handler.as_str()).collect()
}

fn terminal(message: &str) -> AttemptFailure {
    AttemptFailure::terminal(message)
}

#[test]
fn a_batch_runs_at_most_its_concurrency_and_converges_in_item_order() {
    let template = Template::builder("t", "b", "1")
        .step(Step::new("list", "list").batch("work", 2))
        .step(Step::new("join", "join").depends_on(["list"]).convergence())
        .build();
    let (mut m, first) = start(template, json!({}));
    assert_eq!(handlers(&first), ["list"]);
    let workers = launches(m.succeeded(0, json!(["a", "b", "c"]), 1).unwrap());
    assert_eq!(handlers(&workers), ["work", "work"], "two at a time");
    assert_eq!(workers[0].input, json!("a"));
    // Worker 1 ends first: worker 2 starts.
    let next = launches(m.succeeded(workers[1].seq, json!("B"), 2).unwrap());
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].input, json!("c"));
    assert!(m.succeeded(next[0].seq, json!("C"), 3).unwrap().is_empty());
    let join = launches(m.succeeded(workers[0].seq, json!("A"), 4).unwrap());
    assert_eq!(join[0].input, json!({ "results": ["A", "B", "C"] }));
    assert!(m.succeeded(join[0].seq, json!(null), 5).unwrap().is_empty());
    assert!(m.is_finished());
    let report = m.report();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.steps["list[2]"].state, StepState::Complete);
}

#[test]
fn a_skippable_step_that_fails_is_skipped_and_its_dependents_run() {
    let template = Template::builder("t", "s", "1")
        .step(Step::new("maybe", "maybe").skippable())
        .step(
            Step::new("next", "next")
                .depends_on(["maybe"])
                .input("got", "$.steps.maybe.result".parse().unwrap()),
        )
        .build();
    let (mut m, first) = start(template, json!({}));
    let mut failure = terminal("no luck");
    failure.attempts = Some(4);
    let next = launches(m.failed(first[0].seq, &failure, 1).unwrap());
    assert_eq!(next[0].input, json!({ "got": null }));
    assert_eq!(m.report().steps["maybe"].state, StepState::Skipped);
    assert_eq!(
        m.report().steps["maybe"].attempts,
        4,
        "as the failure reported"
    );
}

#[test]
fn decisions_take_a_name_or_a_list_and_refuse_anything_else() {
    let template = || {
        Template::builder("t", "d", "1")
            .step(Step::new("pick", "pick").decision(["x", "y"]))
            .step(Step::new("x", "x").depends_on(["pick"]))
            .step(Step::new("y", "y").depends_on(["pick"]))
            .build()
    };
    let (mut m, _) = start(template(), json!({}));
    assert_eq!(
        handlers(&launches(m.succeeded(0, json!("y"), 1).unwrap())),
        ["y"]
    );
    assert_eq!(m.report().steps["x"].state, StepState::Skipped);

    let (mut m, _) = start(template(), json!({}));
    let both = launches(m.succeeded(0, json!(["x", "y"]), 1).unwrap());
    assert_eq!(handlers(&both), ["x", "y"]);

    for bad in [json!(3), json!([1]), json!(["x", "nope"])] {
        let (mut m, _) = start(template(), json!({}));
        let failed = m.succeeded(0, bad.clone(), 1).unwrap_err();
        assert!(
            failed.message.contains("step `pick` failed for good"),
            "{bad}: {failed:?}"
        );
        assert_eq!(m.report().state, RunState::Error);
    }
}

#[test]
fn a_failure_cancels_the_steps_in_flight_and_a_bad_batch_result_fails_its_step() {
    let template = Template::builder("t", "f", "1")
        .step(Step::new("a", "a"))
        .step(Step::new("b", "b").batch("w", 0))
        .build();
    let (mut m, first) = start(template, json!({}));
    assert_eq!(first.len(), 2);
    let failed = m.succeeded(1, json!({"not": "a list"}), 1).unwrap_err();
    assert!(failed.message.contains("JSON array of items"), "{failed:?}");
    let report = m.report();
    assert_eq!(report.steps["a"].state, StepState::Cancelled);
    assert_eq!(report.steps["b"].state, StepState::Error);
    // A result for a launch that never was is an error, not a panic.
    assert!(m.succeeded(99, json!(1), 2).is_err());
}

#[test]
fn inputs_are_mapped_from_the_run_input_and_upstream_results() {
    let template = Template::builder("t", "i", "1")
        .input_schema(json!({ "type": "object", "required": ["order"] }))
        .step(Step::new("a", "a").input("id", "$.input.order.id".parse().unwrap()))
        .step(
            Step::new("b", "b")
                .depends_on(["a"])
                .input("r", "$.steps.a.result.receipt".parse().unwrap())
                .input("missing", "$.input.nope".parse().unwrap()),
        )
        .build();
    assert!(
        prepare(&template, &json!({})).is_err(),
        "the schema is checked"
    );
    let (mut m, first) = start(template, json!({ "order": { "id": "o-1" } }));
    assert_eq!(first[0].input, json!({ "id": "o-1" }));
    let next = launches(m.succeeded(0, json!({ "receipt": "r-1" }), 1).unwrap());
    assert_eq!(next[0].input, json!({ "r": "r-1", "missing": null }));
}
