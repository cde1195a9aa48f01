//! The workflow dispatcher: leases instances with pending messages, runs their turns
//! concurrently, and commits them through the group committer.

use std::sync::Arc;

use duraflow_store::{StoreError, TurnCommit};
use tracing::{debug, warn};

use crate::batcher::Batcher;
use crate::engine::Inner;
use crate::lease_loop::LeaseLoop;
use crate::turn::{run_turn, TurnDecision};

/// Runs until the engine stops, then waits for the turns in flight.
pub(crate) async fn run_dispatcher(inner: Arc<Inner>, committer: Batcher<TurnCommit>) {
    LeaseLoop {
        what: "workflow turns",
        concurrency: inner.options.workflow_concurrency,
        wakeup: |n| &n.turns,
        due: |d| d.turn,
        fetch: |inner: Arc<Inner>, now, max| async move {
            inner
                .store
                .fetch_turns(now, max, inner.options.turn_lease)
                .await
        },
        run: move |inner: Arc<Inner>, work| {
            let committer = committer.clone();
            async move { process_turn(&inner, &committer, work).await }
        },
    }
    .run(inner.clone())
    .await
}

async fn process_turn(
    inner: &Inner,
    committer: &Batcher<TurnCommit>,
    work: duraflow_store::TurnWork,
) {
    let id = work.instance.id.clone();
    let token = work.token;
    let (reason, retry) = match run_turn(inner, work).await {
        TurnDecision::Commit { commit, finished } => match committer.submit(*commit).await {
            Ok(()) => {
                if finished {
                    inner.active.cancel_instance(&id);
                }
                return;
            }
            Err(StoreError::LeaseLost { .. }) => {
                debug!(instance_id = %id, "turn discarded: its lease was lost");
                return;
            }
            Err(e) => (
                format!("committing the turn failed: {e}"),
                inner.options.store_retry_initial,
            ),
        },
        TurnDecision::Abandon { reason } => (reason, std::time::Duration::from_secs(60)),
    };
    warn!(instance_id = %id, "{reason}; the turn will be retried");
    let retry_at = inner.clock.now().plus(retry);
    if let Err(e) = inner.store.abandon_turn(&id, token, retry_at).await {
        debug!(instance_id = %id, error = %e, "could not abandon the turn; its lease will expire");
    }
}
