//! What the SQLite writer thread is asked to do, in the order it takes it up.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use duraflow_store::StoreResult;
use tokio::sync::oneshot;

use crate::db::Job;

/// What the writer thread is asked to do.
pub(crate) enum Request {
    /// A write, run in a transaction with the others queued with it.
    Write(Box<dyn Job>),
    /// Fold the write-ahead log into the database file, between transactions.
    Fold(oneshot::Sender<StoreResult<()>>),
}

/// The writer's queue: the channel, and the requests taken off it while a transaction was under
/// way that wait for the next one (see [`Requests::join`]).
pub(crate) struct Requests {
    rx: mpsc::Receiver<Request>,
    carried: VecDeque<Request>,
}

/// What [`Requests::next`] found.
pub(crate) enum Next {
    Request(Request),
    /// Nothing was asked for in the time given.
    Idle,
    /// Every sender is gone and nothing is left.
    Closed,
}

impl Requests {
    pub(crate) fn new(rx: mpsc::Receiver<Request>) -> Self {
        Requests {
            rx,
            carried: VecDeque::new(),
        }
    }

    /// The next request, waiting up to `wait` for one.
    pub(crate) fn next(&mut self, wait: Duration) -> Next {
        if let Some(request) = self.carried.pop_front() {
            return Next::Request(request);
        }
        match self.rx.recv_timeout(wait) {
            Ok(request) => Next::Request(request),
            Err(mpsc::RecvTimeoutError::Timeout) => Next::Idle,
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// The next request if one is waiting.
    pub(crate) fn try_next(&mut self) -> Option<Request> {
        self.carried.pop_front().or_else(|| self.rx.try_recv().ok())
    }

    /// The next write queued since the transaction under way began that may join it before
    /// its `COMMIT` ([`Job::joins`]). The requests queued before it that may not are kept, in
    /// their order, for the next transaction: a joining write can be committed before a write
    /// queued earlier, but only one that nobody waited for before queuing it.
    pub(crate) fn join(&mut self) -> Option<Box<dyn Job>> {
        while let Ok(request) = self.rx.try_recv() {
            match request {
                Request::Write(job) if job.joins() => return Some(job),
                other => self.carried.push_back(other),
            }
        }
        None
    }
}
