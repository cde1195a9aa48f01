//! Helpers for the `df_*` tests, which turn the reference cases of
//! `durable-functions-behaviours.md` (AWS's durable-execution conformance cases) into engine
//! tests: every case runs on a `MemoryStore` and on a `SqliteStore`, under a virtual clock,
//! with no warm instances (so that every turn replays the journal from the start, as the
//! replay cases of R5 require) and then with warm instances, and compares the journal record
//! by record.
//!
//! A record is rendered as one line, `<event type> <op id> [details]`:
//!
//! - `step_started 0 name` (`attempt=n` from the second attempt on),
//!   `step_completed 0 <json>`, `step_failed 0 <kind>[/<code>]`,
//!   `step_retrying 0 attempt=n <kind>[/<code>] retry_in=<ms>ms`;
//! - `timer_created 1 <ms>ms` (the wait's duration: fire time minus record time),
//!   `timer_fired 1`;
//! - `context_started 0 name`, `context_completed 0 <json>`, `context_failed 0 <kind>[/<code>]`;
//! - `callback_created 0 name [timeout=<ms>ms] [heartbeat=<ms>ms]`,
//!   `callback_completed 0 <json>`, `callback_failed 0 <kind>[/<code>]`,
//!   `callback_heartbeat 0`;
//! - `child_started 0 workflow <input json>`, `child_completed 0 <json>`,
//!   `child_failed 0 <kind>[/<code>]`, `child_cancelled 0`;
//! - `workflow_completed <json>`, `workflow_failed <kind>[/<code>]`.
//!
//! An operation's parent is the id before its last dot (`0.1` is in context `0`); top-level
//! operations have one-number ids. An expected record ending in `*` matches any record that
//! starts with the text before it.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "shared test helpers"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use duraflow::{
    Client, ClientError, Engine, EngineBuilder, Event, EventKind, Failure, InstanceStatus,
    ManualClock, MemoryStore, SqliteStore, Store, Timestamp,
};

use crate::common::{eventually, virtual_clock, virtual_options, DEADLINE};

/// What a case sees of one store's run: the client, the virtual clock and the store.
#[derive(Clone)]
pub struct Rig {
    pub client: Client,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    /// The store and the mode (`memory, replayed`, `sqlite, warm`...), for failure messages.
    pub backend: String,
    /// Whether every turn replays the journal (no warm instances): the workflow's code runs
    /// again from the start at each turn.
    pub replayed: bool,
}

/// Runs `case` on a `MemoryStore` and on a `SqliteStore`, each time with a fresh engine (the
/// workflows `register` adds, a virtual clock), first with no warm instances, so that every
/// turn replays the journal from the start (what the replay cases of R5 are about), then with
/// the default warm cache, where a turn goes on from the run kept in memory; and shuts the
/// engine down after each run.
pub async fn on_both_stores<R, C, Fut>(register: R, case: C)
where
    R: Fn(EngineBuilder) -> EngineBuilder,
    C: Fn(Rig) -> Fut,
    Fut: Future<Output = ()>,
{
    crate::common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    for (n, warm) in [(0, false), (1, false), (2, true), (3, true)] {
        let store: Arc<dyn Store> = if n % 2 == 0 {
            Arc::new(MemoryStore::new())
        } else {
            Arc::new(
                SqliteStore::open(dir.path().join(format!("df{n}.db")))
                    .await
                    .unwrap(),
            )
        };
        let clock = virtual_clock();
        let defaults = virtual_options();
        let options = duraflow::EngineOptions {
            warm_instances: if warm { defaults.warm_instances } else { 0 },
            ..defaults
        };
        let engine: Engine = register(
            Engine::builder()
                .shared_store(store.clone())
                .clock(clock.clone())
                .options(options),
        )
        .start()
        .await
        .unwrap();
        let rig = Rig {
            client: engine.client(),
            clock,
            backend: format!(
                "{}, {}",
                store.backend(),
                if warm { "warm" } else { "replayed" }
            ),
            store,
            replayed: !warm,
        };
        case(rig).await;
        engine.shutdown().await;
    }
}

fn failure(f: &Failure) -> String {
    match &f.code {
        Some(code) => format!("{}/{code}", f.kind),
        None => f.kind.to_string(),
    }
}

