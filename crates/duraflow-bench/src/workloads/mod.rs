//! The workloads, one module each, and the session (store, engine, client) they run in.

mod dag;
mod dag_events;
mod events;
mod fan_out;
mod list;
mod map;
mod parked;
mod queue_fetch;
pub(crate) mod recovery;
mod replay;
mod sequential;
mod start_latency;
mod steps;
mod throughput;
mod timers;

use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::Store;

use crate::cli::{Config, Workload};
use crate::engine::{self, START_CONCURRENCY};
use crate::report::Figures;
use crate::store::{Opened, StoreEnv, StoreKind};
use crate::Result;

/// Runs `workload` of size `n` on a store of `env` and returns its figures.
pub(crate) async fn run(
    workload: Workload,
    env: &StoreEnv,
    n: u64,
    config: &Config,
) -> Result<Figures> {
    match workload {
        Workload::Throughput => throughput::run(env, n, config.count_commits, config.starts).await,
        Workload::Sequential => sequential::run(env, n).await,
        Workload::StartLatency => start_latency::run(env, n).await,
        Workload::FanOut => fan_out::run(env, n).await,
        Workload::Timers => timers::run(env, n, config).await,
        Workload::Replay => replay::run(env, n).await,
        Workload::Parked => parked::run(env, n).await,
        Workload::Recovery => recovery::run(env, n, config).await,
        Workload::Steps => steps::run(env, n, config.count_commits).await,
        Workload::Map => map::run(env, n).await,
        Workload::QueueFetch => queue_fetch::run(env, n).await,
        Workload::List => list::run(env, n).await,
        Workload::DagChain => dag::chain(env, n).await,
        Workload::DagFanOut => dag::fan_out(env, n).await,
        Workload::DagReadiness => dag::readiness(n),
        Workload::DagEvents => dag_events::run(env, n).await,
        Workload::All => Err("`all` is not a single workload".into()),
    }
}

/// The workload's own parameters, for the results.
pub(crate) fn settings(workload: Workload, config: &Config) -> Figures {
    let mut s = Figures::new();
    match workload {
        Workload::Throughput => {
            s.int("activities_per_workflow", 3)
                .text("starts", config.starts.name())
                .int("start_concurrency", START_CONCURRENCY as u64)
                .int("start_batch", throughput::BATCH as u64)
                .flag("commits_counted", config.count_commits);
        }
        Workload::Sequential => {
            s.text(
                "unit",
                "n operations in one workflow, twice: activities, then steps",
            );
        }
        Workload::StartLatency => {
            s.text(
                "unit",
                "n starts of an empty workflow, each waited for before the next",
            );
        }
        Workload::FanOut => {
            s.text("unit", "one workflow joining n no-op activities");
        }
        Workload::Timers => {
            s.int("min_sleep_ms", config.min_sleep_ms)
                .int("max_sleep_ms", config.max_sleep_ms)
                .int("seed", config.seed)
                .int("start_concurrency", START_CONCURRENCY as u64)
                .text("clock", "system");
        }
        Workload::Replay => {
            s.text(
                "unit",
                "next turn of workflows of n/1000, n/100, n/10 and n completed inline steps",
            )
            .int("samples_per_size", replay::SAMPLES as u64)
            .text(
                "cold",
                "engine shut down and a new one started before the event; SQLite and \
                 PostgreSQL reopened, memory kept",
            );
        }
        Workload::Parked => {
            s.text("unit", "n workflows waiting for an event")
                .int("resume_samples_max", parked::SAMPLES)
                .int("start_concurrency", START_CONCURRENCY as u64);
        }
        Workload::Recovery => {
            let (turn, task) = recovery::leases(config);
            s.text(
                "unit",
                "n workflows of sequential activities; the worker process SIGKILLed half way \
                 and restarted",
            )
            .int("activities_per_workflow", recovery::ACTIVITIES)
            .int("activity_ms", recovery::ACTIVITY_MS)
            .int("worker_turn_lease_ms", turn.as_millis() as u64)
            .int("worker_task_lease_ms", task.as_millis() as u64)
            .flag(
                "worker_leases_are_engine_defaults",
                config.turn_lease_ms.is_none() && config.task_lease_ms.is_none(),
            )
            .int("start_concurrency", START_CONCURRENCY as u64);
        }
        Workload::Steps => {
            s.text(
                "unit",
                "n sequential inline steps per workflow, for each semantics: one workflow \
                 alone, then many at once",
            )
            .int("concurrent_instances", steps::INSTANCES)
            .int("start_concurrency", START_CONCURRENCY as u64)
            .flag("commits_counted", config.count_commits);
        }
        Workload::Map => {
            s.text(
                "unit",
                "one workflow mapping n items; each item runs one at-least-once inline step",
            )
            .int("max_concurrency", engine::MAP_CONCURRENCY as u64);
        }
        Workload::QueueFetch => {
            s.text(
                "unit",
                "n pending instances on 100 queues the timed fetches do not serve, against \
                 stores without them",
            )
            .int("queues", queue_fetch::QUEUES)
            .int("served_instances", queue_fetch::SERVED)
            .int("fetch_max", queue_fetch::FETCH_MAX as u64)
            .int("samples", queue_fetch::SAMPLES as u64)
            .int("rounds", queue_fetch::ROUNDS as u64)
            .int("create_concurrency", CREATE_CONCURRENCY as u64)
            .text("engine", "none: the Store API directly");
        }
        Workload::List => {
            s.text(
                "unit",
                "n instances over 10 names and 10 queues, a tenth completed; pages of 100 \
                 read through the management extension",
            )
            .int("page", list::PAGE as u64)
            .int("samples", list::SAMPLES as u64)
            .int("spread", list::SPREAD)
            .text("engine", "none: the Store API directly");
        }
        Workload::DagChain => {
            s.text(
                "unit",
                "one DAG run (inline template) of n no-op steps, each depending on the one \
                 before; then, on the same engine, one workflow of n sequential no-op \
                 activities as the baseline",
            );
        }
        Workload::DagFanOut => {
            s.text(
                "unit",
                "one DAG run (inline template) of a root, n no-op steps depending on it and a \
                 join depending on all of them; then one workflow joining n no-op activities \
                 as the baseline",
            );
        }
        Workload::DagReadiness => {
            s.text(
                "unit",
                "full validation, then walks of the Readiness tracker completing every ready \
                 step, over DAGs of n/100, n/10 and n steps, three shapes (chain; root, wide \
                 middle, join; layers each depending on all of the layer before)",
            )
            .int("layer_width", dag::LAYER_WIDTH as u64)
            .int("walks_per_graph", dag::WALKS as u64)
            .text(
                "engine",
                "none: the pure Readiness tracker (the store is not used)",
            );
        }
        Workload::DagEvents => {
            s.text(
                "unit",
                "DAG runs publishing at least n lifecycle events, followed live by one \
                 subscriber, then read from the start by another (decode + ack per batch)",
            )
            .int("steps_per_run", dag_events::WIDTH as u64 + 2)
            .int("events_per_run", dag_events::PER_RUN)
            .int("subscriber_batch", dag_events::BATCH as u64)
            .int("start_concurrency", START_CONCURRENCY as u64);
        }
        Workload::All => {}
    }
    s
}

