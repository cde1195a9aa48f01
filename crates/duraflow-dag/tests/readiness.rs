//! Ready-step discovery: decision skip propagation, batch expansion, the calls the tracker
//! refuses, and large graphs (correctness only; timing belongs to benchmarks).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::graph::Status;
use duraflow_dag::{Dag, NodeId, NodeKind, Readiness, ReadinessError, Step, Template};

fn dag(steps: Vec<Step>) -> Dag {
    let t = steps
        .into_iter()
        .fold(Template::builder("ns", "t", "1"), |b, s| b.step(s))
        .build();
    Dag::from_template(&t).unwrap()
}

/// The graph of a template that passes every validation rule.
fn validated(steps: Vec<Step>) -> Dag {
    let t = steps
        .into_iter()
        .fold(Template::builder("ns", "big", "1"), |b, s| b.step(s))
        .build();
    duraflow_dag::validate(&t, ["h"]).unwrap()
}

fn s(name: &str) -> Step {
    Step::new(name, "h")
}

fn names(r: &Readiness, ids: &[NodeId]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|&i| r.dag().node(i).name.clone()).collect();
    v.sort();
    v
}

#[test]
fn a_decision_skips_unchosen_targets_and_what_only_they_lead_to() {
    // d chooses between x and y; x -> x2 -> both; y -> y2 -> both; z follows x2 and an
    // independent step `side`, so it still runs when x is not chosen.
    let (mut r, ready) = Readiness::new(dag(vec![
        s("d").decision(["x", "y"]),
        s("x").depends_on(["d"]),
        s("y").depends_on(["d"]),
        s("x2").depends_on(["x"]),
        s("y2").depends_on(["y"]),
        s("both").depends_on(["x2", "y2"]),
        s("side"),
        s("z").depends_on(["x2", "side"]),
    ]));
    assert_eq!(names(&r, &ready), ["d", "side"]);
    let id = |r: &Readiness, n: &str| r.dag().id(n).unwrap();
    let d = id(&r, "d");
    let y = id(&r, "y");
    let p = r.decide(d, &[y]).unwrap();
    assert_eq!(names(&r, &p.ready), ["y"]);
    assert_eq!(names(&r, &p.skipped), ["x", "x2"]);
    assert_eq!(r.status(id(&r, "x2")), Status::Pruned);
    // `z` waits for `side`: one live parent is enough.
    let p = r.complete(id(&r, "side")).unwrap();
    assert_eq!(names(&r, &p.ready), ["z"]);
    let p = r.complete(y).unwrap();
    assert_eq!(names(&r, &p.ready), ["y2"]);
    let p = r.complete(id(&r, "y2")).unwrap();
    assert_eq!(names(&r, &p.ready), ["both"]);
    r.complete(id(&r, "both")).unwrap();
    assert!(!r.is_finished());
    r.complete(id(&r, "z")).unwrap();
    assert!(r.is_finished());
}

#[test]
fn a_decision_choosing_nothing_or_skipped_prunes_every_target() {
    for skip in [false, true] {
        let (mut r, _) = Readiness::new(dag(vec![
            s("d").decision(["x"]),
            s("x").depends_on(["d"]),
            s("after").depends_on(["x"]),
        ]));
        let d = r.dag().id("d").unwrap();
        let p = if skip { r.skip(d) } else { r.decide(d, &[]) }.unwrap();
        assert_eq!(names(&r, &p.skipped), ["after", "x"]);
        assert!(r.is_finished());
    }
}

#[test]
fn an_unchosen_target_with_other_parents_is_skipped_at_once() {
    let (mut r, _) = Readiness::new(dag(vec![
        s("d").decision(["x"]),
        s("slow"),
        s("x").depends_on(["d", "slow"]),
    ]));
    let p = r.decide(r.dag().id("d").unwrap(), &[]).unwrap();
    assert_eq!(names(&r, &p.skipped), ["x"]);
    // The other parent finishing later does not revive it.
    let p = r.complete(r.dag().id("slow").unwrap()).unwrap();
    assert!(p.ready.is_empty() && p.skipped.is_empty());
    assert!(r.is_finished());
}

#[test]
fn a_skipped_step_lets_its_children_run() {
    let (mut r, _) = Readiness::new(dag(vec![s("a").skippable(), s("b").depends_on(["a"])]));
    let p = r.skip(r.dag().id("a").unwrap()).unwrap();
    assert_eq!(names(&r, &p.ready), ["b"]);
}

