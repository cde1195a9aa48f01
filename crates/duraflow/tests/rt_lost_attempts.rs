//! Attempts that end without a report, under virtual time: an activity whose attempts keep
//! losing their lease (here: it blocks its thread, so the lease cannot be renewed) is run at
//! most `max_attempts` times and then fails with kind `lease_expired`; a lost attempt with
//! attempts left is retried as soon as its lease has expired and counts toward the limit; the
//! late result of a lost attempt is never recorded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use common::observed::{Observed, Observer};
use common::{eventually, failure_of, virtual_clock};
use duraflow::crates::store::{Committed, Completed, LeaseToken, StoreResult, TaskWork};
use duraflow::prelude::*;
use duraflow::{Clock, EngineOptions, EventKind, FailureKind, ManualClock, Store, Timestamp};

/// The task lease of these tests' engines.
const LEASE: Duration = Duration::from_secs(10);

/// The retry policy of the activity: three attempts, a second apart.
fn policy() -> RetryPolicy {
    RetryPolicy::fixed(Duration::from_secs(1)).max_attempts(3)
}

async fn call_stuck(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.activity("stuck", &()).retry(policy()).await
}

/// Holds attempts blocked on their thread until the test lets them go.
#[derive(Default)]
struct Gates {
    /// Attempts up to this number may return.
    open: Mutex<u32>,
    changed: Condvar,
}

impl Gates {
    /// Blocks the calling thread until `attempt` may return.
    fn wait(&self, attempt: u32) {
        let mut open = self.open.lock().unwrap();
        while *open < attempt {
            open = self.changed.wait(open).unwrap();
        }
    }

    fn open_up_to(&self, attempt: u32) {
        *self.open.lock().unwrap() = attempt;
        self.changed.notify_all();
    }
}

/// Lets every blocked attempt go when the test ends, also when it fails, so that the runtime
/// can shut down.
struct OpenOnDrop(Arc<Gates>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open_up_to(u32::MAX);
    }
}

/// Remembers which attempt each task lease was for and which attempts' completions the store
/// refused.
#[derive(Default)]
struct Watching {
    /// Attempt by lease token, for every task lease handed out (fetched or claimed).
    leases: Mutex<HashMap<LeaseToken, u32>>,
    /// The attempts whose completions were refused, in order.
    refused: Mutex<Vec<u32>>,
}

impl Watching {
    fn leased(&self, tasks: &[TaskWork]) {
        let mut leases = self.leases.lock().unwrap();
        for t in tasks {
            leases.insert(t.token, t.attempt);
        }
    }

    /// The attempts leased, in attempt order.
    fn leased_attempts(&self) -> Vec<u32> {
        let mut attempts: Vec<u32> = self.leases.lock().unwrap().values().copied().collect();
        attempts.sort_unstable();
        attempts
    }

    fn refused(&self) -> Vec<u32> {
        self.refused.lock().unwrap().clone()
    }
}

impl Observer for Watching {
    fn committed(&self, results: &[StoreResult<Committed>]) {
        for committed in results.iter().filter_map(|r| r.as_ref().ok()) {
            self.leased(&committed.tasks);
        }
    }
    fn fetched_tasks(&self, tasks: &[TaskWork]) {
        self.leased(tasks);
    }
    fn completed(&self, tokens: &[LeaseToken], results: &[StoreResult<Completed>]) {
        let leases = self.leases.lock().unwrap();
        for (token, result) in tokens.iter().zip(results) {
            if result.is_err() {
                let attempt = leases.get(token).copied().unwrap_or(0);
                self.refused.lock().unwrap().push(attempt);
            }
        }
    }
}

/// Every attempt the activity started: its number and the engine time it started at.
type Runs = Arc<Mutex<Vec<(u32, Timestamp)>>>;

fn attempts_of(runs: &Runs) -> Vec<u32> {
    runs.lock().unwrap().iter().map(|(a, _)| *a).collect()
}

