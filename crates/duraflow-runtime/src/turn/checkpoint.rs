//! Checkpoints: commits a turn makes before it ends, when a step asks for its journal so far to
//! be durable. A checkpoint is an ordinary turn commit that keeps the lease: it writes the new
//! events with what they schedule (tasks, timers, children) and consumes the messages already
//! delivered, so that a crash after it delivers the rest again and nothing twice.

use duraflow_core::plan::Deliveries;
use duraflow_core::{TurnPlan, WorkflowRun};
use duraflow_store::{DirectTurn, InstanceInfo, LeaseToken, Message, MessageId, StoreError};
use tracing::debug;

use super::lease::Renewer;
use super::{empty_commit, existing_children, fill_commit, planned, TurnDecision, TurnDeps};

/// The checkpoints of one turn, and which of its messages they consumed.
pub(super) struct Checkpoints {
    /// The turn's messages: `None` for one that is not in the store (a direct turn's result).
    ids: Vec<Option<MessageId>>,
    starts: Vec<bool>,
    consumed: Vec<bool>,
    /// A direct turn's task, until the first commit of the turn carries it.
    direct: Option<DirectTurn>,
}

impl Checkpoints {
    /// The checkpoints of a turn with `messages`: stored ones, or the one result a direct turn
    /// delivers (`direct`).
    pub(super) fn new(messages: &[Message], direct: Option<DirectTurn>) -> Self {
        Checkpoints {
            ids: messages
                .iter()
                .map(|m| direct.is_none().then_some(m.id))
                .collect(),
            starts: messages
                .iter()
                .map(|m| matches!(m.kind, duraflow_store::MessageKind::Start { .. }))
                .collect(),
            consumed: vec![false; messages.len()],
            direct,
        }
    }

    /// The messages no checkpoint consumed: what the turn's last commit consumes.
    pub(super) fn all_consumed(&self) -> Vec<MessageId> {
        self.take_consumed(self.ids.len())
    }

    /// What makes the turn's next commit a direct one: its task, until a commit carried it.
    pub(super) fn take_direct(&mut self) -> Option<DirectTurn> {
        self.direct.take()
    }

    /// Whether a direct turn's task is still to be carried by a commit: none of the turn's
    /// commits has been stored (or taken it along) yet, so its result is not in the store.
    pub(super) fn direct_pending(&self) -> bool {
        self.direct.is_some()
    }

    /// Marks as consumed, and returns, the messages before `spent` and the start messages,
    /// leaving out those consumed already.
    fn take_consumed(&self, spent: usize) -> Vec<MessageId> {
        (0..self.ids.len())
            .filter(|&i| !self.consumed[i] && (i < spent || self.starts[i]))
            .filter_map(|i| self.ids[i])
            .collect()
    }

    /// Takes every checkpoint the run asks for, with `applied` of the turn's deliveries
    /// delivered; after each, the run goes on until it waits again. An `Err` is what the turn
    /// must do instead of going on: the checkpoint was not stored.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn take(
        &mut self,
        deps: &TurnDeps<'_>,
        instance: &InstanceInfo,
        token: LeaseToken,
        renewer: &Renewer<'_>,
        run: &mut WorkflowRun,
        deliveries: &Deliveries,
        applied: usize,
    ) -> Result<(), TurnDecision> {
        while run.checkpoint_wanted() {
            let shared = deps.shared;
            let spent = deliveries.spent_before(applied, self.ids.len());
            let consumed = self.take_consumed(spent);
            let mut commit = empty_commit(instance, token, consumed, shared.clock.now());
            commit.new_events = run.uncommitted_events();
            commit.journal_base = run.journal_len() - commit.new_events.len();
            let existing = existing_children(shared, &commit.new_events).await;
            let mut plan = TurnPlan::new();
            plan.schedule(planned(instance), &commit.new_events, &existing);
            fill_commit(&mut commit, plan);
            commit.cancelled_tasks = run.take_dropped_activities();
            commit.cancelled_awaits = run.take_dropped_awaits();
            commit.feed = run.take_feed();
            commit.keep_lease = Some(shared.options.turn_lease);
            commit.now = shared.clock.now();
            // A direct turn's first checkpoint takes the lease, which is renewed from then on.
            commit.direct = self.direct;
            match deps.committer.submit(commit).await {
                Ok(_) => {
                    if self.direct.take().is_some() {
                        renewer.hold();
                    }
                }
                Err(StoreError::LeaseLost { .. }) => {
                    debug!(instance_id = %instance.id, "checkpoint refused: the lease was lost");
                    return Err(TurnDecision::Lost);
                }
                Err(e) => {
                    return Err(TurnDecision::Abandon {
                        reason: format!("storing a checkpoint failed: {e}"),
                        retry: shared.options.store_retry_initial,
                    })
                }
            }
            for i in 0..self.ids.len() {
                if i < spent || self.starts[i] {
                    self.consumed[i] = true;
                }
            }
            drop(run.mark_committed());
            run.resume().await;
        }
        Ok(())
    }
}
