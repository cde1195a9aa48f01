//! Transition coverage: scenarios walk steps and runs through their lives until every row of
//! both transition tables has been taken; a row no scenario reaches fails the test by name.
//! Rows count their use per process, so this file holds one test and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::state::{Machine, Row};
use duraflow_dag::{Actor, History, RunState, StepState};

fn walk<S: Machine>(start: S, moves: &[(S, bool)]) -> History<S> {
    let mut h = History::new(start);
    let mut attempt = 1;
    for (i, &(to, by_operator)) in moves.iter().enumerate() {
        let by = if by_operator {
            Actor::Operator("ops@example".into())
        } else {
            Actor::Engine
        };
        h.apply(to, format!("move {i}"), by, attempt, i as i64)
            .unwrap_or_else(|e| panic!("{e}"));
        if to.name() == "waiting_for_retry" {
            attempt += 1;
        }
    }
    assert_eq!(h.trail().len(), moves.len());
    h
}

fn step_scenarios() {
    use StepState::*;
    let e = false;
    let op = true;
    // Succeeds at once.
    walk(Pending, &[(Enqueued, e), (InProgress, e), (Complete, e)]);
    // Fails, waits, retries, fails for good and is skipped (a skippable step).
    let h = walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (WaitingForRetry, e),
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (Skipped, e),
        ],
    );
    assert_eq!(h.trail().last().unwrap().attempt, 2);
    // An operator retries a failed step, which fails again and is resolved by hand.
    walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (Enqueued, op),
            (InProgress, e),
            (Error, e),
            (ResolvedManually, op),
        ],
    );
    // Never started: pruned by a decision, cancelled, or resolved by an operator.
    walk(Pending, &[(Skipped, e)]);
    walk(Pending, &[(Cancelled, e)]);
    walk(Pending, &[(ResolvedManually, op)]);
    // Cancelled at every later point.
    walk(Pending, &[(Enqueued, e), (Cancelled, e)]);
    walk(Pending, &[(Enqueued, e), (InProgress, e), (Cancelled, e)]);
    walk(
        Pending,
        &[(Enqueued, e), (InProgress, e), (Error, e), (Cancelled, e)],
    );
    walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (WaitingForRetry, e),
            (Cancelled, e),
        ],
    );
    // Run again by an operator, directly or because an ancestor is.
    walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Complete, e),
            (Enqueued, op),
            (InProgress, e),
            (Complete, e),
            (Pending, op),
        ],
    );
    walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (Skipped, e),
            (Enqueued, op),
            (InProgress, e),
            (Error, e),
            (Pending, op),
            (Skipped, e),
            (Pending, op),
        ],
    );
    walk(
        Pending,
        &[
            (ResolvedManually, op),
            (Enqueued, op),
            (InProgress, e),
            (Error, e),
            (ResolvedManually, op),
            (Pending, op),
        ],
    );
    // Resolved by an operator while it waits for a retry.
    walk(
        Pending,
        &[
            (Enqueued, e),
            (InProgress, e),
            (Error, e),
            (WaitingForRetry, e),
            (ResolvedManually, op),
        ],
    );
}

fn run_scenarios() {
    use RunState::*;
    let e = false;
    let op = true;
    walk(Pending, &[(InProgress, e), (Complete, e)]);
    walk(Pending, &[(Cancelled, e)]);
    walk(Pending, &[(InProgress, e), (Cancelled, e)]);
    walk(
        Pending,
        &[
            (InProgress, e),
            (Error, e),
            (InProgress, op),
            (Error, e),
            (ResolvedManually, op),
        ],
    );
    walk(Pending, &[(InProgress, e), (Error, e), (Cancelled, e)]);
}

fn untaken<S: Machine>(table: &[Row<S>]) -> Vec<String> {
    table
        .iter()
        .filter(|r| !r.taken())
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn every_row_of_every_table_is_taken() {
    step_scenarios();
    run_scenarios();
    let mut missing = untaken(StepState::TABLE);
    missing.extend(untaken(RunState::TABLE));
    assert!(missing.is_empty(), "rows no scenario takes: {missing:?}");
}