/// What one test works with.
struct Setup {
    clock: Arc<ManualClock>,
    store: Arc<Observed<Watching>>,
    engine: Engine,
    runs: Runs,
    gates: Arc<Gates>,
    _open: OpenOnDrop,
}

/// An engine whose `stuck` activity blocks its thread on the attempts listed in `blocking`
/// (so that its lease is not renewed: it is lost once the clock passes it) and returns their
/// output when let go; every other attempt fails with a retryable error.
async fn setup(blocking: &'static [u32]) -> Setup {
    let clock = virtual_clock();
    let store = Arc::new(Observed::<Watching>::default());
    let runs: Runs = Arc::default();
    let gates = Arc::new(Gates::default());
    let (r, g, c) = (runs.clone(), gates.clone(), clock.clone());
    let engine = Engine::builder()
        .clock(clock.clone())
        .shared_store(store.clone())
        .options(EngineOptions {
            task_lease: LEASE,
            ..EngineOptions::default()
        })
        .workflow("call-stuck", call_stuck)
        .activity("stuck", move |ctx: ActivityContext, _: ()| {
            let (r, g, c) = (r.clone(), g.clone(), c.clone());
            async move {
                let attempt = ctx.attempt();
                r.lock().unwrap().push((attempt, c.now()));
                if !blocking.contains(&attempt) {
                    return Err(ActivityError::retryable(format!(
                        "attempt {attempt}: service down"
                    )));
                }
                // A wedged worker: the thread is blocked, so nothing renews the lease.
                tokio::task::block_in_place(|| g.wait(attempt));
                Ok(format!("late result of attempt {attempt}"))
            }
        })
        .start()
        .await
        .unwrap();
    let _open = OpenOnDrop(gates.clone());
    Setup {
        clock,
        store,
        engine,
        runs,
        gates,
        _open,
    }
}

impl Setup {
    async fn attempts_started(&self, expected: &[u32]) {
        eventually(
            &format!("attempts {expected:?} to have started"),
            || async { (attempts_of(&self.runs) == expected).then_some(()) },
        )
        .await;
    }

