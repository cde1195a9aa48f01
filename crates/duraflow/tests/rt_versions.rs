//! Workflow versions: the engine that starts an execution records the version it registered
//! the workflow with, in the journal's `workflow_started` and in the instance's status; and
//! `describe` reads the journal's length and last event time.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::virtual_clock;
use duraflow::prelude::*;
use duraflow::{EngineError, EventKind};

/// Doubles its input, as its version 2 does.
struct Double;

impl Workflow for Double {
    const NAME: &'static str = "double";
    const VERSION: Option<&'static str> = Some("2");
    type Input = u32;
    type Output = u32;

    async fn run(&self, ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
        let more: u32 = ctx.wait_for_event("more").await?;
        Ok(n * 2 + more)
    }
}

/// The version the journal's first event records.
fn started_version(journal: &[duraflow::Event]) -> Option<String> {
    match &journal
        .first()
        .expect("a started instance has a journal")
        .kind
    {
        EventKind::WorkflowStarted { version, .. } => version.clone(),
        other => panic!("a journal begins with workflow_started, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_shows_the_version_of_the_engine_that_started_it() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(virtual_clock())
        .register_workflow(Double)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start_typed::<Double>(&21).id("d-1").await.unwrap();
    client.raise_event(&run, "more", &0u32).await.unwrap();
    assert_eq!(run.wait().timeout(common::DEADLINE).await.unwrap(), 42);

    let info = client.status(&run).await.unwrap();
    assert_eq!(info.version.as_deref(), Some("2"));
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(started_version(&journal).as_deref(), Some("2"));

    // The registry says which version the engine serves.
    let registered = client.registrations().await.unwrap();
    let double = registered
        .iter()
        .find(|r| r.registration.name == "double")
        .unwrap();
    assert_eq!(double.registration.version.as_deref(), Some("2"));

    let described = client.describe(&run).await.unwrap();
    assert_eq!(described.version.as_deref(), Some("2"));
    assert_eq!(described.journal_len, Some(journal.len() as u64));
    assert_eq!(described.last_event_at, journal.last().map(|e| e.at));
    assert_eq!(
        (info.journal_len, info.last_event_at),
        (None, None),
        "status does not read the journal"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_takes_its_version_from_the_builder_and_none_records_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("v.db")).await.unwrap();
    let engine = Engine::builder()
        .store(store)
        .clock(virtual_clock())
        .workflow("greet", |_ctx: WorkflowContext, name: String| async move {
            Ok::<_, WorkflowError>(format!("hello, {name}"))
        })
        .workflow_version("greet", "2026-12-05")
        .workflow("plain", |_ctx: WorkflowContext, n: u32| async move {
            Ok::<_, WorkflowError>(n)
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let greet = client.start("greet", "ada").await.unwrap();
    let plain = client.start("plain", &1u32).await.unwrap();
    let _: String = client.wait(&greet).timeout(common::DEADLINE).await.unwrap();
    let _: u32 = client.wait(&plain).timeout(common::DEADLINE).await.unwrap();
    let info = client.describe(&greet).await.unwrap();
    assert_eq!(info.version.as_deref(), Some("2026-12-05"));
    let journal = client.history(&greet, None).await.unwrap();
    assert_eq!(started_version(&journal).as_deref(), Some("2026-12-05"));
    assert_eq!(info.journal_len, Some(journal.len() as u64));

    assert_eq!(client.status(&plain).await.unwrap().version, None);
    let journal = client.history(&plain, None).await.unwrap();
    assert_eq!(started_version(&journal), None);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_version_needs_a_registered_workflow_and_a_sensible_length() {
    let unregistered = Engine::builder()
        .store(MemoryStore::new())
        .workflow_version("nobody", "1")
        .start()
        .await
        .err()
        .expect("a version of an unregistered workflow is refused");
    assert!(
        matches!(&unregistered, EngineError::InvalidOption(m) if m.contains("\"nobody\"")),
        "{unregistered}"
    );
    let empty = Engine::builder()
        .store(MemoryStore::new())
        .register_workflow(Double)
        .workflow_version("double", "")
        .start()
        .await
        .err()
        .expect("an empty version is refused");
    assert!(matches!(empty, EngineError::InvalidOption(_)), "{empty}");
}
