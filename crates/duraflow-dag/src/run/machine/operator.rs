//! What operator actions do to a run: each goes through the step and run tables with the
//! operator as the actor; one the run cannot take is recorded as rejected and changes nothing.

use serde_json::Value;

use super::{Order, RunFailed, RunMachine, Unsettled};
use crate::graph::{NodeId, NodeKind, Status};
use crate::run::operator::{Action, OperatorAction, RejectedAction};
use crate::run::step_io;
use crate::state::{Actor, RunState, StepState};

impl RunMachine {
    /// An operator's action arrived at `at`: the orders it leads to, or the run's end (a
    /// cancellation). An action the run cannot take is recorded in the report's
    /// `rejected_actions` and changes nothing else.
    pub(crate) fn act(
        &mut self,
        action: &OperatorAction,
        at: i64,
    ) -> Result<Vec<Order>, RunFailed> {
        let by = action.by.as_str();
        let taken = if !self.is_live() {
            Err(format!(
                "the run is {}: it takes no more actions",
                self.run.state()
            ))
        } else {
            match &action.action {
                Action::RetryStep { step } => self.retry_step(by, step, at),
                Action::ResolveStep { step, result } => self.resolve_step(by, step, result, at),
                Action::CancelRun { reason } => return Err(self.cancel(by, reason, at)),
            }
        };
        taken.or_else(|reason| {
            self.rejected.push(RejectedAction {
                action: action.clone(),
                reason,
                at,
            });
            Ok(Vec::new())
        })
    }

    fn node(&self, step: &str) -> Result<NodeId, String> {
        self.tracker
            .dag()
            .id(step)
            .ok_or_else(|| format!("the run has no step `{step}`"))
    }

    /// Runs the step again: a step that failed for good (its descendants follow as it
    /// completes), or a finished one (complete, skipped after its failure, or resolved by
    /// hand), whose descendants are sent back to pending to run again after it. Its ancestors
    /// do not run again.
    fn retry_step(&mut self, by: &str, step: &str, at: i64) -> Result<Vec<Order>, String> {
        let id = self.node(step)?;
        let state = self.steps[id.0].state();
        if !matches!(
            state,
            StepState::Error
                | StepState::Complete
                | StepState::Skipped
                | StepState::ResolvedManually
        ) {
            return Err(format!(
                "step `{step}` is {state}: only a step that failed for good or finished is \
                 run again"
            ));
        }
        if self.needs_rerun(id) {
            self.rerun(by, id, at)?;
        } else {
            self.steps[id.0]
                .retry_by(by, at)
                .map_err(|e| e.to_string())?;
        }
        self.unhold(by, at);
        let mut out = Vec::new();
        self.start_attempt(id, at, &mut out);
        Ok(out)
    }

    /// Marks the step resolved with `result` as its output.
    fn resolve_step(
        &mut self,
        by: &str,
        step: &str,
        result: &Value,
        at: i64,
    ) -> Result<Vec<Order>, String> {
        let id = self.node(step)?;
        // A result the step's kind cannot take is refused before anything moves.
        match self.tracker.dag().node(id).kind {
            NodeKind::Decision => {
                step_io::chosen(self.tracker.dag(), &self.template, id, result)?;
            }
            NodeKind::Batch if !result.is_array() => {
                return Err(format!(
                    "batch step `{step}` is resolved with a JSON array of items, not {result}"
                ));
            }
            _ => {}
        }
        let before = self.steps[id.0].state();
        let reason = format!("resolved by operator {by}");
        self.steps[id.0]
            .apply_by(
                StepState::ResolvedManually,
                &reason,
                Actor::Operator(by.to_owned()),
                at,
            )
            .map_err(|e| e.to_string())?;
        self.unhold(by, at);
        if self.tracker.status(id) != Status::Ready {
            // Its parents have not all finished: it settles when they have.
            self.preset.insert(id, result.clone());
            self.grow();
            self.results[id.0] = Some(result.clone());
            return Ok(Vec::new());
        }
        // A worker still held back by its batch's limit never took a slot.
        let ran = before != StepState::Pending;
        if !ran {
            for queue in self.held.values_mut() {
                queue.retain(|&n| n != id);
            }
        }
        let progress = match self.interpret(id, result) {
            Ok(p) => p,
            Err(Unsettled::BadOutput(e) | Unsettled::Internal(e)) => return Err(e),
        };
        self.settled(id, result.clone(), progress, ran, at)
            .map_err(|failed| failed.message)
    }

    /// Cancels the run and every step not finished.
    fn cancel(&mut self, by: &str, reason: &str, at: i64) -> RunFailed {
        let operator = Actor::Operator(by.to_owned());
        let why = format!("cancelled by operator {by}: {reason}");
        let _ = self
            .run
            .apply(RunState::Cancelled, why.clone(), operator.clone(), 0, at);
        let step_reason = format!("the run was cancelled by operator {by}");
        for step in &mut self.steps {
            if matches!(
                step.state(),
                StepState::Pending
                    | StepState::Enqueued
                    | StepState::InProgress
                    | StepState::Error
                    | StepState::WaitingForRetry
            ) {
                let _ = step.apply_by(StepState::Cancelled, &step_reason, operator.clone(), at);
            }
        }
        RunFailed {
            message: format!("the run was {why}"),
            code: "dag_cancelled",
        }
    }

    /// The operator dealt with a failed step: a held run resumes once no step is failed.
    fn unhold(&mut self, by: &str, at: i64) {
        let failed = self.steps.iter().any(|s| s.state() == StepState::Error);
        if self.run.state() == RunState::Error && !failed {
            let reason = format!("operator {by} dealt with the failed step");
            let operator = Actor::Operator(by.to_owned());
            let _ = self
                .run
                .apply(RunState::InProgress, reason, operator, 0, at);
        }
    }
}
