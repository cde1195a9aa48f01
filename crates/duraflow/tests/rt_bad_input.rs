//! Bad input fails the instance with a clear failure and never takes the engine down: payloads
//! of the wrong type and panicking user code. Unknown workflows and activities are not failed
//! but left for an engine that registers them. After each case the same engine still runs
//! another workflow to completion.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{failure_of, quiet, virtual_clock, virtual_options};
use duraflow::crates::store::NewInstance;
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, FailureKind, ManualClock, Payload, Store};

async fn healthy(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.activity("add-one", &n).await
}

async fn add_one(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n + 1)
}

/// Expects a number as input.
async fn wants_number(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n)
}

/// Expects a number from an activity that returns text.
async fn wrong_output(ctx: WorkflowContext, _: ()) -> Result<u64, WorkflowError> {
    ctx.activity("text", &()).await
}

async fn text(_ctx: ActivityContext, _: ()) -> Result<String, ActivityError> {
    Ok("not a number".into())
}

async fn calls_ghost(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.activity("ghost-activity", &()).await
}

async fn calls_panicky(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.activity("panicky", &())
        .retry(RetryPolicy::exponential(Duration::from_secs(1)).max_attempts(3))
        .await
}

async fn panics_on_start(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    if n > 0 {
        panic!("workflow blew up on {n}");
    }
    Ok(n)
}

/// Panics after an activity has completed, on a later turn.
async fn panics_later(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let n: u32 = ctx.activity("add-one", &1u32).await?;
    let words = ["zero", "one"];
    Ok(words[n as usize + 10].len() as u32)
}

struct Setup {
    clock: Arc<ManualClock>,
    engine: Engine,
    client: Client,
    store: Arc<dyn Store>,
    panics: Arc<AtomicUsize>,
}

