//! Activity tasks: fetching under a lease, renewing, completing, releasing.

use std::collections::HashSet;
use std::sync::Arc;

use duraflow_core::OpId;

use super::two_leased_tasks;
use super::Manage;
use super::{
    at, commit, commit_of, failure, finish, new_task, payload, start, turn_of, user_event, LEASE,
    LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{InstanceStatus, MessageKind, OpResult, TaskCompletion, TaskRelease, TaskWork};

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Fetches exactly one task at `now`.
pub(super) async fn one_task(store: &dyn Store, now: duraflow_core::Timestamp) -> TaskWork {
    let mut tasks = store
        .fetch_tasks(&crate::FetchFilter::default(), now, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "expected one task at {now}: {tasks:?}");
    tasks.remove(0)
}

/// Completes one task and returns its own result.
async fn complete(
    store: &dyn Store,
    now: duraflow_core::Timestamp,
    task: &TaskWork,
    result: OpResult,
) -> Result<(), StoreError> {
    let mut results = store
        .complete_tasks(
            &crate::FetchFilter::default(),
            now,
            vec![TaskCompletion {
                id: task.id,
                token: task.token,
                result,
                claim_turn: None,
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    results.remove(0).map(|_| ())
}

/// Tasks are leased exclusively, oldest `visible_at` first, with attempt 1 and the fields they
/// were scheduled with.
pub async fn fetch_tasks_leases_exclusively(store: Arc<dyn Store>) {
    let (a, b, c) = (
        new_task("i", 1, T0),
        new_task("i", 2, at(-5)),
        new_task("i", 3, T0),
    );
    start(&*store, "i", vec![a.clone(), b.clone(), c.clone()]).await;

    let first = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 2, LEASE)
        .await
        .unwrap();
    let ops: Vec<_> = first.iter().map(|t| t.op.clone()).collect();
    assert_eq!(
        ops,
        [b.op.clone(), a.op.clone()],
        "by visible_at, then by creation"
    );
    let second = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].op, c.op);
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(LEASE_MS - 1), 10, LEASE)
        .await
        .unwrap()
        .is_empty());

    let all: Vec<&TaskWork> = first.iter().chain(&second).collect();
    let tokens: HashSet<_> = all.iter().map(|t| t.token).collect();
    assert_eq!(tokens.len(), 3, "every fetch issues a new token");
    let ids: HashSet<_> = all.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), 3);

    let got = &first[1];
    assert_eq!(got.instance_id, a.instance_id);
    assert_eq!(got.execution, a.execution);
    assert_eq!(got.op, a.op);
    assert_eq!(got.name, a.name);
    assert_eq!(got.input, a.input);
    assert_eq!(got.options, a.options);
    assert_eq!(got.scheduled_at, a.scheduled_at);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.lease_until, at(LEASE_MS));
    assert_eq!(first[0].scheduled_at, at(-5));
    assert_eq!(
        store
            .fetch_tasks(&crate::FetchFilter::default(), at(LEASE_MS), 0, LEASE)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// Many concurrent `fetch_tasks` calls never lease the same task twice.
pub async fn concurrent_fetch_tasks_never_lease_twice(store: Arc<dyn Store>) {
    const TASKS: u32 = 40;
    start(
        &*store,
        "i",
        (0..TASKS).map(|n| new_task("i", n, T0)).collect(),
    )
    .await;
    let fetchers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Bounded, so that a store that leases twice fails instead of looping.
                for _ in 0..TASKS {
                    let tasks = store
                        .fetch_tasks(&crate::FetchFilter::default(), T0, 3, LEASE)
                        .await
                        .unwrap();
                    if tasks.is_empty() {
                        break;
                    }
                    got.extend(tasks.into_iter().map(|t| (t.id, t.token, t.attempt)));
                    tokio::task::yield_now().await;
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for fetcher in fetchers {
        all.extend(fetcher.await.unwrap());
    }
    assert_eq!(
        all.len(),
        TASKS as usize,
        "each task is leased exactly once"
    );
    let ids: HashSet<_> = all.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), TASKS as usize);
    let tokens: HashSet<_> = all.iter().map(|(_, token, _)| *token).collect();
    assert_eq!(tokens.len(), TASKS as usize);
    assert!(all.iter().all(|(_, _, attempt)| *attempt == 1));
}

