//! The activity worker pool: fetches visible tasks and runs each attempt with its lease renewed.

use std::sync::Arc;

use duraflow_store::TaskCompletion;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::warn;

use crate::attempt::run_attempt;
use crate::batcher::Batcher;
use crate::engine::Inner;
use crate::wait::{wait_for_work, Backoff};

/// Runs until the engine stops, then waits for the attempts in flight (shutdown cancels them
/// after its grace period).
pub(crate) async fn run_workers(inner: Arc<Inner>, completer: Batcher<TaskCompletion>) {
    let opts = &inner.options;
    let permits = Arc::new(Semaphore::new(opts.activity_concurrency));
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
        let notified = inner.store.notifier().map(|n| n.tasks.notified());
        tokio::pin!(notified);
        if let Some(n) = notified.as_mut().as_pin_mut() {
            n.enable();
        }
        let now = inner.clock.now();
        match inner
            .store
            .fetch_tasks(now, held.len(), opts.task_lease)
            .await
        {
            Err(e) => {
                drop(held);
                let delay = backoff.next_delay();
                warn!(error = %e, ?delay, "fetching activity tasks failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = inner.stop.cancelled() => break,
                }
            }
            Ok(tasks) if tasks.is_empty() => {
                drop(held);
                backoff.reset();
                let due = inner.store.next_due(now).await.ok().and_then(|d| d.task);
                wait_for_work(
                    notified.as_mut().as_pin_mut(),
                    inner.clock.as_ref(),
                    due,
                    opts.poll_interval,
                    &inner.stop,
                )
                .await;
            }
            Ok(tasks) => {
                backoff.reset();
                for (task, permit) in tasks.into_iter().zip(held) {
                    let inner = inner.clone();
                    let completer = completer.clone();
                    running.spawn(async move {
                        let _permit = permit;
                        run_attempt(&inner, &completer, task).await;
                    });
                }
            }
        }
    }
    while running.join_next().await.is_some() {}
}
