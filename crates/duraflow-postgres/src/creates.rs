//! Group commit for creating instances: `create_instance` calls made while a creation is being
//! written share the next statement (one round trip and one commit for all of them), as the
//! engine's batchers do for commits and completions. A call made when nothing is being written
//! is written at once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::conns::Conns;
use duraflow_store::{CreateOutcome, NewInstance, Notifier, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::listen;
use crate::ops::{instances, Wake};

/// The most instances one statement creates.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<StoreResult<CreateOutcome>>;

/// The queue of creations waiting for the writer.
pub(crate) struct Creates {
    tx: mpsc::UnboundedSender<(NewInstance, Reply)>,
}

impl Creates {
    /// Starts the writer on `conns`; it ends when the [`Creates`] is dropped (or is aborted).
    pub(crate) fn spawn(
        conns: Conns,
        channel: String,
        notifier: Arc<Notifier>,
    ) -> (Creates, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(run(rx, conns, channel, notifier));
        (Creates { tx }, writer)
    }

    /// Queues a creation (its id already validated) and waits for its outcome.
    pub(crate) async fn create(&self, new: NewInstance) -> StoreResult<CreateOutcome> {
        let (reply, outcome) = oneshot::channel();
        if self.tx.send((new, reply)).is_err() {
            return Err(closed());
        }
        outcome.await.unwrap_or_else(|_| Err(closed()))
    }
}

impl Creates {
    /// Queues many creations (their ids already validated) together, so they share statements
    /// (up to [`MAX_BATCH`] each), and waits for their outcomes, in the order given.
    pub(crate) async fn create_many(
        &self,
        new: Vec<NewInstance>,
    ) -> StoreResult<Vec<CreateOutcome>> {
        let mut outcomes = Vec::with_capacity(new.len());
        for instance in new {
            let (reply, outcome) = oneshot::channel();
            if self.tx.send((instance, reply)).is_err() {
                return Err(closed());
            }
            outcomes.push(outcome);
        }
        let mut out = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            out.push(outcome.await.unwrap_or_else(|_| Err(closed()))?);
        }
        Ok(out)
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the PostgreSQL store is closed".into())
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<(NewInstance, Reply)>,
    conns: Conns,
    channel: String,
    notifier: Arc<Notifier>,
) {
    let mut waiting: VecDeque<(NewInstance, Reply)> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => waiting.push_back(request),
                Err(_) => break,
            }
        }
        // One of each id per statement; a repeated id waits for the next one (and finds the
        // instance the first made).
        let mut ids = HashSet::with_capacity(waiting.len());
        let mut batch = Vec::with_capacity(waiting.len());
        let mut later = VecDeque::new();
        for request in waiting.drain(..) {
            if batch.len() < MAX_BATCH && ids.insert(request.0.id.clone()) {
                batch.push(request);
            } else {
                later.push_back(request);
            }
        }
        waiting = later;
        let (new, replies): (Vec<NewInstance>, Vec<Reply>) = batch.into_iter().unzip();
        match write(&conns, &new, &channel).await {
            Ok((outcomes, wake)) => {
                if wake.turns {
                    listen::wake(&notifier, listen::TURNS);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Creates a batch in one statement, which commits by itself.
async fn write(
    conns: &Conns,
    new: &[NewInstance],
    channel: &str,
) -> StoreResult<(Vec<CreateOutcome>, Wake)> {
    let mut conn = conns.acquire().await?;
    let mut wake = Wake::default();
    let outcomes = instances::create_batch(&mut conn, new, channel, &mut wake).await?;
    conns.keep(conn);
    Ok((outcomes, wake))
}
