//! Queues and names: a fetch or a claim takes only work that passes its [`FetchFilter`]; work
//! of other queues and names stays, in its order, for a fetcher that serves it.

use std::sync::Arc;

use duraflow_core::Timestamp;

use super::{
    at, commit, commit_of, new_instance, new_task, payload, started, turn_of, user_event, LEASE, T0,
};
use crate::store::Store;
use crate::types::{
    FetchFilter, MessageKind, NewInstance, NewMessage, NewTask, OpResult, TaskCompletion,
};

/// Instance `id` of workflow `name` in `queue`, created at `created_at`.
fn instance_in(id: &str, name: &str, queue: &str, created_at: Timestamp) -> NewInstance {
    NewInstance {
        queue: queue.to_owned(),
        created_at,
        start_at: None,
        options: Default::default(),
        ..new_instance(id, name)
    }
}

/// Task `seq` of `id` (activity `activity-{seq}`) in `queue`.
fn task_in(id: &str, seq: u32, queue: &str, scheduled_at: Timestamp) -> NewTask {
    let mut task = new_task(id, seq, scheduled_at);
    task.options.queue = Some(queue.to_owned());
    task
}

/// The ids of the turns `filter` fetches at `now` (leased).
async fn turn_ids(store: &dyn Store, filter: &FetchFilter, now: Timestamp) -> Vec<String> {
    let work = store
        .fetch_turns(filter, now, 100, LEASE, None)
        .await
        .unwrap();
    work.into_iter().map(|w| w.instance.id).collect()
}

/// The activity names of the tasks `filter` fetches at `now` (leased).
async fn task_names(store: &dyn Store, filter: &FetchFilter, now: Timestamp) -> Vec<String> {
    let work = store.fetch_tasks(filter, now, 100, LEASE).await.unwrap();
    work.into_iter().map(|t| t.name).collect()
}

