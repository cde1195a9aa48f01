//! Lease owners: a store whose lock session ends (its process killed, or its connection
//! terminated) has its leases released by the other stores on the schema within about a
//! second, with their fencing tokens unchanged, so its late writes are still refused.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use duraflow_core::{ActivityOptions, OpId, Payload, Timestamp};
use duraflow_postgres::testing::{test_url, unique_schema};
use duraflow_postgres::{PostgresOptions, PostgresStore};
use duraflow_store::{
    FetchFilter, NewInstance, NewTask, OpResult, Store, StoreError, TaskCompletion, TaskWork,
    TurnCommit, TurnWork,
};
use sqlx::Row;

/// The leases the stores take: long enough that nothing here expires by itself.
const LEASE: Duration = Duration::from_secs(600);

/// How long the other store may take to release a dead owner's leases: one sweep interval
/// (1 s) and room for a busy machine.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(3);

async fn open(schema: &str) -> PostgresStore {
    let options = PostgresOptions {
        schema: schema.to_owned(),
        max_connections: 4,
        ..PostgresOptions::default()
    };
    PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap()
}

fn now() -> Timestamp {
    Timestamp::now_system()
}

fn instance(id: &str) -> NewInstance {
    NewInstance {
        id: id.to_owned(),
        name: "wf".into(),
        input: Payload::encode(&id).unwrap(),
        parent: None,
        queue: "default".into(),
        created_at: now(),
        start_at: None,
        options: Default::default(),
    }
}

/// Leases with `store` the first turn of a new instance `turn`, and the task of a new
/// instance `task` (whose first turn schedules it).
async fn lease_a_turn_and_a_task(store: &PostgresStore) -> (TurnWork, TaskWork) {
    let filter = FetchFilter::default();
    store.create_instance(instance("task")).await.unwrap();
    let first = fetch_turn(store, "task")
        .await
        .expect("the task's instance is due");
    let mut commit = TurnCommit::consuming(&first, now());
    commit.tasks = vec![NewTask {
        instance_id: "task".into(),
        execution: 1,
        op: OpId::new(None, 1),
        name: "activity".into(),
        input: Payload::encode(&1).unwrap(),
        options: ActivityOptions::default(),
        scheduled_at: now(),
    }];
    let results = store.commit_turns(vec![commit]).await.unwrap();
    assert!(results.into_iter().all(|r| r.is_ok()));
    let mut tasks = store.fetch_tasks(&filter, now(), 10, LEASE).await.unwrap();
    assert_eq!(tasks.len(), 1);
    let task = tasks.remove(0);
    assert_eq!(task.attempt, 1);

    store.create_instance(instance("turn")).await.unwrap();
    let turn = fetch_turn(store, "turn")
        .await
        .expect("the instance is due");
    (turn, task)
}

/// Fetches the turn of `id` with `store`, if it is due.
async fn fetch_turn(store: &PostgresStore, id: &str) -> Option<TurnWork> {
    store
        .fetch_turns(&FetchFilter::default(), now(), 10, LEASE, None)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.instance.id == id)
}

/// The `lease_owner` and `lease_until` of instance `turn` and of the task.
async fn leases(store: &PostgresStore) -> ((Option<i32>, Option<i64>), (Option<i32>, Option<i64>)) {
    let turn = sqlx::query("SELECT lease_owner, lease_until FROM instances WHERE id = 'turn'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let task = sqlx::query("SELECT lease_owner, lease_until FROM tasks")
        .fetch_one(store.pool())
        .await
        .unwrap();
    ((turn.get(0), turn.get(1)), (task.get(0), task.get(1)))
}

/// Waits until `done` holds, polling, and fails after `deadline`; returns the time it took.
async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if done().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::LeaseLost { .. })),
        "{what}: expected LeaseLost, got {result:?}"
    );
}

/// Store B takes over the turn and the task, and store A's old tokens are refused.
async fn takes_over(a: &PostgresStore, b: &PostgresStore, turn: &TurnWork, task: &TaskWork) {
    // Released, not re-leased: the tokens are the old ones, and still refused.
    let tokens: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT lease_token FROM instances WHERE id = 'turn'),
                (SELECT lease_token FROM tasks)",
    )
    .fetch_one(b.pool())
    .await
    .unwrap();
    assert_eq!(tokens, (turn.token.0, task.token.0));
    assert_lease_lost(
        a.renew_turn("turn", turn.token, now(), LEASE).await,
        "renewing a released turn lease",
    );
    assert_lease_lost(
        a.renew_task(task.id, task.token, now(), LEASE, None).await,
        "renewing a released task lease",
    );

    let turn_again = fetch_turn(b, "turn")
        .await
        .expect("the released turn is due");
    assert_ne!(turn_again.token, turn.token);
    let tasks = b
        .fetch_tasks(&FetchFilter::default(), now(), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "the released task is visible");
    assert_eq!(tasks[0].id, task.id);
    assert_ne!(tasks[0].token, task.token);
    assert_eq!(tasks[0].attempt, 2, "the dead owner's attempt counts");

    // The dead owner's late writes are refused, through any store.
    assert_lease_lost(
        a.renew_turn("turn", turn.token, now(), LEASE).await,
        "renewing the old turn lease",
    );
    let late = TurnCommit::consuming(turn, now());
    let results = b.commit_turns(vec![late]).await.unwrap();
    assert_lease_lost(
        results.into_iter().next().unwrap(),
        "committing the old turn",
    );
    assert_lease_lost(
        a.renew_task(task.id, task.token, now(), LEASE, None).await,
        "renewing the old task lease",
    );
    let completion = TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(Payload::encode(&"late").unwrap()),
        claim_turn: None,
    };
    let results = b
        .complete_tasks(&FetchFilter::default(), now(), vec![completion], None)
        .await
        .unwrap();
    assert_lease_lost(
        results.into_iter().next().unwrap(),
        "completing the old task",
    );
}

