//! The step state machine.

use super::Row;

machine_states! {
    /// Where a step of a run stands.
    pub enum StepState as "step" {
        /// Waiting for its parents.
        Pending = "pending",
        /// Ready, handed to a queue, not started.
        Enqueued = "enqueued",
        /// An attempt is running.
        InProgress = "in_progress",
        /// Its handler succeeded. Terminal for the engine (an operator who runs an ancestor
        /// or the step again sends it back).
        Complete = "complete",
        /// An attempt failed; failed for good unless retried, skipped or resolved.
        Error = "error",
        /// An attempt failed and the next waits for its backoff.
        WaitingForRetry = "waiting_for_retry",
        /// The run was cancelled before the step finished. Terminal.
        Cancelled = "cancelled",
        /// Not run: not chosen by a decision, or skipped as allowed. Terminal for the engine.
        Skipped = "skipped",
        /// An operator set its outcome by hand. Terminal for the engine.
        ResolvedManually = "resolved_manually",
    }
}

use StepState::*;

static TRANSITIONS: [Row<StepState>; 24] = [
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
    Row::new(
        WaitingForRetry,
        ResolvedManually,
        true,
        "an operator resolves it while it waits for a retry",
    ),
    // An operator runs a finished step again: the step is enqueued, and its descendants go
    // back to pending to run again after it.
    Row::new(Complete, Enqueued, true, "an operator runs it again"),
    Row::new(
        Skipped,
        Enqueued,
        true,
        "an operator runs a step skipped after its failure again",
    ),
    Row::new(
        ResolvedManually,
        Enqueued,
        true,
        "an operator runs a step resolved by hand after all",
    ),
    Row::new(
        Complete,
        Pending,
        true,
        "an operator runs one of its ancestors again",
    ),
    Row::new(
        Skipped,
        Pending,
        true,
        "an operator runs one of its ancestors again",
    ),
    Row::new(
        ResolvedManually,
        Pending,
        true,
        "an operator runs one of its ancestors again",
    ),
    Row::new(
        Error,
        Pending,
        true,
        "an operator runs one of its ancestors again",
    ),
];
