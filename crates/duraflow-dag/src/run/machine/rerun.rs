//! Running a finished step again with its descendants: their states go back through the
//! operator rows of the step table, and the readiness tracker is rebuilt from the run's
//! resolutions without theirs.

use std::collections::BTreeSet;

use super::{Resolution, RunMachine};
use crate::graph::{NodeId, NodeKind, Status};
use crate::state::StepState;
use crate::Readiness;

impl RunMachine {
    /// `id` and every step downstream of it.
    fn downstream(&self, id: NodeId) -> BTreeSet<NodeId> {
        let dag = self.tracker.dag();
        let mut seen = BTreeSet::from([id]);
        let mut todo = vec![id];
        while let Some(n) = todo.pop() {
            for &c in dag.children(n) {
                if seen.insert(c) {
                    todo.push(c);
                }
            }
        }
        seen
    }

    /// Whether running `id` again needs its descendants reset (they, or it, have moved past
    /// waiting for it).
    pub(super) fn needs_rerun(&self, id: NodeId) -> bool {
        self.steps[id.0].state() != StepState::Error
            || self
                .downstream(id)
                .iter()
                .any(|&n| n != id && self.steps[n.0].state() != StepState::Pending)
    }

    /// Sends the finished step `id` back to `enqueued` and its descendants back to `pending`,
    /// for operator `by`, and rebuilds the tracker without their resolutions; `id` is then
    /// ready. Refused (changing nothing) when one of them is running or waiting for a retry,
    /// when one is a batch worker (a batch's items are not expanded twice), or when `id` was
    /// not chosen by a decision.
    pub(super) fn rerun(&mut self, by: &str, id: NodeId, at: i64) -> Result<(), String> {
        let set = self.downstream(id);
        let dag = self.tracker.dag();
        let name = dag.node(id).name.clone();
        for &n in &set {
            let state = self.steps[n.0].state();
            let step = &dag.node(n).name;
            if matches!(dag.node(n).kind, NodeKind::Worker { .. }) {
                return Err(format!(
                    "step `{step}` is a batch worker downstream of `{name}`: running a batch \
                     step's items again is not supported"
                ));
            }
            if matches!(
                state,
                StepState::Enqueued | StepState::InProgress | StepState::WaitingForRetry
            ) {
                return Err(format!(
                    "step `{step}` downstream of `{name}` is {state}: wait for it to end"
                ));
            }
        }
        // Replay every resolution but theirs on the graph as it started.
        let (mut tracker, _) = Readiness::new(self.base.clone());
        let kept: Vec<(NodeId, Resolution)> = self
            .resolutions
            .iter()
            .filter(|(n, _)| !set.contains(n))
            .cloned()
            .collect();
        for (n, resolution) in &kept {
            let replayed = match resolution {
                Resolution::Complete => tracker.complete(*n),
                Resolution::Skip => tracker.skip(*n),
                Resolution::Decide(ids) => tracker.decide(*n, ids),
                Resolution::Batch(items) => tracker.complete_batch(*n, *items).map(|(p, _)| p),
            };
            replayed.map_err(|e| format!("the run's graph cannot be rebuilt: {e}"))?;
        }
        if tracker.dag().len() != self.tracker.dag().len() {
            return Err("the run's graph cannot be rebuilt: its batches differ".into());
        }
        if tracker.status(id) != Status::Ready {
            return Err(format!(
                "step `{name}` is not on a chosen path: there is nothing to run again"
            ));
        }
        // Every check passed: from here each move has a row.
        self.steps[id.0]
            .retry_by(by, at)
            .map_err(|e| e.to_string())?;
        for &n in set.iter().filter(|&&n| n != id) {
            if self.steps[n.0].state() != StepState::Pending {
                self.steps[n.0]
                    .rewind_by(by, &name, at)
                    .map_err(|e| e.to_string())?;
            }
        }
        for &n in &set {
            self.results[n.0] = None;
            self.preset.remove(&n);
        }
        self.tracker = tracker;
        self.resolutions = kept;
        Ok(())
    }
}
