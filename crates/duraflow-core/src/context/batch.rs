//! Map and parallel: items or branches, each in its own child context, run under a
//! concurrency limit until a completion policy decides the batch.
//!
//! The batch is itself a child context, so its [`BatchResult`] is journaled as one unit and
//! replay of a finished batch runs none of it. Items start in index order. The tracker hears how
//! items ended in the order their contexts' ends are journaled, which replay reproduces, so the
//! decision falls at the same item on every replay. Once it is decided, the items still running
//! are dropped: their operations are abandoned, and whatever they report later is refused, never
//! journaled.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::child_context::ChildContext;
use super::ordered::OrderedSet;
use super::WorkflowContext;
use crate::batch::{
    BatchItem, BatchResult, BatchTracker, CompletionConfig, ItemBatcher, ItemOutcome, ItemStatus,
};
use crate::error::WorkflowError;
use crate::failure::Failure;

/// One branch of [`WorkflowContext::parallel`]: code run in its own child context.
pub type Branch<T> =
    Box<dyn FnOnce(WorkflowContext) -> BoxFuture<'static, Result<T, WorkflowError>> + Send>;

/// Makes a [`Branch`] from an async closure.
pub fn branch<T, F, Fut>(f: F) -> Branch<T>
where
    F: FnOnce(WorkflowContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
{
    Box::new(move |ctx| Box::pin(f(ctx)))
}

/// A map (or parallel) call: set its limits, then await it for the [`BatchResult`].
#[must_use = "a map runs only when awaited"]
pub struct MapCall<I, T, F> {
    ctx: WorkflowContext,
    name: String,
    items: Vec<I>,
    f: F,
    max_concurrency: Option<usize>,
    completion: CompletionConfig,
    /// Why the call cannot run (found before anything is journaled).
    invalid: Option<String>,
    _output: std::marker::PhantomData<fn() -> T>,
}

impl<I, T, F> MapCall<I, T, F> {
    pub(super) fn new(ctx: WorkflowContext, name: &str, items: Vec<I>, f: F) -> Self {
        MapCall {
            ctx,
            name: name.to_owned(),
            items,
            f,
            max_concurrency: None,
            completion: CompletionConfig::all_completed(),
            invalid: None,
            _output: std::marker::PhantomData,
        }
    }

    /// Runs at most `n` items at a time (at least 1; 0 fails the call before anything is
    /// recorded). No limit by default.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// When the batch is decided (default [`CompletionConfig::all_completed`]: every item
    /// runs).
    pub fn completion(mut self, config: CompletionConfig) -> Self {
        self.completion = config;
        self
    }
}

impl<I, T, F, Fut> IntoFuture for MapCall<I, T, F>
where
    I: Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(WorkflowContext, I, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
{
    type Output = Result<BatchResult<T>, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let tracker = match &self.invalid {
            Some(why) => Err(why.clone()),
            None => BatchTracker::new(self.items.len(), self.max_concurrency, &self.completion)
                .map_err(|e| e.to_string()),
        };
        let tracker = match tracker {
            Ok(t) => t,
            Err(e) => {
                let message = format!("map {:?} is misconfigured: {e}", self.name);
                return Box::pin(async move { Err(WorkflowError::application(message)) });
            }
        };
        let name = self.name.clone();
        let items = self.items;
        let f = Arc::new(self.f);
        let context = self
            .ctx
            .run_in_child_context(&self.name, move |batch: WorkflowContext| Batch {
                ctx: batch,
                name,
                pending: items.into_iter().map(Some).collect(),
                f,
                tracker,
                running: OrderedSet::default(),
                outcomes: Vec::new(),
            });
        Box::pin(context)
    }
}

/// Groups `items` into batches with `batcher`, measuring each item by its JSON encoding;
/// `Err` says why it cannot (an item that does not encode, a batcher that is not valid).
fn batches<I: Serialize>(items: Vec<I>, batcher: &ItemBatcher) -> Result<Vec<Vec<I>>, String> {
    let sizes = items
        .iter()
        .map(|item| serde_json::to_vec(item).map(|v| v.len()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("an item cannot be encoded to measure it: {e}"))?;
    let ranges = batcher.split_sizes(&sizes).map_err(|e| e.to_string())?;
    let mut items = items.into_iter();
    Ok(ranges
        .into_iter()
        .map(|r| items.by_ref().take(r.len()).collect())
        .collect())
}

impl<J: Serialize, T, F> MapCall<Vec<J>, T, F> {
    /// A map over the batches `batcher` makes of `items`.
    pub(super) fn batched(
        ctx: WorkflowContext,
        name: &str,
        items: Vec<J>,
        batcher: &ItemBatcher,
        f: F,
    ) -> Self {
        match batches(items, batcher) {
            Ok(batches) => MapCall::new(ctx, name, batches, f),
            Err(e) => {
                let mut call = MapCall::new(ctx, name, Vec::new(), f);
                call.invalid = Some(e);
                call
            }
        }
    }
}

/// How an item ended, and where its end is in the journal.
struct ItemEnd<T> {
    index: usize,
    end_pos: usize,
    result: Result<T, WorkflowError>,
}

/// The body of a batch's context: starts items, hears how they end, stops when decided.
struct Batch<I, T, F> {
    ctx: WorkflowContext,
    name: String,
    pending: Vec<Option<I>>,
    f: Arc<F>,
    tracker: BatchTracker,
    running: OrderedSet<ItemEnd<T>>,
    /// By index: the result or failure of each item that ended before the decision.
    outcomes: Vec<Option<Result<T, Failure>>>,
}

impl<I, T, F, Fut> Batch<I, T, F>
where
    I: Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(WorkflowContext, I, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
{
    fn start_items(&mut self) {
        while let Some(index) = self.tracker.next_to_start() {
            let Some(item) = self.pending.get_mut(index).and_then(Option::take) else {
                continue;
            };
            let f = self.f.clone();
            let mut context: ChildContext<T, _, _> = self.ctx.run_in_child_context(
                &format!("{}[{index}]", self.name),
                move |child: WorkflowContext| f(child, item, index),
            );
            self.running.push(
                index,
                Box::pin(futures::future::poll_fn(move |cx| {
                    let polled = Pin::new(&mut context).poll(cx);
                    polled.map(|result| ItemEnd {
                        index,
                        end_pos: context.end_position().unwrap_or(usize::MAX),
                        result,
                    })
                })),
            );
        }
    }

    fn result(&mut self) -> BatchResult<T> {
        let statuses = self.tracker.final_statuses().unwrap_or_default();
        let reason = self
            .tracker
            .decision()
            .unwrap_or(crate::batch::CompletionReason::AllCompleted);
        let mut outcomes = std::mem::take(&mut self.outcomes);
        outcomes.resize_with(statuses.len(), || None);
        let items = statuses
            .into_iter()
            .zip(outcomes)
            .enumerate()
            .map(|(index, (status, outcome))| match (status, outcome) {
                (ItemStatus::Succeeded, Some(Ok(v))) => BatchItem::succeeded(index, v),
                (ItemStatus::Failed, Some(Err(f))) => BatchItem::failed(index, f),
                (ItemStatus::Cancelled, _) => BatchItem::cancelled(index),
                _ => BatchItem::not_started(index),
            })
            .collect();
        BatchResult::new(reason, items)
    }
}

impl<I, T, F, Fut> Future for Batch<I, T, F>
where
    I: Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(WorkflowContext, I, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
{
    type Output = Result<BatchResult<T>, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if this.tracker.is_decided() {
                // Items still running are cancelled: dropping them abandons their operations.
                this.running = OrderedSet::default();
                return Poll::Ready(Ok(this.result()));
            }
            this.start_items();
            let mut ended = this.running.poll_round(cx);
            if ended.is_empty() {
                return Poll::Pending;
            }
            // In journal order, as replay sees them.
            ended.sort_by_key(|e| e.end_pos);
            for end in ended {
                let outcome = match &end.result {
                    Ok(_) => ItemOutcome::Succeeded,
                    Err(WorkflowError::Nondeterminism(_)) => return Poll::Pending,
                    Err(_) => ItemOutcome::Failed,
                };
                if this.tracker.record(end.index, outcome).is_err() {
                    // Ended in the same poll as the item that decided the batch: cancelled.
                    continue;
                }
                if this.outcomes.len() <= end.index {
                    this.outcomes.resize_with(end.index + 1, || None);
                }
                this.outcomes[end.index] = Some(end.result.map_err(|e| e.to_failure()));
            }
        }
    }
}

impl<I, T, F> Unpin for Batch<I, T, F> {}