#[tokio::test]
async fn a_terminated_owner_session_has_its_leases_taken_over_and_fenced() {
    let schema = unique_schema("owners_kill");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let a_id = a
        .owner_id()
        .expect("a store holds an owner lock once connected");
    assert_ne!(b.owner_id(), Some(a_id));

    let (turn, task) = lease_a_turn_and_a_task(&a).await;
    let ((turn_owner, _), (task_owner, _)) = leases(&b).await;
    assert_eq!(turn_owner, Some(a_id), "the turn's lease carries its owner");
    assert_eq!(task_owner, Some(a_id), "the task's lease carries its owner");

    // A's lock session ends as it would when its process is SIGKILLed; A's pool lives on,
    // like a process that lost only that connection.
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend(backend_pid) FROM owners WHERE id = $1")
            .bind(a_id)
            .fetch_one(b.pool())
            .await
            .unwrap();
    assert!(killed);

    let took = wait_for(TAKEOVER_DEADLINE, "B releases A's leases", || async {
        let ((_, turn_until), (_, task_until)) = leases(&b).await;
        turn_until == Some(0) && task_until == Some(0)
    })
    .await;
    eprintln!("released {took:?} after the lock session ended");
    takes_over(&a, &b, &turn, &task).await;

    // A notices, takes a new id, and its new leases carry it; the old id's row is gone.
    wait_for(Duration::from_secs(5), "A takes a new owner id", || async {
        a.owner_id().is_some_and(|id| id != a_id)
    })
    .await;
    let a_new = a.owner_id().unwrap();
    let owners: Vec<i32> = sqlx::query_scalar("SELECT id FROM owners ORDER BY id")
        .fetch_all(b.pool())
        .await
        .unwrap();
    let mut expected = vec![a_new, b.owner_id().unwrap()];
    expected.sort_unstable();
    assert_eq!(owners, expected);
    a.create_instance(instance("later")).await.unwrap();
    fetch_turn(&a, "later").await.expect("A leases again");
    let owner: Option<i32> =
        sqlx::query_scalar("SELECT lease_owner FROM instances WHERE id = 'later'")
            .fetch_one(a.pool())
            .await
            .unwrap();
    assert_eq!(owner, Some(a_new));
}

#[tokio::test]
async fn a_dropped_store_has_its_leases_taken_over() {
    let schema = unique_schema("owners_drop");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let (turn, task) = lease_a_turn_and_a_task(&a).await;

    // Dropping the store without closing anything: its lock connection goes with it, as the
    // connections of a killed process do. A second handle keeps writing late.
    let late = open(&schema).await;
    drop(a);
    let took = wait_for(TAKEOVER_DEADLINE, "B releases A's leases", || async {
        let ((_, turn_until), (_, task_until)) = leases(&b).await;
        turn_until == Some(0) && task_until == Some(0)
    })
    .await;
    eprintln!("released {took:?} after the store was dropped");
    takes_over(&late, &b, &turn, &task).await;
}

#[tokio::test]
async fn owner_locks_of_different_schemas_do_not_meet() {
    // Each schema's ids start at 1: had the lock keys been the same, the second store could
    // not have taken its lock (and would have failed to connect).
    let first = open(&unique_schema("owners_s1")).await;
    let second = open(&unique_schema("owners_s2")).await;
    assert_eq!(first.owner_id(), Some(1));
    assert_eq!(second.owner_id(), Some(1));
}

#[tokio::test]
async fn a_store_does_not_release_its_own_or_a_live_stores_leases() {
    let schema = unique_schema("owners_live");
    let a = open(&schema).await;
    let b = open(&schema).await;
    let (turn, task) = lease_a_turn_and_a_task(&a).await;
    // Two more sweeps of each store, each of which would have released a dead owner's leases.
    let (a_from, b_from) = (a.owner_sweeps(), b.owner_sweeps());
    wait_for(
        Duration::from_secs(10),
        "two sweeps of each store",
        || async { a.owner_sweeps() >= a_from + 2 && b.owner_sweeps() >= b_from + 2 },
    )
    .await;
    let ((_, turn_until), (_, task_until)) = leases(&b).await;
    assert!(turn_until.unwrap() > now().0);
    assert!(task_until.unwrap() > now().0);
    a.renew_turn("turn", turn.token, now(), LEASE)
        .await
        .unwrap();
    a.renew_task(task.id, task.token, now(), LEASE, None)
        .await
        .unwrap();
}
