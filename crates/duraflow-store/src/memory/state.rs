//! The in-memory store's state and the operations on it, all synchronous: the caller holds the
//! lock for the whole of each operation, which makes every operation atomic.

mod reads;
mod tasks;

use std::collections::BTreeMap;
use std::time::Duration;

use duraflow_core::{ActivityOptions, Event, Failure, OpId, Payload, Timestamp};

use crate::error::{StoreError, StoreResult};
use crate::types::{
    CreateOutcome, InstanceInfo, InstanceStatus, LeaseToken, Message, MessageId, MessageKind,
    NewInstance, NewMessage, NewTask, TaskId, TurnCommit, TurnWork,
};

/// Which notifications an operation calls for; sent once the lock is released.
///
/// Besides work that is visible at once, the store also wakes waiters for work that becomes
/// visible later: a dispatcher sleeping until the previous `next_due` must recompute it, or it
/// would oversleep a newly scheduled earlier deadline. Waiters re-check the store, so an early
/// wakeup costs one query.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Wake {
    pub(super) turns: bool,
    pub(super) tasks: bool,
    pub(super) instances: bool,
}

/// A lease on an instance or a task.
#[derive(Debug, Clone, Copy)]
struct Lease {
    token: LeaseToken,
    until: Timestamp,
}

impl Lease {
    /// Whether the lease still holds at `now`.
    fn live(self, now: Timestamp) -> bool {
        self.until > now
    }
}

/// Whether `lease` is the current lease and is held with `token`, live at `now` if given.
fn holds(lease: Option<Lease>, token: LeaseToken, now: Option<Timestamp>) -> bool {
    lease.is_some_and(|l| l.token == token && now.is_none_or(|now| l.live(now)))
}

#[derive(Debug)]
struct Instance {
    info: InstanceInfo,
    /// The journal of every execution, kept after continue-as-new.
    journals: BTreeMap<u32, Vec<Event>>,
    inbox: BTreeMap<MessageId, Message>,
    lease: Option<Lease>,
    /// Set by `abandon_turn`: no turn before this time.
    not_before: Option<Timestamp>,
}

impl Instance {
    fn leased(&self, now: Timestamp) -> bool {
        self.lease.is_some_and(|l| l.live(now))
    }

    fn visible(&self, now: Timestamp) -> impl Iterator<Item = &Message> {
        self.inbox.values().filter(move |m| m.visible_at <= now)
    }
}

#[derive(Debug)]
struct Task {
    id: TaskId,
    instance_id: String,
    execution: u32,
    op: OpId,
    name: String,
    input: Payload,
    options: ActivityOptions,
    scheduled_at: Timestamp,
    visible_at: Timestamp,
    /// Attempts made so far (counted at fetch, given back by a hand-back).
    attempt: u32,
    lease: Option<Lease>,
    last_failure: Option<Failure>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    instances: BTreeMap<String, Instance>,
    tasks: BTreeMap<TaskId, Task>,
    last_message: i64,
    last_task: i64,
    last_token: i64,
}

fn instance_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("instance {id:?}"))
}

fn instance_lease_lost(id: &str) -> StoreError {
    StoreError::LeaseLost {
        what: format!("instance {id:?}"),
    }
}

impl State {
    fn next_message_id(&mut self) -> MessageId {
        self.last_message += 1;
        MessageId(self.last_message)
    }

    fn next_task_id(&mut self) -> TaskId {
        self.last_task += 1;
        TaskId(self.last_task)
    }

    fn next_token(&mut self) -> LeaseToken {
        self.last_token += 1;
        LeaseToken(self.last_token)
    }

    /// Puts a message in an existing instance's inbox, without checks.
    fn deliver(&mut self, instance_id: &str, kind: MessageKind, visible_at: Timestamp) {
        let id = self.next_message_id();
        if let Some(inst) = self.instances.get_mut(instance_id) {
            inst.inbox.insert(
                id,
                Message {
                    id,
                    instance_id: instance_id.to_owned(),
                    kind,
                    visible_at,
                },
            );
        }
    }

    /// Inserts an instance that does not exist yet, with its start message.
    fn insert_instance(&mut self, new: NewInstance, wake: &mut Wake) {
        let id = new.id;
        let created_at = new.created_at;
        let info = InstanceInfo {
            id: id.clone(),
            name: new.name,
            status: InstanceStatus::Pending,
            execution: 1,
            input: new.input,
            output: None,
            failure: None,
            parent: new.parent,
            created_at,
            updated_at: created_at,
        };
        self.instances.insert(
            id.clone(),
            Instance {
                info,
                journals: BTreeMap::from([(1, Vec::new())]),
                inbox: BTreeMap::new(),
                lease: None,
                not_before: None,
            },
        );
        self.deliver(&id, MessageKind::Start { execution: 1 }, created_at);
        wake.turns = true;
    }

    pub(super) fn create_instance(&mut self, new: NewInstance, wake: &mut Wake) -> CreateOutcome {
        if let Some(existing) = self.instances.get(&new.id) {
            return CreateOutcome::Existing(Box::new(existing.info.clone()));
        }
        self.insert_instance(new, wake);
        CreateOutcome::Created
    }

    pub(super) fn send(&mut self, message: NewMessage, wake: &mut Wake) -> StoreResult<()> {
        let inst = self
            .instances
            .get(&message.instance_id)
            .ok_or_else(|| instance_not_found(&message.instance_id))?;
        if inst.info.status.is_terminal() {
            return Err(StoreError::InstanceFinished {
                id: message.instance_id,
                status: inst.info.status.to_string(),
            });
        }
        self.deliver(&message.instance_id, message.kind, message.visible_at);
        wake.turns = true;
        Ok(())
    }

