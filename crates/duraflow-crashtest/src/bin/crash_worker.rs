//! A worker process for the crash tests:
//! `crash-worker <store> <side-effect-log> <generation> <workflows>`.
//!
//! `<store>` is `sqlite:<path>` (or a bare path) for a SQLite file, or a `postgres://` URL;
//! the PostgreSQL schema comes from `DURAFLOW_SCHEMA` (default `duraflow`) and the connections
//! report `application_name` `duraflow-worker-<generation>`. `DURAFLOW_ACTIVITY_CONCURRENCY`
//! sets how many activities run at once (default 16).
//!
//! It starts workflows `wf-0 .. wf-<workflows-1>` by id (starting is idempotent, so a restarted
//! worker, or several workers sharing one database, find the same instances), runs them, and
//! exits 0 once every one has completed, whichever process ran it. Each activity appends a line
//! naming `<generation>` to the side-effect log. The tests kill workers with SIGKILL at random
//! moments and start them again, or cut their database connections.
//!
//! Client calls that fail because the store is unavailable (a connection cut, a server
//! restarting) are retried for up to two minutes, as an application would.

use std::io::Write;
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::EngineOptions;
use duraflow_crashtest::{
    init_worker_tracing, lease_from_env, number_from_env, open_log, open_store,
    start_and_wait_for_all, workflow_id, LogLine, Step, WorkerArgs, ACTIVITIES,
    ACTIVITY_CONCURRENCY_VAR, DEFAULT_ACTIVITY_CONCURRENCY,
};

async fn chain(ctx: WorkflowContext, i: u64) -> Result<u64, WorkflowError> {
    let mut total = 0;
    for index in 0..ACTIVITIES {
        total = ctx
            .activity(
                "effect",
                &Step {
                    index: i * 10 + index,
                    total,
                },
            )
            .await?;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_worker_tracing();
    let WorkerArgs {
        store,
        log,
        generation,
        count: workflows,
    } = WorkerArgs::from_args("crash-worker", "workflows")?;
    let activity_concurrency =
        number_from_env(ACTIVITY_CONCURRENCY_VAR, DEFAULT_ACTIVITY_CONCURRENCY)?;
    let log = open_log(&log)?;

    let store = open_store(&store, generation).await?;
    let lease = lease_from_env()?;
    let options = EngineOptions {
        turn_lease: lease,
        task_lease: lease,
        activity_concurrency,
        workflow_concurrency: 32,
        poll_interval: Duration::from_millis(100),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .shared_store(store)
        .options(options)
        .workflow("chain", chain)
        .activity("effect", move |ctx: ActivityContext, step: Step| {
            let log = log.clone();
            async move {
                // A little real work, so that kills land while activities are in flight.
                tokio::time::sleep(Duration::from_micros(200 + (step.index % 7) * 100)).await;
                let line = LogLine {
                    generation,
                    instance: ctx.instance_id().to_owned(),
                    op: ctx.op_id().to_string(),
                    attempt: ctx.attempt(),
                };
                {
                    let mut file = log
                        .lock()
                        .map_err(|_| ActivityError::retryable("log poisoned"))?;
                    // One write of a short line to a file opened with O_APPEND: atomic, so
                    // lines of processes sharing the log never interleave.
                    file.write_all(line.render().as_bytes())?;
                }
                Ok(step.total + step.index)
            }
        })
        .start()
        .await?;
    let client = engine.client();
    start_and_wait_for_all("crash-worker", &client, "chain", workflows, workflow_id).await?;
    engine.shutdown().await;
    println!("all {workflows} workflows completed");
    Ok(())
}
