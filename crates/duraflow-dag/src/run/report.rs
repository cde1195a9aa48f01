//! What a run reports: the workflow's output, and what [`dag_status`](super::dag_status)
//! rebuilds from the journal while it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::operator::RejectedAction;
use crate::state::{RunState, StepState, Transition};
use crate::template::TemplateId;

/// A DAG run's state: the output of a completed run, or the state rebuilt from a run's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DagReport {
    /// The template the run follows (the one resolved when it started).
    pub template: TemplateId,
    /// Where the run stands.
    pub state: RunState,
    /// The run's transitions, oldest first.
    pub run_transitions: Vec<Transition<RunState>>,
    /// Each completed step's result, by step name (a batch worker is `batch[i]`).
    pub results: BTreeMap<String, Value>,
    /// Every step's state and transitions, by step name (batch workers included once their
    /// batch step has completed).
    pub steps: BTreeMap<String, StepReport>,
    /// Operator actions the run could not take (an unknown step, a step whose state does not
    /// allow it), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_actions: Vec<RejectedAction>,
}

/// One step's state in a run and how it got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// The current state.
    pub state: StepState,
    /// Attempts started (each is one activity call; the interpreter schedules the retries).
    pub attempts: u32,
    /// Every transition, oldest first.
    pub transitions: Vec<Transition<StepState>>,
}
