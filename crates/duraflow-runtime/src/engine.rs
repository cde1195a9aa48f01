//! [`Engine`]: registries, the workflow dispatcher, the activity worker pool, and shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use duraflow_core::{
    typed_workflow_fn, workflow_fn, ActivityError, Clock, WorkflowContext, WorkflowError,
};
use duraflow_store::{
    Committed, Completed, IntoStore, JournalCache, QueueConfig, Store, TaskCompletion, TurnCommit,
};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::active::ActiveActivities;
use crate::activity::{activity_fn, typed_activity_fn, Activity, ActivityContext, ActivityHandler};
use crate::attempt::Attempts;
use crate::batcher::{BatchWrite, Batcher};
use crate::claimed::ClaimedTurns;
use crate::client::Client;
use crate::clock::SystemClock;
use crate::dispatcher::{run_dispatcher, Dispatcher};
use crate::error::EngineError;
use crate::metrics::{CommitKind, Metrics};
use crate::options::EngineOptions;
use crate::registry::Registry;
use crate::shared::Shared;
use crate::warm::WarmCache;
use crate::worker::run_workers;
use duraflow_core::{ActivitySignature, Workflow};

/// Builds an [`Engine`]: the store, the workflows and activities it runs, and its settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use duraflow_core::{ActivityError, WorkflowContext, WorkflowError};
/// use duraflow_runtime::{ActivityContext, Engine};
/// use duraflow_store::MemoryStore;
///
/// async fn greet(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
///     ctx.activity("format", &name).await
/// }
/// async fn format(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
///     Ok(format!("hello, {name}"))
/// }
///
/// let engine = Engine::builder()
///     .store(MemoryStore::new())
///     .workflow("greet", greet)
///     .activity("format", format)
///     .start()
///     .await?;
/// let client = engine.client();
/// let run = client.start("greet", "world").await?;
/// let greeting: String = client.wait(&run).await?;
/// engine.shutdown().await;
/// # Ok(()) }
/// ```
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    registry: Registry,
    errors: Vec<EngineError>,
    options: EngineOptions,
    queue_configs: Vec<QueueConfig>,
    metrics: Option<Metrics>,
}

/// The longest workflow version [`EngineBuilder::workflow_version`] accepts, in bytes.
pub const MAX_WORKFLOW_VERSION_LEN: usize = 256;

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            store: None,
            clock: Arc::new(SystemClock),
            registry: Registry::default(),
            errors: Vec::new(),
            options: EngineOptions::default(),
            queue_configs: Vec::new(),
            metrics: None,
        }
    }
}

impl EngineBuilder {
    /// The store to keep instances in: a store, or one shared with other engines or clients as
    /// `Arc<dyn Store>`. It is required: [`EngineBuilder::start`] without one fails with
    /// [`EngineError::NoStore`]. A `MemoryStore`, which keeps nothing across restarts, is
    /// for tests and must be chosen explicitly.
    pub fn store(mut self, store: impl IntoStore) -> Self {
        self.store = Some(store.into_store());
        self
    }

    /// The store, shared with other engines or clients (the same as [`EngineBuilder::store`]
    /// with an `Arc<dyn Store>`).
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The clock (default: the system clock). Tests pass a `ManualClock` for virtual time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers `async fn(WorkflowContext, I) -> Result<O, WorkflowError>` under `name`.
    pub fn workflow<F, Fut, I, O>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, WorkflowError>> + Send + 'static,
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
    {
        if let Err(e) = self.registry.add_workflow(name, workflow_fn(f)) {
            self.errors.push(e);
        }
        self
    }

    /// Registers a typed [`Workflow`] under its `NAME`, with its `VERSION` if it has one; the
    /// engine also serves its `QUEUE`, if it names one.
    pub fn register_workflow<W: Workflow>(mut self, workflow: W) -> Self {
        self.registry.add_queue(W::QUEUE);
        if let Err(e) = self
            .registry
            .add_workflow(W::NAME, typed_workflow_fn(workflow))
        {
            self.errors.push(e);
            return self;
        }
        match W::VERSION {
            Some(version) => self.workflow_version(W::NAME, version),
            None => self,
        }
    }

