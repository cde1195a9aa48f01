//! Flow control: priorities within a queue, and the limits of a [`QueueConfig`] (concurrency
//! per queue and per key, rate limits), which hold however many fetchers share the store and
//! never hold back the turns of instances already admitted; and the task concurrency limit,
//! which bounds the live leases of a queue's activity tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duraflow_core::Timestamp;

use super::{
    at, commit, commit_of, new_instance, new_task, payload, start, turn_of, user_event, LEASE,
    LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::queue_config::QueueConfig;
use crate::store::Store;
use crate::types::{
    CreateOutcome, FetchFilter, InstanceStatus, NewInstance, NewTask, OpResult, TaskClaim,
    TaskCompletion, TaskWork, TurnWork,
};

/// Instance `id` of workflow `wf` in `queue`, created (and due) at `at(ms)`, with `priority`
/// and concurrency `key`.
fn instance(id: &str, queue: &str, ms: i64, priority: i32, key: Option<&str>) -> NewInstance {
    let mut new = NewInstance {
        queue: queue.to_owned(),
        created_at: at(ms),
        ..new_instance(id, "wf")
    };
    new.options.priority = priority;
    new.options.concurrency_key = key.map(str::to_owned);
    new
}

/// The turns of `queues` fetched at `now`, at most `max` (leased).
async fn fetch(store: &dyn Store, queues: &[&str], now: Timestamp, max: usize) -> Vec<TurnWork> {
    store
        .fetch_turns(
            &FetchFilter::queues(queues.iter().copied()),
            now,
            max,
            LEASE,
            None,
        )
        .await
        .unwrap()
}

fn ids(work: &[TurnWork]) -> Vec<&str> {
    work.iter().map(|w| w.instance.id.as_str()).collect()
}

/// Commits `work` as a first turn that goes on running, or as a last turn that completes.
async fn commit_turn(store: &dyn Store, work: &TurnWork, now: Timestamp, complete: bool) {
    let mut c = commit_of(work, now);
    if complete {
        c.status = InstanceStatus::Completed;
        c.output = Some(payload("done"));
    }
    commit(store, c).await.unwrap();
}

/// Due work of higher priority is leased first, in due order among equal priorities; work that
/// is not due yet waits whatever its priority.
pub async fn higher_priority_is_leased_first(store: Arc<dyn Store>) {
    for (id, ms, priority) in [
        ("early-low", 0, -1),
        ("a", 1, 0),
        ("b", 2, 5),
        ("c", 3, 5),
        ("d", 4, 0),
        ("later-high", 50, 9),
    ] {
        let new = instance(id, "default", ms, priority, None);
        store.create_instance(new).await.unwrap();
    }
    let now = at(10);
    assert_eq!(ids(&fetch(&*store, &["default"], now, 2).await), ["b", "c"]);
    assert_eq!(
        ids(&fetch(&*store, &["default"], now, 100).await),
        ["a", "d", "early-low"]
    );
    assert_eq!(
        ids(&fetch(&*store, &["default"], at(50), 100).await),
        ["later-high"]
    );
}

/// Runs `instances` (ids with their concurrency keys) in `queue` to completion with 8 concurrent
/// fetchers (the deadline only guards against a hang), each instance in two turns (the first admits it and goes on running, the second
/// completes it); returns the most instances that ran at once, overall and per key.
async fn run_concurrently(
    store: Arc<dyn Store>,
    queue: &'static str,
    instances: Vec<(String, Option<String>)>,
) -> (usize, HashMap<String, usize>) {
    let total = instances.len();
    for (i, (id, key)) in instances.iter().enumerate() {
        let new = instance(id, queue, i as i64, 0, key.as_deref());
        store.create_instance(new).await.unwrap();
    }
    #[derive(Default)]
    struct Counts {
        running: usize,
        max: usize,
        by_key: HashMap<String, (usize, usize)>,
    }
    let counts = Arc::new(Mutex::new(Counts::default()));
    let done = Arc::new(AtomicUsize::new(0));
    let now = at(1_000);
    let mut fetchers = Vec::new();
    for _ in 0..8 {
        let (store, counts, done) = (store.clone(), counts.clone(), done.clone());
        fetchers.push(tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < total {
                let work = fetch(&*store, &[queue], now, 2).await;
                if work.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                for w in work {
                    let key = w.instance.options.concurrency_key.clone();
                    let first = w.instance.status == InstanceStatus::Pending;
                    {
                        let mut c = counts.lock().unwrap();
                        if first {
                            c.running += 1;
                            c.max = c.max.max(c.running);
                        } else {
                            // Counted down before the commit that finishes it, so the count
                            // is never below what the store counts.
                            c.running -= 1;
                        }
                        if let Some(key) = key {
                            let (now_running, max) = c.by_key.entry(key).or_default();
                            if first {
                                *now_running += 1;
                                *max = (*max).max(*now_running);
                            } else {
                                *now_running -= 1;
                            }
                        }
                    }
                    if first {
                        let mut c = commit_of(&w, now);
                        c.messages = vec![user_event(&w.instance.id, "next", now)];
                        commit(&*store, c).await.unwrap();
                    } else {
                        commit_turn(&*store, &w, now, true).await;
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    let all = async {
        for f in fetchers {
            f.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {total} instances completed",
                done.load(Ordering::SeqCst)
            )
        });
    let c = counts.lock().unwrap();
    let by_key = c
        .by_key
        .iter()
        .map(|(k, (_, max))| (k.clone(), *max))
        .collect();
    (c.max, by_key)
}

/// With a concurrency limit of 3, 8 concurrent fetchers never have more than 3 instances of the
/// queue running at once, and every instance completes.
pub async fn queue_concurrency_holds_under_concurrent_fetchers(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("limited").concurrency(3))
        .await
        .unwrap();
    let instances = (0..16).map(|i| (format!("i{i:02}"), None)).collect();
    let (max, _) = run_concurrently(store.clone(), "limited", instances).await;
    assert!(max <= 3, "{max} instances ran at once with a limit of 3");
    assert!(max >= 1);
}

/// With a per-key limit of 2, 8 concurrent fetchers never have more than 2 instances of a key
/// running at once, and every instance completes.
pub async fn key_concurrency_holds_under_concurrent_fetchers(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("keyed").key_concurrency(2))
        .await
        .unwrap();
    let instances = (0..18)
        .map(|i| (format!("i{i:02}"), Some(["a", "b", "c"][i % 3].to_owned())))
        .collect();
    let (_, by_key) = run_concurrently(store.clone(), "keyed", instances).await;
    assert_eq!(by_key.len(), 3, "{by_key:?}");
    for (key, max) in by_key {
        assert!(max <= 2, "{max} instances of key {key:?} ran at once");
    }
}

/// Without a configuration, one instance per key runs at a time; other keys, and the same key
/// in another queue, are not held back by it. Finishing the running one admits the next.
pub async fn keys_hold_back_only_their_own_key_and_queue(store: Arc<dyn Store>) {
    for (id, queue, ms, key) in [
        ("k1", "q1", 0, Some("k")),
        ("k2", "q1", 1, Some("k")),
        ("j1", "q1", 2, Some("j")),
        ("plain", "q1", 3, None),
        ("other-queue", "q2", 4, Some("k")),
    ] {
        store
            .create_instance(instance(id, queue, ms, 0, key))
            .await
            .unwrap();
    }
    let now = at(10);
    let first = fetch(&*store, &["q1", "q2"], now, 100).await;
    // Which are leased is the point here, not their order in the answer.
    let mut leased = ids(&first);
    leased.sort_unstable();
    assert_eq!(leased, ["j1", "k1", "other-queue", "plain"]);
    assert!(fetch(&*store, &["q1", "q2"], now, 100).await.is_empty());
    let k1 = first.iter().find(|w| w.instance.id == "k1").unwrap();
    commit_turn(&*store, k1, now, true).await;
    assert_eq!(ids(&fetch(&*store, &["q1"], at(11), 100).await), ["k2"]);
}

/// A fetch of a few turns whose first candidates all belong to a full key still finds the
/// instance of another key queued behind them.
pub async fn a_full_key_does_not_hide_other_keys_behind_it(store: Arc<dyn Store>) {
    store
        .create_instance(instance("k0", "q", 0, 0, Some("k")))
        .await
        .unwrap();
    let first = fetch(&*store, &["q"], at(1), 1).await;
    assert_eq!(ids(&first), ["k0"], "the key's first instance runs");
    for i in 1..=10 {
        let id = format!("k{i}");
        store
            .create_instance(instance(&id, "q", i, 0, Some("k")))
            .await
            .unwrap();
    }
    store
        .create_instance(instance("j", "q", 20, 0, Some("j")))
        .await
        .unwrap();
    let next = fetch(&*store, &["q"], at(30), 2).await;
    assert_eq!(
        ids(&next),
        ["j"],
        "ten instances of the full key k came first; j, behind them, is admitted"
    );
}

/// At most `starts` admissions per window `(now - per, now]`: the rest wait for the next
/// window, whatever runs.
pub async fn rate_limit_admits_so_many_per_window(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("rated").rate_limit(2, Duration::from_secs(10)))
        .await
        .unwrap();
    for i in 0..5 {
        let new = instance(&format!("r{i}"), "rated", i, 0, None);
        store.create_instance(new).await.unwrap();
    }
    let admitted = fetch(&*store, &["rated"], at(10), 100).await;
    assert_eq!(ids(&admitted), ["r0", "r1"]);
    for w in &admitted {
        commit_turn(&*store, w, at(10), true).await;
    }
    assert!(fetch(&*store, &["rated"], at(5_000), 100).await.is_empty());
    // The window (at(10), at(10_010)] no longer holds the first two admissions.
    assert!(fetch(&*store, &["rated"], at(10_009), 100).await.is_empty());
    assert_eq!(
        ids(&fetch(&*store, &["rated"], at(10_010), 100).await),
        ["r2", "r3"]
    );
    assert!(fetch(&*store, &["rated"], at(15_000), 100).await.is_empty());
    assert_eq!(
        ids(&fetch(&*store, &["rated"], at(20_010), 100).await),
        ["r4"]
    );
}

/// A limit configured on a queue that had none counts what the queue admitted before it: the
/// instances still running against its concurrency, and the admissions within its window
/// against its rate. (A store may track only what limits count; it must not forget these.)
pub async fn a_new_limit_counts_what_its_queue_admitted_before_it(store: Arc<dyn Store>) {
    // Two instances admitted while "late" had no limit; both still run.
    for (id, ms) in [("l0", 0), ("l1", 1)] {
        let new = instance(id, "late", ms, 0, None);
        store.create_instance(new).await.unwrap();
    }
    let running = fetch(&*store, &["late"], at(10), 100).await;
    assert_eq!(ids(&running), ["l0", "l1"]);
    for w in &running {
        commit_turn(&*store, w, at(10), false).await;
    }
    // Configured twice, as engines do at every start: the second changes nothing.
    for _ in 0..2 {
        store
            .configure_queue(QueueConfig::new("late").concurrency(2))
            .await
            .unwrap();
    }
    store
        .create_instance(instance("l2", "late", 20, 0, None))
        .await
        .unwrap();
    assert!(
        fetch(&*store, &["late"], at(30), 100).await.is_empty(),
        "the two instances admitted before the limit fill it"
    );
    store
        .send(user_event("l0", "finish", at(40)))
        .await
        .unwrap();
    let l0 = fetch(&*store, &["late"], at(40), 100).await;
    assert_eq!(ids(&l0), ["l0"]);
    commit_turn(&*store, &l0[0], at(40), true).await;
    assert_eq!(ids(&fetch(&*store, &["late"], at(50), 100).await), ["l2"]);

    // Two admissions (finished since) before a rate limit of two per 10 s.
    for (id, ms) in [("r0", 0), ("r1", 1)] {
        let new = instance(id, "late-rated", ms, 0, None);
        store.create_instance(new).await.unwrap();
    }
    for w in &fetch(&*store, &["late-rated"], at(100), 100).await {
        commit_turn(&*store, w, at(100), true).await;
    }
    // A shorter window first: the longer one that replaces it still counts both.
    for per in [1, 10] {
        let config = QueueConfig::new("late-rated").rate_limit(2, Duration::from_secs(per));
        store.configure_queue(config).await.unwrap();
    }
    store
        .create_instance(instance("r2", "late-rated", 200, 0, None))
        .await
        .unwrap();
    assert!(
        fetch(&*store, &["late-rated"], at(5_000), 100)
            .await
            .is_empty(),
        "the two admissions before the limit used up its window"
    );
    assert_eq!(
        ids(&fetch(&*store, &["late-rated"], at(10_100), 100).await),
        ["r2"]
    );
}

/// The limits hold back only admissions: the turns of an instance already running are leased
/// whenever they are due, with the queue full and its rate used up.
pub async fn limits_do_not_hold_back_running_turns(store: Arc<dyn Store>) {
    let config = QueueConfig::new("one")
        .concurrency(1)
        .rate_limit(1, Duration::from_secs(3600));
    store.configure_queue(config).await.unwrap();
    for (id, ms, key) in [("a", 0, Some("k")), ("b", 1, Some("k")), ("c", 2, None)] {
        store
            .create_instance(instance(id, "one", ms, 0, key))
            .await
            .unwrap();
    }
    let first = fetch(&*store, &["one"], at(10), 100).await;
    assert_eq!(ids(&first), ["a"]);
    commit_turn(&*store, &first[0], at(10), false).await;
    for i in 1..4 {
        let now = at(10 + i * 100);
        store.send(user_event("a", "more", now)).await.unwrap();
        let again = fetch(&*store, &["one"], now, 100).await;
        assert_eq!(ids(&again), ["a"], "turn {i} of the running instance");
        commit_turn(&*store, &again[0], now, false).await;
    }
    assert_eq!(
        store.instance("b").await.unwrap().unwrap().status,
        InstanceStatus::Pending
    );
}

/// A creation never claims a first turn that needs an admission (a limited queue, a key); a
/// fetch admits it instead.
pub async fn creation_claims_no_first_turn_that_needs_admission(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("one").concurrency(1))
        .await
        .unwrap();
    for new in [
        instance("limited", "one", 0, 0, None),
        instance("keyed", "default", 0, 0, Some("k")),
    ] {
        let (outcome, turn) = store.create_instance_claiming(new, LEASE).await.unwrap();
        assert!(matches!(outcome, CreateOutcome::Created), "{outcome:?}");
        assert!(turn.is_none(), "{turn:?}");
    }
    let work = fetch(&*store, &["one", "default"], at(1), 100).await;
    assert_eq!(ids(&work), ["limited", "keyed"]);
}

/// A batch of creations claims no first turn that needs an admission either (a limited queue, a
/// concurrency key), whatever it asks: a fetch admits them.
pub async fn a_batch_of_creations_claims_no_first_turn_that_needs_admission(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("one").concurrency(1))
        .await
        .unwrap();
    let created = store
        .create_instances_claiming(
            vec![
                instance("limited", "one", 0, 0, None),
                instance("keyed", "default", 0, 0, Some("k")),
            ],
            vec![true, true],
            LEASE,
        )
        .await
        .unwrap();
    for (outcome, turn) in &created {
        assert!(matches!(outcome, CreateOutcome::Created), "{outcome:?}");
        assert!(turn.is_none(), "{turn:?}");
    }
    let work = fetch(&*store, &["one", "default"], at(1), 100).await;
    assert_eq!(ids(&work), ["limited", "keyed"]);
}

