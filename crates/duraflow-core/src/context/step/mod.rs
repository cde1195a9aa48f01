//! Inline steps: work run in the workflow's own process, each attempt journaled, with
//! durability chosen by [`StepSemantics`] and retries on durable timers.

mod future;
mod step_context;

pub use future::StepFuture;
pub(crate) use step_context::heartbeat;
pub use step_context::StepContext;

/// When a step's journal records are made durable, which decides what a crash can repeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepSemantics {
    /// The default. The closure's result is checkpointed when it returns, and the workflow does
    /// not move past the step until that checkpoint is durable (the turn commits what it has so
    /// far, keeping its lease, group-committed with other instances' work). A crash while the
    /// closure runs runs it again: at least once per attempt, and no step whose result was
    /// stored ever runs again.
    #[default]
    AtLeastOncePerRetry,
    /// The attempt's start is checkpointed durably before the closure runs. If the process
    /// stops while it runs, the attempt is not run again: replay finds it started with no
    /// result and records it as failed (kind `step_interrupted`), and the retry policy decides
    /// whether another attempt is made. For side effects that must not happen twice.
    AtMostOncePerRetry,
    /// No checkpoint of its own: the result is journaled and made durable with the rest of the
    /// turn, so the workflow goes on at once. A crash before the turn commits runs the step
    /// again, and steps after it too. For cheap pure computations whose repetition costs
    /// nothing.
    AtLeastOnceWithTurn,
}

impl StepSemantics {
    /// Whether the step's result must be durable before the workflow sees it.
    pub(crate) fn result_durable_first(self) -> bool {
        !matches!(self, StepSemantics::AtLeastOnceWithTurn)
    }
}
