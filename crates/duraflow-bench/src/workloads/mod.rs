//! The workloads, one module each, and the session (store, engine, client) they run in.

mod fan_out;
mod sequential;
mod start_latency;
mod throughput;
mod timers;

use std::sync::Arc;

use duraflow::prelude::*;
use duraflow::Store;

use crate::cli::{Config, Workload};
use crate::engine::{self, START_CONCURRENCY};
use crate::report::Figures;
use crate::store::{Opened, StoreEnv};
use crate::Result;

/// Runs `workload` of size `n` on a store of `env` and returns its figures.
pub(crate) async fn run(
    workload: Workload,
    env: &StoreEnv,
    n: u64,
    config: &Config,
) -> Result<Figures> {
    match workload {
        Workload::Throughput => throughput::run(env, n, config.count_commits).await,
        Workload::Sequential => sequential::run(env, n).await,
        Workload::StartLatency => start_latency::run(env, n).await,
        Workload::FanOut => fan_out::run(env, n).await,
        Workload::Timers => timers::run(env, n, config).await,
        Workload::All => Err("`all` is not a single workload".into()),
    }
}

/// The workload's own parameters, for the results.
pub(crate) fn settings(workload: Workload, config: &Config) -> Figures {
    let mut s = Figures::new();
    match workload {
        Workload::Throughput => {
            s.int("activities_per_workflow", 3)
                .int("start_concurrency", START_CONCURRENCY as u64)
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
        Workload::All => {}
    }
    s
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