/// `configure_queue` inserts or replaces a queue's configuration, which reads back as stored;
/// a limit that could never admit anything is refused.
pub async fn configure_queue_upserts(store: Arc<dyn Store>) {
    assert_eq!(store.queue_config("emails").await.unwrap(), None);
    let first = QueueConfig::new("emails").concurrency(5);
    store.configure_queue(first.clone()).await.unwrap();
    assert_eq!(store.queue_config("emails").await.unwrap(), Some(first));
    let second = QueueConfig::new("emails")
        .key_concurrency(3)
        .rate_limit(10, Duration::from_millis(1_500));
    store.configure_queue(second.clone()).await.unwrap();
    let other = QueueConfig::new("batch").concurrency(1).task_concurrency(4);
    store.configure_queue(other.clone()).await.unwrap();
    assert_eq!(
        store.queue_config("emails").await.unwrap(),
        Some(second.clone())
    );
    let mut all = store.queue_configs().await.unwrap();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all, [other, second.clone()]);
    for bad in [
        QueueConfig::new("emails").concurrency(0),
        QueueConfig::new("emails").key_concurrency(0),
        QueueConfig::new("emails").task_concurrency(0),
        QueueConfig::new("emails").rate_limit(0, Duration::from_secs(1)),
        QueueConfig::new("emails").rate_limit(1, Duration::ZERO),
    ] {
        match store.configure_queue(bad.clone()).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{bad:?}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(store.queue_config("emails").await.unwrap(), Some(second));
}

