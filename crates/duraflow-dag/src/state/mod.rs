//! The step and run state machines, their transition tables and the audit trail.
//!
//! Each machine lists its legal moves in a table ([`StepState::TABLE`], [`RunState::TABLE`]):
//! one [`Row`] per move, with who may make it and when it happens. [`transition`] accepts a
//! move only when the table has a row for it, and returns the [`Transition`] record to keep;
//! [`History`] holds a current state and the trail of every transition that led to it;
//! [`StepAttempts`] drives a step's attempts and retry backoff through that table.
//!
//! Every row counts whether this process has taken it ([`Row::taken`]); the test
//! `transition_coverage` walks scenarios until every row of both tables has been taken.

/// Declares a machine's state enum with its serde names, `ALL`, `Display` and
/// [`Machine`] (whose table is the static `TRANSITIONS` of the declaring module).
macro_rules! machine_states {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $machine:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $name {
            /// Every state.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The machine's transition table.
            pub const TABLE: &'static [$crate::state::Row<$name>] = &TRANSITIONS;
        }

        impl $crate::state::Machine for $name {
            const MACHINE: &'static str = $machine;

            fn table() -> &'static [$crate::state::Row<Self>] {
                &TRANSITIONS
            }

            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::state::Machine::name(*self))
            }
        }
    };
}

mod attempts;
mod run;
mod step;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use attempts::{Failed, StepAttempts};
pub use run::RunState;
pub use step::StepState;

/// Who made a transition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The engine, on its own.
    Engine,
    /// A person or tool acting by hand, named.
    Operator(String),
}

/// One recorded transition of a step or a run: the audit trail is a list of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition<S> {
    /// The state before.
    pub from: S,
    /// The state after.
    pub to: S,
    /// Why, in words (for people).
    pub reason: String,
    /// The attempt the transition belongs to (1 for the first; 0 for a run).
    pub attempt: u32,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// Who made it.
    pub by: Actor,
}

/// One row of a transition table: the move `from` → `to`, and who may make it.
#[derive(Debug)]
pub struct Row<S: 'static> {
    /// The state the row applies in.
    pub from: S,
    /// The state it moves to.
    pub to: S,
    /// Whether only an operator may make the move (never the engine).
    pub operator_only: bool,
    /// When the move happens, in words.
    pub when: &'static str,
    taken: AtomicBool,
}

impl<S: Machine> Row<S> {
    pub(crate) const fn new(from: S, to: S, operator_only: bool, when: &'static str) -> Self {
        Row {
            from,
            to,
            operator_only,
            when,
            taken: AtomicBool::new(false),
        }
    }

    /// Whether this process has taken the row (for the transition-coverage test).
    pub fn taken(&self) -> bool {
        self.taken.load(Ordering::Relaxed)
    }
}

impl<S: Machine> fmt::Display for Row<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", S::MACHINE, self.from, self.to)
    }
}

/// A state machine: its states and its table.
pub trait Machine: Copy + Eq + fmt::Debug + fmt::Display + Sized + 'static {
    /// The machine's name in messages (`step`, `run`).
    const MACHINE: &'static str;
    /// Every legal move.
    fn table() -> &'static [Row<Self>];
    /// The state's name, as in templates and the audit trail (`waiting_for_retry`).
    fn name(self) -> &'static str;
    /// Whether the engine makes no move out of the state (only an operator may: to run a
    /// finished step again, see the step table's operator rows).
    fn is_terminal(self) -> bool {
        Self::table()
            .iter()
            .all(|r| r.from != self || r.operator_only)
    }
}

/// A move the table does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// No row for the move.
    #[error("illegal {machine} transition {from} -> {to}: from {from} the allowed moves are to [{}]", allowed.join(", "))]
    Illegal {
        /// `step` or `run`.
        machine: &'static str,
        /// The current state.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
        /// The states the current one may move to.
        allowed: Vec<&'static str>,
    },
    /// A retry was asked for before its backoff elapsed.
    #[error("the step's next attempt is due at {due}, not at {at}: wait for the backoff")]
    NotDue {
        /// When the retry is due (ms).
        due: i64,
        /// When it was asked for (ms).
        at: i64,
    },
    /// The move is an operator's, and the engine asked for it.
    #[error("{machine} transition {from} -> {to} is made by an operator only, not by the engine")]
    OperatorOnly {
        /// `step` or `run`.
        machine: &'static str,
        /// The current state.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
    },
}

/// Checks the move `from` → `to` against the machine's table and returns its record.
pub fn transition<S: Machine>(
    from: S,
    to: S,
    reason: impl Into<String>,
    by: Actor,
    attempt: u32,
    at: i64,
) -> Result<Transition<S>, TransitionError> {
    let table = S::table();
    let Some(row) = table.iter().find(|r| r.from == from && r.to == to) else {
        return Err(TransitionError::Illegal {
            machine: S::MACHINE,
            from: from.name(),
            to: to.name(),
            allowed: table
                .iter()
                .filter(|r| r.from == from)
                .map(|r| r.to.name())
                .collect(),
        });
    };
    if row.operator_only && by == Actor::Engine {
        return Err(TransitionError::OperatorOnly {
            machine: S::MACHINE,
            from: from.name(),
            to: to.name(),
        });
    }
    if !row.taken.load(Ordering::Relaxed) {
        row.taken.store(true, Ordering::Relaxed);
    }
    Ok(Transition {
        from,
        to,
        reason: reason.into(),
        attempt,
        at,
        by,
    })
}

/// A step's or a run's current state and the audit trail of every transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History<S> {
    state: S,
    trail: Vec<Transition<S>>,
}

impl<S: Machine> History<S> {
    /// A history starting in `initial`, with an empty trail.
    pub fn new(initial: S) -> Self {
        History {
            state: initial,
            trail: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> S {
        self.state
    }

    /// Every transition so far, oldest first.
    pub fn trail(&self) -> &[Transition<S>] {
        &self.trail
    }

    /// Moves to `to` if the table allows it, recording the transition; an illegal move
    /// changes nothing.
    pub fn apply(
        &mut self,
        to: S,
        reason: impl Into<String>,
        by: Actor,
        attempt: u32,
        at: i64,
    ) -> Result<&Transition<S>, TransitionError> {
        let t = transition(self.state, to, reason, by, attempt, at)?;
        self.state = to;
        self.trail.push(t);
        Ok(&self.trail[self.trail.len() - 1])
    }
}
