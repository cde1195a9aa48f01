//! The workflow dispatcher: fetches instances with pending messages, runs their turns
//! concurrently, and commits them through the group committer.

use std::sync::Arc;

use duraflow_store::{StoreError, TurnCommit};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::batcher::Batcher;
use crate::engine::Inner;
use crate::turn::{run_turn, TurnDecision};
use crate::wait::{wait_for_work, Backoff};

/// Runs until the engine stops, then waits for the turns in flight.
pub(crate) async fn run_dispatcher(inner: Arc<Inner>, committer: Batcher<TurnCommit>) {
    let opts = &inner.options;
    let permits = Arc::new(Semaphore::new(opts.workflow_concurrency));
    let mut running = JoinSet::new();
    let mut backoff = Backoff::new(opts.store_retry_initial);
    loop {
        while running.try_join_next().is_some() {}
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = inner.stop.cancelled() => break,
        };
        let mut held = vec![first];
        while held.len() < opts.fetch_batch {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let notified = inner.store.notifier().map(|n| n.turns.notified());
        tokio::pin!(notified);
        if let Some(n) = notified.as_mut().as_pin_mut() {
            n.enable();
        }
        let now = inner.clock.now();
        match inner
            .store
            .fetch_turns(now, held.len(), opts.turn_lease)
            .await
        {
            Err(e) => {
                drop(held);
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "fetching workflow turns failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = inner.stop.cancelled() => break,
                }
            }
            Ok(works) if works.is_empty() => {
                drop(held);
                backoff.reset();
                let due = inner.store.next_due(now).await.ok().and_then(|d| d.turn);
                wait_for_work(
                    notified.as_mut().as_pin_mut(),
                    inner.clock.as_ref(),
                    due,
                    opts.poll_interval,
                    &inner.stop,
                )
                .await;
            }
            Ok(works) => {
                backoff.reset();
                for (work, permit) in works.into_iter().zip(held) {
                    let inner = inner.clone();
                    let committer = committer.clone();
                    running.spawn(async move {
                        let _permit = permit;
                        process_turn(&inner, &committer, work).await;
                    });
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
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