/// Creates `id` in the default queue and commits its first turn with `tasks`.
async fn schedule(store: &dyn Store, id: &str, tasks: Vec<NewTask>) {
    store.create_instance(new_instance(id, "wf")).await.unwrap();
    let work = turn_of(store, id, T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = tasks;
    commit(store, c).await.unwrap();
}

/// A fetch of turns takes only the queues it serves, in due order across them; the other
/// queues' turns stay and a fetcher that serves them takes them.
pub async fn fetch_turns_takes_only_the_served_queues(store: Arc<dyn Store>) {
    for (id, queue, ms) in [
        ("a", "emails", 1),
        ("b", "default", 2),
        ("c", "gpu", 3),
        ("d", "emails", 4),
        ("e", "gpu", 5),
    ] {
        store
            .create_instance(instance_in(id, "wf", queue, at(ms)))
            .await
            .unwrap();
    }
    let now = at(10);
    assert_eq!(
        turn_ids(&*store, &FetchFilter::queues(["nothing"]), now).await,
        Vec::<String>::new()
    );
    assert_eq!(
        turn_ids(&*store, &FetchFilter::queues(["gpu", "emails"]), now).await,
        ["a", "c", "d", "e"],
        "only the served queues, in the order their work became due"
    );
    assert_eq!(turn_ids(&*store, &FetchFilter::default(), now).await, ["b"]);
    assert_eq!(
        turn_ids(
            &*store,
            &FetchFilter::queues(["default", "gpu", "emails"]),
            now
        )
        .await,
        Vec::<String>::new(),
        "everything is leased"
    );
    let info = store.instance("c").await.unwrap().unwrap();
    assert_eq!(info.queue, "gpu");
    let info = store.instance("b").await.unwrap().unwrap();
    assert_eq!(info.queue, "default");
}

/// A fetch of turns that names workflows takes only theirs; the others stay due.
pub async fn fetch_turns_takes_only_the_served_workflows(store: Arc<dyn Store>) {
    for (id, name, ms) in [("x1", "x", 1), ("y1", "y", 2), ("x2", "x", 3)] {
        store
            .create_instance(instance_in(id, name, "default", at(ms)))
            .await
            .unwrap();
    }
    let now = at(10);
    let only_y = FetchFilter::default().names(["y"]);
    assert_eq!(turn_ids(&*store, &only_y, now).await, ["y1"]);
    let nothing = FetchFilter::default().names(Vec::<String>::new());
    assert_eq!(turn_ids(&*store, &nothing, now).await, Vec::<String>::new());
    let x_elsewhere = FetchFilter::queues(["emails"]).names(["x"]);
    assert_eq!(
        turn_ids(&*store, &x_elsewhere, now).await,
        Vec::<String>::new()
    );
    let x = FetchFilter::default().names(["x", "z"]);
    assert_eq!(turn_ids(&*store, &x, now).await, ["x1", "x2"]);
}

/// A fetch of tasks takes only the queues and activities it serves, in order; the others stay
/// for a fetcher that serves them.
pub async fn fetch_tasks_takes_only_the_served_queues_and_activities(store: Arc<dyn Store>) {
    schedule(
        &*store,
        "i",
        vec![
            task_in("i", 1, "emails", T0),
            task_in("i", 2, "default", T0),
            task_in("i", 3, "gpu", T0),
            task_in("i", 4, "gpu", T0),
            task_in("i", 5, "emails", T0),
        ],
    )
    .await;
    let now = at(1);
    let gpu_3 = FetchFilter::queues(["gpu", "default"]).names(["activity-3"]);
    assert_eq!(task_names(&*store, &gpu_3, now).await, ["activity-3"]);
    assert_eq!(
        task_names(&*store, &FetchFilter::default(), now).await,
        ["activity-2"]
    );
    let emails_and_gpu = FetchFilter::queues(["emails", "gpu"]);
    assert_eq!(
        task_names(&*store, &emails_and_gpu, now).await,
        ["activity-1", "activity-4", "activity-5"],
        "the rest of the served queues, in the order they were scheduled"
    );
}

/// Within a queue, and across the queues of one fetch, turns and tasks come in the order their
/// work became due, as without queues; `max` counts only what passes the filter.
pub async fn order_within_a_queue_is_unchanged(store: Arc<dyn Store>) {
    for (id, queue, ms) in [
        ("q1", "q", 5),
        ("o1", "other", 1),
        ("q2", "q", 2),
        ("q3", "q", 9),
    ] {
        store
            .create_instance(instance_in(id, "wf", queue, at(ms)))
            .await
            .unwrap();
    }
    let q = FetchFilter::queues(["q"]);
    let first = store.fetch_turns(&q, at(10), 2, LEASE, None).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|w| w.instance.id.as_str()).collect();
    assert_eq!(ids, ["q2", "q1"]);
    assert_eq!(turn_ids(&*store, &q, at(10)).await, ["q3"]);

    schedule(
        &*store,
        "t",
        vec![
            task_in("t", 1, "q", at(7)),
            task_in("t", 2, "other", at(1)),
            task_in("t", 3, "q", at(3)),
        ],
    )
    .await;
    let tasks = store.fetch_tasks(&q, at(10), 1, LEASE).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].name, "activity-3");
    assert_eq!(task_names(&*store, &q, at(10)).await, ["activity-1"]);
}

