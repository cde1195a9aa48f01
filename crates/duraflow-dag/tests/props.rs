//! Property tests on random graphs: cycle detection agrees with a brute-force check; a
//! failure-free run starts no step before its parents finish and runs every step exactly
//! once, following each edge once; decisions skip exactly the steps that no chosen path
//! leads to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use duraflow_dag::graph::Status;
use duraflow_dag::{validate, Dag, NodeId, NodeKind, Readiness, Step, Template, ValidationError};
use proptest::prelude::*;

/// A template with steps `s0..s{n-1}`, listed in `order`, `sI` depending on `sJ` for each
/// edge `(J, I)`; the steps in `decisions` are decision steps targeting all their children.
fn template(n: usize, edges: &[(usize, usize)], order: &[usize], decisions: &[usize]) -> Template {
    let steps = order.iter().map(|&i| {
        let step = Step::new(format!("s{i}"), "h").depends_on(
            edges
                .iter()
                .filter(|e| e.1 == i)
                .map(|e| format!("s{}", e.0)),
        );
        if decisions.contains(&i) {
            step.decision(
                edges
                    .iter()
                    .filter(|e| e.0 == i)
                    .map(|e| format!("s{}", e.1)),
            )
        } else {
            step
        }
    });
    assert_eq!(order.len(), n);
    steps
        .fold(Template::builder("p", "t", "1"), |b, s| b.step(s))
        .build()
}

/// Whether the graph has a cycle, by transitive closure (Floyd–Warshall).
fn cyclic(n: usize, edges: &[(usize, usize)]) -> bool {
    let mut reach = vec![vec![false; n]; n];
    for &(a, b) in edges {
        reach[a][b] = true;
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                reach[i][j] |= reach[i][k] && reach[k][j];
            }
        }
    }
    (0..n).any(|i| reach[i][i])
}

/// A small xorshift generator, seeded by proptest, to pick among ready and running steps.
struct Pick(u64);
impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn digraph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (1usize..9).prop_flat_map(|n| (Just(n), prop::collection::vec((0..n, 0..n), 0..n * 2)))
}

/// A random DAG (edges from lower to higher numbers), its steps listed in a random order.
fn dag_spec() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<usize>)> {
    (1usize..30).prop_flat_map(|n| {
        let edges = prop::collection::vec((0..n, 0..n), 0..n * 3).prop_map(|es| {
            let set: BTreeSet<(usize, usize)> = es
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            set.into_iter().collect::<Vec<_>>()
        });
        let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        (Just(n), edges, order)
    })
}

/// Runs the graph with steps started and finished in a random interleaving; a decision
/// chooses the children for which `chooses(decision, child)` holds. Checks that no step
/// starts before all its parents are resolved and that none starts twice. Returns the steps
/// that ran and the ones skipped, by number.
fn simulate(
    dag: Dag,
    seed: u64,
    chooses: impl Fn(usize, usize) -> bool,
) -> (BTreeSet<usize>, BTreeSet<usize>) {
    // Steps are named `s<number>`; the number is what the edges use.
    let index = |dag: &Dag, id: NodeId| dag.node(id).name[1..].parse::<usize>().unwrap();
    let edges: usize = dag.ids().map(|n| dag.children(n).len()).sum();
    let (mut r, mut ready) = Readiness::new(dag);
    let mut pick = Pick(seed | 1);
    let (mut running, mut ran, mut skipped) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
    while !ready.is_empty() || !running.is_empty() {
        if !ready.is_empty() && (running.is_empty() || pick.below(2) == 0) {
            let n = ready.swap_remove(pick.below(ready.len()));
            for &p in r.dag().parents(n) {
                assert!(matches!(r.status(p), Status::Done | Status::Pruned));
            }
            assert!(ran.insert(index(r.dag(), n)), "started twice");
            running.push(n);
        } else {
            let n: NodeId = running.swap_remove(pick.below(running.len()));
            let progress = if r.dag().node(n).kind == NodeKind::Decision {
                let me = index(r.dag(), n);
                let chosen: Vec<NodeId> = r
                    .dag()
                    .children(n)
                    .iter()
                    .copied()
                    .filter(|&c| chooses(me, index(r.dag(), c)))
                    .collect();
                r.decide(n, &chosen).unwrap()
            } else {
                r.complete(n).unwrap()
            };
            ready.extend(progress.ready);
            for s in progress.skipped {
                assert!(skipped.insert(index(r.dag(), s)), "skipped twice");
            }
        }
    }
    assert!(r.is_finished());
    assert_eq!(r.edge_visits(), edges, "every edge followed exactly once");
    (ran, skipped)
}

proptest! {
    #[test]
    fn cycle_detection_agrees_with_brute_force((n, edges) in digraph()) {
        let order: Vec<usize> = (0..n).collect();
        let t = template(n, &edges, &order, &[]);
        let cycle = match Dag::from_template(&t) {
            Ok(_) => None,
            Err(e) => match &e.errors[..] {
                [ValidationError::Cycle { path, .. }] => Some(path.clone()),
                other => panic!("{other:?}"),
            },
        };
        prop_assert_eq!(cycle.is_some(), cyclic(n, &edges));
        if let Some(path) = cycle {
            prop_assert!(path.len() >= 2);
            prop_assert_eq!(path.first(), path.last());
            let num = |s: &String| s[1..].parse::<usize>().unwrap();
            for w in path.windows(2) {
                prop_assert!(edges.contains(&(num(&w[0]), num(&w[1]))), "{:?} is not an edge", w);
            }
        }
    }

    #[test]
    fn a_failure_free_run_runs_every_step_once_after_its_parents(
        (n, edges, order) in dag_spec(),
        seed in any::<u64>(),
    ) {
        let dag = validate(&template(n, &edges, &order, &[]), ["h"]).unwrap();
        let (ran, skipped) = simulate(dag, seed, |_, _| true);
        prop_assert_eq!(ran.len(), n);
        prop_assert!(skipped.is_empty());
    }

    #[test]
    fn decisions_skip_exactly_what_no_chosen_path_reaches(
        (n, edges, order) in dag_spec(),
        decisions in prop::collection::vec(any::<bool>(), 30),
        choices in prop::collection::vec(any::<bool>(), 30 * 30),
        seed in any::<u64>(),
    ) {
        let deciders: Vec<usize> = (0..n).filter(|&i| decisions[i]).collect();
        let dag = validate(&template(n, &edges, &order, &deciders), ["h"]).unwrap();
        let chooses = |d: usize, c: usize| choices[d * 30 + c];
        let (ran, skipped) = simulate(dag, seed, chooses);
        // Brute force, in index order (a topological order here): a step runs unless a
        // decision that ran did not choose it, and then only if it is a root or a parent ran.
        let mut runs = vec![false; n];
        for v in 0..n {
            let parents: Vec<usize> = edges.iter().filter(|e| e.1 == v).map(|e| e.0).collect();
            let refused = parents.iter().any(|&p| runs[p] && decisions[p] && !chooses(p, v));
            runs[v] = !refused && (parents.is_empty() || parents.iter().any(|&p| runs[p]));
        }
        let expected: BTreeSet<usize> = (0..n).filter(|&v| runs[v]).collect();
        prop_assert_eq!(&ran, &expected);
        prop_assert_eq!(ran.len() + skipped.len(), n);
    }
}