    /// Gives the workflow registered under `name` a version: the version of its code, which
    /// this engine records when it starts an execution of it (in the journal's
    /// `workflow_started` and the instance's `InstanceInfo::version`), so that status, lists
    /// and history show which code started an instance. Register the workflow first; a typed
    /// [`Workflow`] sets it with `const VERSION`. A version is 1 to 256 bytes long.
    ///
    /// ```
    /// use duraflow_runtime::Engine;
    /// use duraflow_core::{WorkflowContext, WorkflowError};
    /// use duraflow_store::MemoryStore;
    ///
    /// let builder = Engine::builder()
    ///     .store(MemoryStore::new())
    ///     .workflow("greet", |_ctx: WorkflowContext, name: String| async move {
    ///         Ok::<_, WorkflowError>(format!("hello, {name}"))
    ///     })
    ///     .workflow_version("greet", "2");
    /// ```
    pub fn workflow_version(mut self, name: &str, version: impl Into<String>) -> Self {
        let version = version.into();
        if version.is_empty() || version.len() > MAX_WORKFLOW_VERSION_LEN {
            self.errors.push(EngineError::InvalidOption(format!(
                "the version of workflow {name:?} must be 1 to {MAX_WORKFLOW_VERSION_LEN} bytes \
                 long, not {} bytes",
                version.len()
            )));
        } else if !self.registry.workflows.set_version(name, version) {
            self.errors.push(EngineError::InvalidOption(format!(
                "workflow_version names workflow {name:?}, which is not registered: register \
                 it (workflow or register_workflow) before giving it a version"
            )));
        }
        self
    }

