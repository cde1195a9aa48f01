//! # duraflow — durable execution for Rust
//!
//! Workflows written as ordinary `async` Rust that survive crashes, restarts and redeploys.
//! A workflow calls activities, sleeps on durable timers, waits for external events, starts
//! child workflows and runs inline steps; every one of those is journaled, so when the process
//! stops and the workflow resumes elsewhere, the code is replayed against its journal and
//! carries on from where it was: recorded results are read back, never produced again.
//! Activities and inline steps run at least once (one that was running when its process died
//! runs again), so make their side effects idempotent.
//!
//! ## Features, and where they live
//!
//! - Workflow code: [`WorkflowContext`] —
//!   [`activity`](WorkflowContext::activity) with a [`RetryPolicy`] and timeouts,
//!   inline [`step`](WorkflowContext::step)s, [`sleep`](WorkflowContext::sleep),
//!   [`wait_for_event`](WorkflowContext::wait_for_event) with a timeout,
//!   [`child_workflow`](WorkflowContext::child_workflow) and
//!   [`start_child`](WorkflowContext::start_child),
//!   [`continue_as_new`](WorkflowContext::continue_as_new),
//!   [`join_all`](WorkflowContext::join_all) and [`select`](WorkflowContext::select),
//!   deterministic [`now`](WorkflowContext::now), [`uuid`](WorkflowContext::uuid) and
//!   [`random_u64`](WorkflowContext::random_u64).
//! - Activities: `async fn(ActivityContext, I) -> Result<O, ActivityError>`, or the typed
//!   [`Activity`] trait; errors are retryable unless marked [`ActivityError::terminal`].
//! - Typed calls: [`call`](WorkflowContext::call) schedules an activity by its
//!   [`ActivitySignature`], [`child`](WorkflowContext::child) and
//!   [`invoke_typed`](WorkflowContext::invoke_typed) start a [`Workflow`] type, and
//!   [`Client::start_typed`] returns a [`TypedRunHandle`] that waits for the workflow's output
//!   type; no output needs an annotation.
//! - Queue-wide events: [`emit_event`](WorkflowContext::emit_event) and
//!   [`Client::emit_event`] emit an event by name in a queue (the first emit wins, and its
//!   [`EmitOutcome`] says whether this one did); every workflow of the queue in
//!   [`await_event`](WorkflowContext::await_event) (with a timeout) wakes with its data.
//! - Configuration from the environment ([`env`]): `Engine::builder().from_env().await?` reads
//!   `DURAFLOW_DATABASE_URL` and the concurrency settings.
//! - Running them: [`Engine`] (built with [`Engine::builder`], which needs a store) and its
//!   [`Client`] (start, raise events, cancel, terminate, status, wait, history, list, purge).
//! - Storage: any [`Store`]. `SqliteStore` (feature `sqlite`, on by default) keeps everything
//!   in one SQLite file with durable, group-committed writes; [`MemoryStore`] keeps it in
//!   memory for tests; `PostgresStore` (feature `postgres`) lets many worker processes on many
//!   machines share one PostgreSQL database.
//! - DAG workflows (feature `dag`): `dag` re-exports `duraflow-dag`, templates of named steps
//!   with `depends_on` edges (YAML, JSON or a builder) and `dag::run`, the built-in workflow
//!   that runs one with each step's handler as an activity.
//! - Metrics and traces: [`Engine::metrics`] returns the engine's Prometheus [`Metrics`]
//!   ([`metrics`]; `scrape` is the body of a `/metrics` route, `register` adds them to your own
//!   registry), and every turn and activity attempt runs in a `tracing` span naming its
//!   instance and operation; `otel` (feature `otel`) exports those spans to OpenTelemetry.
//! - Replay safety: code that no longer matches a journal fails the instance with a
//!   nondeterminism failure naming the journal position; [`check_replay`] checks journals
//!   against new code before you deploy it.
//!
//! ## Example
//!
//! ```no_run
//! use duraflow::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: String, cents: u64 }
//!
//! async fn charge(_ctx: ActivityContext, order: Order) -> Result<String, ActivityError> {
//!     Ok(format!("receipt-{}", order.id))
//! }
//!
//! async fn fulfil(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
//!     let receipt: String = ctx
//!         .activity("charge", &order)
//!         .retry(RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(5))
//!         .await?;
//!     let approved: bool = ctx
//!         .wait_for_event("approved")
//!         .timeout(Duration::from_secs(3600))
//!         .await?;
//!     ctx.sleep(Duration::from_secs(60)).await?;
//!     Ok(if approved { receipt } else { "rejected".into() })
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::builder()
//!     .store(SqliteStore::open("orders.db").await?)
//!     .workflow("fulfil", fulfil)
//!     .activity("charge", charge)
//!     .start()
//!     .await?;
//! let client = engine.client();
//! let run = client.start("fulfil", &Order { id: "42".into(), cents: 1999 }).id("order-42").await?;
//! client.raise_event(&run, "approved", &true).await?;
//! let receipt: String = client.wait(&run).await?;
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

pub mod env;

