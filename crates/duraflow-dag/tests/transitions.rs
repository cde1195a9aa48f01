//! Every move a table does not list is rejected, operator moves are refused to the engine,
//! and the audit trail records each transition as made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use duraflow_dag::state::{transition, Machine};
use duraflow_dag::{Actor, History, RunState, StepState, TransitionError};

fn every_pair_outside_the_table_is_illegal<S: Machine>(all: &[S]) {
    for &from in all {
        for &to in all {
            let row = S::table().iter().find(|r| r.from == from && r.to == to);
            let operator = Actor::Operator("alice".into());
            let result = transition(from, to, "test", operator, 1, 0);
            match row {
                Some(_) => assert!(result.is_ok(), "{from} -> {to}: {result:?}"),
                None => {
                    let e = result.unwrap_err();
                    let TransitionError::Illegal { allowed, .. } = &e else {
                        panic!("{e}")
                    };
                    let expected: Vec<&str> = S::table()
                        .iter()
                        .filter(|r| r.from == from)
                        .map(|r| r.to.name())
                        .collect();
                    assert_eq!(allowed, &expected);
                    assert!(
                        e.to_string().starts_with(&format!(
                            "illegal {} transition {from} -> {to}",
                            S::MACHINE
                        )),
                        "{e}"
                    );
                }
            }
        }
    }
}

#[test]
fn step_moves_outside_the_table_are_rejected() {
    every_pair_outside_the_table_is_illegal(StepState::ALL);
}

#[test]
fn run_moves_outside_the_table_are_rejected() {
    every_pair_outside_the_table_is_illegal(RunState::ALL);
}

#[test]
fn the_engine_cannot_make_operator_moves() {
    let e = transition(
        StepState::Error,
        StepState::ResolvedManually,
        "x",
        Actor::Engine,
        1,
        0,
    )
    .unwrap_err();
    assert!(matches!(e, TransitionError::OperatorOnly { .. }), "{e}");
    assert!(e.to_string().contains("operator only"), "{e}");
    for row in StepState::TABLE.iter().filter(|r| r.operator_only) {
        assert!(
            transition(row.from, row.to, "x", Actor::Engine, 1, 0).is_err(),
            "{row}"
        );
    }
    for row in RunState::TABLE.iter().filter(|r| r.operator_only) {
        assert!(
            transition(row.from, row.to, "x", Actor::Engine, 1, 0).is_err(),
            "{row}"
        );
    }
}

#[test]
fn terminal_states_have_no_way_out() {
    use StepState::*;
    let terminal: Vec<StepState> = StepState::ALL
        .iter()
        .copied()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(terminal, [Complete, Cancelled, Skipped, ResolvedManually]);
    let terminal: Vec<RunState> = RunState::ALL
        .iter()
        .copied()
        .filter(|s| s.is_terminal())
        .collect();
    assert_eq!(
        terminal,
        [
            RunState::Complete,
            RunState::Cancelled,
            RunState::ResolvedManually
        ]
    );
}

#[test]
fn state_names_are_their_serde_names() {
    for &s in StepState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
    }
    for &s in RunState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        assert_eq!(s.to_string(), s.name());
    }
}

#[test]
fn the_trail_records_every_transition_and_an_illegal_one_changes_nothing() {
    let mut h = History::new(StepState::Pending);
    h.apply(StepState::Enqueued, "parents done", Actor::Engine, 1, 10)
        .unwrap();
    let e = h
        .apply(StepState::Complete, "too soon", Actor::Engine, 1, 11)
        .unwrap_err();
    assert!(e.to_string().contains("[in_progress, cancelled]"), "{e}");
    assert_eq!(h.state(), StepState::Enqueued);
    h.apply(
        StepState::Cancelled,
        "run cancelled",
        Actor::Operator("bob".into()),
        1,
        12,
    )
    .unwrap();
    let t = &h.trail()[1];
    assert_eq!(
        (t.from, t.to, t.reason.as_str(), t.attempt, t.at, &t.by),
        (
            StepState::Enqueued,
            StepState::Cancelled,
            "run cancelled",
            1,
            12,
            &Actor::Operator("bob".into())
        )
    );
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["state"], "cancelled");
    assert_eq!(
        json["trail"][1]["by"],
        serde_json::json!({"operator": "bob"})
    );
    let back: History<StepState> = serde_json::from_value(json).unwrap();
    assert_eq!(back, h);
}
