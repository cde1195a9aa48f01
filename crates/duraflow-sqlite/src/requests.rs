//! What the SQLite writer thread is asked to do, in the order it takes it up.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

    /// The next request: looking for one, and yielding the processor between looks, for
    /// `spin`; then sleeping until one comes, for up to `wait`.
    pub(crate) fn next(&mut self, spin: Duration, wait: Duration) -> Next {
        if let Some(request) = self.carried.pop_front() {
            return Next::Request(request);
        }
        let spun = Instant::now();
        while spun.elapsed() < spin {
            if let Ok(request) = self.rx.try_recv() {
                return Next::Request(request);
            }
            std::thread::yield_now();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use duraflow_store::StoreError;

    use super::*;

    /// Answers a fold request with an error that names `n`.
    fn answer(request: Request, n: u8) {
        match request {
            Request::Fold(reply) => reply.send(Err(StoreError::Other(n.to_string()))).unwrap(),
            Request::Write(_) => panic!("a write where a fold was queued"),
        }
    }

    #[test]
    fn requests_come_in_order_and_end_when_the_senders_are_gone() {
        let (tx, rx) = mpsc::channel();
        let mut requests = Requests::new(rx);
        let mut answers = Vec::new();
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            tx.send(Request::Fold(reply)).unwrap();
            answers.push(answer);
        }
        // A fold never joins a transaction: `join` carries both over, in order.
        assert!(requests.join().is_none());
        let spin = Duration::from_micros(100);
        for n in 1..=2 {
            match requests.next(spin, Duration::ZERO) {
                Next::Request(request) => answer(request, n),
                _ => panic!("request {n} is missing"),
            }
        }
        for (n, answer) in answers.iter_mut().enumerate() {
            let said = answer.try_recv().unwrap().unwrap_err();
            assert!(matches!(said, StoreError::Other(m) if m == (n + 1).to_string()));
        }
        assert!(matches!(requests.next(spin, Duration::ZERO), Next::Idle));
        drop(tx);
        assert!(matches!(requests.next(spin, Duration::ZERO), Next::Closed));
    }
}