/// Why `workload` does not run on stores of `kind`, if it does not.
pub(crate) fn not_applicable(workload: Workload, kind: StoreKind) -> Option<&'static str> {
    (workload == Workload::Recovery && kind == StoreKind::Memory).then_some(recovery::NOT_ON_MEMORY)
}

/// A store, an engine running on it and a client.
pub(crate) struct Session {
    /// The engine.
    pub(crate) engine: Engine,
    /// The engine's client.
    pub(crate) client: Client,
    /// The store (shared with the engine).
    pub(crate) store: Arc<dyn Store>,
    opened: Opened,
}

impl Session {
    /// Opens a store on `env` and starts an engine on it.
    pub(crate) async fn start(env: &StoreEnv) -> Result<Session> {
        Self::on(env.open().await?).await
    }

    /// Opens a store on `env` and starts an engine on it whose DAG interpreter has the
    /// templates of `registry`.
    pub(crate) async fn start_with(
        env: &StoreEnv,
        registry: Arc<duraflow::dag::Registry>,
    ) -> Result<Session> {
        let opened = env.open().await?;
        let store = opened.store.clone();
        let engine = engine::start_engine_with(store.clone(), registry).await?;
        let client = engine.client();
        Ok(Session {
            engine,
            client,
            store,
            opened,
        })
    }

    /// Starts an engine on an opened store.
    pub(crate) async fn on(opened: Opened) -> Result<Session> {
        let store = opened.store.clone();
        let engine = engine::start_engine(store.clone()).await?;
        let client = engine.client();
        Ok(Session {
            engine,
            client,
            store,
            opened,
        })
    }

    /// Shuts the engine down and drops the client; the store is still open.
    pub(crate) async fn shutdown(self) -> Opened {
        let Session {
            engine,
            client,
            store,
            opened,
        } = self;
        drop(client);
        drop(store);
        engine.shutdown().await;
        opened
    }

    /// Shuts the engine down and closes the store.
    pub(crate) async fn stop(self) -> Result<()> {
        self.shutdown().await.close().await
    }
}

/// Creates `count` instances through the store API, [`CREATE_CONCURRENCY`] at once (so that
/// the SQLite writer and the PostgreSQL create batcher share transactions among them),
/// `make(i)` being the `i`th.
pub(crate) async fn create_many(
    store: &Arc<dyn Store>,
    count: u64,
    make: impl Fn(u64) -> duraflow::crates::store::NewInstance,
) -> Result<()> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    stream::iter(0..count)
        .map(|i| {
            let instance = make(i);
            let store = store.clone();
            async move { store.create_instance(instance).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Creations in flight at once in [`create_many`].
pub(crate) const CREATE_CONCURRENCY: usize = 1_024;
