//! PostgreSQL's wakeups of this process's dispatcher, beyond the conformance suite: a case the
//! suite states for every store, here with the database's own announcement of the write before
//! drained, so that it can only pass by the store's own wakeup.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use duraflow_core::{OpResult, Payload, Timestamp};
use duraflow_postgres::testing::test_store;
use duraflow_postgres::PostgresStore;
use duraflow_store::conformance::fired;
use duraflow_store::{
    FetchFilter, LeaseToken, MessageKind, NewInstance, NewMessage, Store, TaskCompletion, TaskId,
    TurnCommit,
};

/// Waits until every notification sent before this call has reached the store's listener:
/// notifications arrive in commit order, so once a marker sent now has arrived, so has
/// everything sent before it.
async fn drain_notifications(store: &PostgresStore) {
    let notifier = store
        .notifier()
        .expect("PostgreSQL wakes waiters in its process");
    let marker = notifier.watch("marker");
    let seen = marker.changes();
    let channel = format!("duraflow_{}", store.schema());
    sqlx::query("SELECT pg_notify($1, 'instance:marker')")
        .bind(&channel)
        .execute(store.pool())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while marker.changes() == seen {
        assert!(
            Instant::now() < deadline,
            "the marker did not arrive in 10 s"
        );
        let changed = marker.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if marker.changes() != seen {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
    }
}

/// A task's result posted to an instance that an earlier result made due wakes this process's
/// dispatcher: a fetch may have skipped the instance while the completion held its row, and
/// the completion moves no due time, so nothing else would (a fan-out on PostgreSQL slept out
/// its 1 s poll in a fifth of the runs).
#[tokio::test]
async fn a_result_posted_to_a_due_instance_wakes_the_dispatcher() {
    let store = test_store("dft_wakeups").await.unwrap();
    store.create_instance(new_instance("a")).await.unwrap();
    // Two leased tasks of `a`, as a turn that scheduled them and a fetch leave them.
    let mut ids = Vec::new();
    for op in ["1", "2"] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                                visible_at, attempt, lease_token, lease_until)
             VALUES ('a', 1, $1, 'act', 'null', '{}', 1000, 61000, 1, 7, 61000) RETURNING id",
        )
        .bind(op)
        .fetch_one(store.pool())
        .await
        .unwrap();
        ids.push(id);
    }
    let complete = |id: i64| TaskCompletion {
        id: TaskId(id),
        token: LeaseToken(7),
        result: OpResult::Ok(Payload::null()),
        claim_turn: None,
    };
    let now = Timestamp(2_000);
    store
        .complete_tasks(&FetchFilter::default(), now, vec![complete(ids[0])], None)
        .await
        .unwrap();
    drain_notifications(&store).await;

    let turns = store.notifier().unwrap().turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    store
        .complete_tasks(&FetchFilter::default(), now, vec![complete(ids[1])], None)
        .await
        .unwrap();
    assert!(fired(turns), "the second result wakes the dispatcher");
}

fn new_instance(id: &str) -> NewInstance {
    NewInstance {
        id: id.into(),
        name: "wf".into(),
        input: Payload::null(),
        parent: None,
        queue: "default".into(),
        created_at: Timestamp(1_000),
        start_at: None,
        options: Default::default(),
    }
}

/// A message a commit sends to an instance already due wakes this process's dispatcher, for
/// the same reason.
#[tokio::test]
async fn a_message_sent_to_a_due_instance_wakes_the_dispatcher() {
    let store = test_store("dft_wakeups_sent").await.unwrap();
    store.create_instance(new_instance("b")).await.unwrap();
    let now = Timestamp(2_000);
    let work = store
        .fetch_turns(
            &FetchFilter::default(),
            now,
            1,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap()
        .remove(0);
    assert_eq!(work.instance.id, "b");
    store.create_instance(new_instance("a")).await.unwrap();
    drain_notifications(&store).await;

    let turns = store.notifier().unwrap().turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    // `b` takes its own inbox, so that it is not due after the commit (which would wake the
    // dispatcher for `b`).
    let mut commit = TurnCommit::consuming(&work, now);
    commit.messages = vec![NewMessage {
        instance_id: "a".into(),
        kind: MessageKind::Event {
            name: "x".into(),
            data: Payload::null(),
        },
        visible_at: now,
    }];
    for result in store.commit_turns(vec![commit]).await.unwrap() {
        result.unwrap();
    }
    assert!(fired(turns), "the message to `a` wakes the dispatcher");
}

/// A fetch that passes over a due instance because another transaction holds its row wakes
/// this process's dispatcher again shortly: the holder (here another session, as another
/// process's commit to the instance would be) may end without announcing anything, the
/// instance being due already, and the dispatcher would otherwise sleep out its poll.
#[tokio::test]
async fn a_fetch_that_skips_a_held_row_wakes_the_dispatcher_again() {
    let store = test_store("dft_wakeups_skipped").await.unwrap();
    store.create_instance(new_instance("a")).await.unwrap();
    drain_notifications(&store).await;
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM instances WHERE id = 'a' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let turns = store.notifier().unwrap().turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    let now = Timestamp(2_000);
    let filter = FetchFilter::default();
    let fetch = || store.fetch_turns(&filter, now, 4, Duration::from_secs(60), None);
    assert!(fetch().await.unwrap().is_empty(), "the held row is skipped");
    holder.rollback().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), turns)
        .await
        .expect("the fetch that skipped `a` wakes the dispatcher again");
    let ids: Vec<String> = fetch()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.instance.id)
        .collect();
    assert_eq!(ids, ["a"]);
}
