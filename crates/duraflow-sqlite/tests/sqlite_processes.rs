//! Openings of one database file that do not share a process (here, two stores in one test
//! process: each has its own writer, connections and owner file, as another process would):
//! a commit of one wakes the other's waiters.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use duraflow_core::{Payload, Timestamp};
use duraflow_sqlite::SqliteStore;
use duraflow_store::conformance::fired;
use duraflow_store::{FetchFilter, InstanceStatus, NewInstance, Store, TurnCommit};

/// The longest a test waits for a wakeup before it fails (the writer looks for other
/// openings' commits every few milliseconds while the file is shared, and at least once a
/// second).
const DEADLINE: Duration = Duration::from_secs(30);

fn new_instance(id: &str) -> NewInstance {
    NewInstance {
        id: id.into(),
        name: "wf".into(),
        input: Payload::encode("x").unwrap(),
        parent: None,
        queue: "default".into(),
        created_at: Timestamp(1_000),
        start_at: None,
        options: Default::default(),
    }
}

/// A commit of another opening wakes the waiters of this one (turns, tasks and the feed, since
/// which changed is not known, and the watcher of the instance it created), each time.
#[tokio::test]
async fn another_openings_commit_wakes_the_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let here = SqliteStore::open(&path).await.unwrap();
    let there = SqliteStore::open(&path).await.unwrap();
    let notifier = here.notifier().unwrap();
    for round in 0..3 {
        let id = format!("i{round}");
        let watch = notifier.watch(&id);
        let turns = notifier.turns.notified();
        let tasks = notifier.tasks.notified();
        let feed = notifier.feed.notified();
        let instance = watch.notified();
        tokio::pin!(turns, tasks, feed, instance);
        for armed in [
            turns.as_mut().enable(),
            tasks.as_mut().enable(),
            feed.as_mut().enable(),
            instance.as_mut().enable(),
        ] {
            assert!(!armed, "nothing woke them yet");
        }
        there.create_instance(new_instance(&id)).await.unwrap();
        let woken = async {
            turns.await;
            tasks.await;
            feed.await;
            instance.await;
        };
        tokio::time::timeout(DEADLINE, woken)
            .await
            .unwrap_or_else(|_| panic!("round {round}: another opening's commit woke no one"));
    }
    // The waiters' store reads what the other committed.
    assert!(here.instance("i2").await.unwrap().is_some());
}

/// Of the watched instances, the watchers of one that another opening finished wake; those of
/// an instance it left alone do not (each would read the store for nothing).
#[tokio::test]
async fn only_the_watchers_of_a_changed_instance_wake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watched.db");
    let here = SqliteStore::open(&path).await.unwrap();
    let there = SqliteStore::open(&path).await.unwrap();
    let notifier = here.notifier().unwrap();
    // `idle` is not due for a long time: the other opening's fetch leaves it alone.
    let idle = NewInstance {
        start_at: Some(Timestamp(1_000_000_000)),
        ..new_instance("idle")
    };
    there.create_instance(idle).await.unwrap();
    there.create_instance(new_instance("done")).await.unwrap();
    let (idle, done) = (notifier.watch("idle"), notifier.watch("done"));
    // The first look after the watches began wakes both: it cannot tell whether either
    // changed before they began.
    let idle_first = idle.notified();
    let done_first = done.notified();
    tokio::pin!(idle_first, done_first);
    idle_first.as_mut().enable();
    done_first.as_mut().enable();
    there.create_instance(new_instance("other")).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        idle_first.await;
        done_first.await;
    })
    .await
    .expect("the first look woke both watchers");

    let idle_woken = idle.notified();
    let done_woken = done.notified();
    tokio::pin!(idle_woken, done_woken);
    idle_woken.as_mut().enable();
    done_woken.as_mut().enable();
    let work = there
        .fetch_turns(
            &FetchFilter::default(),
            Timestamp(2_000),
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let turn = work.iter().find(|w| w.instance.id == "done").unwrap();
    assert!(work.iter().all(|w| w.instance.id != "idle"));
    let commit = TurnCommit {
        status: InstanceStatus::Completed,
        output: Some(Payload::encode("ok").unwrap()),
        ..TurnCommit::consuming(turn, Timestamp(2_000))
    };
    there.commit_turns(vec![commit]).await.unwrap()[0]
        .as_ref()
        .unwrap();
    tokio::time::timeout(DEADLINE, done_woken)
        .await
        .expect("the finished instance's watcher woke");
    assert!(
        !fired(idle_woken.as_mut()),
        "the watcher of an instance nobody changed woke"
    );
}
