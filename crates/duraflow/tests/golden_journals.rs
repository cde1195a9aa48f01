//! Golden journals: journals written by an earlier build, checked into the repository, that
//! every later build must replay to the same end with no new operations. They are the
//! compatibility test of the journal format (`JOURNAL_FORMAT_VERSION`) and of replay itself:
//! a redesign of the replay machine, the events or the stores that changes how a recorded
//! journal replays fails here.
//!
//! The fixtures in `golden_journals/fixtures/` were recorded by running the scenarios below on
//! an engine. To add a scenario, write it (and any workflow it needs, in `workflows.rs`), then
//! record only the new fixture with
//! `DURAFLOW_GOLDEN_RECORD=<scenario> cargo test -p duraflow --test golden_journals`.
//! Never record an existing fixture again: that would hide the incompatibility the test is
//! there to catch.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;
#[path = "golden_journals/workflows.rs"]
mod workflows;

use std::path::PathBuf;

use common::{history_with, virtual_clock};
use duraflow::prelude::*;
use duraflow::{check_replay, Event, EventKind, Outcome, JOURNAL_FORMAT_VERSION};
use serde::{Deserialize, Serialize};

/// One recorded scenario: every instance it made, with every execution's journal.
#[derive(Debug, Serialize, Deserialize)]
struct Fixture {
    journal_format: u32,
    scenario: String,
    instances: Vec<Recorded>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    id: String,
    workflow: String,
    status: InstanceStatus,
    /// Journals of executions 1, 2, ...
    executions: Vec<Vec<Event>>,
}

/// The scenarios, by name.
const SCENARIOS: [&str; 6] = [
    "tour",
    "race",
    "looper",
    "doomed",
    "functions",
    "queue_events",
];

fn fixture_path(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden_journals/fixtures")
        .join(format!("{scenario}.json"))
}

/// How the recorded journal of an execution ends, as replay reports it.
fn recorded_end(journal: &[Event]) -> Option<Outcome> {
    match &journal.last()?.kind {
        EventKind::WorkflowCompleted { output } => Some(Outcome::Completed(output.clone())),
        EventKind::WorkflowFailed { failure } => Some(Outcome::Failed(*failure.clone())),
        EventKind::CancelRequested { reason } => Some(Outcome::Cancelled(reason.clone())),
        EventKind::TerminateRequested { reason } => Some(Outcome::Terminated(reason.clone())),
        _ => None,
    }
}

#[test]
fn every_golden_journal_replays_to_its_recorded_end() {
    let mut replayed = 0;
    for scenario in SCENARIOS {
        let path = fixture_path(scenario);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("golden fixture {}: {e}", path.display()));
        let fixture: Fixture = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("golden fixture {} no longer decodes: {e}", path.display()));
        assert!(fixture.journal_format <= JOURNAL_FORMAT_VERSION);
        assert!(!fixture.instances.is_empty(), "{scenario}: no instances");
        for instance in &fixture.instances {
            let workflow = workflows::by_name(&instance.workflow).unwrap();
            for (i, journal) in instance.executions.iter().enumerate() {
                let execution = u32::try_from(i + 1).unwrap();
                let report =
                    check_replay(workflow.clone(), &instance.id, execution, journal.clone());
                let at = format!("{scenario}: {} execution {execution}", instance.id);
                assert_eq!(
                    report.new_events,
                    vec![],
                    "{at}: replay asked for something the journal does not have"
                );
                match (recorded_end(journal), &report.outcome) {
                    // A continued execution's journal ends with its continued_as_new event.
                    (None, Some(Outcome::ContinuedAsNew { input, .. })) => {
                        let next = &instance.executions[i + 1][0].kind;
                        assert!(
                            matches!(next, EventKind::WorkflowStarted { input: i2, .. } if i2 == input),
                            "{at}: continued with another input than the next execution's"
                        );
                    }
                    (recorded, outcome) => {
                        assert_eq!(recorded.as_ref(), outcome.as_ref(), "{at}");
                    }
                }
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 9, "only {replayed} journals replayed");
}

