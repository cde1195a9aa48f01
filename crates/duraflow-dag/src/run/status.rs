//! A run's per-step state, rebuilt from its journal.
//!
//! The interpreter keeps each step's state in memory only; the journal holds what it is
//! built from: the start input, the resolved template (the template step's result) and every
//! activity's scheduling and result. The activities are scheduled in launch order, so the
//! n-th `activity_scheduled` is launch n, and feeding a fresh run machine each recorded result
//! at its journal time repeats the interpreter's decisions and timestamps exactly.

use std::collections::HashMap;

use duraflow_core::{Event, EventKind, OpId};
use duraflow_runtime::{Client, ClientError};
use serde_json::Value;

use super::machine::RunMachine;
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
/// Limits: a step is `in_progress` from the moment its activity is scheduled (the journal does
/// not say when a worker picked it up), and its retries inside the activity's retry policy are
/// not seen one by one; a run failed for good shows the failing step in `error` and the steps
/// that were in flight `cancelled`; a run cancelled or terminated from outside shows the steps
/// as they were (the instance's own status says it ended).
pub async fn dag_status(client: &Client, id: &str) -> Result<DagReport, StatusError> {
    let journal = client.history(id, None).await?;
    rebuild(&journal)
}

/// [`dag_status`] from a journal already read.
pub fn rebuild(journal: &[Event]) -> Result<DagReport, StatusError> {
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
    let mut machine = None;
    let mut launches: HashMap<OpId, usize> = HashMap::new();
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
                machine = Some(RunMachine::new(&registered, start.input.clone(), at).0);
            }
            EventKind::ActivityScheduled { op, .. } => {
                let seq = launches.len();
                launches.insert(op.clone(), seq);
            }
            EventKind::ActivityCompleted { op, output } => {
                let (m, seq) = launched(&mut machine, &launches, op)?;
                let output: Value = output
                    .decode()
                    .map_err(|e| StatusError::Journal(format!("a result: {e}")))?;
                let _ = m.succeeded(seq, output, at);
            }
            EventKind::ActivityFailed { op, failure } => {
                let (m, seq) = launched(&mut machine, &launches, op)?;
                let error = duraflow_core::WorkflowError::Activity(failure.clone());
                let _ = m.failed(seq, &error.to_string(), failure.attempts, at);
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

fn launched<'m>(
    machine: &'m mut Option<RunMachine>,
    launches: &HashMap<OpId, usize>,
    op: &OpId,
) -> Result<(&'m mut RunMachine, usize), StatusError> {
    let m = machine
        .as_mut()
        .ok_or_else(|| StatusError::Journal(format!("activity {op} ran before the template")))?;
    let seq = launches
        .get(op)
        .copied()
        .ok_or_else(|| StatusError::Journal(format!("activity {op} was never scheduled")))?;
    Ok((m, seq))
}
