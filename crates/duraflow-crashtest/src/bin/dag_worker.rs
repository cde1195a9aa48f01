//! A worker process for the DAG crash test: `dag-worker <store> <side-effect-log> <generation>
//! <runs>`.
//!
//! `<store>` is `sqlite:<path>` (or a bare path) for a SQLite file, or a `postgres://` URL
//! (schema from `DURAFLOW_SCHEMA`). `DURAFLOW_ACTIVITY_CONCURRENCY` sets how many handlers run
//! at once (default 16), which bounds the handlers in flight at a kill.
//!
//! It registers the DAG interpreter with the crash test's template (`duraflow_crashtest::dag`)
//! and its handlers, starts the runs `dag-0 .. dag-<runs-1>` by id (idempotently, so a
//! restarted worker finds the same runs), and exits 0 once every run has finished. Each handler
//! invocation appends a line naming `<generation>` to the side-effect log. The test kills the
//! worker with SIGKILL at random moments and starts it again.

use std::sync::Arc;
use std::time::Duration;

use duraflow::dag::{run, Registry};
use duraflow::prelude::*;
use duraflow::EngineOptions;
use duraflow_crashtest::dag::{
    invoke, run_id, start, template, ACTIVITY_CONCURRENCY_VAR, DEFAULT_ACTIVITY_CONCURRENCY,
    HANDLERS,
};
use duraflow_crashtest::{
    init_worker_tracing, lease_from_env, number_from_env, open_log, open_store,
    start_each_and_wait_for_all, WorkerArgs,
};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_worker_tracing();
    let WorkerArgs {
        store,
        log,
        generation,
        count: runs,
    } = WorkerArgs::from_args("dag-worker", "runs")?;
    let activity_concurrency =
        number_from_env(ACTIVITY_CONCURRENCY_VAR, DEFAULT_ACTIVITY_CONCURRENCY)?;
    let log = open_log(&log)?;
    let mut registry = Registry::new(HANDLERS);
    registry.register(template())?;

    let store = open_store(&store, generation).await?;
    let lease = lease_from_env()?;
    let options = EngineOptions {
        turn_lease: lease,
        task_lease: lease,
        activity_concurrency,
        workflow_concurrency: 8,
        poll_interval: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    let mut builder = run::register(
        Engine::builder().shared_store(store).options(options),
        Arc::new(registry),
    );
    for handler in HANDLERS {
        let log = log.clone();
        builder = builder.activity(handler, move |ctx: ActivityContext, input: Value| {
            invoke(ctx, handler, input, log.clone(), generation)
        });
    }
    let engine = builder.start().await?;
    let client = engine.client();
    start_each_and_wait_for_all(
        "dag-worker",
        &client,
        run::WORKFLOW_NAME,
        runs,
        run_id,
        start,
    )
    .await?;
    engine.shutdown().await;
    println!("all {runs} DAG runs finished");
    Ok(())
}
