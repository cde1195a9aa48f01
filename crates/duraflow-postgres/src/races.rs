//! Messages racing commits of the same instance: the instance-row locking protocol (see
//! [`crate::ops`]) never loses one.
//!
//! Each test runs one side with the store's own statements inside a transaction it holds open,
//! starts the other side through the store, waits until PostgreSQL reports that side blocked
//! by the open transaction (`pg_blocking_pids`), and only then commits. No sleeping for
//! something to happen: the order is forced.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use duraflow_core::{ActivityOptions, OpId, Payload, Timestamp};
use duraflow_store::{
    Completed, MessageKind, NewInstance, NewMessage, NewTask, OpResult, Store, TaskCompletion,
    TurnCommit, TurnWork,
};
use sqlx::postgres::PgRow;
use tokio::task::JoinHandle;

use crate::ops::{commit, instances, tasks, Wake};
use crate::testing::test_store;
use crate::tx::LockedTx;
use crate::PostgresStore;

const T0: Timestamp = Timestamp(1_000_000);
const LEASE: Duration = Duration::from_secs(30);

async fn store() -> Arc<PostgresStore> {
    Arc::new(test_store("dft_race").await.expect("the test server"))
}

fn payload(text: &str) -> Payload {
    Payload::encode(&text).unwrap()
}

async fn create(store: &PostgresStore, id: &str) {
    store
        .create_instance(crate::testing::new_instance(id, "in", T0))
        .await
        .unwrap();
}

fn event(id: &str, name: &str, visible_at: Timestamp) -> NewMessage {
    NewMessage {
        instance_id: id.into(),
        kind: MessageKind::Event {
            name: name.into(),
            data: payload(name),
        },
        visible_at,
    }
}

/// After the turn lease of the tests has run out.
const LATER: Timestamp = Timestamp(T0.0 + 2 * 30_000);

/// A commit of `work` that consumes every message it came with and schedules `tasks`.
fn commit_of(work: &TurnWork, tasks: u32) -> TurnCommit {
    TurnCommit {
        journal_base: 0,
        tasks: (1..=tasks)
            .map(|seq| NewTask {
                instance_id: work.instance.id.clone(),
                execution: 1,
                op: OpId::new(None, seq),
                name: "act".into(),
                input: payload("task"),
                options: ActivityOptions::default(),
                scheduled_at: T0,
            })
            .collect(),
        ..TurnCommit::consuming(work, T0)
    }
}

async fn turn(store: &PostgresStore) -> TurnWork {
    turn_at(store, T0).await
}

async fn turn_at(store: &PostgresStore, now: Timestamp) -> TurnWork {
    let mut work = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            now,
            10,
            LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 1, "one instance is due");
    work.remove(0)
}

/// A transaction begun as the store begins its batches, with `lock` as its first statement,
/// its rows, and its backend's pid.
async fn hold<'s>(store: &'s PostgresStore, lock: &str) -> (LockedTx<'s>, Vec<PgRow>, i32) {
    let (mut tx, rows) = LockedTx::begin(&store.conns, "", lock).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(tx.conn().unwrap())
        .await
        .unwrap();
    (tx, rows, pid)
}

/// Writes `commits` (of one instance) in the held transaction `tx`, which the lock statement
/// began with `locked`, and leaves it open.
async fn commit_one(tx: &mut LockedTx<'_>, commits: &[TurnCommit], locked: &[PgRow]) {
    let mut wake = Wake::default();
    let results = commit::commit_batch(
        tx.conn().unwrap(),
        commits,
        locked,
        "unused",
        None,
        &mut wake,
    )
    .await
    .unwrap();
    assert!(results[0].is_ok());
}

/// Waits until some session is blocked by backend `pid` (and `other` is still running).
async fn until_blocked_by<T>(store: &PostgresStore, pid: i32, other: &JoinHandle<T>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(pid)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if blocked > 0 {
            assert!(
                !other.is_finished(),
                "the other side finished while blocked"
            );
            return;
        }
        assert!(
            !other.is_finished(),
            "the other side finished without waiting for the held transaction"
        );
        assert!(Instant::now() < deadline, "the other side never blocked");
        tokio::task::yield_now().await;
    }
}

