//! The run state machine.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Machine, Row};

/// Where a DAG run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created, no step enqueued yet.
    Pending,
    /// Steps are running or waiting.
    InProgress,
    /// Every step is complete or skipped. Terminal.
    Complete,
    /// A step failed for good; an operator may retry or resolve it.
    Error,
    /// Cancelled. Terminal.
    Cancelled,
    /// An operator set the run's outcome by hand. Terminal.
    ResolvedManually,
}

use RunState::*;

impl RunState {
    /// Every state.
    pub const ALL: [RunState; 6] = [
        Pending,
        InProgress,
        Complete,
        Error,
        Cancelled,
        ResolvedManually,
    ];

    /// The run machine's table.
    pub const TABLE: &'static [Row<RunState>] = &TRANSITIONS;
}

static TRANSITIONS: [Row<RunState>; 8] = [
    Row::new(Pending, InProgress, false, "the first steps are enqueued"),
    Row::new(Pending, Cancelled, false, "cancelled before it started"),
    Row::new(
        InProgress,
        Complete,
        false,
        "every step is complete or skipped",
    ),
    Row::new(InProgress, Error, false, "a step failed for good"),
    Row::new(InProgress, Cancelled, false, "cancelled while running"),
    Row::new(
        Error,
        InProgress,
        true,
        "an operator retried, skipped or resolved the failed step",
    ),
    Row::new(
        Error,
        ResolvedManually,
        true,
        "an operator resolves the run by hand",
    ),
    Row::new(Error, Cancelled, false, "cancelled after a failure"),
];

impl Machine for RunState {
    const MACHINE: &'static str = "run";

    fn table() -> &'static [Row<Self>] {
        &TRANSITIONS
    }

    fn name(self) -> &'static str {
        match self {
            Pending => "pending",
            InProgress => "in_progress",
            Complete => "complete",
            Error => "error",
            Cancelled => "cancelled",
            ResolvedManually => "resolved_manually",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
