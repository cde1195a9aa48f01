//! The attempts and backoff timers in flight, and a deterministic "whichever finishes next".
//!
//! The engine delivers completions one at a time, in journal order, and runs the workflow
//! until it blocks after each; replay delivers the recorded ones the same way. So what the
//! interpreter hears first must depend only on which futures a delivery woke, never on how
//! often they were polled. The orders (attempts and timers) are held in an [`OrderedSet`] (as
//! the items of `WorkflowContext::map` are): polled in rounds, each round polling the orders
//! woken since the last one, lowest order number first. An order issues its activity or
//! timer on its first poll, so they are journaled in order-number order; when several end in
//! one round they are handed out in that order.

use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll};

use duraflow_core::context::{OrderedFuture, OrderedSet};
use duraflow_core::WorkflowError;
use futures::FutureExt;
use serde_json::Value;

/// How an order in flight ended.
pub(crate) enum Ended {
    /// An attempt: its order number and its activity's result.
    Attempt(usize, Result<Value, WorkflowError>),
    /// A backoff timer: its order number and whether it fired.
    Timer(usize, Result<(), WorkflowError>),
}

/// The orders in flight, by order number. Dropping it drops their futures, which abandons the
/// activities (the engine cancels their tasks) and the timers.
#[derive(Default)]
pub(crate) struct InFlight {
    running: OrderedSet<Ended>,
    ended: VecDeque<Ended>,
}

impl InFlight {
    /// Adds the attempt `seq`; it is polled (and its activity issued) in the next round.
    pub(crate) fn push_attempt<F>(&mut self, seq: usize, activity: F)
    where
        F: Future<Output = Result<Value, WorkflowError>> + Send + 'static,
    {
        let future: OrderedFuture<Ended> =
            Box::pin(activity.map(move |result| Ended::Attempt(seq, result)));
        self.running.push(seq, future);
    }

    /// Adds the timer `seq`; it is polled (and issued) in the next round.
    pub(crate) fn push_timer<F>(&mut self, seq: usize, timer: F)
    where
        F: Future<Output = Result<(), WorkflowError>> + Send + 'static,
    {
        let future: OrderedFuture<Ended> =
            Box::pin(timer.map(move |fired| Ended::Timer(seq, fired)));
        self.running.push(seq, future);
    }

    /// The next order to end; `Ready(None)` when nothing is in flight.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Ended>> {
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
