//! Operator actions on a running DAG run: what they are, and sending them.
//!
//! An operator acts on a run by raising the external event [`OPERATOR_EVENT`] on its instance
//! with an [`OperatorAction`]; the interpreter listens for it at all times (while steps run,
//! while steps wait for a retry, and while a run whose template says `on_failure: hold` waits
//! in `error`). Every move an action makes is recorded with [`Actor::Operator`](crate::Actor)
//! and the operator's name; an action the run cannot take in its current state changes
//! nothing and is listed in the report's [`rejected_actions`](super::DagReport).
//!
//! - [`retry_step`]: a step that failed for good (a held run), or a finished one, runs again
//!   with a fresh count of attempts; its descendants (sent back to `pending` if they had run)
//!   run again after it; its ancestors do not run again.
//! - [`resolve_step`]: a step that is pending, failed for good, or waiting for a retry is
//!   marked `resolved_manually` with the given result, which its dependents receive as the
//!   step's output (a decision's result chooses, a batch step's result is its items).
//! - [`cancel_run`]: the run is cancelled: the steps in flight are cancelled (their activities
//!   abandoned, which cancels their tasks), every unfinished step is marked `cancelled`, the
//!   run's state is `cancelled`, and the instance fails with code `dag_cancelled` (the report,
//!   from [`dag_status`], shows who cancelled it and why).
//!
//! The helpers check what they can before sending (the instance is a running DAG run, the step
//! exists and its state allows the action); the interpreter checks again when the action
//! arrives, as the run may have moved on.

use duraflow_runtime::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{dag_status, StatusError};
use crate::state::{RunState, StepState};

/// The name of the external event that carries an [`OperatorAction`] to a run.
pub const OPERATOR_EVENT: &str = "duraflow.dag.operator";

/// An operator's action on a run, and who takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// The operator's name, recorded in the audit trail.
    pub by: String,
    /// What to do.
    pub action: Action,
}

/// What an operator asks of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Runs a step that failed for good (a run held in `error`) or finished again, and its
    /// descendants after it.
    RetryStep {
        /// The step's name (a batch worker is `batch[i]`).
        step: String,
    },
    /// Marks a pending, failed or waiting step `resolved_manually` with `result` as its output.
    ResolveStep {
        /// The step's name.
        step: String,
        /// The result its dependents receive.
        result: Value,
    },
    /// Cancels the run.
    CancelRun {
        /// Why, for the audit trail.
        reason: String,
    },
}

/// An action the run did not take: the action, why, and when it arrived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedAction {
    /// The action as sent.
    pub action: OperatorAction,
    /// Why the run could not take it.
    pub reason: String,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// Why an operator action was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// Reading the run, or sending the event, failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The run's state could not be read.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The instance has finished: there is no interpreter to act on.
    #[error("run {0:?} has finished ({1}); there is nothing to act on")]
    Finished(String, String),
    /// The run has no step of that name.
    #[error("run {run:?} has no step `{step}`")]
    UnknownStep {
        /// The run.
        run: String,
        /// The step asked for.
        step: String,
    },
    /// The step's state does not allow the action.
    #[error("step `{step}` of run {run:?} is {state}: {why}")]
    NotAllowed {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// Its current state.
        state: StepState,
        /// What the action needs.
        why: &'static str,
    },
}

/// Asks the run `run_id` to run its step `step` again, and then its descendants, on behalf of
/// operator `by`; its ancestors do not run again. The step must have failed for good (its run
/// held in `error`), or have finished (complete, skipped after a failure, resolved by hand):
/// then its descendants go back to pending and run again after it (refused while one of them
/// is running or waiting for a retry, or is a batch worker).
pub async fn retry_step(
    client: &Client,
    run_id: &str,
    step: &str,
    by: &str,
) -> Result<(), OperatorError> {
    let state = step_state(client, run_id, step).await?;
    if !matches!(
        state,
        StepState::Error | StepState::Complete | StepState::Skipped | StepState::ResolvedManually
    ) {
        let why = "only a step that failed for good or finished is run again";
        return Err(not_allowed(run_id, step, state, why));
    }
    let action = Action::RetryStep { step: step.into() };
    send(
        client,
        run_id,
        &OperatorAction {
            by: by.into(),
            action,
        },
    )
    .await
}

/// Asks the run `run_id` to mark its step `step` resolved by hand with `result` as its
/// output, on behalf of operator `by`. The step must be pending, failed for good, or waiting
/// for a retry.
pub async fn resolve_step(
    client: &Client,
    run_id: &str,
    step: &str,
    result: Value,
    by: &str,
) -> Result<(), OperatorError> {
    let state = step_state(client, run_id, step).await?;
    if !matches!(
        state,
        StepState::Pending | StepState::Error | StepState::WaitingForRetry
    ) {
        let why = "only a pending, failed or waiting step is resolved by hand";
        return Err(not_allowed(run_id, step, state, why));
    }
    let action = Action::ResolveStep {
        step: step.into(),
        result,
    };
    send(
        client,
        run_id,
        &OperatorAction {
            by: by.into(),
            action,
        },
    )
    .await
}

/// Asks the run `run_id` to cancel itself, on behalf of operator `by`, for `reason`.
pub async fn cancel_run(
    client: &Client,
    run_id: &str,
    by: &str,
    reason: &str,
) -> Result<(), OperatorError> {
    running(client, run_id).await?;
    let action = Action::CancelRun {
        reason: reason.into(),
    };
    send(
        client,
        run_id,
        &OperatorAction {
            by: by.into(),
            action,
        },
    )
    .await
}

/// Sends `action` to the run `run_id` as it is, unchecked (the interpreter still checks it,
/// and records it as rejected if the run cannot take it).
pub async fn send(
    client: &Client,
    run_id: &str,
    action: &OperatorAction,
) -> Result<(), OperatorError> {
    client.raise_event(run_id, OPERATOR_EVENT, action).await?;
    Ok(())
}

async fn running(client: &Client, run_id: &str) -> Result<(), OperatorError> {
    let info = client.status(run_id).await?;
    if info.status.is_terminal() {
        return Err(OperatorError::Finished(
            run_id.into(),
            format!("{:?}", info.status),
        ));
    }
    Ok(())
}

async fn step_state(client: &Client, run_id: &str, step: &str) -> Result<StepState, OperatorError> {
    running(client, run_id).await?;
    let report = dag_status(client, run_id).await?;
    if matches!(report.state, RunState::Cancelled) {
        return Err(OperatorError::Finished(run_id.into(), "cancelled".into()));
    }
    report
        .steps
        .get(step)
        .map(|s| s.state)
        .ok_or_else(|| OperatorError::UnknownStep {
            run: run_id.into(),
            step: step.into(),
        })
}

fn not_allowed(run: &str, step: &str, state: StepState, why: &'static str) -> OperatorError {
    OperatorError::NotAllowed {
        run: run.into(),
        step: step.into(),
        state,
        why,
    }
}
