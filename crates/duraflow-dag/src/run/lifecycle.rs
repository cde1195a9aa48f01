//! Lifecycle events: every transition the run machine records, published to the store's feed
//! under [`TOPIC_PREFIX`] with the commit of the turn that made it.
//!
//! The interpreter calls [`Published::publish`] after each step of the run machine; it
//! compares the machine's audit trails with what it has published and publishes each new
//! transition once, as a [`LifecycleEvent`]. Events are derived from the trails in this one
//! place, so every recorded transition yields its event, whichever code recorded it.

use duraflow_core::{WorkflowContext, WorkflowError};
use serde::{Deserialize, Serialize};

use super::machine::RunMachine;
use crate::state::{RunState, StepState, Transition};
use crate::template::TemplateId;

/// The topic prefix of every DAG lifecycle event (`duraflow.dag.run.started`,
/// `duraflow.dag.step.completed`, ...).
pub const TOPIC_PREFIX: &str = "duraflow.dag.";

/// A transition of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvent {
    /// The run (its instance id).
    pub run_id: String,
    /// The template it runs.
    pub template: TemplateId,
    /// The transition, as the run's audit trail records it (from, to, reason, time, actor).
    pub transition: Transition<RunState>,
}

/// A transition of a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEvent {
    /// The run (its instance id).
    pub run_id: String,
    /// The template it runs.
    pub template: TemplateId,
    /// The step's name (`batch[i]` for a batch's worker).
    pub step: String,
    /// The transition, as the step's audit trail records it (from, to, reason, attempt, time,
    /// actor).
    pub transition: Transition<StepState>,
}

/// A lifecycle event of a DAG run: one per recorded transition of the run or of a step, named
/// after the state it moves to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LifecycleEvent {
    /// The run started (pending → in_progress).
    RunStarted(RunEvent),
    /// The run went back to work after it had ended (an operator's action).
    RunResumed(RunEvent),
    /// Every step is complete or skipped.
    RunCompleted(RunEvent),
    /// A step failed for good and so did the run.
    RunFailed(RunEvent),
    /// The run was cancelled.
    RunCancelled(RunEvent),
    /// An operator resolved the run by hand.
    RunResolved(RunEvent),
    /// The run went back to pending.
    RunReset(RunEvent),
    /// A step went back to pending (an operator's retry of it or of an ancestor).
    StepReset(StepEvent),
    /// A step is enqueued: every parent is complete or skipped.
    StepEnqueued(StepEvent),
    /// A step's handler started.
    StepStarted(StepEvent),
    /// A step completed.
    StepCompleted(StepEvent),
    /// A step's attempt failed.
    StepFailed(StepEvent),
    /// A step waits for its next attempt.
    StepRetrying(StepEvent),
    /// A step was cancelled (the run failed or was cancelled while it ran).
    StepCancelled(StepEvent),
    /// A step was skipped.
    StepSkipped(StepEvent),
    /// A step was resolved by hand.
    StepResolved(StepEvent),
}

impl LifecycleEvent {
    /// The event for a run transition.
    pub fn of_run(run_id: &str, template: &TemplateId, t: Transition<RunState>) -> Self {
        let from_pending = t.from == RunState::Pending;
        let e = RunEvent {
            run_id: run_id.to_owned(),
            template: template.clone(),
            transition: t,
        };
        match e.transition.to {
            RunState::InProgress if from_pending => LifecycleEvent::RunStarted(e),
            RunState::InProgress => LifecycleEvent::RunResumed(e),
            RunState::Complete => LifecycleEvent::RunCompleted(e),
            RunState::Error => LifecycleEvent::RunFailed(e),
            RunState::Cancelled => LifecycleEvent::RunCancelled(e),
            RunState::ResolvedManually => LifecycleEvent::RunResolved(e),
            RunState::Pending => LifecycleEvent::RunReset(e),
        }
    }

    /// The event for a step transition.
    pub fn of_step(
        run_id: &str,
        template: &TemplateId,
        step: &str,
        t: Transition<StepState>,
    ) -> Self {
        let e = StepEvent {
            run_id: run_id.to_owned(),
            template: template.clone(),
            step: step.to_owned(),
            transition: t,
        };
        match e.transition.to {
            StepState::Pending => LifecycleEvent::StepReset(e),
            StepState::Enqueued => LifecycleEvent::StepEnqueued(e),
            StepState::InProgress => LifecycleEvent::StepStarted(e),
            StepState::Complete => LifecycleEvent::StepCompleted(e),
            StepState::Error => LifecycleEvent::StepFailed(e),
            StepState::WaitingForRetry => LifecycleEvent::StepRetrying(e),
            StepState::Cancelled => LifecycleEvent::StepCancelled(e),
            StepState::Skipped => LifecycleEvent::StepSkipped(e),
            StepState::ResolvedManually => LifecycleEvent::StepResolved(e),
        }
    }

