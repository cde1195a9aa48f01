//! Group commit: requests that arrive while a store write is in flight share the next one.

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
pub(crate) struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<(T, Reply<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

/// The store call a batcher makes: the batch in, one result per item out (or an error for all).
pub(crate) type BatchWrite<T, R> =
    Arc<dyn Fn(Vec<T>) -> BoxFuture<'static, StoreResult<Vec<StoreResult<R>>>> + Send + Sync>;

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer task. It ends when every `Batcher` handle is dropped and the queue is
    /// drained.
    pub(crate) fn spawn(max_batch: usize, write: BatchWrite<T, R>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(run(rx, max_batch.max(1), write));
        (Batcher { tx }, handle)
    }

    /// Queues one request and waits for its own result.
    pub(crate) fn submit(&self, item: T) -> impl Future<Output = StoreResult<R>> + Send {
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
