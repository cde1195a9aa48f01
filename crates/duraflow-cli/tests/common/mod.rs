//! The fixture the end-to-end tests share: a store an engine fills with real runs (and keeps
//! running, so that what the CLI sends is acted on), and the binary run as a process on it.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "shared test helpers"
)]

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod server;

use std::any::Any;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use duraflow::prelude::*;
use duraflow::{EngineOptions, EventKind, InstanceInfo, IntoStore};
use serde_json::Value;

/// The longest a test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub async fn waits(ctx: WorkflowContext, _input: Value) -> Result<String, WorkflowError> {
    let data: String = ctx.wait_for_event("go").await?;
    Ok(format!("got {data}"))
}

pub async fn completes(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n + 1)
}

pub async fn parent(ctx: WorkflowContext, _input: Value) -> Result<u64, WorkflowError> {
    ctx.child_workflow("completes", &1u64).id("child-1").await
}

pub async fn fails(_ctx: WorkflowContext, _input: Value) -> Result<(), WorkflowError> {
    Err(WorkflowError::application("card declined"))
}

/// A store with a running engine and its runs: `wait-1`..`wait-3` waiting for event `go`,
/// `done-1` completed with output 42, `fail-1` failed, `parent-1` completed after its child
/// `child-1`.
pub struct Fixture {
    /// The store's URL, as `--db` takes it.
    pub db: String,
    pub engine: Engine,
    pub client: Client,
    /// What must live as long as the store (a temporary directory).
    _keep: Box<dyn Any + Send>,
}

impl Fixture {
    /// Starts the engine on `store` (at `db`) and waits for its runs to get where they stay.
    pub async fn start(store: impl IntoStore, db: String, keep: Box<dyn Any + Send>) -> Fixture {
        let engine = Engine::builder()
            .store(store)
            .options(EngineOptions {
                // What the CLI sends comes from another process: look for it often.
                poll_interval: Duration::from_millis(20),
                ..EngineOptions::default()
            })
            .workflow("waits", waits)
            .workflow("completes", completes)
            .workflow_version("completes", "2")
            .workflow("fails", fails)
            .workflow("parent", parent)
            .start()
            .await
            .unwrap();
        let client = engine.client();
        for id in ["wait-1", "wait-2", "wait-3"] {
            client.start("waits", &Value::Null).id(id).await.unwrap();
        }
        client
            .start("completes", &41u64)
            .id("done-1")
            .await
            .unwrap();
        client
            .start("fails", &Value::Null)
            .id("fail-1")
            .await
            .unwrap();
        client
            .start("parent", &Value::Null)
            .id("parent-1")
            .await
            .unwrap();
        let fixture = Fixture {
            db,
            engine,
            client,
            _keep: keep,
        };
        for id in ["wait-1", "wait-2", "wait-3"] {
            fixture
                .until(&format!("{id} to wait for its event"), |_| async {
                    let journal = fixture.client.history(id, None).await.ok()?;
                    journal
                        .iter()
                        .any(|e| matches!(e.kind, EventKind::EventWaitStarted { .. }))
                        .then_some(())
                })
                .await;
        }
        fixture
            .status_becomes("done-1", InstanceStatus::Completed)
            .await;
        fixture
            .status_becomes("fail-1", InstanceStatus::Failed)
            .await;
        fixture
            .status_becomes("parent-1", InstanceStatus::Completed)
            .await;
        fixture
    }

    /// Runs `duraflow --db <this file> args..` with stdin not a terminal.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--db".to_owned(), self.db.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(all, None).await
    }

    /// Polls `check` until it gives a value, failing the test after [`DEADLINE`].
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut(&Client) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(v) = check(&self.client).await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn status_becomes(&self, id: &str, status: InstanceStatus) -> InstanceInfo {
        self.until(&format!("{id} to be {status}"), |client| {
            let client = client.clone();
            async move {
                let info = client.status(id).await.ok()?;
                (info.status == status).then_some(info)
            }
        })
        .await
    }

    pub async fn shutdown(self) {
        self.engine.shutdown().await;
    }
}

/// Runs the binary with `args`, without `DURAFLOW_DATABASE_URL` unless `env_db` gives it.
pub async fn run(args: Vec<String>, env_db: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_duraflow"));
        command
            .args(&args)
            .env_remove("DURAFLOW_DATABASE_URL")
            .stdin(Stdio::null());
        if let Some(url) = env_db {
            command.env("DURAFLOW_DATABASE_URL", url);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts the exit code, showing stderr when it is not the one expected.
pub fn exits(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code; stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

pub fn json(output: &Output) -> Value {
    exits(output, 0);
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", stdout(output));
    })
}
