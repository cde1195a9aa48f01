//! The steps in flight, and a deterministic "whichever finishes next".
//!
//! The engine delivers completions one at a time, in journal order, and runs the workflow
//! until it blocks after each; replay delivers the recorded ones the same way. So what the
//! interpreter hears first must depend only on which futures a delivery woke, never on how
//! often they were polled. The launches are held in an [`OrderedSet`] (as the items of
//! `WorkflowContext::map` are): polled in rounds, each round polling the launches woken since
//! the last one, lowest launch number first. A launch issues its activity on its first poll,
//! so activities are scheduled in launch order; when several end in one round they are
//! handed out in launch order.

use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};

use duraflow_core::context::{OrderedFuture, OrderedSet};
use duraflow_core::WorkflowError;
use futures::FutureExt;
use serde_json::Value;

/// How a launch ended: its number and its activity's result.
pub(crate) type Ended = (usize, Result<Value, WorkflowError>);

/// The launches in flight, by launch number. Dropping it drops their activity futures, which
/// abandons the activities (the engine cancels their tasks).
#[derive(Default)]
pub(crate) struct InFlight {
    running: OrderedSet<Ended>,
    ended: VecDeque<Ended>,
}

impl InFlight {
    /// Adds launch `seq`; it is polled (and its activity issued) in the next round.
    pub(crate) fn push<F>(&mut self, seq: usize, activity: F)
    where
        F: Future<Output = Result<Value, WorkflowError>> + Send + 'static,
    {
        let future: OrderedFuture<Ended> = Box::pin(activity.map(move |result| (seq, result)));
        self.running.push(seq, future);
    }

    /// The next launch to end and its result; `None` when nothing is in flight.
    pub(crate) fn next(&mut self) -> impl Future<Output = Option<Ended>> + '_ {
        futures::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
        if self.ended.is_empty() {
            if self.running.is_empty() {
                return Poll::Ready(None);
            }
            self.ended.extend(self.running.poll_round(cx));
        }
        match self.ended.pop_front() {
            Some(end) => Poll::Ready(Some(end)),
            None => Poll::Pending,
        }
    }
}