    /// The event's name: `run_started`, `step_completed`, ...
    pub fn name(&self) -> &'static str {
        match self {
            LifecycleEvent::RunStarted(_) => "run_started",
            LifecycleEvent::RunResumed(_) => "run_resumed",
            LifecycleEvent::RunCompleted(_) => "run_completed",
            LifecycleEvent::RunFailed(_) => "run_failed",
            LifecycleEvent::RunCancelled(_) => "run_cancelled",
            LifecycleEvent::RunResolved(_) => "run_resolved",
            LifecycleEvent::RunReset(_) => "run_reset",
            LifecycleEvent::StepReset(_) => "step_reset",
            LifecycleEvent::StepEnqueued(_) => "step_enqueued",
            LifecycleEvent::StepStarted(_) => "step_started",
            LifecycleEvent::StepCompleted(_) => "step_completed",
            LifecycleEvent::StepFailed(_) => "step_failed",
            LifecycleEvent::StepRetrying(_) => "step_retrying",
            LifecycleEvent::StepCancelled(_) => "step_cancelled",
            LifecycleEvent::StepSkipped(_) => "step_skipped",
            LifecycleEvent::StepResolved(_) => "step_resolved",
        }
    }

    /// The feed topic it is published under: [`TOPIC_PREFIX`], then `run.` or `step.`, then
    /// what happened (`duraflow.dag.step.completed`).
    pub fn topic(&self) -> String {
        let name = self.name();
        let (scope, what) = name.split_once('_').unwrap_or(("run", name));
        format!("{TOPIC_PREFIX}{scope}.{what}")
    }

    /// The run it belongs to.
    pub fn run_id(&self) -> &str {
        match self {
            LifecycleEvent::RunStarted(e)
            | LifecycleEvent::RunResumed(e)
            | LifecycleEvent::RunCompleted(e)
            | LifecycleEvent::RunFailed(e)
            | LifecycleEvent::RunCancelled(e)
            | LifecycleEvent::RunResolved(e)
            | LifecycleEvent::RunReset(e) => &e.run_id,
            LifecycleEvent::StepReset(e)
            | LifecycleEvent::StepEnqueued(e)
            | LifecycleEvent::StepStarted(e)
            | LifecycleEvent::StepCompleted(e)
            | LifecycleEvent::StepFailed(e)
            | LifecycleEvent::StepRetrying(e)
            | LifecycleEvent::StepCancelled(e)
            | LifecycleEvent::StepSkipped(e)
            | LifecycleEvent::StepResolved(e) => &e.run_id,
        }
    }

    /// The step, for a step event.
    pub fn step(&self) -> Option<&str> {
        self.step_event().map(|e| e.step.as_str())
    }

    /// The step transition, for a step event.
    pub fn step_event(&self) -> Option<&StepEvent> {
        match self {
            LifecycleEvent::StepReset(e)
            | LifecycleEvent::StepEnqueued(e)
            | LifecycleEvent::StepStarted(e)
            | LifecycleEvent::StepCompleted(e)
            | LifecycleEvent::StepFailed(e)
            | LifecycleEvent::StepRetrying(e)
            | LifecycleEvent::StepCancelled(e)
            | LifecycleEvent::StepSkipped(e)
            | LifecycleEvent::StepResolved(e) => Some(e),
            _ => None,
        }
    }
}

/// Where a step transition goes among those of one machine step: a step's end first, then
/// what it made skipped or reset, then what it enqueued, then what started, so that events
/// follow cause and effect whatever the steps' order in the template.
fn rank(to: StepState) -> u8 {
    match to {
        StepState::Complete
        | StepState::Error
        | StepState::WaitingForRetry
        | StepState::Cancelled
        | StepState::ResolvedManually => 0,
        StepState::Skipped | StepState::Pending => 1,
        StepState::Enqueued => 2,
        StepState::InProgress => 3,
    }
}

/// How much of the machine's audit trails has been published.
#[derive(Debug, Default)]
pub(crate) struct Published {
    run: usize,
    steps: Vec<usize>,
}

impl Published {
    /// The events of the transitions `machine` recorded since the last call, in order: the
    /// run's start, the steps' transitions, then the run's end.
    pub(crate) fn new_events(&mut self, run_id: &str, machine: &RunMachine) -> Vec<LifecycleEvent> {
        let template = machine.template_id();
        let run_new =
            &machine.run_history().trail()[self.run.min(machine.run_history().trail().len())..];
        self.run += run_new.len();
        let (run_first, run_last): (Vec<_>, Vec<_>) = run_new
            .iter()
            .cloned()
            .partition(|t| matches!(t.to, RunState::InProgress | RunState::Pending));
        let mut steps = Vec::new();
        for (i, (name, history)) in machine.step_histories().enumerate() {
            if self.steps.len() <= i {
                self.steps.resize(i + 1, 0);
            }
            let trail = history.trail();
            for t in &trail[self.steps[i].min(trail.len())..] {
                steps.push((rank(t.to), name, t.clone()));
            }
            self.steps[i] = trail.len();
        }
        steps.sort_by_key(|(rank, _, _)| *rank);
        let mut out: Vec<LifecycleEvent> = run_first
            .into_iter()
            .map(|t| LifecycleEvent::of_run(run_id, &template, t))
            .collect();
        out.extend(
            steps
                .into_iter()
                .map(|(_, name, t)| LifecycleEvent::of_step(run_id, &template, name, t)),
        );
        out.extend(
            run_last
                .into_iter()
                .map(|t| LifecycleEvent::of_run(run_id, &template, t)),
        );
        out
    }

    /// Publishes the events of the transitions `machine` recorded since the last call.
    pub(crate) fn publish(
        &mut self,
        ctx: &WorkflowContext,
        machine: &RunMachine,
    ) -> Result<(), WorkflowError> {
        for event in self.new_events(ctx.instance_id(), machine) {
            ctx.publish(&event.topic(), &event)?;
        }
        Ok(())
    }
}
