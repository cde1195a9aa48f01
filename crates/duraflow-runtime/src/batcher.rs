//! Group commit: requests that arrive while a store write is in flight share the next one.
//! The engine commits turns and completes tasks through it; `duraflow serve` completes its
//! HTTP workers' tasks through it.

use std::future::Future;
use std::sync::Arc;

use duraflow_store::{StoreError, StoreResult};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

type Reply<R> = oneshot::Sender<StoreResult<R>>;

/// Collects requests from many tasks and writes them in batches: one writer drains whatever has
/// queued (up to a maximum) into a single store call, so concurrent turns share a transaction.
/// Each request gets its own result `R` back.
pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

/// The store call a batcher makes: the batch in, one result per item out (or an error for all).
pub type BatchWrite<T, R> =
    Arc<dyn Fn(Vec<T>) -> BoxFuture<'static, StoreResult<Vec<StoreResult<R>>>> + Send + Sync>;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer task. It ends when every `Batcher` handle is dropped and the queue is
    /// drained.
    pub fn spawn(max_batch: usize, write: BatchWrite<T, R>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(run(rx, max_batch.max(1), write));
        (Batcher { tx }, handle)
    }

    /// Queues one request and waits for its own result.
    pub fn submit(&self, item: T) -> impl Future<Output = StoreResult<R>> + Send {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send((item, reply)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Unavailable(
                    "the engine is shutting down".into(),
                ));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("the batch writer stopped".into())))
        }
    }
}

async fn run<T, R>(
    mut rx: mpsc::UnboundedReceiver<(T, Reply<R>)>,
    max_batch: usize,
    write: BatchWrite<T, R>,
) {
    let mut items = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    while let Some((item, reply)) = rx.recv().await {
        items.push(item);
        replies.push(reply);
        while items.len() < max_batch {
            match rx.try_recv() {
                Ok((item, reply)) => {
                    items.push(item);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let batch = std::mem::take(&mut items);
        let n = batch.len();
        match write(batch).await {
            Ok(results) if results.len() == n => {
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Ok(results) => {
                let err = StoreError::Other(format!(
                    "the store answered {} results for a batch of {n}",
                    results.len()
                ));
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Err(e) => {
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::sync::{Arc, Mutex};

    use duraflow_store::{StoreError, StoreResult};
    use futures::FutureExt;
    use tokio::sync::Semaphore;

    use super::{BatchWrite, Batcher};

    /// A batcher of at most `max` items whose write records each batch, tells `entered` (a
    /// permit) that it began, waits for a permit of `gate`, and answers each item doubled, or
    /// fails the whole batch when `fail`.
    struct Gated {
        batcher: Batcher<u32, u32>,
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        gate: Arc<Semaphore>,
        entered: Arc<Semaphore>,
    }

    fn gated(max: usize, open: usize, fail: bool) -> Gated {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(open));
        let entered = Arc::new(Semaphore::new(0));
        let (b, g, e) = (batches.clone(), gate.clone(), entered.clone());
        let write: BatchWrite<u32, u32> = Arc::new(move |batch: Vec<u32>| {
            let (batches, gate, entered) = (b.clone(), g.clone(), e.clone());
            async move {
                batches.lock().unwrap().push(batch.clone());
                entered.add_permits(1);
                gate.acquire().await.unwrap().forget();
                if fail {
                    return Err(StoreError::Unavailable("down".into()));
                }
                Ok(batch.into_iter().map(|n| Ok(n * 2)).collect())
            }
            .boxed()
        });
        let (batcher, _task) = Batcher::spawn(max, write);
        Gated {
            batcher,
            batches,
            gate,
            entered,
        }
    }

    /// Submits 0 and waits until its write began, then submits `rest`, which queue behind it.
    async fn behind_a_write(g: &Gated, rest: std::ops::RangeInclusive<u32>) -> Vec<u32> {
        let first = tokio::spawn(g.batcher.submit(0));
        g.entered.acquire().await.unwrap().forget();
        let rest: Vec<_> = rest.map(|n| tokio::spawn(g.batcher.submit(n))).collect();
        // Every one of them is queued before the first write is let go (the channel holds them).
        g.gate.add_permits(rest.len() + 1);
        let mut results = vec![first.await.unwrap().unwrap()];
        for r in rest {
            results.push(r.await.unwrap().unwrap());
        }
        results
    }

    /// What is submitted while a write is in flight goes into the next write, together; every
    /// item gets its own result.
    #[tokio::test]
    async fn items_submitted_during_a_write_share_the_next_and_get_their_own_results() {
        let g = gated(128, 0, false);
        let results = behind_a_write(&g, 1..=10).await;
        assert_eq!(results, (0..=10).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(
            *g.batches.lock().unwrap(),
            vec![vec![0], (1..=10).collect::<Vec<_>>()],
            "one write for the first item, one for the ten that came while it ran"
        );
    }

    /// A write that fails fails each of its items with its error; the batcher goes on.
    #[tokio::test]
    async fn a_failed_write_fails_each_of_its_items() {
        let g = gated(128, 10, true);
        let results: Vec<StoreResult<u32>> =
            futures::future::join_all((0..3).map(|n| g.batcher.submit(n))).await;
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(StoreError::Unavailable(m)) if m == "down")));
        assert!(
            g.batcher.submit(7).await.is_err(),
            "the writer still answers"
        );
    }

    /// A batch larger than the most is split.
    #[tokio::test]
    async fn batches_hold_at_most_the_maximum() {
        let g = gated(4, 0, false);
        behind_a_write(&g, 1..=6).await;
        let sizes: Vec<usize> = g.batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 4, 2]);
    }
}
