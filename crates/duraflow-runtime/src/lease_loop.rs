//! The loop shared by the workflow dispatcher and the activity workers: take permits, lease that
//! much work from the store, run each piece in a task of its own (tracked by the engine), and
//! when there is none, sleep until a wakeup, the next due time or the polling interval.
//!
//! The permits are the engine's, shared with the work that arrives without a fetch (tasks a
//! commit claimed, turns a completion claimed), so the concurrency limits hold for both.

use std::future::Future;
use std::sync::Arc;

use duraflow_core::Timestamp;
use duraflow_store::{NextDue, Notifier, StoreResult};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::shared::Shared;
use crate::wait::{wait_for_work, Backoff};

/// What one lease loop leases and how it runs it.
pub(crate) struct LeaseLoop<Fetch, Run> {
    /// What is leased, for log lines (`workflow turns`, `activity tasks`).
    pub(crate) what: &'static str,
    /// One permit per piece of work running at once.
    pub(crate) permits: Arc<Semaphore>,
    /// The wakeup that announces new work of this kind.
    pub(crate) wakeup: fn(&Notifier) -> &Notify,
    /// When the next delayed work of this kind is due.
    pub(crate) due: fn(NextDue) -> Option<Timestamp>,
    /// Leases up to `max` pieces at `now`.
    pub(crate) fetch: Fetch,
    /// Runs one piece, holding its permit until it ends.
    pub(crate) run: Run,
}

impl<Fetch, FetchFut, W, Run, RunFut> LeaseLoop<Fetch, Run>
where
    Fetch: Fn(Timestamp, usize) -> FetchFut,
    FetchFut: Future<Output = StoreResult<Vec<W>>>,
    Run: Fn(W, OwnedSemaphorePermit) -> RunFut,
    RunFut: Future<Output = ()> + Send + 'static,
{
    /// Runs until the engine stops; the work it started is left to the engine's tracker.
    pub(crate) async fn run(self, shared: &Shared) {
        let opts = &shared.options;
        let permits = self.permits.clone();
        let mut backoff = Backoff::new(opts.store_retry_initial);
        loop {
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shared.stop.cancelled() => break,
            };
            let mut held = vec![first];
            while held.len() < opts.fetch_batch {
                match permits.clone().try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let notified = shared.store.notifier().map(|n| (self.wakeup)(n).notified());
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            let now = shared.clock.now();
            match (self.fetch)(now, held.len()).await {
                Err(e) => {
                    drop(held);
                    let delay = backoff.next_delay();
                    warn!(error = %e, ?delay, "fetching {} failed; retrying", self.what);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shared.stop.cancelled() => break,
                    }
                }
                Ok(work) if work.is_empty() => {
                    drop(held);
                    backoff.reset();
                    let due = shared.store.next_due(now).await.ok().and_then(self.due);
                    wait_for_work(
                        notified.as_mut().as_pin_mut(),
                        shared.clock.as_ref(),
                        due,
                        opts.poll_interval,
                        &shared.stop,
                    )
                    .await;
                }
                Ok(work) => {
                    backoff.reset();
                    for (piece, permit) in work.into_iter().zip(held) {
                        let fut = (self.run)(piece, permit);
                        shared.tracker.spawn(fut);
                    }
                }
            }
        }
    }
}
