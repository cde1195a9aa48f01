//! A run's per-step state, rebuilt from its journal.
//!
//! The interpreter keeps each step's state in memory only; the journal holds what it is
//! built from: the start input, the resolved template (the template step's result), every
//! activity's and backoff timer's scheduling and result, and the operator actions (external
//! events). The orders are issued in order-number order, so the n-th `activity_scheduled` or
//! `timer_created` is order n, and feeding a fresh run machine each recorded delivery at its
//! journal time (with the jitter seed of the instance id) repeats the interpreter's decisions
//! and timestamps exactly.

use std::collections::HashMap;

use duraflow_core::{Event, EventKind, OpId};
use duraflow_runtime::{Client, ClientError};
use serde_json::Value;

use super::machine::RunMachine;
use super::operator::{OperatorAction, OPERATOR_EVENT};
use super::retry::{self, AttemptFailure};
use super::workflow::prepare;
use super::{DagReport, DagStart, TEMPLATE_STEP, WORKFLOW_NAME};
use crate::state::RunState;
use crate::template::Template;

/// Why a run's state cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Reading the journal failed (or there is no such instance).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The instance is not a run of the DAG interpreter.
    #[error("instance is a run of `{0}`, not of the DAG interpreter `{WORKFLOW_NAME}`")]
    NotADagRun(String),
    /// The run has not resolved its template yet (or it could not: see the instance's failure).
    #[error("the run has not resolved its template yet")]
    NotStarted,
    /// The journal holds something the interpreter would not have written.
    #[error("the run's journal cannot be read as a DAG run: {0}")]
    Journal(String),
}

/// The current per-step state of the DAG run `id`, rebuilt from its journal (the current
/// execution's history) with no new store feature.
///
/// Limits: a step is `in_progress` from the moment its attempt's activity is scheduled (the
/// journal does not say when a worker picked it up); a run failed for good shows the failing
/// step in `error` and the steps that were in flight `cancelled`; a run cancelled by an
/// operator shows it `cancelled`; a run cancelled or terminated from outside the DAG
/// (`Client::cancel`) shows the steps as they were (the instance's own status says it ended).
pub async fn dag_status(client: &Client, id: &str) -> Result<DagReport, StatusError> {
    let journal = client.history(id, None).await?;
    rebuild(id, &journal)
}

/// [`dag_status`] from a journal already read, of the instance `id` (its id seeds the
/// retries' jitter).
pub fn rebuild(id: &str, journal: &[Event]) -> Result<DagReport, StatusError> {
    let mut events = journal.iter();
    let start: DagStart = match events.next().map(|e| &e.kind) {
        Some(EventKind::WorkflowStarted { name, input, .. }) => {
            if name != WORKFLOW_NAME {
                return Err(StatusError::NotADagRun(name.clone()));
            }
            input
                .decode()
                .map_err(|e| StatusError::Journal(format!("the start input: {e}")))?
        }
        _ => {
            return Err(StatusError::Journal(
                "it does not begin with its start".into(),
            ))
        }
    };
    let mut template_op: Option<&OpId> = None;
    let mut machine: Option<RunMachine> = None;
    let mut orders: HashMap<OpId, usize> = HashMap::new();
    // Operator actions raised before the interpreter listened: it takes them first thing.
    let mut early: Vec<OperatorAction> = Vec::new();
    for event in events {
        let at = event.at.as_millis();
        match &event.kind {
            EventKind::StepStarted { op, name, .. } if name == TEMPLATE_STEP => {
                template_op = Some(op);
            }
            EventKind::StepCompleted { op, output } if Some(op) == template_op => {
                let template: Template = output
                    .decode()
                    .map_err(|e| StatusError::Journal(format!("the template: {e}")))?;
                let registered = prepare(&template, &start.input)
                    .map_err(|e| StatusError::Journal(e.to_string()))?;
                let seed = retry::seed(id);
                let mut m = RunMachine::new(&registered, start.input.clone(), seed, at).0;
                for action in early.drain(..) {
                    if m.is_live() {
                        let _ = m.act(&action, at);
                    }
                }
                machine = Some(m);
            }
            EventKind::ActivityScheduled { op, .. } | EventKind::TimerCreated { op, .. } => {
                let seq = orders.len();
                orders.insert(op.clone(), seq);
            }
            EventKind::ActivityCompleted { op, output } => {
                let (m, seq) = ordered(&mut machine, &orders, op)?;
                let output: Value = output
                    .decode()
                    .map_err(|e| StatusError::Journal(format!("a result: {e}")))?;
                let _ = m.succeeded(seq, output, at);
            }
            EventKind::ActivityFailed { op, failure } => {
                let (m, seq) = ordered(&mut machine, &orders, op)?;
                let error = duraflow_core::WorkflowError::Activity(failure.as_ref().clone());
                let _ = m.failed(seq, &AttemptFailure::from_error(&error), at);
            }
            EventKind::TimerFired { op } => {
                let (m, seq) = ordered(&mut machine, &orders, op)?;
                let _ = m.timer_fired(seq, at);
            }
            EventKind::EventRaised { name, data, .. } if name == OPERATOR_EVENT => {
                // The interpreter ignores an event that is not an action.
                let Ok(action) = data.decode::<OperatorAction>() else {
                    continue;
                };
                match machine.as_mut() {
                    Some(m) if m.is_live() => {
                        let _ = m.act(&action, at);
                    }
                    Some(_) => {}
                    None => early.push(action),
                }
            }
            _ => {}
        }
    }
    let report = machine.as_ref().map(RunMachine::report);
    match report {
        Some(r) if r.state != RunState::Pending => Ok(r),
        _ => Err(StatusError::NotStarted),
    }
}

fn ordered<'m>(
    machine: &'m mut Option<RunMachine>,
    orders: &HashMap<OpId, usize>,
    op: &OpId,
) -> Result<(&'m mut RunMachine, usize), StatusError> {
    let m = machine
        .as_mut()
        .ok_or_else(|| StatusError::Journal(format!("operation {op} ran before the template")))?;
    let seq = orders
        .get(op)
        .copied()
        .ok_or_else(|| StatusError::Journal(format!("operation {op} was never issued")))?;
    Ok((m, seq))
}