#[test]
fn a_batch_expands_into_workers_that_the_convergence_step_waits_for() {
    let (mut r, _) = Readiness::new(dag(vec![
        s("split").batch("work", 2),
        s("join").depends_on(["split"]).convergence(),
        s("also").depends_on(["split"]),
    ]));
    let split = r.dag().id("split").unwrap();
    let join = r.dag().id("join").unwrap();
    let (p, workers) = r.complete_batch(split, 3).unwrap();
    assert_eq!(names(&r, &workers), ["split[0]", "split[1]", "split[2]"]);
    assert_eq!(
        names(&r, &p.ready),
        ["also", "split[0]", "split[1]", "split[2]"]
    );
    assert_eq!(r.dag().parents(join), workers.as_slice());
    assert_eq!(
        r.dag().node(workers[1]).kind,
        NodeKind::Worker {
            batch: split,
            item: 1
        }
    );
    assert_eq!(r.dag().node(workers[1]).step, r.dag().node(split).step);
    for (i, &w) in workers.iter().enumerate() {
        let p = r.complete(w).unwrap();
        assert_eq!(p.ready.contains(&join), i == 2);
    }
    r.complete(join).unwrap();
    r.complete(r.dag().id("also").unwrap()).unwrap();
    assert!(r.is_finished());
}

#[test]
fn an_empty_batch_goes_straight_to_its_convergence_step() {
    let (mut r, _) = Readiness::new(dag(vec![
        s("split").batch("work", 0),
        s("join").depends_on(["split"]).convergence(),
    ]));
    let (p, workers) = r.complete_batch(r.dag().id("split").unwrap(), 0).unwrap();
    assert!(workers.is_empty());
    assert_eq!(names(&r, &p.ready), ["join"]);
}

#[test]
fn the_tracker_refuses_calls_out_of_turn() {
    let (mut r, _) = Readiness::new(dag(vec![
        s("d").decision(["x"]),
        s("x").depends_on(["d"]),
        s("b").batch("w", 0),
        s("n"),
    ]));
    let id = |r: &Readiness, n: &str| r.dag().id(n).unwrap();
    let (d, x, b, n) = (id(&r, "d"), id(&r, "x"), id(&r, "b"), id(&r, "n"));
    assert!(matches!(
        r.complete(x),
        Err(ReadinessError::NotReady {
            status: Status::Waiting,
            ..
        })
    ));
    assert!(matches!(r.complete(d), Err(ReadinessError::IsADecision(_))));
    assert!(matches!(r.complete(b), Err(ReadinessError::IsABatch(_))));
    assert!(matches!(
        r.decide(n, &[]),
        Err(ReadinessError::NotADecision(_))
    ));
    assert!(matches!(
        r.decide(d, &[n]),
        Err(ReadinessError::NotATarget { .. })
    ));
    assert!(matches!(
        r.complete_batch(n, 1),
        Err(ReadinessError::NotABatch(_))
    ));
    assert!(matches!(
        r.complete(NodeId(99)),
        Err(ReadinessError::NoSuchNode(_))
    ));
    r.complete(n).unwrap();
    let e = r.complete(n).unwrap_err();
    assert!(e.to_string().contains("`n` is Done, not ready"), "{e}");
    r.complete_batch(b, 1).unwrap();
    let mut copy = r.dag().clone();
    assert!(matches!(
        copy.expand_batch(b, 1),
        Err(ReadinessError::AlreadyExpanded(_))
    ));
}

/// Runs a failure-free simulation, first ready first, and returns the start order. Checks
/// that the run followed each edge exactly once (linear work, no rescans).
fn run_all(dag: Dag) -> Vec<NodeId> {
    let edges: usize = dag.ids().map(|n| dag.children(n).len()).sum();
    let (mut r, mut ready) = Readiness::new(dag);
    let mut started = Vec::new();
    let mut next = 0;
    while let Some(&n) = ready.get(next) {
        next += 1;
        started.push(n);
        ready.extend(r.complete(n).unwrap().ready);
    }
    assert!(r.is_finished());
    assert_eq!(r.edge_visits(), edges);
    started
}

#[test]
fn a_ten_thousand_step_chain_runs_in_order() {
    let steps: Vec<Step> = (0..10_000)
        .map(|i| {
            let step = s(&format!("s{i}"));
            if i == 0 {
                step
            } else {
                step.depends_on([format!("s{}", i - 1)])
            }
        })
        .collect();
    let started = run_all(validated(steps));
    assert_eq!(started, (0..10_000).map(NodeId).collect::<Vec<_>>());
}

#[test]
fn a_ten_thousand_wide_fan_out_and_in_runs_every_step_once() {
    let mut steps = vec![s("root")];
    steps.extend((0..10_000).map(|i| s(&format!("w{i}")).depends_on(["root"])));
    steps.push(s("sink").depends_on((0..10_000).map(|i| format!("w{i}"))));
    let started = run_all(validated(steps));
    assert_eq!(started.len(), 10_002);
    assert_eq!(started[0], NodeId(0));
    assert_eq!(started[10_001], NodeId(10_001));
    let mut sorted = started.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10_002);
}