/// One journal event as a record line (see the module's documentation).
pub fn rec(e: &Event) -> String {
    match &e.kind {
        EventKind::StepStarted { op, name, attempt } if *attempt == 1 => {
            format!("step_started {op} {name}")
        }
        EventKind::StepStarted { op, name, attempt } => {
            format!("step_started {op} {name} attempt={attempt}")
        }
        EventKind::StepCompleted { op, output } => {
            format!("step_completed {op} {}", output.as_json())
        }
        EventKind::StepFailed { op, failure: f } => format!("step_failed {op} {}", failure(f)),
        EventKind::StepRetrying {
            op,
            attempt,
            failure: f,
            retry_at,
        } => format!(
            "step_retrying {op} attempt={attempt} {} retry_in={}ms",
            failure(f),
            retry_at.since(e.at).as_millis()
        ),
        EventKind::TimerCreated { op, fire_at } => {
            format!("timer_created {op} {}ms", fire_at.since(e.at).as_millis())
        }
        EventKind::TimerFired { op } => format!("timer_fired {op}"),
        EventKind::ContextStarted { op, name } => format!("context_started {op} {name}"),
        EventKind::ContextCompleted { op, output } => {
            format!("context_completed {op} {}", output.as_json())
        }
        EventKind::ContextFailed { op, failure: f } => {
            format!("context_failed {op} {}", failure(f))
        }
        EventKind::CallbackCreated {
            op,
            name,
            timeout_at,
            heartbeat_timeout,
            ..
        } => {
            let mut s = format!("callback_created {op} {name}");
            if let Some(t) = timeout_at {
                s.push_str(&format!(" timeout={}ms", t.since(e.at).as_millis()));
            }
            if let Some(h) = heartbeat_timeout {
                s.push_str(&format!(" heartbeat={}ms", h.as_millis()));
            }
            s
        }
        EventKind::CallbackCompleted { op, output } => {
            format!("callback_completed {op} {}", output.as_json())
        }
        EventKind::CallbackFailed { op, failure: f } => {
            format!("callback_failed {op} {}", failure(f))
        }
        EventKind::CallbackHeartbeat { op, .. } => format!("callback_heartbeat {op}"),
        EventKind::ChildStarted {
            op, name, input, ..
        } => format!("child_started {op} {name} {}", input.as_json()),
        EventKind::ChildCompleted { op, output } => {
            format!("child_completed {op} {}", output.as_json())
        }
        EventKind::ChildFailed { op, failure: f } => format!("child_failed {op} {}", failure(f)),
        EventKind::ChildCancelled { op, .. } => format!("child_cancelled {op}"),
        EventKind::WorkflowCompleted { output } => {
            format!("workflow_completed {}", output.as_json())
        }
        EventKind::WorkflowFailed { failure: f } => format!("workflow_failed {}", failure(f)),
        other => other.type_name().to_owned(),
    }
}

/// The journal as record lines.
pub fn recs(journal: &[Event]) -> Vec<String> {
    journal.iter().map(rec).collect()
}

/// Asserts that the journal is exactly `expected`, record by record (an expected record ending
/// in `*` matches by prefix).
pub fn assert_recs(backend: &str, journal: &[Event], expected: &[&str]) {
    let actual = recs(journal);
    let matches = actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| match e.strip_suffix('*') {
                Some(prefix) => a.starts_with(prefix),
                None => a == e,
            });
    assert!(
        matches,
        "[{backend}] journal differs\n  actual:   {actual:#?}\n  expected: {expected:#?}"
    );
}

/// Waits until the instance's journal has at least `expected.len()` records, then asserts
/// that it is exactly `expected` and that the instance is still running: the workflow is
/// suspended there (AWS's `‖ suspend`). Returns the journal.
pub async fn suspended_at(rig: &Rig, id: &str, expected: &[&str]) -> Vec<Event> {
    let journal = eventually(
        &format!(
            "[{}] {} records in the journal of {id:?}",
            &rig.backend,
            expected.len()
        ),
        || async {
            let journal = rig.client.history(id, None).await.ok()?;
            (journal.len() >= expected.len()).then_some(journal)
        },
    )
    .await;
    assert_recs(&rig.backend, &journal, expected);
    let status = rig.client.status(id).await.unwrap().status;
    assert_eq!(
        status,
        InstanceStatus::Running,
        "[{}] the instance should be suspended (running, waiting)",
        rig.backend
    );
    journal
}

/// Waits for the instance to finish; returns its output (or failure) and its journal.
pub async fn finished(rig: &Rig, id: &str) -> (Result<serde_json::Value, Failure>, Vec<Event>) {
    let out = match rig
        .client
        .wait::<serde_json::Value>(id)
        .timeout(DEADLINE)
        .await
    {
        Ok(v) => Ok(v),
        Err(ClientError::WorkflowFailed(f)) => Err(f),
        Err(other) => {
            let journal = rig.client.history(id, None).await.unwrap_or_default();
            let status = rig.client.status(id).await.map(|i| i.status);
            panic!(
                "[{}] waiting for {id:?}: {other:?}; status {status:?}, journal {:#?}",
                &rig.backend,
                recs(&journal)
            )
        }
    };
    let journal = rig.client.history(id, None).await.unwrap();
    (out, journal)
}

/// The token of the callback named `name` once it is in the instance's journal.
pub async fn token_of(rig: &Rig, id: &str, name: &str) -> String {
    eventually(
        &format!("[{}] callback {name:?} open in {id:?}", rig.backend),
        || async {
            let journal = rig.client.history(id, None).await.ok()?;
            journal.iter().find_map(|e| match &e.kind {
                EventKind::CallbackCreated { token, name: n, .. } if n == name => {
                    Some(token.clone())
                }
                _ => None,
            })
        },
    )
    .await
}

/// The journal time of the first event matching `pred`.
pub fn at_of(journal: &[Event], pred: impl Fn(&EventKind) -> bool) -> Timestamp {
    journal
        .iter()
        .find(|e| pred(&e.kind))
        .map(|e| e.at)
        .expect("no such event in the journal")
}

/// The time between two journal times (panics if `later` is earlier).
pub fn between(earlier: Timestamp, later: Timestamp) -> Duration {
    assert!(
        later.as_millis() >= earlier.as_millis(),
        "{later:?} is before {earlier:?}"
    );
    later.since(earlier)
}

/// A random alphanumeric string of `n` characters (the cases' `$CB_NAME`, `$INPUT_1`...).
pub fn random_alnum(n: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(n)
        .collect()
}