/// The names of the events in the instance's next turn at `now`.
async fn events_in_next_turn(store: &PostgresStore, now: Timestamp) -> Vec<String> {
    names(&turn_at(store, now).await)
}

fn names(work: &TurnWork) -> Vec<String> {
    work.messages
        .iter()
        .map(|m| match &m.kind {
            MessageKind::Event { name, .. } => name.clone(),
            MessageKind::ActivityResult { op, .. } => format!("result {op}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A commit holds the instance (its due time computed from an empty inbox, not yet committed)
/// while a message is sent: the send waits, and then brings the due time forward on the row the
/// commit left, so the message is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_during_a_commit_is_not_lost() {
    let store = store().await;
    create(&store, "x").await;
    let work = turn(&store).await;

    let commits = [commit_of(&work, 0)];
    let (mut tx, locked, pid) = hold(&store, &commit::lock_statement(&commits)).await;
    commit_one(&mut tx, &commits, &locked).await;

    let sender = store.clone();
    let send = tokio::spawn(async move { sender.send(event("x", "late", T0)).await });
    until_blocked_by(&store, pid, &send).await;
    tx.commit().await.unwrap();
    send.await.unwrap().unwrap();

    assert_eq!(events_in_next_turn(&store, T0).await, vec!["late"]);
}

/// A message is being sent (inserted, not yet committed) while the instance's turn commits:
/// the commit waits for it, and then computes the due time from an inbox that has it. Run
/// with a message visible at once (its send also moves the leased instance's due time, which
/// locks the row too) and with one visible after the lease ends (which moves nothing, so only
/// the send's `FOR KEY SHARE` lock makes the commit wait).
async fn commit_during_send(visible_at: Timestamp) {
    let store = store().await;
    create(&store, "x").await;
    let work = turn(&store).await;

    let (mut tx, _, pid) = hold(&store, "SELECT 1").await;
    let mut wake = Wake::default();
    instances::send(
        tx.conn().unwrap(),
        &event("x", "early", visible_at),
        "unused",
        &mut wake,
    )
    .await
    .unwrap();

    let committer = store.clone();
    let commit =
        tokio::spawn(async move { committer.commit_turns(vec![commit_of(&work, 0)]).await });
    until_blocked_by(&store, pid, &commit).await;
    tx.commit().await.unwrap();
    let results = commit.await.unwrap().unwrap();
    assert!(results[0].is_ok(), "{results:?}");

    assert_eq!(events_in_next_turn(&store, visible_at).await, vec!["early"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_a_send_waits_for_the_message() {
    commit_during_send(T0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_a_send_of_a_later_message_waits_for_it() {
    commit_during_send(LATER).await;
}

/// Instance x with a turn leased holding one activity result, and a second task still to
/// complete: (turn, the second task's completion).
async fn turn_with_a_task_outstanding(store: &PostgresStore) -> (TurnWork, TaskCompletion) {
    create(store, "x").await;
    let first = turn(store).await;
    let results = store
        .commit_turns(vec![commit_of(&first, 2)])
        .await
        .unwrap();
    assert!(results[0].is_ok());
    let mut leased = store
        .fetch_tasks(&duraflow_store::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    let done = |i: usize, claim: bool| TaskCompletion {
        id: leased[i].id,
        token: leased[i].token,
        result: OpResult::Ok(payload("done")),
        claim_turn: claim.then_some(LEASE),
    };
    let completed = store
        .complete_tasks(
            &duraflow_store::FetchFilter::default(),
            T0,
            vec![done(0, false)],
            None,
        )
        .await
        .unwrap();
    assert!(matches!(completed[0], Ok(Completed { turn: None })));
    let second = done(1, true);
    leased.clear();
    let work = turn(store).await;
    assert_eq!(work.messages.len(), 1, "the first result");
    (work, second)
}

/// A completion (posting its result, not yet committed) holds the instance while its turn
/// commits: the commit waits, and leaves the instance due with the second result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_a_completion_waits_for_the_result() {
    let store = store().await;
    let (work, second) = turn_with_a_task_outstanding(&store).await;

    let completions = [second];
    let (mut tx, locked, pid) = hold(&store, &tasks::lock_statement(&completions)).await;
    let mut wake = Wake::default();
    let completed = tasks::complete_batch(
        tx.conn().unwrap(),
        tasks::Claims {
            filter: &duraflow_store::FetchFilter::default(),
            cache: None,
            owner: None,
        },
        T0,
        &completions,
        &locked,
        "unused",
        &mut wake,
    )
    .await
    .unwrap();
    // The turn is leased: no claim.
    assert!(matches!(completed[0], Ok(Completed { turn: None })));

    let committer = store.clone();
    let commit =
        tokio::spawn(async move { committer.commit_turns(vec![commit_of(&work, 0)]).await });
    until_blocked_by(&store, pid, &commit).await;
    tx.commit().await.unwrap();
    let results = commit.await.unwrap().unwrap();
    assert!(results[0].is_ok(), "{results:?}");

    let next = turn(&store).await;
    assert_eq!(names(&next), vec!["result 2"]);
}

/// A commit holds the instance while a completion posts the second result and asks for the
/// turn: the completion waits, then finds the instance free and due, and claims the turn with
/// the result in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_during_a_commit_claims_the_next_turn() {
    let store = store().await;
    let (work, second) = turn_with_a_task_outstanding(&store).await;

    let commits = [commit_of(&work, 0)];
    let (mut tx, locked, pid) = hold(&store, &commit::lock_statement(&commits)).await;
    commit_one(&mut tx, &commits, &locked).await;

    let completer = store.clone();
    let complete = tokio::spawn(async move {
        completer
            .complete_tasks(
                &duraflow_store::FetchFilter::default(),
                T0,
                vec![second],
                None,
            )
            .await
    });
    until_blocked_by(&store, pid, &complete).await;
    tx.commit().await.unwrap();
    let mut completed = complete.await.unwrap().unwrap();
    let claimed = completed
        .remove(0)
        .unwrap()
        .turn
        .expect("the turn is claimed");
    assert_eq!(names(&claimed), vec!["result 2"]);
}

/// Concurrent creations share statements: each id is created once with one start message,
/// whichever batch its calls land in, and the other calls get the instance as it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_one_id_create_it_once() {
    let store = store().await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("c{}", i % 12);
                let outcome = store
                    .create_instance(NewInstance {
                        id: id.clone(),
                        name: "wf".into(),
                        input: payload("in"),
                        parent: None,
                        queue: "default".into(),
                        created_at: T0,
                        start_at: None,
                        options: Default::default(),
                    })
                    .await
                    .unwrap();
                (id, outcome)
            })
        })
        .collect();
    let mut created = std::collections::HashMap::new();
    for call in calls {
        let (id, outcome) = call.await.unwrap();
        match outcome {
            duraflow_store::CreateOutcome::Created => *created.entry(id).or_insert(0) += 1,
            duraflow_store::CreateOutcome::Existing(info) => {
                assert_eq!(info.id, id);
                created.entry(id).or_insert(0);
            }
        }
    }
    assert_eq!(created.len(), 12);
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    let stats = store.management().unwrap().stats().await.unwrap();
    assert_eq!(stats.messages, 12, "one start message each");
    let work = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            T0,
            100,
            LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 12);
    assert!(work.iter().all(|w| w.messages.len() == 1));
}

/// A commit of the instance ends while a claiming send waits for the instance row, after the
/// send's snapshot, which still holds the message the commit consumed and shows the instance
/// unleased (the held transaction leased it too): the send claims nothing (the commit token
/// moved), and the next turn gets the sent message alone, the consumed one never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_a_claiming_send_delivers_nothing_twice() {
    let store = store().await;
    create(&store, "x").await;
    let info = store.instance("x").await.unwrap().unwrap();

    // Lease the instance and commit its first turn (consuming the start) in one transaction,
    // held open.
    let (mut tx, _, pid) = hold(&store, "SELECT 1").await;
    let token: i64 = sqlx::query_scalar(
        "UPDATE instances SET lease_token = nextval('lease_tokens'), lease_until = $2,
                due_at = $2, started_at = coalesce(started_at, $3)
          WHERE id = $1 RETURNING lease_token",
    )
    .bind("x")
    .bind(LATER.0)
    .bind(T0.0)
    .fetch_one(tx.conn().unwrap())
    .await
    .unwrap();
    let start: i64 = sqlx::query_scalar("SELECT id FROM messages WHERE instance_id = $1")
        .bind("x")
        .fetch_one(tx.conn().unwrap())
        .await
        .unwrap();
    let work = TurnWork {
        instance: info,
        journal: Ok(duraflow_store::Journal::Events(Vec::new())),
        messages: vec![duraflow_store::Message {
            id: duraflow_store::MessageId(start),
            instance_id: "x".into(),
            kind: MessageKind::start(1),
            visible_at: T0,
        }],
        token: duraflow_store::LeaseToken(token),
    };
    let commits = [commit_of(&work, 0)];
    let locked = sqlx::raw_sql(sqlx::AssertSqlSafe(commit::lock_statement(&commits)))
        .fetch_all(tx.conn().unwrap())
        .await
        .unwrap();
    commit_one(&mut tx, &commits, &locked).await;

    send_claiming_behind(&store, tx, pid).await;
}

