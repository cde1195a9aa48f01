//! What a step's closure is told about the attempt it runs.

use std::fmt;
use std::sync::Arc;

use crate::op_id::OpId;
use crate::replay::state::{lock, Shared};

/// Handed to a step's closure on every attempt: which operation and attempt it is, and a way
/// to keep the turn's lease while it runs long.
#[derive(Clone)]
pub struct StepContext {
    pub(super) state: Shared,
    pub(super) instance_id: Arc<str>,
    pub(super) execution: u32,
    pub(super) op: OpId,
    pub(super) name: Arc<str>,
    pub(super) attempt: u32,
}

impl fmt::Debug for StepContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("instance_id", &self.instance_id)
            .field("execution", &self.execution)
            .field("op", &self.op)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl StepContext {
    /// The instance running the step.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The execution running the step.
    pub fn execution(&self) -> u32 {
        self.execution
    }

    /// The step's operation id (the same on every attempt and every replay).
    pub fn op_id(&self) -> &OpId {
        &self.op
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which attempt this is: 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A key that names this step of this execution and nothing else, the same on every
    /// attempt: `instance/execution/op`. Pass it to an external system as an idempotency key
    /// so that an attempt repeated after a crash is recognised there.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.instance_id, self.execution, self.op)
    }

    /// Tells the engine that the step is alive, renewing the turn's lease now rather than at
    /// the next periodic renewal (see `WorkflowContext::heartbeat`).
    pub fn heartbeat(&self) {
        heartbeat(&self.state);
    }
}

/// Calls the run's heartbeat hook, if its driver installed one.
pub(crate) fn heartbeat(state: &Shared) {
    let hook = lock(state).heartbeat.clone();
    if let Some(hook) = hook {
        hook();
    }
}
