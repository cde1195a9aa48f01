//! [`WorkflowContext`]: everything workflow code may do, each as a durable operation.

mod activity;
mod batch;
mod callback;
mod child;
mod child_context;
mod condition;
mod continue_as_new;
mod event_wait;
mod invoke;
pub(crate) mod op;
mod ordered;
mod publish;
mod queue_event;
mod step;
mod wait_for_callback;

use std::collections::BTreeMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Either};
use serde::Serialize;

pub use activity::ActivityCall;
pub use batch::{branch, Branch, MapCall};
pub use callback::{Callback, CallbackFuture};
pub use child::{ChildCall, StartChild};
pub use child_context::ChildContext;
pub use condition::{Condition, WaitStrategy};
pub use continue_as_new::ContinueAsNew;
pub use event_wait::{EventWait, EventWaitFuture};
pub use invoke::Invoke;
pub use op::OpFuture;
pub use ordered::{OrderedFuture, OrderedSet};
pub use queue_event::{QueueEventAwait, QueueEventAwaitFuture};
pub use step::{StepContext, StepFuture, StepSemantics};
pub use wait_for_callback::WaitForCallback;

use crate::activity::ActivitySignature;
use crate::error::WorkflowError;
use crate::event::EventKind;
use crate::op_id::OpId;
use crate::payload::Payload;
use crate::replay::state::{lock, Shared};
use crate::time::Timestamp;
use crate::workflow::Workflow;
use op::OpKind;

/// The handle workflow code uses for every durable operation: activities, inline steps, timers,
/// external events, child workflows and continue-as-new, plus deterministic time, ids and random
/// numbers.
///
/// A workflow is re-run from the start whenever it resumes; each operation consults the journal
/// first, so code that has already run returns the recorded results without doing the work again.
/// Workflow code must therefore be deterministic: use `ctx.now()`, `ctx.uuid()` and
/// `ctx.random_u64()` rather than the system clock or a random generator, and do I/O only inside
/// activities and steps.
#[derive(Clone)]
pub struct WorkflowContext {
    pub(crate) state: Shared,
    pub(crate) scope: Option<OpId>,
    instance_id: Arc<str>,
}

impl fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("WorkflowContext")
            .field("instance_id", &s.instance_id)
            .field("execution", &s.execution)
            .field("scope", &self.scope)
            .finish()
    }
}

impl WorkflowContext {
    /// The context of a workflow's top scope; `instance_id` is the state's (passed in, since
    /// the caller holds the state's lock).
    pub(crate) fn root(state: Shared, instance_id: &str) -> Self {
        let instance_id = Arc::from(instance_id);
        WorkflowContext {
            state,
            scope: None,
            instance_id,
        }
    }

    pub(crate) fn next_op(&self) -> OpId {
        lock(&self.state).next_op_id(self.scope.as_ref())
    }

    /// The instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The execution number: 1, then one more after each continue-as-new.
    pub fn execution(&self) -> u32 {
        lock(&self.state).execution
    }

    /// The workflow's registered name.
    pub fn workflow_name(&self) -> String {
        lock(&self.state).workflow_name.clone()
    }

    /// The attempt this execution runs: 1, then one more each time the workflow failed and its
    /// retry policy (`Start::retry`) started it again. The same on every replay.
    pub fn attempt(&self) -> u32 {
        lock(&self.state).attempt
    }

    /// The headers the instance was started with (`Start::header`), the same on every
    /// replay; empty when none were set.
    pub fn headers(&self) -> BTreeMap<String, String> {
        lock(&self.state).headers.clone()
    }

    /// One header the instance was started with.
    pub fn header(&self, name: &str) -> Option<String> {
        lock(&self.state).headers.get(name).cloned()
    }

    /// Workflow time: when the latest event delivered to this workflow arrived. It is the same on
    /// every replay.
    pub fn now(&self) -> Timestamp {
        lock(&self.state).now
    }

    /// [`WorkflowContext::now`] as a `SystemTime`.
    pub fn now_system(&self) -> SystemTime {
        self.now().into()
    }