/// A completion claims the instance's turn only when the instance passes the completer's
/// filter; otherwise the turn stays due for a fetcher that serves it.
pub async fn completion_claims_only_a_served_turn(store: Arc<dyn Store>) {
    for id in ["e", "w"] {
        let queue = if id == "e" { "emails" } else { "default" };
        let name = if id == "e" { "wf" } else { "other" };
        store
            .create_instance(instance_in(id, name, queue, T0))
            .await
            .unwrap();
        let work = store
            .fetch_turns(&FetchFilter::queues([queue]), T0, 1, LEASE, None)
            .await
            .unwrap()
            .remove(0);
        let mut c = commit_of(&work, T0);
        c.tasks = vec![new_task(id, 1, T0)];
        commit(&*store, c).await.unwrap();
    }
    let tasks = store
        .fetch_tasks(&FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 2);
    let completions = tasks
        .iter()
        .map(|t| TaskCompletion {
            id: t.id,
            token: t.token,
            result: OpResult::Ok(payload("done")),
            claim_turn: Some(LEASE),
        })
        .collect();
    // Serves the default queue, workflow `wf` only: neither instance passes.
    let serves = FetchFilter::default().names(["wf"]);
    let results = store
        .complete_tasks(&serves, at(2), completions, None)
        .await
        .unwrap();
    for result in results {
        assert!(
            result.unwrap().turn.is_none(),
            "no claim outside the filter"
        );
    }
    assert_eq!(
        turn_ids(&*store, &FetchFilter::queues(["emails"]), at(2)).await,
        ["e"]
    );
    assert_eq!(
        turn_ids(&*store, &FetchFilter::default().names(["other"]), at(2)).await,
        ["w"]
    );

    // The same completion by a completer that serves the instance claims its turn.
    store
        .create_instance(instance_in("g", "wf", "gpu", T0))
        .await
        .unwrap();
    let gpu = FetchFilter::queues(["gpu"]);
    let work = store
        .fetch_turns(&gpu, at(3), 1, LEASE, None)
        .await
        .unwrap()
        .remove(0);
    let mut c = commit_of(&work, at(3));
    c.tasks = vec![task_in("g", 1, "gpu", at(3))];
    commit(&*store, c).await.unwrap();
    let task = store
        .fetch_tasks(&gpu, at(4), 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    let done = TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(payload("done")),
        claim_turn: Some(LEASE),
    };
    let mut results = store
        .complete_tasks(&gpu, at(5), vec![done], None)
        .await
        .unwrap();
    let turn = results
        .remove(0)
        .unwrap()
        .turn
        .expect("a served turn is claimed");
    assert_eq!(turn.instance.id, "g");
    assert_eq!(turn.instance.queue, "gpu");
}

/// An instance keeps its queue when it continues as new, and a child is created in the queue
/// its parent's commit gives it.
pub async fn queues_survive_continue_as_new_and_reach_children(store: Arc<dyn Store>) {
    let emails = FetchFilter::queues(["emails"]);
    store
        .create_instance(instance_in("p", "wf", "emails", T0))
        .await
        .unwrap();
    let work = store
        .fetch_turns(&emails, T0, 1, LEASE, None)
        .await
        .unwrap()
        .remove(0);
    let mut c = commit_of(&work, at(1));
    c.new_events = vec![started(1)];
    c.messages = vec![NewMessage {
        instance_id: "p".into(),
        kind: MessageKind::start(2),
        visible_at: at(1),
    }];
    c.continue_as_new = Some(payload("again"));
    c.new_instances = vec![instance_in("child", "wf", "emails", at(1))];
    commit(&*store, c).await.unwrap();

    assert_eq!(
        turn_ids(&*store, &FetchFilter::default(), at(2)).await,
        Vec::<String>::new()
    );
    let mut ids = turn_ids(&*store, &emails, at(2)).await;
    ids.sort();
    assert_eq!(ids, ["child", "p"]);
    let info = store.instance("p").await.unwrap().unwrap();
    assert_eq!((info.execution, info.queue.as_str()), (2, "emails"));
    let child = store.instance("child").await.unwrap().unwrap();
    assert_eq!(child.queue, "emails");
    // A message to an instance of another queue wakes it only for that queue.
    store.send(user_event("p", "ping", at(3))).await.unwrap();
    assert_eq!(
        turn_ids(&*store, &FetchFilter::default(), at(100_000)).await,
        Vec::<String>::new()
    );
}
