//! The step state machine.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Machine, Row};

/// Where a step of a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for its parents.
    Pending,
    /// Ready, handed to a queue, not started.
    Enqueued,
    /// An attempt is running.
    InProgress,
    /// Its handler succeeded. Terminal.
    Complete,
    /// An attempt failed; failed for good unless retried, skipped or resolved.
    Error,
    /// An attempt failed and the next waits for its backoff.
    WaitingForRetry,
    /// The run was cancelled before the step finished. Terminal.
    Cancelled,
    /// Not run: not chosen by a decision, or skipped as allowed. Terminal.
    Skipped,
    /// An operator set its outcome by hand. Terminal.
    ResolvedManually,
}

use StepState::*;

impl StepState {
    /// Every state.
    pub const ALL: [StepState; 9] = [
        Pending,
        Enqueued,
        InProgress,
        Complete,
        Error,
        WaitingForRetry,
        Cancelled,
        Skipped,
        ResolvedManually,
    ];

    /// The step machine's table.
    pub const TABLE: &'static [Row<StepState>] = &TRANSITIONS;
}

static TRANSITIONS: [Row<StepState>; 16] = [
    Row::new(
        Pending,
        Enqueued,
        false,
        "every parent is complete or skipped",
    ),
    Row::new(
        Pending,
        Skipped,
        false,
        "no chosen path leads to it, or an operator skips it",
    ),
    Row::new(Pending, Cancelled, false, "the run is cancelled"),
    Row::new(
        Pending,
        ResolvedManually,
        true,
        "an operator resolves it before it runs",
    ),
    Row::new(Enqueued, InProgress, false, "a worker starts an attempt"),
    Row::new(Enqueued, Cancelled, false, "the run is cancelled"),
    Row::new(InProgress, Complete, false, "the handler succeeded"),
    Row::new(InProgress, Error, false, "the attempt failed or timed out"),
    Row::new(InProgress, Cancelled, false, "the run is cancelled"),
    Row::new(
        Error,
        WaitingForRetry,
        false,
        "attempts are left: the backoff starts",
    ),
    Row::new(Error, Enqueued, true, "an operator retries it now"),
    Row::new(
        Error,
        Skipped,
        false,
        "a skippable step failed for good, or an operator skips it",
    ),
    Row::new(
        Error,
        ResolvedManually,
        true,
        "an operator resolves the failure by hand",
    ),
    Row::new(Error, Cancelled, false, "the run is cancelled"),
    Row::new(WaitingForRetry, Enqueued, false, "the backoff elapsed"),
    Row::new(WaitingForRetry, Cancelled, false, "the run is cancelled"),
];

impl Machine for StepState {
    const MACHINE: &'static str = "step";

    fn table() -> &'static [Row<Self>] {
        &TRANSITIONS
    }

    fn name(self) -> &'static str {
        match self {
            Pending => "pending",
            Enqueued => "enqueued",
            InProgress => "in_progress",
            Complete => "complete",
            Error => "error",
            WaitingForRetry => "waiting_for_retry",
            Cancelled => "cancelled",
            Skipped => "skipped",
            ResolvedManually => "resolved_manually",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
