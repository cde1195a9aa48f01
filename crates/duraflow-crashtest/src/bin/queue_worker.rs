//! A worker process for the multi-process queue test:
//! `queue-worker <web|gpu|mail> <postgres-url> <log> <generation>`.
//!
//! Each role serves its own queue with its own registrations (see
//! `duraflow_crashtest::queues`); the schema comes from `DURAFLOW_SCHEMA`. It runs until it is
//! killed.

use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{EngineOptions, QueueConfig};
use duraflow_crashtest::queues::{
    log_line, CHARGE, DELIVER, EMAILS, EMAILS_CONCURRENCY, GPU, ORDER, RENDER, SEND_EMAIL,
};
use duraflow_crashtest::{init_worker_tracing, open_log, open_store};

/// Charges, renders on the gpu queue, and mails through a child on the emails queue.
async fn order(ctx: WorkflowContext, i: u64) -> Result<String, WorkflowError> {
    let charged: String = ctx.activity(CHARGE, &i).await?;
    let rendered: String = ctx.activity(RENDER, &i).queue(GPU).await?;
    let mailed: String = ctx.child_workflow(SEND_EMAIL, &i).queue(EMAILS).await?;
    Ok(format!("{charged}, {rendered}, {mailed}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_worker_tracing();
    let args: Vec<String> = std::env::args().collect();
    let [_, role, store, log, generation] = args.as_slice() else {
        return Err("usage: queue-worker <web|gpu|mail> <postgres-url> <log> <generation>".into());
    };
    let generation: u32 = generation.parse()?;
    let log = open_log(log)?;
    let store = open_store(store, generation).await?;
    let options = EngineOptions {
        poll_interval: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    let builder = Engine::builder().shared_store(store).options(options);
    let builder = match role.as_str() {
        "web" => builder.workflow(ORDER, order).activity(
            CHARGE,
            |_ctx: ActivityContext, i: u64| async move {
                Ok::<_, ActivityError>(format!("charged {i}"))
            },
        ),
        "gpu" => {
            builder
                .queues([GPU])
                .activity(RENDER, |_ctx: ActivityContext, i: u64| async move {
                    Ok::<_, ActivityError>(format!("rendered {i}"))
                })
        }
        "mail" => {
            let (begin_log, end_log) = (log.clone(), log);
            builder
                .queue_config(QueueConfig::new(EMAILS).concurrency(EMAILS_CONCURRENCY))
                .workflow(SEND_EMAIL, move |ctx: WorkflowContext, i: u64| {
                    let (begin_log, end_log) = (begin_log.clone(), end_log.clone());
                    async move {
                        let id = ctx.instance_id().to_owned();
                        let (b, e) = (id.clone(), id);
                        ctx.step("begin", move |_step| {
                            let (log, id) = (begin_log.clone(), b.clone());
                            async move { Ok(log_line(&log, &format!("begin {id}"))?) }
                        })
                        .await?;
                        let delivered: String = ctx.activity(DELIVER, &i).queue(EMAILS).await?;
                        ctx.step("end", move |_step| {
                            let (log, id) = (end_log.clone(), e.clone());
                            async move { Ok(log_line(&log, &format!("end {id}"))?) }
                        })
                        .await?;
                        Ok(delivered)
                    }
                })
                .activity(DELIVER, |_ctx: ActivityContext, i: u64| async move {
                    // Long enough that instances overlap if the limit lets them.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, ActivityError>(format!("mailed {i}"))
                })
        }
        other => return Err(format!("unknown role {other:?}: expected web, gpu or mail").into()),
    };
    let engine = builder.start().await?;
    // Runs until killed.
    std::future::pending::<()>().await;
    engine.shutdown().await;
    Ok(())
}