/// Task `seq` of instance `id` in `queue`, scheduled at `T0`.
fn task_in(id: &str, seq: u32, queue: &str) -> NewTask {
    let mut task = new_task(id, seq, T0);
    task.options.queue = Some(queue.to_owned());
    task
}

/// The tasks of `queues` fetched at `now`, at most `max` (leased).
async fn fetch_tasks(
    store: &dyn Store,
    queues: &[&str],
    now: Timestamp,
    max: usize,
) -> Vec<TaskWork> {
    store
        .fetch_tasks(
            &FetchFilter::queues(queues.iter().copied()),
            now,
            max,
            LEASE,
        )
        .await
        .unwrap()
}

/// Completes `task` at `now` (its lease must be live).
async fn complete_task(store: &dyn Store, task: &TaskWork, now: Timestamp) {
    let completion = TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(payload(task.op.to_string())),
        claim_turn: None,
    };
    let results = store
        .complete_tasks(&FetchFilter::default(), now, vec![completion], None)
        .await
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

fn task_queues(tasks: &[TaskWork]) -> Vec<&str> {
    tasks.iter().map(|t| t.options.queue_name()).collect()
}

/// With a task concurrency limit of 2 on queue `gpu`, 8 concurrent fetchers over 20 tasks never
/// hold more than 2 live leases of the queue at once, and every task completes.
pub async fn task_concurrency_holds_under_concurrent_fetchers(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("gpu").task_concurrency(2))
        .await
        .unwrap();
    let total = 20;
    let tasks = (1..=total).map(|seq| task_in("t", seq, "gpu")).collect();
    start(&*store, "t", tasks).await;
    let running = Arc::new(Mutex::new((0_usize, 0_usize)));
    let done = Arc::new(AtomicUsize::new(0));
    let now = at(1_000);
    let mut fetchers = Vec::new();
    for _ in 0..8 {
        let (store, running, done) = (store.clone(), running.clone(), done.clone());
        fetchers.push(tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < total as usize {
                let work = fetch_tasks(&*store, &["gpu"], now, 2).await;
                if work.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                {
                    let mut r = running.lock().unwrap();
                    r.0 += work.len();
                    r.1 = r.1.max(r.0);
                }
                for task in work {
                    tokio::task::yield_now().await;
                    // Counted down before the completion, so the count is never below what
                    // the store counts.
                    running.lock().unwrap().0 -= 1;
                    complete_task(&*store, &task, now).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let all = async {
        for f in fetchers {
            f.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {total} tasks completed",
                done.load(Ordering::SeqCst)
            )
        });
    assert_eq!(done.load(Ordering::SeqCst), total as usize);
    let max = running.lock().unwrap().1;
    assert!(
        max <= 2,
        "{max} tasks of the queue were leased at once with a limit of 2"
    );
    assert!(max >= 1);
    assert!(fetch_tasks(&*store, &["gpu"], now, 100).await.is_empty());
}

/// A queue's task limit holds back only that queue's tasks: those of other queues fetched
/// along with them are leased as usual, and a completion frees the slot for the next one.
pub async fn task_limits_hold_back_only_their_queue(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("gpu").task_concurrency(1))
        .await
        .unwrap();
    let tasks = vec![
        task_in("t", 1, "gpu"),
        task_in("t", 2, "gpu"),
        task_in("t", 3, "cpu"),
        task_in("t", 4, "gpu"),
        task_in("t", 5, "cpu"),
        task_in("t", 6, "default"),
    ];
    start(&*store, "t", tasks).await;
    let queues = ["gpu", "cpu", "default"];
    let first = fetch_tasks(&*store, &queues, at(1), 100).await;
    let mut got = task_queues(&first);
    got.sort_unstable();
    assert_eq!(got, ["cpu", "cpu", "default", "gpu"]);
    assert!(fetch_tasks(&*store, &queues, at(2), 100).await.is_empty());
    let gpu = first
        .iter()
        .find(|t| t.options.queue_name() == "gpu")
        .unwrap();
    complete_task(&*store, gpu, at(3)).await;
    let next = fetch_tasks(&*store, &queues, at(4), 100).await;
    assert_eq!(task_queues(&next), ["gpu"]);
    assert!(fetch_tasks(&*store, &["gpu"], at(5), 100).await.is_empty());
}

/// A commit's claim takes its first new tasks in order and stops at one of a queue with a
/// task limit: that one (and those after it) is left to a fetch, which enforces the limit.
pub async fn claims_take_no_task_of_a_limited_queue(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("gpu").task_concurrency(5))
        .await
        .unwrap();
    store
        .create_instance(new_instance("c", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "c", T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = vec![
        task_in("c", 1, "default"),
        task_in("c", 2, "gpu"),
        task_in("c", 3, "default"),
    ];
    c.claim_tasks = Some(TaskClaim {
        max: 10,
        lease: LEASE,
    });
    let mut results = store.commit_turns(vec![c]).await.unwrap();
    let committed = results.remove(0).unwrap();
    let claimed: Vec<String> = committed.tasks.iter().map(|t| t.name.clone()).collect();
    assert_eq!(claimed, ["activity-1"]);
    let gpu = fetch_tasks(&*store, &["gpu"], at(1), 100).await;
    assert_eq!(gpu.len(), 1);
    assert_eq!(gpu[0].name, "activity-2");
    assert_eq!(gpu[0].attempt, 1);
    let rest = fetch_tasks(&*store, &["default"], at(1), 100).await;
    let names: Vec<&str> = rest.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["activity-3"]);

    // A commit whose only new task is of the limited queue claims nothing.
    store.send(user_event("c", "more", at(2))).await.unwrap();
    let work = turn_of(&*store, "c", at(2)).await;
    let mut c = commit_of(&work, at(2));
    c.tasks = vec![task_in("c", 4, "gpu")];
    c.claim_tasks = Some(TaskClaim {
        max: 1,
        lease: LEASE,
    });
    let mut results = store.commit_turns(vec![c]).await.unwrap();
    assert!(results.remove(0).unwrap().tasks.is_empty());
    let gpu = fetch_tasks(&*store, &["gpu"], at(3), 100).await;
    let names: Vec<&str> = gpu.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["activity-4"]);
}

/// A task whose lease expired no longer holds a slot under its queue's task limit: a fetch
/// after the expiry leases one task again (the expired one, or another).
pub async fn an_expired_task_lease_frees_its_slot(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("gpu").task_concurrency(1))
        .await
        .unwrap();
    start(
        &*store,
        "t",
        vec![task_in("t", 1, "gpu"), task_in("t", 2, "gpu")],
    )
    .await;
    let first = fetch_tasks(&*store, &["gpu"], at(1), 10).await;
    assert_eq!(first.len(), 1);
    assert!(fetch_tasks(&*store, &["gpu"], at(LEASE_MS), 10)
        .await
        .is_empty());
    // At `at(1 + LEASE_MS)` the first lease has run out.
    let after = fetch_tasks(&*store, &["gpu"], at(1 + LEASE_MS), 10).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(fetch_tasks(&*store, &["gpu"], at(2 + LEASE_MS), 10)
        .await
        .is_empty());
}