/// A task is not fetched before its scheduled time.
pub async fn delayed_tasks_are_not_visible_early(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, at(10_000))]).await;
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(9_999), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(T0).await.unwrap().task, Some(at(10_000)));
    let task = one_task(&*store, at(10_000)).await;
    assert_eq!(task.attempt, 1);
    assert_eq!(task.lease_until, at(10_000 + LEASE_MS));
}

/// Renewing extends the lease to `now + lease`: the task is not fetched again before then;
/// renewing with an old token or after expiry fails with `LeaseLost`.
pub async fn renew_task_extends_the_lease(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    let until = store
        .renew_task(first.id, first.token, at(20_000), LEASE, None)
        .await
        .unwrap();
    assert_eq!(until, at(20_000 + LEASE_MS));
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(LEASE_MS), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(49_999), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_due(at(20_000)).await.unwrap().task,
        Some(at(50_000))
    );

    let second = one_task(&*store, at(50_000)).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(second.token, first.token);
    assert_lease_lost(
        store
            .renew_task(first.id, first.token, at(50_000), LEASE, None)
            .await,
        "renew with the old token",
    );
    // The current token, but too late.
    assert_lease_lost(
        store
            .renew_task(second.id, second.token, second.lease_until, LEASE, None)
            .await,
        "renew after expiry",
    );
}

/// An expired task lease makes the task fetchable again with the next attempt; the old
/// attempt's completion is rejected and only one result reaches the instance.
pub async fn expired_task_lease_is_fetched_again_with_the_next_attempt(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 7, T0)]).await;
    let first = one_task(&*store, T0).await;
    assert_eq!(first.attempt, 1);
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(LEASE_MS - 1), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let second = one_task(&*store, at(LEASE_MS)).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(second.id, first.id);
    assert_ne!(second.token, first.token);

    let now = at(LEASE_MS + 1);
    assert_lease_lost(
        complete(&*store, now, &first, OpResult::Ok(payload("first"))).await,
        "completion with the old token",
    );
    complete(&*store, now, &second, OpResult::Ok(payload("second")))
        .await
        .unwrap();
    assert_not_found(
        complete(&*store, now, &second, OpResult::Ok(payload("again"))).await,
        "second completion",
    );
    assert_not_found(
        complete(&*store, now, &first, OpResult::Ok(payload("first"))).await,
        "completion of a completed task",
    );

    let work = turn_of(&*store, "i", now).await;
    assert_eq!(work.messages.len(), 1, "one result: {:?}", work.messages);
    assert_eq!(
        work.messages[0].kind,
        MessageKind::ActivityResult {
            execution: 1,
            op: OpId::new(None, 7),
            result: OpResult::Ok(payload("second")),
        }
    );
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(1_000_000), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.manage().stats().await.unwrap().tasks, 0);
}

/// A batch holding an old attempt's completion of a task and the current attempt's (an
/// attempt that outlived its lease, and the attempt that took the task over, finishing
/// together in one process) completes the task with the current attempt's result, whichever
/// comes first in the batch; the old one is rejected (`LeaseLost`, or `NotFound` once the
/// current one has completed the task). (Found by the fault
/// search: PostgreSQL sent only a task's first completion of a batch and answered the
/// current one `NotFound`, so its result was lost and the task waited for its lease to
/// expire.)
pub async fn a_batch_completes_a_task_with_its_current_attempt_whatever_the_order(
    store: Arc<dyn Store>,
) {
    for (instance, stale_first) in [("i", true), ("j", false)] {
        start(&*store, instance, vec![new_task(instance, 1, T0)]).await;
        let old = one_task(&*store, T0).await;
        let current = one_task(&*store, at(LEASE_MS)).await;
        assert_eq!(current.id, old.id);
        let completion = |task: &TaskWork, output: &str| TaskCompletion {
            id: task.id,
            token: task.token,
            result: OpResult::Ok(payload(output)),
            claim_turn: None,
        };
        let mut batch = vec![completion(&old, "old"), completion(&current, "current")];
        if !stale_first {
            batch.reverse();
        }
        let (old_at, current_at) = if stale_first { (0, 1) } else { (1, 0) };
        let now = at(LEASE_MS + 1);
        let results = store
            .complete_tasks(&crate::FetchFilter::default(), now, batch, None)
            .await
            .unwrap();
        assert_eq!(results.len(), 2);
        assert!(
            results[current_at].is_ok(),
            "the current attempt's completion (stale first: {stale_first}): {results:?}"
        );
        assert!(
            matches!(
                results[old_at],
                Err(StoreError::LeaseLost { .. } | StoreError::NotFound(_))
            ),
            "the old attempt's completion (stale first: {stale_first}): {results:?}"
        );
        let work = turn_of(&*store, instance, now).await;
        let kinds: Vec<_> = work.messages.iter().map(|m| m.kind.clone()).collect();
        assert_eq!(
            kinds,
            [MessageKind::ActivityResult {
                execution: 1,
                op: OpId::new(None, 1),
                result: OpResult::Ok(payload("current")),
            }],
            "stale first: {stale_first}"
        );
    }
    assert_eq!(store.manage().stats().await.unwrap().tasks, 0);
}