/// Records the fixture named in `DURAFLOW_GOLDEN_RECORD` (see the module docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_a_new_fixture_when_asked() {
    let Ok(scenario) = std::env::var("DURAFLOW_GOLDEN_RECORD") else {
        return;
    };
    assert!(
        SCENARIOS.contains(&scenario.as_str()),
        "no scenario {scenario:?}"
    );
    let path = fixture_path(&scenario);
    assert!(
        !path.exists(),
        "{} exists: golden fixtures are never recorded again",
        path.display()
    );
    let clock = virtual_clock();
    let engine = workflows::register(
        Engine::builder()
            .store(MemoryStore::new())
            .clock(clock.clone()),
    )
    .options(common::virtual_options())
    .start()
    .await
    .unwrap();
    let client = engine.client();
    let roots = run_scenario(&scenario, &client, &*engine.store(), &clock).await;
    let mut instances = Vec::new();
    let page = client
        .list(ListFilter {
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    for info in page.instances {
        let executions = futures::future::join_all(
            (1..=info.execution).map(|e| client.history(&info.id, Some(e))),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
        instances.push(Recorded {
            id: info.id,
            workflow: info.name,
            status: info.status,
            executions,
        });
    }
    assert!(instances.iter().any(|i| roots.contains(&i.id)));
    let fixture = Fixture {
        journal_format: JOURNAL_FORMAT_VERSION,
        scenario: scenario.clone(),
        instances,
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&fixture).unwrap()).unwrap();
    engine.shutdown().await;
}

/// Runs one scenario to its end; returns the ids of the instances it started.
async fn run_scenario(
    scenario: &str,
    client: &Client,
    store: &dyn duraflow::Store,
    clock: &duraflow::ManualClock,
) -> Vec<String> {
    let wait_for = |id: &'static str, what: &'static str, pred: fn(&EventKind) -> bool| async move {
        history_with(client, id, what, pred).await;
    };
    match scenario {
        "tour" => {
            let run = client.start("tour", "order-7").id("tour-1").await.unwrap();
            // The first charge attempt fails; its retry is due a second later.
            let (_, retry) = common::quiet(client, store, clock, &run.id).await;
            clock.set(retry.unwrap());
            wait_for("tour-1", "the wait for approval", |k| {
                matches!(k, EventKind::EventWaitStarted { .. })
            })
            .await;
            client.raise_event(&run, "approved", "alice").await.unwrap();
            // Op 3 is the approval's deadline; op 4 the cooling-off timer.
            wait_for(
                "tour-1",
                "the cooling-off timer",
                |k| matches!(k, EventKind::TimerCreated { op, .. } if op.to_string() == "4"),
            )
            .await;
            clock.advance(Duration::from_secs(60));
            let _: Vec<String> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
            vec![run.id]
        }
        "race" => {
            let run = client.start("race", &3u32).id("race-1").await.unwrap();
            // Round 1: the event wins. Round 2: the timer wins. Round 3: the event wins.
            for round in 0..3usize {
                common::eventually("the round's wait", || async {
                    let journal = client.history(&run, None).await.ok()?;
                    (common::count(&journal, |k| {
                        matches!(k, EventKind::EventWaitStarted { .. })
                    }) > round)
                        .then_some(())
                })
                .await;
                if round == 1 {
                    clock.advance(Duration::from_secs(10));
                } else {
                    client
                        .raise_event(&run, "poke", &format!("poke {round}"))
                        .await
                        .unwrap();
                }
                common::eventually("the round's end", || async {
                    let journal = client.history(&run, None).await.ok()?;
                    let ended = common::count(&journal, |k| {
                        matches!(
                            k,
                            EventKind::EventRaised { .. } | EventKind::TimerFired { .. }
                        )
                    });
                    (ended > round).then_some(())
                })
                .await;
            }
            let _: Vec<String> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
            vec![run.id]
        }
        "looper" => {
            let run = client
                .start("looper", &Vec::<u32>::new())
                .id("looper-1")
                .await
                .unwrap();
            for v in 1..=3u32 {
                client.raise_event(&run, "e", &v).await.unwrap();
            }
            let _: Vec<u32> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
            vec![run.id]
        }
        "doomed" => {
            let run = client.start("doomed", &()).id("doomed-1").await.unwrap();
            let _ = client.wait::<()>(&run).timeout(common::DEADLINE).await;
            vec![run.id]
        }
        "functions" => {
            let run = client
                .start("functions", "order-8")
                .id("functions-1")
                .await
                .unwrap();
            wait_for("functions-1", "the quote's retry", |k| {
                matches!(k, EventKind::StepRetrying { .. })
            })
            .await;
            clock.advance(Duration::from_secs(1));
            wait_for("functions-1", "the callback", |k| {
                matches!(k, EventKind::CallbackCreated { .. })
            })
            .await;
            let journal = client.history(&run, None).await.unwrap();
            let token = journal
                .iter()
                .find_map(|e| match &e.kind {
                    EventKind::CallbackCreated { token, .. } => Some(token.clone()),
                    _ => None,
                })
                .unwrap();
            client.complete_callback(&token, "bob").await.unwrap();
            wait_for("functions-1", "the condition's wait", |k| {
                matches!(k, EventKind::TimerCreated { .. })
            })
            .await;
            clock.advance(Duration::from_secs(5));
            let _: Vec<String> = client.wait(&run).timeout(common::DEADLINE).await.unwrap();
            vec![run.id]
        }
        "queue_events" => {
            // A gatherer awaits `opened`; the first herald emits it, waking the gatherer, and
            // times out awaiting `closing`; the second herald's emit is a no-op, and it gets
            // `closing` from a client.
            let gatherer = client
                .start("gatherer", &())
                .id("gatherer-1")
                .await
                .unwrap();
            wait_for("gatherer-1", "the gatherer's await", |k| {
                matches!(k, EventKind::QueueEventAwaitStarted { .. })
            })
            .await;
            let first = client
                .start("herald", "doors open")
                .id("herald-1")
                .await
                .unwrap();
            let _: String = client
                .wait(&gatherer)
                .timeout(common::DEADLINE)
                .await
                .unwrap();
            wait_for("herald-1", "the first herald's await", |k| {
                matches!(k, EventKind::QueueEventAwaitStarted { .. })
            })
            .await;
            clock.advance(Duration::from_secs(10));
            let _: serde_json::Value = client.wait(&first).timeout(common::DEADLINE).await.unwrap();
            let second = client
                .start("herald", "doors open again")
                .id("herald-2")
                .await
                .unwrap();
            wait_for("herald-2", "the second herald's await", |k| {
                matches!(k, EventKind::QueueEventAwaitStarted { .. })
            })
            .await;
            client
                .emit_event("closing", "good night", "default")
                .await
                .unwrap();
            let _: serde_json::Value = client
                .wait(&second)
                .timeout(common::DEADLINE)
                .await
                .unwrap();
            vec![gatherer.id, first.id, second.id]
        }
        other => panic!("no scenario {other:?}"),
    }
}
