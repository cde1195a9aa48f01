//! A step with many dependencies: a dependency named twice counts once, and a join of a very
//! wide fan-out validates with every parent (validation keeps each step's parents in O(1) per
//! dependency; `duraflow-bench dag-readiness` measures its cost per step).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use duraflow_dag::{Readiness, Step, Template};

#[test]
fn a_dependency_named_twice_is_one_parent() {
    let template = Template::builder("t", "twice", "1")
        .step(Step::new("a", "h"))
        .step(Step::new("b", "h"))
        .step(Step::new("c", "h").depends_on(["a", "b", "a", "b", "a"]))
        .build();
    let dag = duraflow_dag::validate(&template, ["h"]).unwrap();
    let c = dag.id("c").unwrap();
    let parents: Vec<&str> = dag
        .parents(c)
        .iter()
        .map(|&p| dag.node(p).name.as_str())
        .collect();
    assert_eq!(parents, ["a", "b"]);
}

#[test]
fn a_join_of_fifty_thousand_steps_validates_and_runs_through() {
    let width = 50_000;
    let mut builder = Template::builder("t", "wide", "1").step(Step::new("root", "h"));
    let middle: Vec<String> = (0..width).map(|i| format!("m{i}")).collect();
    for name in &middle {
        builder = builder.step(Step::new(name, "h").depends_on(["root"]));
    }
    // Every dependency listed twice: still one parent each.
    let twice = middle.iter().chain(&middle).cloned();
    let template = builder
        .step(Step::new("join", "h").depends_on(twice))
        .build();
    let dag = duraflow_dag::validate(&template, ["h"]).unwrap();
    let join = dag.id("join").unwrap();
    assert_eq!(dag.parents(join).len(), width);

    let edges: usize = dag.ids().map(|id| dag.parents(id).len()).sum();
    let (mut tracker, mut ready) = Readiness::new(dag);
    while let Some(id) = ready.pop() {
        ready.extend(tracker.complete(id).unwrap().ready);
    }
    assert!(tracker.is_finished());
    assert_eq!(tracker.edge_visits(), edges);
}
