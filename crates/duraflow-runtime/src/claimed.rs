//! Turns that reach the engine without a fetch: claimed by an activity completion (see
//! `attempt.rs`), by a client starting an instance or sending one a message (see `client`), or
//! run directly on an activity's result. They run through this trait, which the dispatcher
//! implements, so neither depends on the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use duraflow_store::{FetchFilter, JournalCache, OpResult, TaskWork, TurnWork};
use futures::future::BoxFuture;
use tokio::sync::OwnedSemaphorePermit;

/// Runs turns this process claimed from the store, under the engine's turn permits.
pub(crate) trait ClaimedTurns: Send + Sync {
    /// A turn permit, when the engine is not stopping and has room for another turn. Take it
    /// before claiming, so that what is claimed can run at once.
    fn room_for_a_turn(&self) -> Option<OwnedSemaphorePermit>;

    /// The lease to claim a turn with.
    fn turn_lease(&self) -> Duration;

    /// Whether this engine takes the turns of instances of `queue` running `workflow`; a turn
    /// it does not is never claimed, but left to an engine that does.
    fn serves(&self, queue: &str, workflow: &str) -> bool;

    /// What this engine fetches turns of: a claim by a send takes only such a turn.
    fn turn_filter(&self) -> &FetchFilter;

    /// The journals this engine holds warm, which a claimed turn leaves unread.
    fn journal_cache(&self) -> &Arc<dyn JournalCache>;

    /// Runs a claimed turn in a task of its own (tracked by the engine), holding `permit`.
    fn spawn_turn(self: Arc<Self>, work: TurnWork, permit: OwnedSemaphorePermit);

    /// Runs the next turn of `task`'s instance on `result` at once, holding `permit`, when this
    /// engine keeps the instance's run warm and the run waits for `task` and nothing else: a
    /// *direct turn*, committed with the task's deletion in one write, without posting the
    /// result to the inbox or leasing the instance (see `duraflow_store::TurnCommit::direct`).
    /// Gives the result and the permit back when it took no direct turn or stored none of it
    /// (another turn got to the instance first): the caller then reports the result as usual.
    fn direct_turn(
        self: Arc<Self>,
        task: &TaskWork,
        result: OpResult,
        permit: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<(), (OpResult, OwnedSemaphorePermit)>>;
}
