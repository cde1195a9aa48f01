//! What a run reports: the workflow's output, and what [`dag_status`](super::dag_status)
//! rebuilds from the journal while it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

/// One step's state in a run and how it got there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// The current state.
    pub state: StepState,
    /// Attempts made: 1 once the step was launched, or as many as its activity's failure
    /// reported (the retries inside the activity's own retry policy are not seen one by one,
    /// so a step that succeeded after retries shows 1).
    pub attempts: u32,
    /// Every transition, oldest first.
    pub transitions: Vec<Transition<StepState>>,
}
