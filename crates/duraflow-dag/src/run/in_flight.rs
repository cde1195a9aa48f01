//! The steps in flight, and a deterministic "whichever finishes next".
//!
//! The engine delivers completions one at a time, in journal order, and runs the workflow
//! until it blocks after each; replay delivers the recorded ones the same way. So what the
//! interpreter sees first must depend only on which futures a delivery woke, never on how
//! often they were polled. Like the items of `WorkflowContext::map`, the launches are polled
//! in rounds: every launch woken since the last round (or just pushed) is polled once, lowest
//! launch number first. A launch issues its activity on its first poll, so activities are
//! scheduled in launch order; when several end in one round they are handed out in launch
//! order. (A `FuturesUnordered` is not used: it yields part way through its futures once two
//! of them woke themselves, so its poll order depends on wakeups.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use duraflow_core::WorkflowError;
use futures::task::AtomicWaker;
use serde_json::Value;

/// A launched step's activity, as the workflow awaits it.
pub(crate) type StepFuture = Pin<Box<dyn Future<Output = Result<Value, WorkflowError>> + Send>>;

/// The launches in flight, by launch number. Dropping it drops their activity futures, which
/// abandons the activities (the engine cancels their tasks).
#[derive(Default)]
pub(crate) struct InFlight {
    running: BTreeMap<usize, (StepFuture, Waker)>,
    woken: Arc<Mutex<BTreeSet<usize>>>,
    parent: Arc<AtomicWaker>,
    ended: VecDeque<(usize, Result<Value, WorkflowError>)>,
}

struct LaunchWaker {
    seq: usize,
    woken: Arc<Mutex<BTreeSet<usize>>>,
    parent: Arc<AtomicWaker>,
}

impl Wake for LaunchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.woken).insert(self.seq);
        self.parent.wake();
    }
}

fn lock(set: &Mutex<BTreeSet<usize>>) -> MutexGuard<'_, BTreeSet<usize>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// Adds launch `seq`; it is polled (and its activity issued) in the next round.
    pub(crate) fn push(&mut self, seq: usize, future: StepFuture) {
        let waker = Waker::from(Arc::new(LaunchWaker {
            seq,
            woken: self.woken.clone(),
            parent: self.parent.clone(),
        }));
        self.running.insert(seq, (future, waker));
        lock(&self.woken).insert(seq);
    }

    /// The next launch to end and its result; `None` when nothing is in flight.
    pub(crate) fn next(
        &mut self,
    ) -> impl Future<Output = Option<(usize, Result<Value, WorkflowError>)>> + '_ {
        futures::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(usize, Result<Value, WorkflowError>)>> {
        if let Some(end) = self.ended.pop_front() {
            return Poll::Ready(Some(end));
        }
        if self.running.is_empty() {
            return Poll::Ready(None);
        }
        self.parent.register(cx.waker());
        let round = std::mem::take(&mut *lock(&self.woken));
        for seq in round {
            let Some((future, waker)) = self.running.get_mut(&seq) else {
                continue;
            };
            if let Poll::Ready(result) = future.as_mut().poll(&mut Context::from_waker(waker)) {
                self.running.remove(&seq);
                self.ended.push_back((seq, result));
            }
        }
        if !lock(&self.woken).is_empty() {
            cx.waker().wake_by_ref();
        }
        match self.ended.pop_front() {
            Some(end) => Poll::Ready(Some(end)),
            None => Poll::Pending,
        }
    }
}
