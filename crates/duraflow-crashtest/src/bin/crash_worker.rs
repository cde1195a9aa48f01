//! A worker process for the crash test:
//! `crash-worker <db> <side-effect-log> <generation> <workflows>`.
//!
//! It opens the SQLite database, starts workflows `wf-0 .. wf-<workflows-1>` (starting is
//! idempotent, so a restarted worker finds them), runs them, and exits 0 once every one has
//! completed. The test kills it with SIGKILL at random moments and starts it again.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{EngineOptions, InstanceStatus, ListFilter};
use duraflow_crashtest::{workflow_id, LogLine, Step, ACTIVITIES};

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
    let args: Vec<String> = std::env::args().collect();
    let [_, db, log, generation, workflows] = args.as_slice() else {
        return Err("usage: crash-worker <db> <side-effect-log> <generation> <workflows>".into());
    };
    let generation: u32 = generation.parse()?;
    let workflows: usize = workflows.parse()?;
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?,
    ));

    let store = SqliteStore::open(db).await?;
    let options = EngineOptions {
        // Short leases: work in flight at a kill is picked up again quickly.
        turn_lease: Duration::from_millis(1_500),
        task_lease: Duration::from_millis(1_500),
        activity_concurrency: 16,
        workflow_concurrency: 32,
        poll_interval: Duration::from_millis(100),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .store(store)
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
                    file.write_all(line.render().as_bytes())?;
                }
                Ok(step.total + step.index)
            }
        })
        .start()
        .await?;
    let client = engine.client();
    for i in 0..workflows {
        client
            .start("chain", &(i as u64))
            .id(workflow_id(i))
            .await?;
    }
    loop {
        let page = client
            .list(ListFilter {
                statuses: vec![InstanceStatus::Pending, InstanceStatus::Running],
                limit: 1,
                ..ListFilter::default()
            })
            .await?;
        if page.instances.is_empty() {
            break;
        }
        client.wait_finished(&page.instances[0].id, None).await?;
    }
    engine.shutdown().await;
    println!("all {workflows} workflows completed");
    Ok(())
}
