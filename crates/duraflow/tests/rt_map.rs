//! Map and parallel end to end on SQLite (a file in a temporary directory):
//!
//! - a map of 10,000 items, 50 at a time, completes with every item in index order; a new
//!   engine on the same file replays the finished map without running any item again, and the
//!   journal stays within a fixed number of events per item;
//! - `first_successful` over slow and fast branches decides on the fast one, and the slow
//!   branches' activities, released after the decision, are not journaled.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{count, eventually, DEADLINE};
use duraflow::crates::core::WorkflowRun;
use duraflow::prelude::*;
use duraflow::{check_replay, workflow_fn, EventKind, ItemStatus, Outcome};
use futures::FutureExt;

// ---------------------------------------------------------------------------------------------
// A map of 10,000 items.

const ITEMS: u64 = 10_000;

/// Item bodies (the steps' closures) run so far, by every engine of the test.
static ITEM_RUNS: AtomicU64 = AtomicU64::new(0);
/// Set by the workflow once its code has passed the map.
static MAP_DONE: AtomicBool = AtomicBool::new(false);
/// How long the first run of the map may take.
const MAP_DEADLINE: Duration = Duration::from_secs(300);

/// Maps [`ITEMS`] items 50 at a time (each item a step returning twice its value), checks
/// that every item succeeded in index order, then waits for event `go` and returns the
/// successes and the sum of the results plus the event's value.
async fn big_map(ctx: WorkflowContext, _: ()) -> Result<(u64, u64), WorkflowError> {
    let items: Vec<u64> = (0..ITEMS).collect();
    let batch = ctx
        .map("items", items, |child, item: u64, _index| async move {
            child
                .step("double", move |_| async move {
                    ITEM_RUNS.fetch_add(1, Ordering::SeqCst);
                    Ok(item * 2)
                })
                .await
        })
        .max_concurrency(50)
        .await?;
    let in_order = batch.items.iter().enumerate().all(|(i, item)| {
        item.index == i && item.status == ItemStatus::Succeeded && item.result == Some(2 * i as u64)
    });
    if !in_order || batch.items.len() as u64 != ITEMS {
        return Err(WorkflowError::application(
            "the map's items are not all succeeded in index order",
        ));
    }
    MAP_DONE.store(true, Ordering::SeqCst);
    let go: u64 = ctx.wait_for_event("go").await?;
    let sum: u64 = batch.results().into_iter().sum();
    Ok((batch.success_count() as u64, sum + go))
}