/// A completion made when its lease has run out is rejected and the task stays.
pub async fn completion_after_lease_expiry_is_rejected(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let task = one_task(&*store, T0).await;
    assert_lease_lost(
        complete(&*store, task.lease_until, &task, OpResult::Ok(payload(1))).await,
        "completion at lease_until",
    );
    let stats = store.manage().stats().await.unwrap();
    assert_eq!(stats.messages, 0);
    assert_eq!(stats.tasks, 1);
    let again = one_task(&*store, task.lease_until).await;
    assert_eq!(again.attempt, 2);
}

/// Completions post `ActivityResult` messages visible at `now`, in order; one rejected
/// completion in a batch does not affect the others.
pub async fn complete_tasks_posts_results_to_the_inbox(store: Arc<dyn Store>) {
    let (t1, t2) = two_leased_tasks(&*store, "i").await;
    let (t1, t2) = (&t1, &t2);

    let now = at(5);
    let results = store
        .complete_tasks(
            &crate::FetchFilter::default(),
            now,
            vec![
                TaskCompletion {
                    id: t1.id,
                    token: t2.token, // not t1's token
                    result: OpResult::Ok(payload("wrong")),
                    claim_turn: None,
                },
                TaskCompletion {
                    id: t2.id,
                    token: t2.token,
                    result: OpResult::Err(failure("it broke")),
                    claim_turn: None,
                },
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        matches!(results[0], Err(StoreError::LeaseLost { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    complete(&*store, now, t1, OpResult::Ok(payload("one")))
        .await
        .unwrap();

    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(4), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    let work = turn_of(&*store, "i", now).await;
    let kinds: Vec<_> = work.messages.iter().map(|m| m.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            MessageKind::ActivityResult {
                execution: 1,
                op: OpId::new(None, 2),
                result: OpResult::Err(failure("it broke")),
            },
            MessageKind::ActivityResult {
                execution: 1,
                op: OpId::new(None, 1),
                result: OpResult::Ok(payload("one")),
            },
        ]
    );
    assert!(work
        .messages
        .iter()
        .all(|m| m.visible_at == now && m.instance_id == "i"));
    assert_eq!(store.manage().stats().await.unwrap().tasks, 0);
}

/// A `Retry` release frees the task until `visible_at`; the next fetch is the next attempt.
pub async fn release_retry_counts_the_attempt(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    store
        .release_task(
            first.id,
            first.token,
            TaskRelease::Retry {
                visible_at: at(5_000),
                failure: failure("try again"),
            },
        )
        .await
        .unwrap();
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(4_999), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(T0).await.unwrap().task, Some(at(5_000)));

    let second = one_task(&*store, at(5_000)).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.last_failure,
        Some(failure("try again")),
        "the retry's failure"
    );
    assert_ne!(second.token, first.token);
    assert_lease_lost(
        store
            .release_task(first.id, first.token, TaskRelease::HandBack)
            .await,
        "release with the old token",
    );
    assert_lease_lost(
        complete(&*store, at(5_000), &first, OpResult::Ok(payload(1))).await,
        "completion with the old token",
    );
    let third_try = TaskRelease::Retry {
        visible_at: at(6_000),
        failure: failure("again"),
    };
    store
        .release_task(second.id, second.token, third_try)
        .await
        .unwrap();
    let third = one_task(&*store, at(6_000)).await;
    assert_eq!(third.attempt, 3);
}

/// A `HandBack` release makes the task visible at once and the attempt does not count.
pub async fn release_hand_back_does_not_count_the_attempt(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    assert_eq!(first.attempt, 1);
    store
        .release_task(first.id, first.token, TaskRelease::HandBack)
        .await
        .unwrap();
    let again = one_task(&*store, T0).await;
    assert_eq!(again.attempt, 1, "a handed-back attempt does not count");
    assert_ne!(again.token, first.token);
    assert_lease_lost(
        store
            .release_task(first.id, first.token, TaskRelease::HandBack)
            .await,
        "hand back with the old token",
    );

    let retry = TaskRelease::Retry {
        visible_at: at(1_000),
        failure: failure("failed once"),
    };
    store
        .release_task(again.id, again.token, retry)
        .await
        .unwrap();
    let second = one_task(&*store, at(1_000)).await;
    assert_eq!(second.attempt, 2);
    store
        .release_task(second.id, second.token, TaskRelease::HandBack)
        .await
        .unwrap();
    let still_second = one_task(&*store, at(1_000)).await;
    assert_eq!(still_second.attempt, 2);
    complete(&*store, at(1_000), &still_second, OpResult::Ok(payload(2)))
        .await
        .unwrap();
}

/// Renewing, releasing or completing a task that no longer exists fails with `NotFound`.
pub async fn gone_tasks_are_not_found(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let task = one_task(&*store, T0).await;
    complete(&*store, T0, &task, OpResult::Ok(payload(1)))
        .await
        .unwrap();

    assert_not_found(
        store.renew_task(task.id, task.token, T0, LEASE, None).await,
        "renew",
    );
    assert_not_found(
        store
            .release_task(task.id, task.token, TaskRelease::HandBack)
            .await,
        "release",
    );
    assert_not_found(
        complete(&*store, T0, &task, OpResult::Ok(payload(1))).await,
        "complete",
    );
}

/// When an instance finishes its tasks are deleted, even one that is leased: the worker's
/// renew, release and completion then fail with `NotFound`.
pub async fn tasks_of_finished_instances_are_gone(store: Arc<dyn Store>) {
    start(
        &*store,
        "i",
        vec![new_task("i", 1, T0), new_task("i", 2, at(10))],
    )
    .await;
    let leased = one_task(&*store, T0).await;
    finish(&*store, "i", at(1), InstanceStatus::Cancelled).await;

    assert_eq!(store.manage().stats().await.unwrap().tasks, 0);
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(100_000), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_not_found(
        store
            .renew_task(leased.id, leased.token, at(2), LEASE, None)
            .await,
        "renew",
    );
    assert_not_found(
        store
            .release_task(leased.id, leased.token, TaskRelease::HandBack)
            .await,
        "release",
    );
    assert_not_found(
        complete(&*store, at(2), &leased, OpResult::Ok(payload(1))).await,
        "complete",
    );
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}

/// A commit's `cancelled_tasks` deletes those operations' tasks of the instance's execution,
/// waiting or leased (the worker then loses its lease: renewing or completing fails), and
/// leaves the others alone.
pub async fn cancelled_tasks_are_deleted(store: Arc<dyn Store>) {
    start(
        &*store,
        "i",
        vec![
            new_task("i", 1, T0),
            new_task("i", 2, at(5)),
            new_task("i", 3, at(10)),
        ],
    )
    .await;
    let leased = one_task(&*store, T0).await;
    assert_eq!(leased.op, OpId::new(None, 1));
    store.send(user_event("i", "go", at(1))).await.unwrap();
    let work = turn_of(&*store, "i", at(1)).await;
    let mut c = commit_of(&work, at(1));
    c.cancelled_tasks = vec![OpId::new(None, 1), OpId::new(None, 3), OpId::new(None, 9)];
    commit(&*store, c).await.unwrap();

    assert_eq!(store.manage().stats().await.unwrap().tasks, 1);
    let left = store
        .fetch_tasks(&crate::FetchFilter::default(), at(100), 10, LEASE)
        .await
        .unwrap();
    let ops: Vec<_> = left.iter().map(|t| t.op.clone()).collect();
    assert_eq!(ops, [OpId::new(None, 2)]);
    let renewed = store
        .renew_task(leased.id, leased.token, at(2), LEASE, None)
        .await;
    assert!(
        renewed.is_err(),
        "a cancelled task's lease renewed: {renewed:?}"
    );
    let completed = complete(&*store, at(2), &leased, OpResult::Ok(payload(1))).await;
    assert!(
        completed.is_err(),
        "a cancelled task completed: {completed:?}"
    );
}
