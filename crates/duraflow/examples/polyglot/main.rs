//! A Rust workflow whose activities run in workers written in other languages: `greet` in a
//! Python worker (queue `python`), `shout` in a TypeScript worker (queue `typescript`), both
//! connected to `duraflow serve` over the worker protocol (docs/WORKER_PROTOCOL.md). The
//! engine registers no activity: it only runs the workflows.
//!
//! ```text
//! DURAFLOW_DATABASE_URL=sqlite:polyglot.db cargo run --example polyglot &
//! duraflow --db sqlite:polyglot.db serve --token secret &
//! python sdks/python/examples/greet.py &          # serves greet on queue python
//! node sdks/typescript/examples/shout.mjs &       # serves shout on queue typescript
//! curl -H 'Authorization: Bearer secret' -H 'Content-Type: application/json' \
//!      -d '{"workflow": "pipeline", "input": "Ada"}' http://127.0.0.1:8080/v1/instances
//! ```
//!
//! It also registers `call`, which runs one activity named in its input on a queue named in
//! its input: the SDKs' tests drive their workers with it. The engine runs until SIGINT,
//! SIGTERM or the end of its standard input, and prints `polyglot engine ready` on stderr
//! once it serves.

use duraflow::env::{DatabaseUrl, DATABASE_URL};
use duraflow::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Rust → Python → TypeScript → result.
async fn pipeline(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    let greeting: String = ctx.activity("greet", &name).queue("python").await?;
    let shouted: String = ctx.activity("shout", &greeting).queue("typescript").await?;
    Ok(shouted)
}

/// The input of `call`.
#[derive(Debug, Serialize, Deserialize)]
struct Call {
    activity: String,
    queue: String,
    #[serde(default)]
    input: Value,
    #[serde(default = "three")]
    max_attempts: u32,
    #[serde(default)]
    heartbeat_timeout_ms: Option<u64>,
}

fn three() -> u32 {
    3
}

/// Runs one activity, named in the input, on the queue named in the input.
async fn call(ctx: WorkflowContext, call: Call) -> Result<Value, WorkflowError> {
    let mut activity = ctx
        .activity(&call.activity, &call.input)
        .queue(call.queue)
        .retry(RetryPolicy::fixed(Duration::from_millis(20)).max_attempts(call.max_attempts));
    if let Some(ms) = call.heartbeat_timeout_ms {
        activity = activity.heartbeat_timeout(Duration::from_millis(ms));
    }
    activity.await
}

/// Waits for the event `approve`, hands the token of a callback to the activity `notify` on
/// the queue named by the input, and waits for the callback's value.
async fn approval(ctx: WorkflowContext, queue: String) -> Result<Value, WorkflowError> {
    let approved: Value = ctx.wait_for_event("approve").await?;
    let callback = ctx.callback::<Value>("reply");
    let _: Value = ctx
        .activity("notify", &callback.token())
        .queue(queue)
        .await?;
    let reply = callback.await?;
    Ok(serde_json::json!({ "approved": approved, "reply": reply }))
}

/// Runs `activity` on the queue as many times at once as the input says (with inputs 0, 1,
/// ..), and counts the results.
async fn many(ctx: WorkflowContext, call: Call) -> Result<usize, WorkflowError> {
    let n = call.input.as_u64().unwrap_or(1);
    let done: Vec<Value> = ctx
        .join_all((0..n).map(|i| ctx.activity(&call.activity, &i).queue(call.queue.clone())))
        .await?;
    Ok(done.len())
}

/// The Rust side of the SDK benchmark (`sdks/bench.py`): an activity that does nothing.
async fn noop(_ctx: ActivityContext, input: Value) -> Result<Value, ActivityError> {
    Ok(input)
}

/// The input of `latency`.
#[derive(Debug, Serialize, Deserialize)]
struct Latency {
    activity: String,
    queue: String,
    n: u32,
}

/// Runs `activity` on the queue `n` times one after the other; the time from each one's
/// scheduling turn to the turn that received its result, in milliseconds (the workflow's clock).
async fn latency(ctx: WorkflowContext, bench: Latency) -> Result<Vec<i64>, WorkflowError> {
    let mut samples = Vec::new();
    for i in 0..bench.n {
        let before = ctx.now();
        let _: Value = ctx
            .activity(&bench.activity, &i)
            .queue(bench.queue.clone())
            .await?;
        samples.push(ctx.now().as_millis() - before.as_millis());
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var(DATABASE_URL)
        .map_err(|_| format!("set {DATABASE_URL} to the store (sqlite:PATH or postgres://..)"))?;
    let store = DatabaseUrl::parse(&url)?.open().await?;
    let engine = Engine::builder()
        .store(store)
        .options(EngineOptions {
            // The workers' results arrive through another process: look for them often.
            poll_interval: Duration::from_millis(10),
            ..EngineOptions::default()
        })
        .workflow("pipeline", pipeline)
        .workflow("call", call)
        .workflow("many", many)
        .workflow("approval", approval)
        .workflow("latency", latency)
        .activity("noop", noop)
        .start()
        .await?;
    eprintln!("polyglot engine ready");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stdin_closed => {}
    }
    engine.shutdown().await;
    Ok(())
}