async fn map_engine(store: SqliteStore) -> Engine {
    Engine::builder()
        .store(store)
        .workflow("big-map", big_map)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_ten_thousand_items_completes_in_order_and_replays_without_running_items() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("map.db");

    // First engine: run the map; the workflow then waits for `go`.
    let engine = map_engine(SqliteStore::open(&path).await.unwrap()).await;
    let client = engine.client();
    let run = client.start("big-map", &()).id("map-1").await.unwrap();
    // The map takes a while (a debug build on a busy machine): wait for the workflow to pass it
    // with a longer deadline than usual, then for its wait to be journaled.
    let deadline = tokio::time::Instant::now() + MAP_DEADLINE;
    while !MAP_DONE.load(Ordering::SeqCst) {
        let status = client.status(&run).await.unwrap().status;
        assert!(!status.is_terminal(), "the workflow ended early: {status}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the map did not finish within {MAP_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let journal = common::history_with(&client, "map-1", "the wait for `go`", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    assert_eq!(
        ITEM_RUNS.load(Ordering::SeqCst),
        ITEMS,
        "each item ran once"
    );

    // Memory and storage stay bounded: a fixed number of journal events per item (the item's
    // context start and end, the step's start and result), whatever the concurrency.
    let n = ITEMS as usize;
    let contexts_done = count(&journal, |k| {
        matches!(k, EventKind::ContextCompleted { .. })
    });
    let steps_done = count(&journal, |k| matches!(k, EventKind::StepCompleted { .. }));
    assert_eq!(contexts_done, n + 1, "every item's context and the batch's");
    assert_eq!(steps_done, n, "one step result per item");
    assert!(
        journal.len() <= 4 * n + 8,
        "{} events for {n} items: more than 4 per item",
        journal.len()
    );

    // A run rebuilt from the stored journal (as a new engine rebuilds it) holds the journal
    // but not the items: the finished map is one operation whose result is read back, and the
    // wait for `go` another. (The first engine's warm run, which ran the items, is not
    // reachable from here.)
    let mut rebuilt = WorkflowRun::checker("map-1", 1, journal.clone(), workflow_fn(big_map));
    rebuilt
        .replay()
        .now_or_never()
        .expect("a checker replay never waits");
    assert_eq!(rebuilt.held_events(), journal.len());
    assert!(
        rebuilt.held_operations() <= 2,
        "{} operations held after replaying a finished map of {n} items",
        rebuilt.held_operations()
    );

    // The stored journal replays without running anything and issues nothing new.
    let checked = check_replay(workflow_fn(big_map), "map-1", 1, journal.clone());
    assert!(
        checked.outcome.is_none(),
        "the workflow still waits for `go`: {:?}",
        checked.outcome
    );
    assert!(checked.new_events.is_empty(), "{:?}", checked.new_events);
    assert_eq!(ITEM_RUNS.load(Ordering::SeqCst), ITEMS);

    // A new engine on the same file (nothing of the first one kept) replays the finished map
    // when `go` arrives, and runs no item again.
    drop(client);
    engine.shutdown().await;
    let engine = map_engine(SqliteStore::open(&path).await.unwrap()).await;
    let client = engine.client();
    client.raise_event("map-1", "go", &7u64).await.unwrap();
    let (successes, sum): (u64, u64) = client.wait("map-1").timeout(DEADLINE).await.unwrap();
    assert_eq!(successes, ITEMS);
    assert_eq!(sum, ITEMS * (ITEMS - 1) + 7);
    assert_eq!(
        ITEM_RUNS.load(Ordering::SeqCst),
        ITEMS,
        "no item ran again in the new engine"
    );

    // The completed journal replays to the same output, still without running an item.
    let journal = client.history("map-1", None).await.unwrap();
    let checked = check_replay(workflow_fn(big_map), "map-1", 1, journal);
    match checked.outcome {
        Some(Outcome::Completed(output)) => {
            assert_eq!(
                output.decode::<(u64, u64)>().unwrap(),
                (ITEMS, ITEMS * (ITEMS - 1) + 7)
            );
        }
        other => panic!("expected the replay to complete, got {other:?}"),
    }
    assert_eq!(ITEM_RUNS.load(Ordering::SeqCst), ITEMS);
    drop(client);
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// first_successful over slow and fast branches.

/// Whether the slow activities may return.
static RELEASED: AtomicBool = AtomicBool::new(false);
/// Wakes the slow activities when [`RELEASED`] is set.
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();
/// Slow activities started and finished.
static SLOW_STARTED: AtomicU64 = AtomicU64::new(0);
static SLOW_FINISHED: AtomicU64 = AtomicU64::new(0);

/// Blocks until the test releases it, then returns its label.
async fn slow(_ctx: ActivityContext, label: String) -> Result<String, ActivityError> {
    SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
    loop {
        let released = RELEASE.notified();
        if RELEASED.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    SLOW_FINISHED.fetch_add(1, Ordering::SeqCst);
    Ok(label)
}

async fn fast(_ctx: ActivityContext, label: String) -> Result<String, ActivityError> {
    Ok(label)
}

/// Races two slow branches and a fast one (in the middle) with `first_successful`, then waits
/// for event `done` (so that the instance is still running when the slow activities end) and
/// returns the winner's index and value and the statuses of all three.
async fn race(
    ctx: WorkflowContext,
    _: (),
) -> Result<(usize, String, Vec<ItemStatus>), WorkflowError> {
    let batch = ctx
        .parallel(
            "race",
            vec![
                branch(|c: WorkflowContext| async move {
                    c.activity::<String>("slow", "slow-0").await
                }),
                branch(|c: WorkflowContext| async move {
                    c.activity::<String>("fast", "fast-1").await
                }),
                branch(|c: WorkflowContext| async move {
                    c.activity::<String>("slow", "slow-2").await
                }),
            ],
        )
        .completion(CompletionConfig::first_successful())
        .await?;
    let () = ctx.wait_for_event("done").await?;
    let winner = batch
        .items
        .iter()
        .find(|i| i.status == ItemStatus::Succeeded)
        .ok_or_else(|| WorkflowError::application("no branch succeeded"))?;
    Ok((
        winner.index,
        winner.result.clone().unwrap_or_default(),
        batch.items.iter().map(|i| i.status).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_successful_decides_on_the_fast_branch_and_refuses_the_slow_late_results() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("race.db")).await.unwrap();
    let engine = Engine::builder()
        .store(store)
        .workflow("race", race)
        .activity("slow", slow)
        .activity("fast", fast)
        .start()
        .await
        .unwrap();
    let client = engine.client();
    let run = client.start("race", &()).id("race-1").await.unwrap();

    // The batch is decided (its context completed) while both slow activities are running.
    let journal = common::history_with(&client, "race-1", "the race decided", |k| {
        matches!(k, EventKind::EventWaitStarted { .. })
    })
    .await;
    eventually("both slow activities running", || async {
        (SLOW_STARTED.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    assert_eq!(SLOW_FINISHED.load(Ordering::SeqCst), 0);
    let slow_ops: Vec<_> = journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ActivityScheduled { op, name, .. } if name == "slow" => Some(op.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        slow_ops.len(),
        2,
        "both slow branches scheduled their activity"
    );

    // Release them: they finish (nothing removed their tasks) and report late.
    RELEASED.store(true, Ordering::SeqCst);
    RELEASE.notify_waiters();
    eventually("both slow activities finished", || async {
        (SLOW_FINISHED.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    // Their reports are taken and refused: no task and no message is left in the store.
    let store = engine.store();
    eventually("the late results handled", || async {
        let stats = store.management().unwrap().stats().await.ok()?;
        (stats.tasks == 0 && stats.messages == 0).then_some(())
    })
    .await;

    client.raise_event(&run, "done", &()).await.unwrap();
    let (index, value, statuses): (usize, String, Vec<ItemStatus>) =
        client.wait(&run).timeout(DEADLINE).await.unwrap();
    assert_eq!((index, value.as_str()), (1, "fast-1"));
    assert_eq!(
        statuses,
        vec![
            ItemStatus::Cancelled,
            ItemStatus::Succeeded,
            ItemStatus::Cancelled
        ]
    );

    // The stored journal has no completion for the slow branches' activities.
    let journal = client.history(&run, None).await.unwrap();
    for op in &slow_ops {
        let late = count(&journal, |k| {
            matches!(k, EventKind::ActivityCompleted { op: o, .. }
                | EventKind::ActivityFailed { op: o, .. } if o == op)
        });
        assert_eq!(late, 0, "the late result of {op} was journaled");
    }
    assert_eq!(
        count(&journal, |k| matches!(
            k,
            EventKind::ActivityCompleted { .. }
        )),
        1,
        "only the fast branch's activity is journaled as completed"
    );
    drop(client);
    engine.shutdown().await;
}