async fn setup() -> Setup {
    let clock = virtual_clock();
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .options(virtual_options())
        .workflow("healthy", healthy)
        .workflow("wants-number", wants_number)
        .workflow("wrong-output", wrong_output)
        .workflow("calls-ghost", calls_ghost)
        .workflow("calls-panicky", calls_panicky)
        .workflow("panics-on-start", panics_on_start)
        .workflow("panics-later", panics_later)
        .activity("add-one", add_one)
        .activity("text", text)
        .activity("panicky", move |ctx: ActivityContext, _: ()| {
            let p = p.clone();
            async move {
                p.fetch_add(1, Ordering::SeqCst);
                if ctx.attempt() > 0 {
                    panic!("activity exploded on attempt {}", ctx.attempt());
                }
                Ok::<u32, ActivityError>(0)
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let store = engine.store();
    Setup {
        clock,
        engine,
        client,
        store,
        panics,
    }
}

impl Setup {
    /// The engine still runs a workflow with an activity to completion.
    async fn assert_alive(&self) {
        let run = self.client.start("healthy", &41u32).await.unwrap();
        let out: u32 = self
            .client
            .wait(&run)
            .timeout(common::DEADLINE)
            .await
            .unwrap();
        assert_eq!(out, 42);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_an_unknown_workflow_is_left_pending() {
    let s = setup().await;
    assert!(matches!(
        s.client.start("ghost-workflow", &()).await,
        Err(ClientError::UnknownWorkflow { .. })
    ));
    // A client on the store alone does not check names; its start uses the system clock, so
    // create the instance at virtual time through the store as such a client would.
    let created = s
        .store
        .create_instance(NewInstance {
            id: "ghost".into(),
            name: "ghost-workflow".into(),
            input: Payload::encode(&()).unwrap(),
            parent: None,
            queue: "default".into(),
            created_at: s.clock.now(),
            start_at: None,
            options: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(created, duraflow::crates::store::CreateOutcome::Created);
    // The engine goes on with its own work and never takes the instance, which waits for an
    // engine that registers its workflow.
    s.assert_alive().await;
    let info = s.client.status("ghost").await.unwrap();
    assert_eq!(info.status, InstanceStatus::Pending, "{info:?}");
    assert_eq!(
        (info.name.as_str(), info.queue.as_str()),
        ("ghost-workflow", "default")
    );
    assert!(s.client.history("ghost", None).await.unwrap().is_empty());
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_workflow_started_by_a_store_client_waits_for_an_engine_that_has_it() {
    // Client::new uses the system clock: so do these engines.
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .workflow("healthy", healthy)
        .activity("add-one", add_one)
        .start()
        .await
        .unwrap();
    let client = Client::new(engine.store());
    let run = client.start("not-here", &1u32).id("nh").await.unwrap();
    let out: u32 = client
        .wait(client.start("healthy", &1u32).await.unwrap())
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(out, 2);
    assert_eq!(
        client.status(&run.id).await.unwrap().status,
        InstanceStatus::Pending
    );
    // An engine that registers it runs it.
    let other = Engine::builder()
        .shared_store(engine.store())
        .workflow("not-here", |_ctx: WorkflowContext, n: u32| async move {
            Ok::<_, WorkflowError>(n + 10)
        })
        .start()
        .await
        .unwrap();
    let out: u32 = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
    assert_eq!(out, 11);
    other.shutdown().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_of_the_wrong_type_fails_with_a_payload_error_naming_the_type() {
    let s = setup().await;
    let run = s.client.start("wants-number", "forty-two").await.unwrap();
    let failure = failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(failure.message.contains("u64"), "{failure:?}");
    assert!(failure.message.contains("wants-number"), "{failure:?}");
    assert!(failure.message.contains("forty-two"), "{failure:?}");
    s.assert_alive().await;
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_output_the_workflow_cannot_decode_fails_naming_the_activity() {
    let s = setup().await;
    let run = s.client.start("wrong-output", &()).await.unwrap();
    let failure = failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::Payload);
    assert!(failure.message.contains("\"text\""), "{failure:?}");
    assert!(failure.message.contains("u64"), "{failure:?}");
    s.assert_alive().await;
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_activity_is_left_for_an_engine_that_has_it() {
    let s = setup().await;
    let run = s.client.start("calls-ghost", &()).await.unwrap();
    common::history_with(&s.client, &run.id, "the ghost activity scheduled", |k| {
        matches!(k, EventKind::ActivityScheduled { .. })
    })
    .await;
    s.assert_alive().await;
    // The task is never attempted: an engine that registers the activity gets its first
    // attempt.
    let filter = duraflow::FetchFilter::default().names(["ghost-activity"]);
    let tasks = s
        .store
        .fetch_tasks(&filter, s.clock.now(), 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(
        (tasks[0].name.as_str(), tasks[0].attempt),
        ("ghost-activity", 1)
    );
    assert_eq!(
        s.client.status(&run.id).await.unwrap().status,
        InstanceStatus::Running
    );
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_activity_is_retried_and_its_panic_is_reported() {
    let s = setup().await;
    let t0 = s.clock.now();
    let run = s.client.start("calls-panicky", &()).await.unwrap();
    let mut retries = Vec::new();
    loop {
        let (info, retry_at) = quiet(&s.client, s.store.as_ref(), &s.clock, &run.id).await;
        match retry_at {
            Some(at) => {
                retries.push(at);
                s.clock.set(at);
            }
            None => {
                assert_eq!(info.status, InstanceStatus::Failed);
                break;
            }
        }
        assert!(retries.len() < 5, "{retries:?}");
    }
    assert_eq!(
        retries,
        [
            t0.plus(Duration::from_secs(1)),
            t0.plus(Duration::from_secs(3))
        ]
    );
    assert_eq!(s.panics.load(Ordering::SeqCst), 3);
    let failure = failure_of(&s.client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::RetriesExhausted);
    assert_eq!(failure.attempts, Some(3));
    assert!(
        failure.message.contains("activity exploded on attempt 3"),
        "{failure:?}"
    );
    assert!(failure.message.contains("panicked"), "{failure:?}");
    // The attempt ends (and leaves the registry) just after its result is recorded.
    common::eventually("the last attempt to end", || async {
        (s.engine.running_activities() == 0).then_some(())
    })
    .await;
    s.assert_alive().await;
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_workflow_fails_the_instance_with_the_panic_text() {
    let s = setup().await;
    let run = s.client.start("panics-on-start", &7u32).await.unwrap();
    let failure = failure_of(&s.client, &run.id).await;
    assert!(
        failure.message.contains("workflow blew up on 7"),
        "{failure:?}"
    );
    assert!(failure.message.contains("panicked"), "{failure:?}");
    let journal = s.client.history(&run, None).await.unwrap();
    assert!(matches!(
        journal.last().map(|e| &e.kind),
        Some(EventKind::WorkflowFailed { .. })
    ));
    s.assert_alive().await;

    let run = s.client.start("panics-later", &()).await.unwrap();
    let failure = failure_of(&s.client, &run.id).await;
    assert!(
        failure.message.contains("index out of bounds"),
        "{failure:?}"
    );
    let journal = s.client.history(&run, None).await.unwrap();
    assert_eq!(
        common::types(&journal),
        [
            "workflow_started",
            "activity_scheduled",
            "activity_completed",
            "workflow_failed"
        ]
    );
    s.assert_alive().await;
    // The same workflow with input that does not panic still works.
    let out: u32 = s
        .client
        .wait(s.client.start("panics-on-start", &0u32).await.unwrap())
        .timeout(common::DEADLINE)
        .await
        .unwrap();
    assert_eq!(out, 0);
    s.engine.shutdown().await;
}
