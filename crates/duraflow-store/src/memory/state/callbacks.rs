//! Callbacks: opened and closed by turn commits, resolved by external parties by token.

use duraflow_core::{OpId, Timestamp};

use super::{State, Wake};
use crate::error::{StoreError, StoreResult};
use crate::rules::{callback_outcome, callback_state, callback_token_taken, CallbackState};
use crate::types::{CallbackResolution, CallbackStatus, CallbackTarget, NewCallback, TurnCommit};

/// A stored callback.
#[derive(Debug)]
pub(super) struct Callback {
    target: CallbackTarget,
    status: CallbackStatus,
    timeout_at: Option<Timestamp>,
}

impl State {
    /// Refuses a commit that would open a callback with a token that is taken.
    pub(super) fn check_new_callbacks(&self, commit: &TurnCommit) -> StoreResult<()> {
        match commit
            .callbacks
            .iter()
            .find(|cb| self.callbacks.contains_key(&cb.token))
        {
            Some(cb) => Err(callback_token_taken(&commit.instance_id, cb)),
            None => Ok(()),
        }
    }

    /// Opens callbacks (checked by [`State::check_new_callbacks`]).
    pub(super) fn open_callbacks(&mut self, callbacks: Vec<NewCallback>) {
        for cb in callbacks {
            if let Some(inst) = self.instances.get_mut(&cb.instance_id) {
                inst.callbacks.insert(cb.token.clone());
            }
            let callback = Callback {
                target: CallbackTarget {
                    instance_id: cb.instance_id,
                    execution: cb.execution,
                    op: cb.op,
                    name: cb.name,
                },
                status: CallbackStatus::Open,
                timeout_at: cb.timeout_at,
            };
            self.callbacks.insert(cb.token, callback);
        }
    }

    /// Closes the open callbacks of `execution` of `instance_id` that a turn settled.
    pub(super) fn close_callbacks(
        &mut self,
        instance_id: &str,
        execution: u32,
        closed: &[(OpId, CallbackStatus)],
    ) {
        let Some(inst) = self.instances.get(instance_id) else {
            return;
        };
        for token in &inst.callbacks {
            let Some(cb) = self.callbacks.get_mut(token) else {
                continue;
            };
            let settled = closed
                .iter()
                .find(|(op, _)| cb.target.execution == execution && *op == cb.target.op);
            if let (Some((_, status)), CallbackStatus::Open) = (settled, cb.status) {
                cb.status = *status;
            }
        }
    }

    /// Deletes the callbacks of `instance_id` of executions before `before` (all of them when
    /// `None`).
    pub(super) fn drop_callbacks(&mut self, instance_id: &str, before: Option<u32>) {
        let Some(inst) = self.instances.get_mut(instance_id) else {
            return;
        };
        let callbacks = &mut self.callbacks;
        inst.callbacks.retain(|token| {
            let old = callbacks
                .get(token)
                .is_none_or(|cb| before.is_none_or(|b| cb.target.execution < b));
            if old {
                callbacks.remove(token);
            }
            !old
        });
    }

    /// The number of open callbacks.
    pub(super) fn open_callback_count(&self) -> u64 {
        self.callbacks
            .values()
            .filter(|cb| cb.status == CallbackStatus::Open)
            .count() as u64
    }

    pub(in crate::memory) fn resolve_callback(
        &mut self,
        now: Timestamp,
        token: &str,
        resolution: CallbackResolution,
        wake: &mut Wake,
    ) -> StoreResult<CallbackTarget> {
        let cb = self
            .callbacks
            .get_mut(token)
            .ok_or(StoreError::CallbackNotFound)?;
        let live = self
            .instances
            .get(&cb.target.instance_id)
            .is_some_and(|inst| {
                !inst.info.status.is_terminal() && inst.info.execution == cb.target.execution
            });
        match callback_state(live, cb.status, cb.timeout_at, now) {
            CallbackState::Open => {}
            CallbackState::TimedOut(refused) => {
                cb.status = CallbackStatus::TimedOut;
                return Err(refused);
            }
            CallbackState::Refused(refused) => return Err(refused),
        }
        let target = cb.target.clone();
        let (status, message) = callback_outcome(target.execution, target.op.clone(), resolution);
        cb.status = status;
        self.deliver(&target.instance_id, message, now);
        wake.turns = true;
        Ok(target)
    }
}
