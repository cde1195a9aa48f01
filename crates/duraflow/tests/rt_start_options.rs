//! Start options that the engine applies: headers readable in the workflow and shown by status,
//! and a delayed start, on virtual time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{virtual_clock, virtual_options, DEADLINE};
use duraflow::prelude::*;
use duraflow::{Clock, EventKind, InstanceStatus, ManualClock};

/// Returns its headers.
async fn echo_headers(
    ctx: WorkflowContext,
    _: (),
) -> Result<BTreeMap<String, String>, WorkflowError> {
    // A timer in between, so that the headers are read again on a replay of the journal.
    ctx.sleep(Duration::from_secs(1)).await?;
    let mut headers = ctx.headers();
    if let Some(tenant) = ctx.header("tenant") {
        headers.insert("seen-tenant".into(), tenant);
    }
    Ok(headers)
}

async fn probe(_ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    Ok(())
}

/// Waits for the event `name` and returns it.
async fn await_name(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.wait_for_event("name").await
}

async fn engine(clock: Arc<ManualClock>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .clock(clock)
        .options(virtual_options())
        .workflow("echo-headers", echo_headers)
        .workflow("probe", probe)
        .workflow("await-name", await_name)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_the_workflow_and_status() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client
        .start("echo-headers", &())
        .id("with-headers")
        .header("tenant", "acme")
        .headers([("trace-id", "abc123")])
        .await
        .unwrap();
    let status = client.status(&run).await.unwrap();
    assert_eq!(
        status.options.headers,
        BTreeMap::from([
            ("tenant".to_owned(), "acme".to_owned()),
            ("trace-id".to_owned(), "abc123".to_owned())
        ])
    );
    common::eventually("the timer is created", || async {
        let history = client.history(&run, None).await.unwrap();
        (common::count(&history, |k| matches!(k, EventKind::TimerCreated { .. })) == 1)
            .then_some(())
    })
    .await;
    clock.advance(Duration::from_secs(1));
    let headers: BTreeMap<String, String> = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(headers.get("tenant").map(String::as_str), Some("acme"));
    assert_eq!(headers.get("seen-tenant").map(String::as_str), Some("acme"));
    assert_eq!(headers.get("trace-id").map(String::as_str), Some("abc123"));
    let history = client.history(&run, None).await.unwrap();
    match &history[0].kind {
        EventKind::WorkflowStarted { headers, .. } => assert_eq!(headers.len(), 2),
        other => panic!("the journal begins with {other:?}"),
    }
    engine.shutdown().await;
}

/// How long the delayed starts below wait.
const DELAY: Duration = Duration::from_secs(60);

/// Checks that `run`, started with [`DELAY`] just now, is still pending once the dispatcher
/// has fetched at the current time (a probe started now completes; the delayed start would
/// have been in that fetch had it been due) and is due at the delay's end; then moves the
/// clock there.
async fn wait_out_the_delay(engine: &Engine, clock: &ManualClock, run: &RunHandle) {
    let client = engine.client();
    let now = client.start("probe", &()).await.unwrap();
    client.wait::<()>(&now).timeout(DEADLINE).await.unwrap();
    assert_eq!(
        client.status(run).await.unwrap().status,
        InstanceStatus::Pending,
        "{:?} began before its delay ended",
        run.id
    );
    assert_eq!(
        engine.store().next_due(clock.now()).await.unwrap().turn,
        Some(clock.now().plus(DELAY))
    );
    clock.advance(DELAY);
}

/// Checks that `run`'s journal begins with its `workflow_started`, at the end of its delay.
async fn assert_began_after_the_delay(client: &Client, run: &RunHandle) {
    let history = client.history(run, None).await.unwrap();
    assert!(
        matches!(history[0].kind, EventKind::WorkflowStarted { .. }),
        "{:?}",
        history[0].kind
    );
    let created = client.status(run).await.unwrap().created_at;
    assert_eq!(
        history[0].at,
        created.plus(DELAY),
        "the first turn ran at the end of the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_start_waits_for_its_time() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client
        .start("probe", &())
        .id("later")
        .delay(DELAY)
        .await
        .unwrap();
    wait_out_the_delay(&engine, &clock, &run).await;
    client.wait::<()>(&run).timeout(DEADLINE).await.unwrap();
    assert_began_after_the_delay(&client, &run).await;
    engine.shutdown().await;
}

/// An event raised to an instance whose start is delayed does not start it early: the instance
/// stays pending until the delay ends, then begins and takes the event. (The event made the
/// instance due at once, and its first turn began the execution without the start message,
/// which was not visible yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_raised_during_a_delayed_start_waits_for_the_start() {
    let clock = virtual_clock();
    let engine = engine(clock.clone()).await;
    let client = engine.client();
    let run = client
        .start("await-name", &())
        .id("delayed-with-event")
        .delay(DELAY)
        .await
        .unwrap();
    client.raise_event(&run, "name", &"ada").await.unwrap();
    wait_out_the_delay(&engine, &clock, &run).await;
    let name: String = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(name, "ada");
    assert_began_after_the_delay(&client, &run).await;
    engine.shutdown().await;
}