#[cfg(feature = "otel")]
pub mod otel;

/// Prometheus metrics of the engine and the store's gauges (see `docs/METRICS.md`).
pub use duraflow_runtime::metrics;

/// Map and parallel results and policies.
pub use duraflow_core::batch::{BatchItem, BatchStatus, ItemBatcher, ItemStatus};
/// The builders and futures workflow code holds: what `ctx.activity(..)`, `ctx.step(..)`,
/// `ctx.wait_for_event(..)` and the other operations return before they are awaited.
pub use duraflow_core::context::{
    branch, ActivityCall, Branch, Callback, CallbackFuture, ChildCall, ChildContext, Condition,
    ContinueAsNew, EventWait, EventWaitFuture, Invoke, MapCall, OpFuture, QueueEventAwait,
    QueueEventAwaitFuture, StartChild, StepFuture, WaitForCallback, WaitStrategy,
};
pub use duraflow_core::{
    check_replay, typed_workflow_fn, workflow_fn, ActivityError, ActivityOptions,
    ActivitySignature, BatchResult, CancellationPolicy, Clock, CompletionConfig, CompletionReason,
    Event, EventKind, Failure, FailureKind, InstanceOptions, Nondeterminism, OpId, Outcome,
    ParentLink, Payload, ReplayReport, RetryPolicy, StepContext, StepSemantics, Timestamp,
    Workflow, WorkflowContext, WorkflowError, WorkflowFn, JOURNAL_FORMAT_VERSION,
};
pub use duraflow_core::{EmitOutcome, OpIdParseError, PayloadError, StoredEvent, DEFAULT_QUEUE};
pub use duraflow_runtime::{
    Activity, ActivityContext, ActivityHandler, Client, ClientError, Engine, EngineBuilder,
    EngineError, EngineOptions, IfExists, ManualClock, Metrics, RunHandle, ShutdownReport, Start,
    SubscribeOptions, Subscription, SystemClock, TypedRunHandle, TypedStart, Wait,
};
pub use duraflow_store::{
    management_of, CallbackStatus, FeedEntry, FeedRecord, FetchFilter, InstanceInfo,
    InstanceStatus, IntoStore, ListFilter, Management, MemoryStore, Page, QueueConfig, QueueDepth,
    RateLimit, Registered, RegisteredKind, Registration, Store, StoreError, StoreStats,
};

/// DAG workflows (feature `dag`): templates, validation, the registry, and
/// [`dag::run`], the interpreter workflow that runs a template on the engine.
#[cfg(feature = "dag")]
pub use duraflow_dag as dag;
#[cfg(feature = "postgres")]
pub use duraflow_postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use duraflow_sqlite::{SqliteOptions, SqliteStore, Synchronous, DEFAULT_MMAP_SIZE};

/// The sub-crates, for what the facade does not re-export.
pub mod crates {
    pub use duraflow_core as core;
    #[cfg(feature = "postgres")]
    pub use duraflow_postgres as postgres;
    pub use duraflow_runtime as runtime;
    #[cfg(feature = "sqlite")]
    pub use duraflow_sqlite as sqlite;
    pub use duraflow_store as store;
}

/// Everything a workflow application usually needs: `use duraflow::prelude::*;`.
pub mod prelude {
    pub use std::time::Duration;

    pub use crate::env::FromEnv;
    pub use crate::{
        branch, Activity, ActivityContext, ActivityError, ActivitySignature, BatchResult,
        CallbackStatus, CancellationPolicy, Client, ClientError, CompletionConfig, Condition,
        EmitOutcome, Engine, EngineBuilder, EngineOptions, Failure, FailureKind, IfExists,
        InstanceStatus, ListFilter, MemoryStore, QueueConfig, RetryPolicy, RunHandle, StepContext,
        StepSemantics, WaitStrategy, Workflow, WorkflowContext, WorkflowError,
    };
    #[cfg(feature = "postgres")]
    pub use crate::{PostgresOptions, PostgresStore};
    #[cfg(feature = "sqlite")]
    pub use crate::{SqliteOptions, SqliteStore, Synchronous};
}

/// The README's examples, compiled as doc tests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The durable-functions guide's examples, compiled as doc tests.
#[doc = include_str!("../../../docs/DURABLE_FUNCTIONS.md")]
#[cfg(doctest)]
pub struct DurableFunctionsDoctests;

/// The "Coming from tensorzero durable / DBOS" guide's examples, compiled as doc tests.
#[doc = include_str!("../../../docs/COMING_FROM_DURABLE.md")]
#[cfg(doctest)]
pub struct ComingFromDurableDoctests;

/// The metrics guide's examples, compiled as doc tests.
#[doc = include_str!("../../../docs/METRICS.md")]
#[cfg(doctest)]
pub struct MetricsDoctests;

/// The "Coming from Tasker" guide's examples, compiled as doc tests (they need the feature
/// `dag`).
#[doc = include_str!("../../../docs/COMING_FROM_TASKER.md")]
#[cfg(all(doctest, feature = "dag"))]
pub struct ComingFromTaskerDoctests;
