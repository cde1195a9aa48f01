//! Openings of one database file that do not share a process (here, two stores in one test
//! process: each has its own writer, connections and owner file, as another process would):
//! a commit of one wakes the other's waiters.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use duraflow_core::{Payload, Timestamp};
use duraflow_sqlite::SqliteStore;
use duraflow_store::{NewInstance, Store};

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

/// A commit of another opening wakes every waiter of this one (turns, tasks, the feed and a
/// watched instance: which changed is not known), each time.
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
