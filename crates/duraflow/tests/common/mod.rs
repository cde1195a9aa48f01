//! Helpers shared by the engine tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "shared test helpers"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use duraflow::crates::store::NextDue;
use duraflow::{
    ClientError, EngineOptions, Event, EventKind, InstanceInfo, ManualClock, Store, Timestamp,
};

pub mod observed;

/// The order example's workflows, shared with the tests that run it.
#[path = "../../examples/order/workflow.rs"]
pub mod order;

/// Approves a started sample order, lets its cooling-off timer fire on the virtual `clock`,
/// and returns the shipment.
pub async fn approve_and_ship(
    client: &duraflow::Client,
    clock: &ManualClock,
    run: &duraflow::RunHandle,
) -> order::Shipment {
    let approval = order::Approval {
        approved_by: "bob".into(),
    };
    client
        .raise_event(run, "approved", &approval)
        .await
        .unwrap();
    // The cooling-off timer is virtual: advance the clock once it has been scheduled, by the
    // turn that took the approval. (The approval's deadline may be a timer journaled before
    // it. Advanced before the approval's turn ran, the clock would only move the cooling-off
    // timer's fire time along, and nothing would ever fire it.)
    eventually(
        &format!("the cooling-off timer in the journal of {:?}", run.id),
        || async {
            let journal = client.history(run, None).await.ok()?;
            let approved = journal
                .iter()
                .position(|e| matches!(e.kind, EventKind::EventRaised { .. }))?;
            journal[approved..]
                .iter()
                .any(|e| matches!(e.kind, EventKind::TimerCreated { .. }))
                .then_some(())
        },
    )
    .await;
    clock.advance(order::COOLING_OFF);
    client.wait(run).await.unwrap()
}

/// An activity that returns its input.
pub async fn echo(_ctx: duraflow::ActivityContext, x: u32) -> Result<u32, duraflow::ActivityError> {
    Ok(x)
}

/// An activity that fails its first attempt (retryably) and returns its input on the next.
pub async fn flaky(ctx: duraflow::ActivityContext, x: u32) -> Result<u32, duraflow::ActivityError> {
    if ctx.attempt() == 1 {
        return Err(duraflow::ActivityError::retryable("first attempts fail"));
    }
    Ok(x)
}

/// The longest any test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `check` returns `Some`, re-checking every few milliseconds, and fails the test
/// with `what` if that has not happened within [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A virtual clock starting at a fixed, readable time (2026-01-01T00:00:00Z).
pub fn virtual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000)))
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Virtual-time helpers for the engine tests (timers, retries, timeouts, events).

/// The task lease used with [`virtual_options`]: long enough that a leased (running) task is
/// never confused with one waiting for its retry, which is always due much sooner.
pub const TASK_LEASE: Duration = Duration::from_secs(3600);

/// Engine settings for virtual-time tests: a task lease of [`TASK_LEASE`] so that a running
/// attempt is never renewed or lost while a test moves the clock by seconds or minutes.
pub fn virtual_options() -> EngineOptions {
    EngineOptions {
        task_lease: TASK_LEASE,
        ..EngineOptions::default()
    }
}

/// Where a test's only activity task stands, as the store shows it at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// No activity task exists.
    None,
    /// The task failed an attempt and waits for its retry, due at this (future) time.
    RetryAt(Timestamp),
    /// The task is visible now or leased to a worker that runs it.
    Busy,
}

/// The state of the store's activity task (tests that have at most one task at a time).
pub async fn task_state(store: &dyn Store, now: Timestamp) -> TaskState {
    let stats = store
        .management()
        .unwrap()
        .stats()
        .await
        .unwrap_or_else(|e| panic!("stats: {e}"));
    if stats.tasks == 0 {
        return TaskState::None;
    }
    let NextDue { task, .. } = store
        .next_due(now)
        .await
        .unwrap_or_else(|e| panic!("next_due: {e}"));
    match task {
        // A lease runs TASK_LEASE past the attempt's start; anything sooner is a retry time.
        Some(due) if due.since(now) < TASK_LEASE / 2 => TaskState::RetryAt(due),
        _ => TaskState::Busy,
    }
}

/// Waits until the engine is quiet at the clock's current time: the instance has finished, or
/// its activity task waits for a retry due later. Returns the instance and the retry time.
pub async fn quiet(
    client: &duraflow::Client,
    store: &dyn Store,
    clock: &ManualClock,
    id: &str,
) -> (InstanceInfo, Option<Timestamp>) {
    use duraflow::Clock;
    eventually(
        &format!("instance {id:?} to finish or wait for a retry"),
        || async {
            let info = client.status(id).await.ok()?;
            if info.status.is_terminal() {
                return Some((info, None));
            }
            match task_state(store, clock.now()).await {
                TaskState::RetryAt(due) => Some((info, Some(due))),
                TaskState::None | TaskState::Busy => None,
            }
        },
    )
    .await
}

/// Waits until the instance's current journal has an event matching `pred`; returns the
/// journal.
pub async fn history_with(
    client: &duraflow::Client,
    id: &str,
    what: &str,
    pred: impl Fn(&EventKind) -> bool,
) -> Vec<Event> {
    eventually(&format!("{what} in the journal of {id:?}"), || async {
        let journal = client.history(id, None).await.ok()?;
        journal.iter().any(|e| pred(&e.kind)).then_some(journal)
    })
    .await
}

/// How many events of the journal match `pred`.
pub fn count(journal: &[Event], pred: impl Fn(&EventKind) -> bool) -> usize {
    journal.iter().filter(|e| pred(&e.kind)).count()
}

/// The journal's event types, in order (`workflow_started`, `timer_created`, ...).
pub fn types(journal: &[Event]) -> Vec<&'static str> {
    journal.iter().map(|e| e.kind.type_name()).collect()
}

/// Waits for the instance to finish and returns its failure, panicking if it did not fail.
pub async fn failure_of(client: &duraflow::Client, id: &str) -> duraflow::Failure {
    match client.wait::<serde_json::Value>(id).timeout(DEADLINE).await {
        Err(ClientError::WorkflowFailed(failure)) => failure,
        other => panic!("expected instance {id:?} to fail, got {other:?}"),
    }
}

/// A PostgreSQL store on the test server in a fresh schema named from `prefix`, with the
/// drop of that schema for the end of the test.
#[cfg(feature = "postgres")]
pub async fn postgres_store(prefix: &str) -> (duraflow::PostgresStore, DropSchema) {
    use duraflow::crates::postgres::testing::{test_url, unique_schema};
    let options = duraflow::PostgresOptions {
        schema: unique_schema(prefix),
        max_connections: 5,
        ..duraflow::PostgresOptions::default()
    };
    let store = duraflow::PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests ({e}); run scripts/test"));
    let drop = DropSchema {
        pool: store.pool().clone(),
        schema: store.schema().to_owned(),
    };
    (store, drop)
}

/// Drops a test's PostgreSQL schema ([`postgres_store`]) when `run` is called.
#[cfg(feature = "postgres")]
pub struct DropSchema {
    pool: sqlx::PgPool,
    schema: String,
}

#[cfg(feature = "postgres")]
impl DropSchema {
    /// Drops the schema with everything in it.
    pub async fn run(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{}\" CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("dropping schema {}: {e}", self.schema));
    }
}
