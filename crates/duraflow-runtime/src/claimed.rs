//! Turns that reach the engine without a fetch: claimed by an activity completion (see
//! `attempt.rs`) or by a client starting an instance (see `client.rs`). Both run them through
//! this trait, which the dispatcher implements, so neither depends on the dispatcher.

use std::sync::Arc;
use std::time::Duration;

use duraflow_store::TurnWork;
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

    /// Runs a claimed turn in a task of its own (tracked by the engine), holding `permit`.
    fn spawn_turn(self: Arc<Self>, work: TurnWork, permit: OwnedSemaphorePermit);
}