    /// Registers `async fn(ActivityContext, I) -> Result<O, ActivityError>` under `name`.
    pub fn activity<F, Fut, I, O>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(ActivityContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, ActivityError>> + Send + 'static,
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
    {
        if let Err(e) = self.registry.add_activity(name, activity_fn(f)) {
            self.errors.push(e);
        }
        self
    }

    /// Registers a typed [`Activity`] under its `NAME`; the engine also serves its `QUEUE`,
    /// if it names one.
    pub fn register_activity<A: Activity>(mut self, activity: A) -> Self {
        self.registry.add_queue(A::QUEUE);
        if let Err(e) = self
            .registry
            .add_activity(A::NAME, typed_activity_fn(activity))
        {
            self.errors.push(e);
        }
        self
    }

    /// Registers `async fn(ActivityContext, A::Input) -> Result<A::Output, ActivityError>` as
    /// the code of the activity whose signature is `A`, under `A::NAME`; the engine also
    /// serves `A::QUEUE`, if it names one.
    ///
    /// This is how a worker implements an activity whose [`ActivitySignature`] is declared in
    /// another crate (a crate of workflows that does not depend on the runtime): the orphan
    /// rule forbids `impl Activity for` a type of another crate, and the function's types are
    /// checked against the signature here instead.
    ///
    /// ```
    /// use duraflow_core::{ActivityError, ActivitySignature};
    /// use duraflow_runtime::{ActivityContext, Engine};
    /// use duraflow_store::MemoryStore;
    ///
    /// // In the workflows' crate:
    /// struct Charge;
    /// impl ActivitySignature for Charge {
    ///     const NAME: &'static str = "charge";
    ///     type Input = u64;
    ///     type Output = String;
    /// }
    ///
    /// // In the worker:
    /// async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    ///     Ok(format!("receipt for {cents} cents"))
    /// }
    /// let builder = Engine::builder()
    ///     .store(MemoryStore::new())
    ///     .activity_for::<Charge>(charge)
    ///     // A closure names its parameters' types, as with `EngineBuilder::activity`.
    ///     .activity_for::<Refund>(|_ctx: ActivityContext, cents: u64| async move {
    ///         Ok(cents > 0)
    ///     });
    /// # struct Refund;
    /// # impl ActivitySignature for Refund {
    /// #     const NAME: &'static str = "refund";
    /// #     type Input = u64;
    /// #     type Output = bool;
    /// # }
    /// ```
    pub fn activity_for<A: ActivitySignature>(
        mut self,
        f: impl ActivityHandler<A::Input, A::Output>,
    ) -> Self {
        self.registry.add_queue(A::QUEUE);
        self.activity(A::NAME, move |ctx: ActivityContext, input: A::Input| {
            f.call(ctx, input)
        })
    }

    /// Workflow turns run at once (default 256, see [`EngineOptions::workflow_concurrency`]).
    pub fn workflow_concurrency(mut self, n: usize) -> Self {
        self.options.workflow_concurrency = n;
        self
    }

    /// Activities run at once (default 256). Lower it where activities call a service that
    /// takes fewer calls at once, or give their queue a `task_concurrency`.
    pub fn activity_concurrency(mut self, n: usize) -> Self {
        self.options.activity_concurrency = n;
        self
    }

    /// The queues this engine serves (default `["default"]`), replacing those set before. It
    /// takes only work of these queues, and of these only the turns of the workflows and the
    /// tasks of the activities it has registered: engines with different queues or
    /// registrations share a store without failing each other's work.
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.options.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Flow control for a queue (concurrency, per-key concurrency, rate limit), written to the
    /// store when the engine starts, so that every engine and worker sharing the store holds
    /// to it; the engine also serves the queue (besides those of [`EngineBuilder::queues`]).
    /// A configuration the store refuses (a zero limit) fails [`EngineBuilder::start`].
    ///
    /// ```
    /// # use duraflow_runtime::Engine;
    /// # use duraflow_store::QueueConfig;
    /// # use std::time::Duration;
    /// let builder = Engine::builder().queue_config(
    ///     QueueConfig::new("emails")
    ///         .concurrency(5)
    ///         .rate_limit(100, Duration::from_secs(60)),
    /// );
    /// ```
    pub fn queue_config(mut self, config: QueueConfig) -> Self {
        self.queue_configs.retain(|c| c.name != config.name);
        self.queue_configs.push(config);
        self
    }

    /// The [`Metrics`] to record into (default: a fresh set, which [`Engine::metrics`]
    /// returns). Pass one the application made to register it in its own registry before
    /// the engine starts, or to have several engines of a process add up in one set.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// All settings at once.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// Checks the configuration and starts the dispatcher and the worker pool. Fails with
    /// [`EngineError::NoStore`] if no store was set.
    pub async fn start(mut self) -> Result<Engine, EngineError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        let o = &self.options;
        for (name, value) in [
            ("workflow_concurrency", o.workflow_concurrency),
            ("activity_concurrency", o.activity_concurrency),
            ("fetch_batch", o.fetch_batch),
            ("commit_batch", o.commit_batch),
        ] {
            if value == 0 {
                return Err(EngineError::InvalidOption(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if o.turn_lease < Duration::from_millis(10) || o.task_lease < Duration::from_millis(30) {
            return Err(EngineError::InvalidOption(
                "turn_lease must be at least 10 ms and task_lease at least 30 ms".into(),
            ));
        }
        if o.queues.is_empty() {
            return Err(EngineError::InvalidOption(
                "queues must name at least one queue for the engine to serve".into(),
            ));
        }
        for config in &self.queue_configs {
            config
                .validate()
                .map_err(|e| EngineError::InvalidOption(e.to_string()))?;
        }
        let store = self.store.ok_or(EngineError::NoStore)?;
        for config in &self.queue_configs {
            store.configure_queue(config.clone()).await?;
            if !self.options.queues.contains(&config.name) {
                self.options.queues.push(config.name.clone());
            }
        }
        let o = &self.options;
        let (turn_filter, task_filter) = self.registry.filters(&o.queues);
        // Processes that run no workflow code (`duraflow serve`) learn from this what can be
        // started where.
        let announcement =
            crate::registry::announcement(&turn_filter, &task_filter, &self.registry.workflows);
        store.announce(announcement, self.clock.now()).await?;
        let shared = Shared {
            store,
            clock: self.clock,
            options: self.options,
            turn_filter: Arc::new(turn_filter),
            task_filter: Arc::new(task_filter),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            metrics: self.metrics.unwrap_or_default(),
        };
        let o = &shared.options;
        let warm = Arc::new(WarmCache::new(o.warm_instances));
        let journal_cache: Arc<dyn JournalCache> = warm.clone();

        let store = shared.store.clone();
        let metrics = shared.metrics.clone();
        let commit_turns: BatchWrite<TurnCommit, Committed> = Arc::new(move |batch| {
            let store = store.clone();
            let metrics = metrics.clone();
            async move {
                let (items, began) = (batch.len(), Instant::now());
                let committed = store.commit_turns(batch).await;
                metrics
                    .recorder()
                    .commit(CommitKind::Turns, items, began.elapsed());
                committed
            }
            .boxed()
        });
        let (committer, committer_task) = Batcher::spawn(o.commit_batch, commit_turns);
        let store = shared.store.clone();
        let clock = shared.clock.clone();
        let cache = journal_cache.clone();
        let claimable = shared.turn_filter.clone();
        let metrics = shared.metrics.clone();
        let complete_tasks: BatchWrite<TaskCompletion, Completed> = Arc::new(move |batch| {
            let store = store.clone();
            let cache = cache.clone();
            let claimable = claimable.clone();
            let metrics = metrics.clone();
            let now = clock.now();
            async move {
                let (items, began) = (batch.len(), Instant::now());
                let completed = store
                    .complete_tasks(&claimable, now, batch, Some(&cache))
                    .await;
                metrics
                    .recorder()
                    .commit(CommitKind::Completions, items, began.elapsed());
                completed
            }
            .boxed()
        });
        let (completer, completer_task) = Batcher::spawn(o.commit_batch, complete_tasks);

        let Registry {
            workflows,
            activities,
            ..
        } = self.registry;
        let workflow_names = Arc::new(workflows.names());
        let active = ActiveActivities::default();
        let hard_stop = CancellationToken::new();
        let handed_back = Arc::new(AtomicUsize::new(0));
        let task_permits = Arc::new(Semaphore::new(o.activity_concurrency));
        let turn_permits = Arc::new(Semaphore::new(o.workflow_concurrency));
        // The dispatcher starts the attempts its commits claim; the attempts run the turns
        // their completions claim through a weak link back, so that the two handles (and the
        // writers they own) are dropped once the loops and their work have ended.
        let dispatcher = Arc::new_cyclic(|me: &Weak<Dispatcher>| Dispatcher {
            shared: shared.clone(),
            workflows,
            permits: turn_permits,
            warm: warm.clone(),
            journal_cache,
            committer,
            active: active.clone(),
            attempts: Arc::new(Attempts {
                shared: shared.clone(),
                activities,
                permits: task_permits,
                hard_stop: hard_stop.clone(),
                active: active.clone(),
                handed_back: handed_back.clone(),
                completer,
                turns: me.clone(),
            }),
        });
        let local: Weak<dyn ClaimedTurns> = Arc::downgrade(&dispatcher) as Weak<Dispatcher>;
        let attempts = dispatcher.attempts.clone();
        let workers = tokio::spawn(run_workers(attempts));
        let dispatcher = tokio::spawn(run_dispatcher(dispatcher));
        info!(store = shared.store.backend(), "duraflow engine started");
        Ok(Engine {
            shared,
            hard_stop,
            active,
            warm,
            handed_back,
            workflow_names,
            local,
            loops: vec![dispatcher, workers],
            writers: vec![committer_task, completer_task],
        })
    }
}

/// A running engine: it runs the workflows and activities registered with it against its store
/// until [`Engine::shutdown`].
pub struct Engine {
    shared: Shared,
    /// Cancels the activities still running when the grace period is over.
    hard_stop: CancellationToken,
    active: ActiveActivities,
    warm: Arc<WarmCache>,
    handed_back: Arc<AtomicUsize>,
    workflow_names: Arc<Vec<String>>,
    /// Where this engine's clients run the first turns of what they start. The engine holds
    /// neither the dispatcher nor the attempts strongly: their writers end when the loops and
    /// their work do.
    local: Weak<dyn ClaimedTurns>,
    loops: Vec<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
}

/// What shutdown did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Activities still running at the end of the grace period, cancelled and handed back to
    /// the store for another worker.
    pub activities_handed_back: usize,
    /// Whether everything in flight finished within the grace period.
    pub drained: bool,
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// A client for this engine's store that checks workflow names against this engine.
    pub fn client(&self) -> Client {
        Client::for_engine(
            self.shared.store.clone(),
            self.shared.clock.clone(),
            self.workflow_names.clone(),
            self.local.clone(),
        )
    }

    /// The engine's store.
    pub fn store(&self) -> Arc<dyn Store> {
        self.shared.store.clone()
    }

    /// The engine's metrics: encode them for a `/metrics` route ([`Metrics::scrape`] adds the
    /// store's gauges) or register them in the application's registry.
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// How many activity attempts are running in this process.
    pub fn running_activities(&self) -> usize {
        self.active.count()
    }

    /// How many instances this engine keeps warm in memory between their turns (at most
    /// `EngineOptions::warm_instances`).
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    /// Stops taking new work, waits for turns and activities in flight (activities for at most
    /// the grace period, after which they are cancelled and handed back to the store), and
    /// returns when every task the engine started has ended.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.shared.stop.cancel();
        // The loops stop fetching at once; what they and the work they started spawned is
        // tracked.
        futures::future::join_all(std::mem::take(&mut self.loops)).await;
        let tracker = self.shared.tracker.clone();
        tracker.close();
        let drained = tokio::select! {
            _ = tracker.wait() => true,
            _ = tokio::time::sleep(self.shared.options.shutdown_grace) => false,
        };
        if !drained {
            self.hard_stop.cancel();
            tracker.wait().await;
        }
        // The loops and their work held the only batcher handles: the writers drain their
        // queues and end.
        for writer in std::mem::take(&mut self.writers) {
            let _ = writer.await;
        }
        // Clients may still use the store; what the engine wrote is folded into its main
        // storage now rather than when the last of them lets go.
        if let Err(e) = self.shared.store.checkpoint().await {
            warn!(error = %e, "the store could not checkpoint at shutdown");
        }
        info!("duraflow engine stopped");
        ShutdownReport {
            activities_handed_back: self.handed_back.load(Ordering::Relaxed),
            drained,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Dropped without shutdown: stop everything at once. Leases expire and other workers
        // (or the next start) pick the work up.
        self.shared.stop.cancel();
        self.hard_stop.cancel();
        for handle in self.loops.iter().chain(self.writers.iter()) {
            handle.abort();
        }
    }
}
