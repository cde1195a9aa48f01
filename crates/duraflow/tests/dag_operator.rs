//! Operator actions on DAG runs, delivered to the running interpreter as external events and
//! recorded with the operator's name: resolving a failed step by hand (its dependents get the
//! given result), retrying a failed step (it and its descendants run again, its ancestors do
//! not), cancelling a run with a step in flight, and actions the run cannot take.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
mod dag_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{eventually, DEADLINE};
use dag_support::{assert_replays, on, start_inline};
use duraflow::dag::run::{
    self, cancel_run, dag_status, resolve_step, retry_step, Action, DagReport, OperatorAction,
    OperatorError,
};
use duraflow::dag::{
    Actor, OnFailure, Registry, RetrySpec, RunState, Step, StepState, Template, Transition,
};
use duraflow::prelude::*;
use serde_json::{json, Value};

/// How many times each handler ran.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<BTreeMap<String, usize>>>);

impl Counts {
    fn hit(&self, name: &str) -> usize {
        let mut counts = self.0.lock().unwrap();
        let n = counts.entry(name.to_owned()).or_default();
        *n += 1;
        *n
    }

    fn of(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// `a` → `b` → `c`, held on failure; `b` makes one attempt per try and fails while its call
/// number is at most `b_failures`; `c` echoes its input (`b`'s result).
fn held_chain() -> Template {
    Template::builder("t", "held", "1")
        .on_failure(OnFailure::Hold)
        .step(Step::new("a", "a"))
        .step(
            Step::new("b", "b")
                .depends_on(["a"])
                .retry(RetrySpec::none()),
        )
        .step(
            Step::new("c", "c")
                .depends_on(["b"])
                .input("from_b", "$.steps.b.result".parse().unwrap()),
        )
        .build()
}

async fn engine(registry: Arc<Registry>, counts: &Counts, b_failures: usize) -> Engine {
    let (ca, cb, cc) = (counts.clone(), counts.clone(), counts.clone());
    run::register(on(MemoryStore::new()), registry)
        .activity("a", move |_ctx: ActivityContext, _: Value| {
            ca.hit("a");
            async { Ok::<_, ActivityError>(json!("a done")) }
        })
        .activity("b", move |_ctx: ActivityContext, _: Value| {
            let n = cb.hit("b");
            async move {
                if n <= b_failures {
                    Err(ActivityError::retryable(format!("b is down ({n})")))
                } else {
                    Ok(json!({ "b": n }))
                }
            }
        })
        .activity("c", move |_ctx: ActivityContext, input: Value| {
            cc.hit("c");
            async move { Ok::<_, ActivityError>(input) }
        })
        .start()
        .await
        .unwrap()
}

/// Waits until the run is held in `error` with `step` failed.
async fn held_on(client: &Client, id: &str, step: &str) -> DagReport {
    eventually(&format!("run {id} held on `{step}`"), || async {
        let status = dag_status(client, id).await.ok()?;
        (status.state == RunState::Error && status.steps[step].state == StepState::Error)
            .then_some(status)
    })
    .await
}

fn by(name: &str) -> Actor {
    Actor::Operator(name.into())
}

fn by_operator<'r, S>(trail: &'r [Transition<S>], name: &str) -> Vec<&'r Transition<S>> {
    trail.iter().filter(|t| t.by == by(name)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_resolved_by_hand_gives_its_result_downstream() {
    let registry = Arc::new(Registry::default());
    let counts = Counts::default();
    let engine = engine(registry.clone(), &counts, usize::MAX).await;
    let client = engine.client();
    let run = start_inline(&client, held_chain()).await;
    let held = held_on(&client, &run.id, "b").await;
    assert_eq!(held.steps["c"].state, StepState::Pending);
    assert!(!client.status(&run.id).await.unwrap().status.is_terminal());

    // An event under the operator's name that is not an action is ignored.
    client
        .raise_event(&run.id, run::OPERATOR_EVENT, &json!("not an action"))
        .await
        .unwrap();
    resolve_step(&client, &run.id, "b", json!({ "by": "hand" }), "alice")
        .await
        .unwrap();
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.results["c"], json!({ "from_b": { "by": "hand" } }));
    assert_eq!(report.steps["b"].state, StepState::ResolvedManually);
    let resolved = by_operator(&report.steps["b"].transitions, "alice");
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].from, resolved[0].to),
        (StepState::Error, StepState::ResolvedManually)
    );
    let resumed = by_operator(&report.run_transitions, "alice");
    assert_eq!(
        (resumed[0].from, resumed[0].to),
        (RunState::Error, RunState::InProgress)
    );
    assert_eq!((counts.of("a"), counts.of("b"), counts.of("c")), (1, 1, 1));
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_step_runs_it_and_its_descendants_but_not_its_ancestors() {
    let registry = Arc::new(Registry::default());
    let counts = Counts::default();
    let engine = engine(registry.clone(), &counts, 1).await;
    let client = engine.client();
    let run = start_inline(&client, held_chain()).await;
    held_on(&client, &run.id, "b").await;

    // What cannot be done is refused before it is sent...
    let pending = retry_step(&client, &run.id, "c", "bob").await.unwrap_err();
    assert!(
        matches!(pending, OperatorError::NotAllowed { .. }),
        "{pending}"
    );
    let unknown = retry_step(&client, &run.id, "zz", "bob").await.unwrap_err();
    assert!(
        matches!(unknown, OperatorError::UnknownStep { .. }),
        "{unknown}"
    );
    // ...and, sent anyway, rejected by the run and recorded.
    let raw = OperatorAction {
        by: "mallory".into(),
        action: Action::RetryStep { step: "c".into() },
    };
    run::operator::send(&client, &run.id, &raw).await.unwrap();
    eventually("the rejection to be recorded", || async {
        let status = dag_status(&client, &run.id).await.ok()?;
        (!status.rejected_actions.is_empty()).then_some(())
    })
    .await;

    retry_step(&client, &run.id, "b", "bob").await.unwrap();
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(
        (counts.of("a"), counts.of("b"), counts.of("c")),
        (1, 2, 1),
        "the ancestor ran once, the step twice, its descendant once it succeeded"
    );
    assert_eq!(report.results["c"], json!({ "from_b": { "b": 2 } }));
    let b = &report.steps["b"];
    assert_eq!(b.attempts, 2);
    let retried = by_operator(&b.transitions, "bob");
    assert_eq!(
        (retried[0].from, retried[0].to),
        (StepState::Error, StepState::Enqueued)
    );
    assert_eq!(report.rejected_actions.len(), 1);
    let rejected = &report.rejected_actions[0];
    assert_eq!(rejected.action, raw);
    assert!(
        rejected.reason.contains("step `c` is pending"),
        "{rejected:?}"
    );
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_cancels_its_step_in_flight() {
    let template = Template::builder("t", "cancel", "1")
        .step(Step::new("slow", "slow"))
        .step(Step::new("next", "slow").depends_on(["slow"]))
        .build();
    let (started, cancelled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, c) = (started.clone(), cancelled.clone());
    let engine = run::register(on(MemoryStore::new()), Arc::new(Registry::default()))
        .activity("slow", move |ctx: ActivityContext, _: Value| {
            let (s, c) = (s.clone(), c.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                ctx.cancelled().await;
                c.fetch_add(1, Ordering::SeqCst);
                Err::<Value, _>(ActivityError::retryable("cancelled"))
            }
        })
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = start_inline(&client, template).await;
    eventually("the slow step to start", || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    cancel_run(&client, &run.id, "carol", "the order was withdrawn")
        .await
        .unwrap();
    let failure = common::failure_of(&client, &run.id).await;
    assert_eq!(failure.code.as_deref(), Some("dag_cancelled"));
    assert!(
        failure.message.contains("cancelled by operator carol"),
        "{failure:?}"
    );
    eventually("the step in flight to be cancelled", || async {
        (cancelled.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let status = dag_status(&client, &run.id).await.unwrap();
    assert_eq!(status.state, RunState::Cancelled);
    let cancel = by_operator(&status.run_transitions, "carol");
    assert!(cancel[0].reason.contains("the order was withdrawn"));
    for step in ["slow", "next"] {
        let s = &status.steps[step];
        assert_eq!(s.state, StepState::Cancelled, "{step}");
        assert_eq!(s.transitions.last().unwrap().by, by("carol"));
    }
    // The run has ended: nothing more to act on.
    let late = cancel_run(&client, &run.id, "carol", "again")
        .await
        .unwrap_err();
    assert!(matches!(late, OperatorError::Finished(..)), "{late}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_waiting_for_a_retry_is_resolved_by_hand() {
    let template = Template::builder("t", "waiting", "1")
        .step(Step::new("a", "a"))
        .step(Step::new("b", "b").depends_on(["a"]).retry(RetrySpec {
            max_attempts: 5,
            interval_ms: 3_600_000,
            ..RetrySpec::default()
        }))
        .step(
            Step::new("c", "c")
                .depends_on(["b"])
                .input("from_b", "$.steps.b.result".parse().unwrap()),
        )
        .build();
    let registry = Arc::new(Registry::default());
    let counts = Counts::default();
    let engine = engine(registry.clone(), &counts, usize::MAX).await;
    let client = engine.client();
    let run = start_inline(&client, template).await;
    eventually("b to wait for its retry", || async {
        let status = dag_status(&client, &run.id).await.ok()?;
        (status.steps["b"].state == StepState::WaitingForRetry).then_some(())
    })
    .await;
    // The virtual clock never moves: the backoff never elapses, the operator decides.
    resolve_step(&client, &run.id, "b", json!("skip the wait"), "dave")
        .await
        .unwrap();
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(report.results["c"], json!({ "from_b": "skip the wait" }));
    let b = &report.steps["b"];
    let last = b.transitions.last().unwrap();
    assert_eq!(
        (last.from, last.to, &last.by),
        (
            StepState::WaitingForRetry,
            StepState::ResolvedManually,
            &by("dave")
        )
    );
    assert_eq!(counts.of("b"), 1);
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_resolved_step_runs_its_descendants_that_already_ran_again() {
    // a → b → c → d, held; b and d fail on their first call only.
    let template = Template::builder("t", "rerun", "1")
        .on_failure(OnFailure::Hold)
        .step(Step::new("a", "a"))
        .step(
            Step::new("b", "b")
                .depends_on(["a"])
                .retry(RetrySpec::none()),
        )
        .step(
            Step::new("c", "c")
                .depends_on(["b"])
                .input("from_b", "$.steps.b.result".parse().unwrap()),
        )
        .step(
            Step::new("d", "d")
                .depends_on(["c"])
                .retry(RetrySpec::none()),
        )
        .build();
    let registry = Arc::new(Registry::default());
    let counts = Counts::default();
    let engine = {
        let (ca, cb, cc, cd) = (
            counts.clone(),
            counts.clone(),
            counts.clone(),
            counts.clone(),
        );
        run::register(on(MemoryStore::new()), registry.clone())
            .activity("a", move |_ctx: ActivityContext, _: Value| {
                ca.hit("a");
                async { Ok::<_, ActivityError>(json!("a done")) }
            })
            .activity("b", move |_ctx: ActivityContext, _: Value| {
                let n = cb.hit("b");
                async move {
                    if n == 1 {
                        Err(ActivityError::retryable("b is down"))
                    } else {
                        Ok(json!("b for real"))
                    }
                }
            })
            .activity("c", move |_ctx: ActivityContext, input: Value| {
                cc.hit("c");
                async move { Ok::<_, ActivityError>(input) }
            })
            .activity("d", move |_ctx: ActivityContext, input: Value| {
                let n = cd.hit("d");
                async move {
                    if n == 1 {
                        Err(ActivityError::retryable("d is down"))
                    } else {
                        Ok(input)
                    }
                }
            })
            .start()
            .await
            .unwrap()
    };
    let client = engine.client();
    let run = start_inline(&client, template).await;
    held_on(&client, &run.id, "b").await;
    resolve_step(&client, &run.id, "b", json!("b by hand"), "erin")
        .await
        .unwrap();
    let held = held_on(&client, &run.id, "d").await;
    assert_eq!(held.results["c"], json!({ "from_b": "b by hand" }));

    retry_step(&client, &run.id, "b", "erin").await.unwrap();
    let report: DagReport = client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!(report.state, RunState::Complete);
    assert_eq!(report.results["c"], json!({ "from_b": "b for real" }));
    assert_eq!(
        (
            counts.of("a"),
            counts.of("b"),
            counts.of("c"),
            counts.of("d")
        ),
        (1, 2, 2, 2),
        "the ancestor ran once; the step and its descendants ran again"
    );
    use StepState::*;
    let moves = |step: &str| -> Vec<(StepState, StepState)> {
        by_operator(&report.steps[step].transitions, "erin")
            .iter()
            .map(|t| (t.from, t.to))
            .collect()
    };
    assert_eq!(
        moves("b"),
        [(Error, ResolvedManually), (ResolvedManually, Enqueued)]
    );
    assert_eq!(moves("c"), [(Complete, Pending)]);
    assert_eq!(moves("d"), [(Error, Pending)]);
    assert!(moves("a").is_empty());
    assert_replays(&client, &registry, &run.id, &report).await;
    engine.shutdown().await;
}