    pub(super) fn fetch_turns(
        &mut self,
        now: Timestamp,
        max: usize,
        lease: Duration,
    ) -> Vec<TurnWork> {
        let mut ready: Vec<(MessageId, String)> = self
            .instances
            .values()
            .filter(|inst| {
                !inst.info.status.is_terminal()
                    && !inst.leased(now)
                    && inst.not_before.is_none_or(|t| t <= now)
            })
            .filter_map(|inst| {
                inst.visible(now)
                    .next()
                    .map(|m| (m.id, inst.info.id.clone()))
            })
            .collect();
        ready.sort_unstable();
        ready.truncate(max);

        let until = now.plus(lease);
        let mut work = Vec::with_capacity(ready.len());
        for (_, id) in ready {
            let token = self.next_token();
            let Some(inst) = self.instances.get_mut(&id) else {
                continue;
            };
            inst.lease = Some(Lease { token, until });
            let journal = inst
                .journals
                .get(&inst.info.execution)
                .cloned()
                .unwrap_or_default();
            work.push(TurnWork {
                instance: inst.info.clone(),
                journal: Ok(journal),
                messages: inst.visible(now).cloned().collect(),
                token,
            });
        }
        work
    }

    /// Checks a commit against the instance without changing anything.
    fn check_commit(&self, commit: &TurnCommit) -> StoreResult<()> {
        let id = &commit.instance_id;
        let inst = self
            .instances
            .get(id)
            .ok_or_else(|| instance_not_found(id))?;
        if !holds(inst.lease, commit.token, Some(commit.now)) {
            return Err(instance_lease_lost(id));
        }
        if commit.execution != inst.info.execution {
            return Err(StoreError::Invalid(format!(
                "a turn of instance {id:?} commits to execution {} but the current execution is {}",
                commit.execution, inst.info.execution
            )));
        }
        let len = inst.journals.get(&commit.execution).map_or(0, Vec::len);
        if commit.journal_base != len {
            // Someone else extended the journal since this turn read it.
            return Err(instance_lease_lost(id));
        }
        for child in &commit.new_instances {
            crate::types::validate_instance_id(&child.id)?;
        }
        Ok(())
    }

    pub(super) fn commit_turn(&mut self, commit: TurnCommit, wake: &mut Wake) -> StoreResult<()> {
        self.check_commit(&commit)?;
        // From here on nothing can fail, so the commit applies in full.
        let TurnCommit {
            instance_id,
            token: _,
            execution,
            journal_base: _,
            new_events,
            consumed,
            messages,
            new_instances,
            tasks,
            status,
            output,
            failure,
            continue_as_new,
            now,
        } = commit;

        for child in new_instances {
            if !self.instances.contains_key(&child.id) {
                self.insert_instance(child, wake);
            }
        }

        if let Some(inst) = self.instances.get_mut(&instance_id) {
            inst.journals
                .entry(execution)
                .or_default()
                .extend(new_events);
            for id in consumed {
                inst.inbox.remove(&id);
            }
        }

        for message in messages {
            let open = self
                .instances
                .get(&message.instance_id)
                .is_some_and(|inst| !inst.info.status.is_terminal());
            if open {
                self.deliver(&message.instance_id, message.kind, message.visible_at);
                wake.turns = true;
            }
        }

        for task in tasks {
            let id = self.next_task_id();
            let NewTask {
                instance_id,
                execution,
                op,
                name,
                input,
                options,
                scheduled_at,
            } = task;
            self.tasks.insert(
                id,
                Task {
                    id,
                    instance_id,
                    execution,
                    op,
                    name,
                    input,
                    options,
                    scheduled_at,
                    visible_at: scheduled_at,
                    attempt: 0,
                    lease: None,
                    last_failure: None,
                },
            );
            wake.tasks = true;
        }

        let Some(inst) = self.instances.get_mut(&instance_id) else {
            return Ok(());
        };
        inst.info.status = status;
        inst.info.output = output;
        inst.info.failure = failure;
        inst.info.updated_at = now;
        inst.lease = None;
        if let Some(input) = continue_as_new {
            inst.info.execution += 1;
            inst.info.input = input;
            inst.info.status = InstanceStatus::Running;
            inst.journals.insert(inst.info.execution, Vec::new());
            wake.instances = true;
        }
        if inst.info.status.is_terminal() {
            inst.inbox.clear();
            inst.not_before = None;
            self.tasks.retain(|_, t| t.instance_id != instance_id);
            wake.instances = true;
        } else if !inst.inbox.is_empty() {
            // Messages the turn did not consume can be fetched again now the lease is free.
            wake.turns = true;
        }
        Ok(())
    }

    pub(super) fn abandon_turn(
        &mut self,
        instance_id: &str,
        token: LeaseToken,
        retry_at: Timestamp,
        wake: &mut Wake,
    ) -> StoreResult<()> {
        let inst = self
            .instances
            .get_mut(instance_id)
            .ok_or_else(|| instance_not_found(instance_id))?;
        if !holds(inst.lease, token, None) {
            return Err(instance_lease_lost(instance_id));
        }
        inst.lease = None;
        inst.not_before = Some(retry_at);
        wake.turns = true;
        Ok(())
    }
}
