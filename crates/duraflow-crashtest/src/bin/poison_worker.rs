//! A worker process whose one activity kills it:
//! `poison-worker <store> <side-effect-log> <generation>`.
//!
//! `<store>` is as for `crash-worker` (`sqlite:<path>` or a `postgres://` URL, the schema from
//! `DURAFLOW_SCHEMA`); `DURAFLOW_LEASE_MS` sets the turn and task leases (default 1,500 ms).
//!
//! It starts the workflow `poison` (idempotent, so every restarted worker finds the same
//! instance), which calls the activity `kill-worker` with a retry policy of
//! [`POISON_ATTEMPTS`] attempts and returns the activity's failure as its output. The activity
//! appends a line naming `<generation>` and its attempt to the side-effect log and then has the
//! process killed with SIGKILL, so every attempt ends without a report. A supervisor (the test)
//! starts the worker again each time it dies; once the policy's attempts are used up, the
//! engine fails the activity instead of running it again, the workflow finishes, and the worker
//! prints the outcome and exits 0.

use std::fs::File;
use std::io::Write;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{EngineOptions, Failure};
use duraflow_crashtest::{
    lease_from_env, open_log, open_store, LogLine, POISON_ATTEMPTS, POISON_WORKFLOW_ID,
};

/// Calls the activity that kills its worker and returns the failure the engine reports for it.
async fn poison(ctx: WorkflowContext, _: ()) -> Result<Failure, WorkflowError> {
    let policy = RetryPolicy::fixed(Duration::from_millis(100)).max_attempts(POISON_ATTEMPTS);
    match ctx.activity::<()>("kill-worker", &()).retry(policy).await {
        Ok(()) => Err(WorkflowError::application(
            "the activity that kills its worker returned",
        )),
        Err(WorkflowError::Activity(failure)) => Ok(failure),
        Err(other) => Err(other),
    }
}

/// Has this process killed with SIGKILL, as a crash would (no destructors, no flushing, the
/// leases left behind). `unsafe` is forbidden in the workspace, so `kill(1)` sends the signal.
fn die() -> ! {
    let pid = std::process::id().to_string();
    let sent = Command::new("kill").args(["-KILL", &pid]).status();
    // Still alive: kill(1) is missing or failed. Abort instead, which ends it just as abruptly.
    eprintln!("poison-worker: kill -KILL {pid} did not end the process ({sent:?}); aborting");
    std::process::abort()
}

/// Appends `line` to the side-effect log, then dies (see [`die`]).
fn log_and_die(log: &Mutex<File>, line: &LogLine) -> Result<(), ActivityError> {
    let mut file = log
        .lock()
        .map_err(|_| ActivityError::retryable("log poisoned"))?;
    // One short write to a file opened with O_APPEND, done before the process dies.
    file.write_all(line.render().as_bytes())?;
    drop(file);
    die()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let [_, store, log, generation] = args.as_slice() else {
        return Err(
            "usage: poison-worker <sqlite:path | postgres://url> <side-effect-log> <generation>"
                .into(),
        );
    };
    let generation: u32 = generation.parse()?;
    let log = open_log(log)?;
    let store = open_store(store, generation).await?;
    let lease = lease_from_env()?;
    let options = EngineOptions {
        turn_lease: lease,
        task_lease: lease,
        poll_interval: Duration::from_millis(100),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .shared_store(store)
        .options(options)
        .workflow("poison", poison)
        .activity("kill-worker", move |ctx: ActivityContext, _: ()| {
            let log = log.clone();
            async move {
                let line = LogLine {
                    generation,
                    instance: ctx.instance_id().to_owned(),
                    op: ctx.op_id().to_string(),
                    attempt: ctx.attempt(),
                };
                log_and_die(&log, &line)
            }
        })
        .start()
        .await?;
    let client = engine.client();
    client.start("poison", &()).id(POISON_WORKFLOW_ID).await?;
    let info = client.wait_finished(POISON_WORKFLOW_ID, None).await?;
    engine.shutdown().await;
    println!(
        "{POISON_WORKFLOW_ID}: {} {:?} {:?}",
        info.status, info.output, info.failure
    );
    Ok(())
}
