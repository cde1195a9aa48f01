//! A worker process for the steps crash test:
//! `steps-worker <store> <side-effect-log> <generation> <workflows>`.
//!
//! `<store>` is `sqlite:<path>` (or a bare path) for a SQLite file, or a `postgres://` URL
//! (schema from `DURAFLOW_SCHEMA`). `DURAFLOW_WORKFLOW_CONCURRENCY` sets how many workflow turns
//! run at once (default 8), which bounds the steps in flight at a kill.
//!
//! It starts workflows `df-0 .. df-<workflows-1>` by id (idempotently, so a restarted worker
//! finds the same instances), runs them, and exits 0 once every one has completed. Each call of
//! a step body appends a line naming `<generation>` to the side-effect log (see
//! `duraflow_crashtest::steps`). The test kills the worker with SIGKILL at random moments and
//! starts it again.

use std::time::Duration;

use duraflow::prelude::*;
use duraflow::EngineOptions;
use duraflow_crashtest::steps::{
    steps, workflow_id, Effects, DEFAULT_WORKFLOW_CONCURRENCY, WORKFLOW, WORKFLOW_CONCURRENCY_VAR,
};
use duraflow_crashtest::{
    init_worker_tracing, lease_from_env, number_from_env, open_log, open_store,
    start_and_wait_for_all, WorkerArgs,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_worker_tracing();
    let WorkerArgs {
        store,
        log,
        generation,
        count: workflows,
    } = WorkerArgs::from_args("steps-worker", "workflows")?;
    let workflow_concurrency =
        number_from_env(WORKFLOW_CONCURRENCY_VAR, DEFAULT_WORKFLOW_CONCURRENCY)?;
    let effects = Effects::new(open_log(&log)?, generation);

    let store = open_store(&store, generation).await?;
    let lease = lease_from_env()?;
    let options = EngineOptions {
        turn_lease: lease,
        task_lease: lease,
        workflow_concurrency,
        poll_interval: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .shared_store(store)
        .options(options)
        .workflow(WORKFLOW, move |ctx: WorkflowContext, i: u64| {
            steps(ctx, i, effects.clone())
        })
        .start()
        .await?;
    let client = engine.client();
    start_and_wait_for_all("steps-worker", &client, WORKFLOW, workflows, workflow_id).await?;
    engine.shutdown().await;
    println!("all {workflows} workflows completed");
    Ok(())
}
