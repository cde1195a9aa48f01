//! Group commit for creating instances: `create_instance` calls made while a creation is being
//! written share the next statement (one round trip and one commit for all of them), as the
//! engine's batchers do for commits and completions. A call made when nothing is being written
//! is written at once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::conns::Conns;
use duraflow_store::{CreateOutcome, NewInstance, Notifier, StoreError, StoreResult, TurnWork};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::listen;
use crate::ops::instances::{self, FirstTurnClaim};
use crate::ops::Wake;

/// The most instances one statement creates.
const MAX_BATCH: usize = 128;

/// What a creation answers: its outcome, and its first turn when the creation claimed it.
type Created = (CreateOutcome, Option<TurnWork>);

type Reply = oneshot::Sender<StoreResult<Created>>;

/// A creation waiting for the writer: the instance, its claim of its first turn (if any), and
/// where the answer goes.
type Request = (NewInstance, Option<FirstTurnClaim>, Reply);

/// The queue of creations waiting for the writer.
pub(crate) struct Creates {
    tx: mpsc::UnboundedSender<Request>,
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
        if self.tx.send((new, None, reply)).is_err() {
            return Err(closed());
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(closed()))
            .map(|(outcome, _)| outcome)
    }
}

impl Creates {
    /// Queues many creations (their ids already validated) together, so they share statements
    /// (up to [`MAX_BATCH`] each), each claiming its first turn as its claim says (see
    /// `instances::create_batch`), and waits for their outcomes, in the order given.
    pub(crate) async fn create_many(
        &self,
        new: Vec<(NewInstance, Option<FirstTurnClaim>)>,
    ) -> StoreResult<Vec<Created>> {
        let mut outcomes = Vec::with_capacity(new.len());
        for (instance, claim) in new {
            let (reply, outcome) = oneshot::channel();
            if self.tx.send((instance, claim, reply)).is_err() {
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
    mut rx: mpsc::UnboundedReceiver<Request>,
    conns: Conns,
    channel: String,
    notifier: Arc<Notifier>,
) {
    let mut waiting: VecDeque<Request> = VecDeque::new();
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
        let mut new = Vec::with_capacity(batch.len());
        let mut claims = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (instance, claim, reply) in batch {
            new.push(instance);
            claims.push(claim);
            replies.push(reply);
        }
        match write(&conns, &new, &claims, &channel).await {
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
    claims: &[Option<FirstTurnClaim>],
    channel: &str,
) -> StoreResult<(Vec<Created>, Wake)> {
    let mut conn = conns.acquire().await?;
    let mut wake = Wake::default();
    let outcomes = instances::create_batch(&mut conn, new, claims, channel, &mut wake).await?;
    conns.keep(conn);
    Ok((outcomes, wake))
}
