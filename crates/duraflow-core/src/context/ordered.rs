//! [`OrderedSet`]: futures polled in a deterministic order, for code that waits for whichever
//! of many operations ends next (the items of a map, the steps of a DAG run).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// A future held by an [`OrderedSet`].
pub type OrderedFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// Futures keyed by a number, polled in rounds: in a round, every future woken since the last
/// one (or just pushed) is polled once, lowest key first.
///
/// The order in which workflow code polls its operations is the order in which they issue
/// their events, which the journal records and replay must repeat. It must therefore not
/// depend on how often futures happen to be woken, which differs between a live run and a
/// replay; a `FuturesUnordered` stops part way through its futures once two of them have woken
/// themselves (and a nested batch wakes itself whenever all its items wait), so it does not
/// qualify. Since the engine runs the workflow until it blocks after each delivery, live and on
/// replay, the futures that end in a round are those the last delivery completed.
pub struct OrderedSet<O> {
    items: BTreeMap<usize, (OrderedFuture<O>, Waker)>,
    ready: Arc<Mutex<BTreeSet<usize>>>,
    parent: Arc<AtomicWaker>,
}

impl<O> Default for OrderedSet<O> {
    fn default() -> Self {
        OrderedSet {
            items: BTreeMap::new(),
            ready: Arc::default(),
            parent: Arc::new(AtomicWaker::new()),
        }
    }
}

impl<O> std::fmt::Debug for OrderedSet<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedSet")
            .field("keys", &self.items.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Wakes one future: marks it ready and wakes the set's owner.
struct KeyWaker {
    key: usize,
    ready: Arc<Mutex<BTreeSet<usize>>>,
    parent: Arc<AtomicWaker>,
}

impl Wake for KeyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.ready).insert(self.key);
        self.parent.wake();
    }
}

fn lock(ready: &Mutex<BTreeSet<usize>>) -> MutexGuard<'_, BTreeSet<usize>> {
    ready.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<O> OrderedSet<O> {
    /// Adds `future` under `key` (replacing one already there); it is polled in the next round.
    pub fn push(&mut self, key: usize, future: OrderedFuture<O>) {
        let waker = Waker::from(Arc::new(KeyWaker {
            key,
            ready: self.ready.clone(),
            parent: self.parent.clone(),
        }));
        self.items.insert(key, (future, waker));
        lock(&self.ready).insert(key);
    }

    /// How many futures have not ended.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether every future has ended (or none was pushed).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Polls every ready future once, lowest key first; returns the outputs of those that
    /// ended, in that order. If futures were woken during the round, `cx` is woken to poll
    /// them in the next.
    pub fn poll_round(&mut self, cx: &mut Context<'_>) -> Vec<O> {
        self.parent.register(cx.waker());
        let round = std::mem::take(&mut *lock(&self.ready));
        let mut ended = Vec::new();
        for key in round {
            let Some((future, waker)) = self.items.get_mut(&key) else {
                continue;
            };
            if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(waker)) {
                self.items.remove(&key);
                ended.push(out);
            }
        }
        if !lock(&self.ready).is_empty() {
            cx.waker().wake_by_ref();
        }
        ended
    }
}
