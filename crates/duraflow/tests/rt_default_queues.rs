//! Default queues of typed registrations: a `Workflow` or `ActivitySignature` that names a
//! `QUEUE` is started and scheduled there by typed calls, and an engine that registers it by
//! type serves that queue without being told. An instance no running engine serves stays
//! pending and says what it waits for.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{virtual_options, DEADLINE};
use duraflow::prelude::*;
use duraflow::{EventKind, Store};

/// Renders on GPU workers.
struct Render;

impl ActivitySignature for Render {
    const NAME: &'static str = "render";
    type Input = String;
    type Output = String;
    const QUEUE: Option<&'static str> = Some("gpu");
}

/// Reports are run by the reporting workers.
struct Report;

impl Workflow for Report {
    const NAME: &'static str = "report";
    type Input = String;
    type Output = String;
    const QUEUE: Option<&'static str> = Some("reports");

    async fn run(&self, ctx: WorkflowContext, title: String) -> Result<String, WorkflowError> {
        let page = ctx.call::<Render>(&title).await?;
        Ok(format!("report: {page}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_registrations_bring_their_queues() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // A web engine that serves only `default` and registers neither.
    let web = Engine::builder()
        .shared_store(store.clone())
        .options(virtual_options())
        .workflow("noop", |_ctx: WorkflowContext, _: ()| async { Ok(()) })
        .start()
        .await
        .unwrap();
    let client = Client::new(store.clone());
    let run = client
        .start_typed::<Report>(&"q3".to_owned())
        .id("report-q3")
        .await
        .unwrap();
    // The web engine has fetched since the report was started (a probe it runs completes),
    // and left the report alone: it serves neither its queue nor its workflow.
    let probe = web.client().start("noop", &()).await.unwrap();
    web.client()
        .wait::<()>(&probe)
        .timeout(DEADLINE)
        .await
        .unwrap();
    let info = client.status(&run).await.unwrap();
    assert_eq!(info.queue, "reports");
    assert_eq!(info.status, InstanceStatus::Pending);
    let waiting = info.waiting_for().unwrap();
    assert!(
        waiting.contains("\"reports\"") && waiting.contains("\"report\""),
        "{waiting}"
    );

    // The reporting engine serves `reports` and `gpu` because it registered them by type.
    let worker = Engine::builder()
        .shared_store(store.clone())
        .options(virtual_options())
        .register_workflow(Report)
        .activity_for::<Render>(|_ctx: ActivityContext, title: String| async move {
            Ok(format!("<h1>{title}</h1>"))
        })
        .start()
        .await
        .unwrap();
    let out = run.wait().timeout(DEADLINE).await.unwrap();
    assert_eq!(out, "report: <h1>q3</h1>");
    assert_eq!(client.status(&run).await.unwrap().waiting_for(), None);
    let journal = client.history(&run, None).await.unwrap();
    let queue = journal.iter().find_map(|e| match &e.kind {
        EventKind::ActivityScheduled { options, .. } => Some(options.queue.clone()),
        _ => None,
    });
    assert_eq!(queue, Some(Some("gpu".to_owned())));
    worker.shutdown().await;
    web.shutdown().await;
}