    async fn refused(&self, expected: &[u32]) {
        eventually(
            &format!("the completions of attempts {expected:?} to be refused"),
            || async {
                let mut refused = self.store.refused();
                refused.sort_unstable();
                (refused == expected).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_whose_attempts_all_lose_their_lease_fails_after_max_attempts() {
    let s = setup(&[1, 2, 3]).await;
    let client = s.engine.client();
    let run = client.start("call-stuck", &()).await.unwrap();

    s.attempts_started(&[1]).await;
    s.clock.advance(LEASE);
    s.attempts_started(&[1, 2]).await;
    // Attempt 1 comes back after all, with a result: its lease is attempt 2's now, so the
    // store refuses it and the workflow goes on waiting.
    s.gates.open_up_to(1);
    s.refused(&[1]).await;
    assert!(!client.status(&run.id).await.unwrap().status.is_terminal());

    s.clock.advance(LEASE);
    s.attempts_started(&[1, 2, 3]).await;
    // Attempt 3 was the last one the policy allows: once its lease is lost too, the next
    // fetch fails the activity instead of running it a fourth time.
    s.clock.advance(LEASE);
    let failure = failure_of(&client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::LeaseExpired, "{failure}");
    assert_eq!(failure.attempts, Some(3), "{failure}");
    assert_eq!(failure.source.as_deref(), Some("activity \"stuck\""));
    assert!(
        failure
            .message
            .contains("attempt 3 of 3 ended without reporting a result"),
        "{failure}"
    );

    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        common::types(&journal),
        [
            "workflow_started",
            "activity_scheduled",
            "activity_failed",
            "workflow_failed"
        ]
    );
    let EventKind::ActivityScheduled { op: scheduled, .. } = &journal[1].kind else {
        panic!("{:?}", journal[1]);
    };
    assert_eq!(failure.op.as_ref(), Some(scheduled));
    assert!(matches!(
        &journal[2].kind,
        EventKind::ActivityFailed { failure: f, .. } if f.kind == FailureKind::LeaseExpired
    ));

    // The stuck attempts 2 and 3 return late: their results are refused as well.
    s.gates.open_up_to(u32::MAX);
    s.refused(&[1, 2, 3]).await;
    assert_eq!(
        attempts_of(&s.runs),
        [1, 2, 3],
        "ran exactly max_attempts times"
    );
    assert_eq!(
        s.store.leased_attempts(),
        [1, 2, 3, 4],
        "the fourth lease only reported the failure"
    );
    assert_eq!(
        client.history(&run, None).await.unwrap(),
        journal,
        "no late result reached the journal"
    );
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempt_is_retried_when_its_lease_expires_and_counts_toward_the_limit() {
    let s = setup(&[1]).await;
    let t0 = s.clock.now();
    let client = s.engine.client();
    let run = client.start("call-stuck", &()).await.unwrap();

    s.attempts_started(&[1]).await;
    // Attempt 1's lease runs out: attempt 2 starts at that moment, without the policy's
    // backoff (nobody saw attempt 1 end, and its lease already kept the task away that long).
    s.clock.advance(LEASE);
    s.attempts_started(&[1, 2]).await;
    // Attempt 2 reports a failure: attempt 3 comes after the backoff, and is the last.
    let retry_at = t0.plus(LEASE).plus(Duration::from_secs(1));
    eventually("attempt 2's retry to be scheduled", || async {
        let due = s.store.next_due(s.clock.now()).await.ok()?.task?;
        (due == retry_at).then_some(())
    })
    .await;
    s.clock.set(retry_at);
    let failure = failure_of(&client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::RetriesExhausted, "{failure}");
    assert_eq!(
        failure.attempts,
        Some(3),
        "the lost attempt counts: {failure}"
    );
    assert_eq!(failure.message, "attempt 3: service down");
    let started: Vec<(u32, Timestamp)> = s.runs.lock().unwrap().clone();
    assert_eq!(started, [(1, t0), (2, t0.plus(LEASE)), (3, retry_at)]);

    // Attempt 1 finally returns a result: it is refused and the failure stands.
    s.gates.open_up_to(1);
    s.refused(&[1]).await;
    let journal = client.history(&run, None).await.unwrap();
    assert_eq!(
        common::count(&journal, |e| matches!(
            e,
            EventKind::ActivityCompleted { .. }
        )),
        0
    );
    s.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_and_lost_attempts_share_the_limit_and_the_last_reported_failure_is_kept() {
    let s = setup(&[2, 3]).await;
    let t0 = s.clock.now();
    let client = s.engine.client();
    let run = client.start("call-stuck", &()).await.unwrap();

    // Attempt 1 reports a failure; attempt 2 comes after the backoff, and blocks.
    s.attempts_started(&[1]).await;
    let retry_at = t0.plus(Duration::from_secs(1));
    eventually("attempt 1's retry to be scheduled", || async {
        let due = s.store.next_due(s.clock.now()).await.ok()?.task?;
        (due == retry_at).then_some(())
    })
    .await;
    s.clock.set(retry_at);
    s.attempts_started(&[1, 2]).await;
    // Attempts 2 and 3 lose their leases: the third was the last.
    s.clock.advance(LEASE);
    s.attempts_started(&[1, 2, 3]).await;
    s.clock.advance(LEASE);
    let failure = failure_of(&client, &run.id).await;
    assert_eq!(failure.kind, FailureKind::LeaseExpired, "{failure}");
    assert_eq!(failure.attempts, Some(3), "{failure}");
    assert!(
        failure
            .message
            .ends_with("; an earlier attempt failed: attempt 1: service down"),
        "{failure}"
    );
    s.gates.open_up_to(u32::MAX);
    s.refused(&[2, 3]).await;
    assert_eq!(attempts_of(&s.runs), [1, 2, 3]);
    s.engine.shutdown().await;
}
