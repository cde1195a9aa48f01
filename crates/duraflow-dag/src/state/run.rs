//! The run state machine.

use super::Row;

machine_states! {
    /// Where a DAG run stands.
    pub enum RunState as "run" {
        /// Created, no step enqueued yet.
        Pending = "pending",
        /// Steps are running or waiting.
        InProgress = "in_progress",
        /// Every step is complete or skipped. Terminal.
        Complete = "complete",
        /// A step failed for good; an operator may retry or resolve it.
        Error = "error",
        /// Cancelled. Terminal.
        Cancelled = "cancelled",
        /// An operator set the run's outcome by hand. Terminal.
        ResolvedManually = "resolved_manually",
    }
}

use RunState::*;

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