    /// Whether the code is re-running journaled history (rather than running new work).
    pub fn is_replaying(&self) -> bool {
        lock(&self.state).is_replaying()
    }

    /// A random number that is the same on every replay.
    pub fn random_u64(&self) -> u64 {
        let mut s = lock(&self.state);
        s.random_counter += 1;
        let seed = fnv1a(s.instance_id.as_bytes()) ^ u64::from(s.execution).rotate_left(32);
        splitmix64(seed.wrapping_add(s.random_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    /// A version-4 UUID that is the same on every replay.
    pub fn uuid(&self) -> uuid::Uuid {
        let hi = self.random_u64();
        let lo = self.random_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_le_bytes());
        bytes[8..].copy_from_slice(&lo.to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Logs at INFO through `tracing`, unless the code is replaying (so each line appears once).
    pub fn log_info(&self, message: impl fmt::Display) {
        if let Some((id, exec)) = self.log_target() {
            tracing::info!(instance_id = %id, execution = exec, "{message}");
        }
    }

    /// Logs at WARN through `tracing`, unless the code is replaying.
    pub fn log_warn(&self, message: impl fmt::Display) {
        if let Some((id, exec)) = self.log_target() {
            tracing::warn!(instance_id = %id, execution = exec, "{message}");
        }
    }

    /// Logs at ERROR through `tracing`, unless the code is replaying.
    pub fn log_error(&self, message: impl fmt::Display) {
        if let Some((id, exec)) = self.log_target() {
            tracing::error!(instance_id = %id, execution = exec, "{message}");
        }
    }

    /// Logs at DEBUG through `tracing`, unless the code is replaying.
    pub fn log_debug(&self, message: impl fmt::Display) {
        if let Some((id, exec)) = self.log_target() {
            tracing::debug!(instance_id = %id, execution = exec, "{message}");
        }
    }

    fn log_target(&self) -> Option<(String, u32)> {
        let s = lock(&self.state);
        (!s.is_replaying() && s.live).then(|| (s.instance_id.clone(), s.execution))
    }

    /// Schedules the activity registered as `name` with `input`. Await the returned call (after
    /// setting its retry policy and timeouts, if wanted) for the activity's output.
    pub fn activity<O>(&self, name: &str, input: &(impl Serialize + ?Sized)) -> ActivityCall<O> {
        ActivityCall::new(self.clone(), name, Payload::encode(input))
    }

    /// Schedules the activity `A` by type: its registered name is `A::NAME`, the input must be
    /// an `A::Input`, and awaiting the returned call gives an `A::Output`, with no annotation.
    /// Set the retry policy and timeouts on the call as for [`WorkflowContext::activity`].
    ///
    /// ```
    /// use duraflow_core::{ActivitySignature, RetryPolicy, WorkflowContext, WorkflowError};
    ///
    /// struct Charge;
    ///
    /// impl ActivitySignature for Charge {
    ///     const NAME: &'static str = "charge";
    ///     type Input = u64;
    ///     type Output = String;
    /// }
    ///
    /// async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<usize, WorkflowError> {
    ///     let receipt = ctx
    ///         .call::<Charge>(&cents)
    ///         .retry(RetryPolicy::default().max_attempts(3))
    ///         .await?;
    ///     Ok(receipt.len())
    /// }
    /// ```
    pub fn call<A: ActivitySignature>(&self, input: &A::Input) -> ActivityCall<A::Output> {
        let call = ActivityCall::new(self.clone(), A::NAME, Payload::encode(input));
        match A::QUEUE {
            Some(queue) => call.queue(queue),
            None => call,
        }
    }

    /// Runs `f` inline, in this process, as a checkpointed step: on replay its recorded result
    /// is returned and `f` is not run again. `f` gets a [`StepContext`] (operation id, attempt,
    /// an idempotency key) and is called once per attempt.
    ///
    /// By default the step is at least once per attempt and makes one attempt: its result is
    /// stored before the workflow moves past it, so only a crash while `f` runs repeats it.
    /// Choose other durability with [`StepFuture::semantics`] and retries with
    /// [`StepFuture::retry`].
    pub fn step<T, F, Fut>(&self, name: &str, f: F) -> StepFuture<T, F, Fut>
    where
        F: Fn(StepContext) -> Fut + Send,
        Fut: Future<Output = Result<T, crate::ActivityError>> + Send,
    {
        StepFuture::new(self.clone(), name, f)
    }

    /// Tells the engine that the workflow is alive, renewing its turn's lease now rather than
    /// at the next periodic renewal. The engine renews it on its own while steps run; call it
    /// from long steps that block their thread, or before a long stretch of work.
    pub fn heartbeat(&self) {
        step::heartbeat(&self.state);
    }

    /// A durable timer that fires once `duration` has passed since this call, never before
    /// (its fire time is the engine clock's present rounded up to whole milliseconds, plus
    /// `duration` rounded up; replay reads the journaled fire time).
    pub fn sleep(&self, duration: Duration) -> OpFuture<()> {
        let fire_at = lock(&self.state).timer_start().plus_ceil(duration);
        self.sleep_until(fire_at)
    }

    /// A durable timer that fires at `deadline` (at once if it has passed).
    pub fn sleep_until(&self, deadline: Timestamp) -> OpFuture<()> {
        let op = self.next_op();
        let issue = EventKind::TimerCreated {
            op: op.clone(),
            fire_at: deadline,
        };
        OpFuture::new(
            self.state.clone(),
            op,
            OpKind::Timer,
            "timer".into(),
            Ok(issue),
        )
    }

    /// Waits for the next external event called `name` and decodes its data. Events raised
    /// before the wait are buffered and taken in the order they arrived.
    pub fn wait_for_event<T>(&self, name: &str) -> EventWait<T> {
        EventWait::new(self.clone(), name)
    }

    /// Runs `body` in a child context named `name`: the operations inside take ids in the
    /// context's scope, and the body's result (or error) is journaled as one unit. Once the
    /// context has completed, replay returns the recorded result without running the body
    /// again. Map items and parallel branches are child contexts.
    pub fn run_in_child_context<T, F, Fut>(&self, name: &str, body: F) -> ChildContext<T, F, Fut>
    where
        F: FnOnce(WorkflowContext) -> Fut + Send,
        Fut: Future<Output = Result<T, WorkflowError>> + Send,
    {
        ChildContext::new(self.clone(), name, body)
    }

    /// Runs `f` for every item, each in its own child context, and returns a
    /// [`BatchResult`](crate::BatchResult) with every item's status and result. Set a
    /// concurrency limit with [`MapCall::max_concurrency`] and when to stop with
    /// [`MapCall::completion`]; items start in index order. The batch is a child context named
    /// `name`: once it has completed, replay returns its result without running any item.
    pub fn map<I, T, F, Fut>(&self, name: &str, items: Vec<I>, f: F) -> MapCall<I, T, F>
    where
        F: Fn(WorkflowContext, I, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
    {
        MapCall::new(self.clone(), name, items, f)
    }

    /// [`WorkflowContext::map`] over batches of `items`: `batcher` groups consecutive items
    /// (at most `max_items`, and at most `max_bytes` of JSON per batch; an item larger than
    /// `max_bytes` goes alone), and `f` runs once per batch, in its own child context, with the
    /// batch's items and the batch's index. The result has one entry per batch. A batcher that
    /// is not valid, or an item that cannot be encoded to be measured, fails the call before
    /// anything is journaled.
    pub fn map_batched<I, T, F, Fut>(
        &self,
        name: &str,
        items: Vec<I>,
        batcher: &crate::ItemBatcher,
        f: F,
    ) -> MapCall<Vec<I>, T, F>
    where
        I: Serialize,
        F: Fn(WorkflowContext, Vec<I>, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, WorkflowError>> + Send + 'static,
    {
        MapCall::batched(self.clone(), name, items, batcher, f)
    }

    /// Runs `branches` (made with [`branch`]), each in its own child context, as
    /// [`WorkflowContext::map`] runs items.
    #[allow(clippy::type_complexity)]
    pub fn parallel<T: Send + 'static>(
        &self,
        name: &str,
        branches: Vec<Branch<T>>,
    ) -> MapCall<
        Branch<T>,
        T,
        fn(WorkflowContext, Branch<T>, usize) -> BoxFuture<'static, Result<T, WorkflowError>>,
    > {
        fn run<T>(
            ctx: WorkflowContext,
            branch: Branch<T>,
            _: usize,
        ) -> BoxFuture<'static, Result<T, WorkflowError>> {
            branch(ctx)
        }
        MapCall::new(self.clone(), name, branches, run::<T>)
    }

    /// Checks a condition until it holds: runs `check` as a step with the current state, and
    /// while it answers [`Condition::Continue`] waits on a durable timer as `strategy` says
    /// and checks again with the state it returned. Returns the state of the check that
    /// answered [`Condition::Done`]. A check that fails fails the wait (it is not retried); a
    /// strategy that gives up fails it with kind `condition_exhausted`.
    ///
    /// The wait is a child context named `name`. Each check adds four journal events (the
    /// step's start and result, the timer's creation and firing), so a wait of 1,000 checks
    /// adds 4,000; once it has ended, replay returns its result without reading them again.
    pub fn wait_for_condition<S, F, Fut>(
        &self,
        name: &str,
        initial: S,
        check: F,
        strategy: WaitStrategy,
    ) -> impl Future<Output = Result<S, WorkflowError>> + Send + 'static
    where
        S: Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(S, StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Condition<S>, crate::ActivityError>> + Send + 'static,
    {
        let check = Arc::new(check);
        let label = name.to_owned();
        self.run_in_child_context(name, move |ctx: WorkflowContext| {
            condition::poll_condition(ctx, label, initial, check, strategy)
        })
    }

    /// A callback named `name`: an operation that an external party completes with a `T`
    /// (`Client::complete_callback`), fails (`Client::fail_callback`) or keeps alive
    /// (`Client::heartbeat_callback`) by presenting its token ([`Callback::token`]). Awaiting it
    /// waits for the value; a completion that arrives earlier is kept. Set limits with
    /// [`Callback::timeout`] and [`Callback::heartbeat_timeout`].
    pub fn callback<T>(&self, name: &str) -> Callback<T> {
        Callback::new(self.clone(), name)
    }

    /// Opens a callback named `name`, runs `submit` as a step with its token (to hand the token
    /// to the outside world), then waits for the callback, all in a child context of that
    /// name. Set the callback's limits and the submitter's retries on the returned
    /// [`WaitForCallback`]. A submitter that fails (after its retries) fails the wait without
    /// the callback completing.
    pub fn wait_for_callback<T, F, Fut>(&self, name: &str, submit: F) -> WaitForCallback<T, F>
    where
        F: Fn(String, StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), crate::ActivityError>> + Send + 'static,
    {
        WaitForCallback::new(self.clone(), name, submit)
    }

    /// Runs the workflow registered as `name` with `input` (as an attached child) and returns
    /// its output or its error. With [`Invoke::timeout`], a target that has not finished in
    /// time fails the call with a timeout error and is cancelled.
    pub fn invoke<O>(&self, name: &str, input: &(impl Serialize + ?Sized)) -> Invoke<O> {
        Invoke::new(ChildCall::new(self.clone(), name, Payload::encode(input)))
    }

    /// Starts the workflow registered as `name` as a child and waits for its output. Cancelling
    /// this instance cancels the child.
    pub fn child_workflow<O>(&self, name: &str, input: &(impl Serialize + ?Sized)) -> ChildCall<O> {
        ChildCall::new(self.clone(), name, Payload::encode(input))
    }

    /// Starts the workflow registered as `name` detached: it does not report back and is not
    /// cancelled with this instance. Resolves to the child's instance id once it is started.
    pub fn start_child(&self, name: &str, input: &(impl Serialize + ?Sized)) -> StartChild {
        StartChild::new(self.clone(), name, Payload::encode(input))
    }

    /// Starts the workflow `W` as a child by type and waits for its output: the name is
    /// `W::NAME`, the input must be a `W::Input`, and awaiting gives a `W::Output`. Otherwise
    /// the same as [`WorkflowContext::child_workflow`].
    ///
    /// ```
    /// use duraflow_core::{Workflow, WorkflowContext, WorkflowError};
    ///
    /// struct Double;
    ///
    /// impl Workflow for Double {
    ///     const NAME: &'static str = "double";
    ///     type Input = u64;
    ///     type Output = u64;
    ///
    ///     async fn run(&self, _ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ///         Ok(2 * n)
    ///     }
    /// }
    ///
    /// async fn quadruple(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ///     let twice = ctx.child::<Double>(&n).await?;
    ///     ctx.child::<Double>(&twice).id(format!("{}-again", ctx.instance_id())).await
    /// }
    /// ```
    pub fn child<W: Workflow>(&self, input: &W::Input) -> ChildCall<W::Output> {
        let call = ChildCall::new(self.clone(), W::NAME, Payload::encode(input));
        match W::QUEUE {
            Some(queue) => call.queue(queue),
            None => call,
        }
    }

    /// Runs the workflow `W` by type and returns its output, as [`WorkflowContext::invoke`]
    /// does (with [`Invoke::timeout`]): the name is `W::NAME`, the input must be a `W::Input`
    /// and awaiting gives a `W::Output`.
    pub fn invoke_typed<W: Workflow>(&self, input: &W::Input) -> Invoke<W::Output> {
        Invoke::new(self.child::<W>(input))
    }

    /// Starts the workflow `W` detached, by type (see [`WorkflowContext::start_child`]): the
    /// name is `W::NAME` and the input must be a `W::Input`. Resolves to the child's instance id.
    pub fn start_child_typed<W: Workflow>(&self, input: &W::Input) -> StartChild {
        let start = StartChild::new(self.clone(), W::NAME, Payload::encode(input));
        match W::QUEUE {
            Some(queue) => start.queue(queue),
            None => start,
        }
    }

    /// Ends this execution and starts the next one of the same instance with `input` and a fresh
    /// journal. External events not yet taken carry over. Await it as the workflow's last
    /// expression: `return ctx.continue_as_new(&next).await;`.
    pub fn continue_as_new<T>(&self, input: &(impl Serialize + ?Sized)) -> ContinueAsNew<T> {
        ContinueAsNew::new(self.state.clone(), Payload::encode(input))
    }

    /// Awaits every operation and returns their outputs in order; the first failure fails the
    /// join (the other operations are abandoned). Efficient for very large fan-outs.
    pub fn join_all<I, F, T>(
        &self,
        operations: I,
    ) -> impl Future<Output = Result<Vec<T>, WorkflowError>> + Send
    where
        I: IntoIterator<Item = F>,
        F: IntoFuture<Output = Result<T, WorkflowError>>,
        F::IntoFuture: Send,
        T: Send,
    {
        futures::future::try_join_all(operations.into_iter().map(IntoFuture::into_future))
    }

    /// Awaits every operation and returns each one's result, failures included.
    pub fn join_all_settled<I, F>(
        &self,
        operations: I,
    ) -> impl Future<Output = Vec<F::Output>> + Send
    where
        I: IntoIterator<Item = F>,
        F: IntoFuture,
        F::IntoFuture: Send,
        F::Output: Send,
    {
        futures::future::join_all(operations.into_iter().map(IntoFuture::into_future))
    }

    /// Races two operations: the one whose completion is delivered first wins and the other is
    /// abandoned. The winner is the same on every replay because completions are delivered in
    /// journal order.
    pub fn select<A, B>(
        &self,
        a: A,
        b: B,
    ) -> impl Future<Output = Either<A::Output, B::Output>> + Send
    where
        A: IntoFuture,
        B: IntoFuture,
        A::IntoFuture: Send,
        B::IntoFuture: Send,
    {
        let a = Box::pin(a.into_future());
        let b = Box::pin(b.into_future());
        async move {
            match futures::future::select(a, b).await {
                Either::Left((out, _)) => Either::Left(out),
                Either::Right((out, _)) => Either::Right(out),
            }
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