/// A turn holds the instance after a checkpoint (its commit token is the lease's, as the final
/// commit's will be) and its final commit, consuming a message, ends while a claiming send
/// waits for the row: the send's snapshot saw the lease, so it claims nothing, and the consumed
/// message is never delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_commit_after_a_checkpoint_during_a_claiming_send_delivers_nothing_twice() {
    let store = store().await;
    create(&store, "x").await;
    let work = turn(&store).await;
    let mut checkpoint = commit_of(&work, 0);
    checkpoint.keep_lease = Some(LEASE);
    let results = store.commit_turns(vec![checkpoint]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    store.send(event("x", "consumed", T0)).await.unwrap();
    let consumed: i64 = sqlx::query_scalar("SELECT id FROM messages WHERE instance_id = $1")
        .bind("x")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let last = TurnWork {
        messages: vec![duraflow_store::Message {
            id: duraflow_store::MessageId(consumed),
            instance_id: "x".into(),
            kind: event("x", "consumed", T0).kind,
            visible_at: T0,
        }],
        ..work
    };
    let commits = [commit_of(&last, 0)];
    let (mut tx, locked, pid) = hold(&store, &commit::lock_statement(&commits)).await;
    commit_one(&mut tx, &commits, &locked).await;

    send_claiming_behind(&store, tx, pid).await;
}

/// Sends instance `x` the event `sent` claiming, while `tx` (of backend `pid`), which has
/// committed a turn of `x` consuming a message, holds the row; commits `tx` once the send
/// waits for it. The send must claim nothing (its snapshot predates the commit), and the next
/// turn gets `sent` alone.
async fn send_claiming_behind(store: &Arc<PostgresStore>, tx: LockedTx<'_>, pid: i32) {
    let sender = store.clone();
    let send = tokio::spawn(async move {
        sender
            .send_claiming(
                event("x", "sent", T0),
                &duraflow_store::FetchFilter::default(),
                T0,
                LEASE,
                None,
            )
            .await
    });
    until_blocked_by(store, pid, &send).await;
    tx.commit().await.unwrap();
    let claimed = send.await.unwrap().unwrap();
    assert!(
        claimed.is_none(),
        "a turn claimed on the stale snapshot: {:?}",
        claimed.map(|turn| names(&turn))
    );
    assert_eq!(events_in_next_turn(store, T0).await, vec!["sent"]);
}
