//! Listing, purging, `next_due`, stats and notifications.

use std::sync::Arc;

use duraflow_core::OpId;

use super::two_leased_tasks;
use super::Manage;
use super::{
    at, commit, commit_of, count, finish, fired, new_instance, new_task, start, turn_of,
    user_event, LEASE, LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{
    InstanceStatus, ListFilter, MessageKind, NewMessage, NextDue, OpResult, Page, TaskCompletion,
};

fn ids(page: &Page) -> Vec<&str> {
    page.instances.iter().map(|i| i.id.as_str()).collect()
}

/// `list` filters by status and by workflow name, and orders by id.
pub async fn list_filters_by_status_and_name(store: Arc<dyn Store>) {
    for (id, name) in [
        ("c1", "gamma"),
        ("b2", "beta"),
        ("a1", "alpha"),
        ("b1", "beta"),
        ("a2", "alpha"),
    ] {
        store.create_instance(new_instance(id, name)).await.unwrap();
    }
    finish(&*store, "a2", T0, InstanceStatus::Completed).await;
    finish(&*store, "b1", T0, InstanceStatus::Failed).await;
    start(&*store, "d1", vec![]).await; // running

    let list = |statuses: Vec<InstanceStatus>, name: Option<&str>| {
        let store = store.clone();
        let filter = ListFilter {
            statuses,
            name: name.map(str::to_owned),
            ..ListFilter::default()
        };
        async move { store.manage().list(filter).await.unwrap() }
    };

    let all = list(vec![], None).await;
    assert_eq!(ids(&all), ["a1", "a2", "b1", "b2", "c1", "d1"]);
    assert_eq!(all.next, None);
    assert_eq!(
        ids(&list(vec![InstanceStatus::Completed], None).await),
        ["a2"]
    );
    assert_eq!(
        ids(&list(
            vec![InstanceStatus::Completed, InstanceStatus::Failed],
            None
        )
        .await),
        ["a2", "b1"]
    );
    assert_eq!(
        ids(&list(vec![InstanceStatus::Pending], None).await),
        ["a1", "b2", "c1"]
    );
    assert_eq!(
        ids(&list(vec![InstanceStatus::Running], None).await),
        ["d1"]
    );
    assert_eq!(ids(&list(vec![], Some("alpha")).await), ["a1", "a2"]);
    assert_eq!(
        ids(&list(vec![InstanceStatus::Pending], Some("beta")).await),
        ["b2"]
    );
    assert!(list(vec![], Some("nope")).await.instances.is_empty());
    assert!(list(vec![InstanceStatus::Cancelled], None)
        .await
        .instances
        .is_empty());

    let a2 = &list(vec![], Some("alpha")).await.instances[1];
    assert_eq!(a2, &store.instance("a2").await.unwrap().unwrap());
    assert_eq!(a2.status, InstanceStatus::Completed);
}

/// A listing filtered by queue shows only that queue's instances, with the other filters.
pub async fn list_filters_by_queue(store: Arc<dyn Store>) {
    for (id, queue) in [
        ("e1", "emails"),
        ("d1", "default"),
        ("e2", "emails"),
        ("g1", "gpu"),
    ] {
        let mut new = new_instance(id, "wf");
        new.queue = queue.into();
        store.create_instance(new).await.unwrap();
    }
    let emails = ListFilter {
        queue: Some("emails".into()),
        ..ListFilter::default()
    };
    let page = store.manage().list(emails.clone()).await.unwrap();
    assert_eq!(ids(&page), ["e1", "e2"]);
    assert!(page.instances.iter().all(|i| i.queue == "emails"));
    let none = ListFilter {
        name: Some("other".into()),
        ..emails
    };
    assert!(store
        .manage()
        .list(none)
        .await
        .unwrap()
        .instances
        .is_empty());
}

/// Paging with the cursor returns every matching instance exactly once, in id order; the last
/// page has no cursor.
pub async fn list_pages_with_a_cursor(store: Arc<dyn Store>) {
    // Created out of order, so that creation order is not id order.
    let mut all: Vec<String> = (0..23).map(|i| format!("i-{:02}", (i * 7) % 23)).collect();
    for (n, id) in all.iter().enumerate() {
        let name = if n % 2 == 0 { "even" } else { "odd" };
        store.create_instance(new_instance(id, name)).await.unwrap();
    }
    all.sort();

    let pages = |name: Option<&str>, limit: usize| {
        let store = store.clone();
        let name = name.map(str::to_owned);
        async move {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let filter = ListFilter {
                    name: name.clone(),
                    limit,
                    after: after.clone(),
                    ..ListFilter::default()
                };
                let page = store.manage().list(filter).await.unwrap();
                assert!(pages.len() < 100, "paging does not end");
                after = page.next.clone();
                pages.push(page);
                if after.is_none() {
                    break pages;
                }
            }
        }
    };

    let by_five = pages(None, 5).await;
    let sizes: Vec<usize> = by_five.iter().map(|p| p.instances.len()).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    for page in &by_five[..4] {
        assert_eq!(
            page.next.as_deref(),
            page.instances.last().map(|i| i.id.as_str())
        );
    }
    let seen: Vec<&str> = by_five.iter().flat_map(ids).collect();
    assert_eq!(seen, all);

    // An exact fit leaves no cursor on the last page.
    let exact = pages(None, 23).await;
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0].instances.len(), 23);

    // With a filter, pages cover the matching instances only.
    let odd = pages(Some("odd"), 3).await;
    let seen: Vec<String> = odd.iter().flat_map(ids).map(str::to_owned).collect();
    let mut expected: Vec<String> = (0..23)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("i-{:02}", (n * 7) % 23))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(odd.iter().all(|p| p.instances.len() <= 3));
}

/// A listing with `limit: 0` returns pages of 100.
pub async fn list_limit_defaults_to_100(store: Arc<dyn Store>) {
    for i in 0..101 {
        store
            .create_instance(new_instance(&format!("i-{i:03}"), "wf"))
            .await
            .unwrap();
    }
    let first = store.manage().list(ListFilter::default()).await.unwrap();
    assert_eq!(first.instances.len(), 100);
    assert_eq!(first.next.as_deref(), Some("i-099"));
    let second = store
        .manage()
        .list(ListFilter {
            after: first.next,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&second), ["i-100"]);
    assert_eq!(second.next, None);
}

/// `purge` refuses a running instance, reports an unknown one, and deletes a finished one with
/// all it had.
pub async fn purge_refuses_running_and_deletes_finished(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("pending", "wf"))
        .await
        .unwrap();
    start(&*store, "p", vec![new_task("p", 1, at(50_000))]).await;
    match store.manage().purge("p").await {
        Err(StoreError::InstanceRunning(id)) => assert_eq!(id, "p"),
        other => panic!("expected InstanceRunning, got {other:?}"),
    }
    assert!(matches!(
        store.manage().purge("pending").await,
        Err(StoreError::InstanceRunning(_))
    ));
    assert_eq!(store.manage().purge("ghost").await, Ok(false));
    assert!(store.instance("p").await.unwrap().is_some());

    finish(&*store, "p", T0, InstanceStatus::Terminated).await;
    assert_eq!(store.manage().purge("p").await, Ok(true));
    assert_eq!(store.instance("p").await.unwrap(), None);
    assert!(matches!(
        store.journal("p", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.journal("p", Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        ids(&store.manage().list(ListFilter::default()).await.unwrap()),
        ["pending"]
    );
    let stats = store.manage().stats().await.unwrap();
    assert_eq!(count(&stats, InstanceStatus::Terminated), 0);
    assert_eq!(stats.tasks, 0);
    assert_eq!(
        stats.messages, 1,
        "only the pending instance's start message"
    );
    assert_eq!(store.manage().purge("p").await, Ok(false));
    // The id is free again.
    store
        .create_instance(new_instance("p", "wf"))
        .await
        .unwrap();
    assert_eq!(
        store.instance("p").await.unwrap().unwrap().status,
        InstanceStatus::Pending
    );
}

/// `next_due` finds the earliest future turn whatever its queue, priority or admission: pending
/// instances in several queues and priorities, and an admitted one whose lease expires.
pub async fn next_due_spans_every_queue_and_priority(store: Arc<dyn Store>) {
    for (id, queue, priority, ms) in [
        ("a5", "a", 5, 3_000),
        ("b0", "b", 0, 2_000),
        ("b-3", "b", -3, 4_000),
        ("leased", "default", 0, 500),
    ] {
        let mut new = new_instance(id, "wf");
        new.queue = queue.into();
        new.options.priority = priority;
        new.created_at = at(ms);
        store.create_instance(new).await.unwrap();
    }
    assert_eq!(store.next_due(T0).await.unwrap().turn, Some(at(500)));
    let work = turn_of(&*store, "leased", at(500)).await;
    // Tasks of two queues: the later queue (by name) has the earlier task.
    let mut c = commit_of(&work, at(500));
    c.keep_lease = Some(LEASE);
    c.tasks = [("q1", 1, 7_000), ("q2", 2, 6_000)]
        .into_iter()
        .map(|(queue, seq, ms)| {
            let mut task = new_task("leased", seq, at(ms));
            task.options.queue = Some(queue.into());
            task
        })
        .collect();
    commit(&*store, c).await.unwrap();
    assert_eq!(store.next_due(at(500)).await.unwrap().task, Some(at(6_000)));
    assert_eq!(
        store.next_due(at(6_000)).await.unwrap().task,
        Some(at(7_000))
    );
    let expected = [
        (500, 2_000),
        (2_000, 3_000),
        (3_000, 4_000),
        (4_000, 500 + LEASE_MS),
    ];
    for (now, next) in expected {
        assert_eq!(
            store.next_due(at(now)).await.unwrap().turn,
            Some(at(next)),
            "after {now} ms"
        );
    }
    assert_eq!(store.next_due(at(500 + LEASE_MS)).await.unwrap().turn, None);
}

/// `next_due` reports the earliest message visibility or lease expiry after `now` for turns,
/// and the earliest task visibility or lease expiry after `now` for tasks.
pub async fn next_due_reports_the_earliest_future_work(store: Arc<dyn Store>) {
    assert_eq!(store.next_due(T0).await.unwrap(), NextDue::default());

    let mut new = new_instance("n", "wf");
    new.created_at = at(1_000);
    store.create_instance(new).await.unwrap();
    assert_eq!(
        store.next_due(T0).await.unwrap(),
        NextDue {
            turn: Some(at(1_000)),
            task: None
        }
    );
    // Visible now is not "after now".
    assert_eq!(store.next_due(at(1_000)).await.unwrap().turn, None);

    let work = turn_of(&*store, "n", at(1_000)).await;
    assert_eq!(
        store.next_due(at(1_000)).await.unwrap().turn,
        Some(at(1_000 + LEASE_MS)),
        "the turn lease's expiry"
    );

    let mut c = commit_of(&work, at(1_000));
    c.tasks = vec![new_task("n", 1, at(5_000)), new_task("n", 2, at(9_000))];
    c.messages = vec![
        NewMessage {
            instance_id: "n".into(),
            kind: MessageKind::TimerFired {
                execution: 1,
                op: OpId::new(None, 3),
            },
            visible_at: at(8_000),
        },
        user_event("n", "late", at(12_000)),
    ];
    commit(&*store, c).await.unwrap();
    assert_eq!(
        store.next_due(at(1_000)).await.unwrap(),
        NextDue {
            turn: Some(at(8_000)),
            task: Some(at(5_000))
        }
    );

    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), at(5_000), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(task.len(), 1);
    assert_eq!(
        store.next_due(at(5_000)).await.unwrap(),
        NextDue {
            turn: Some(at(8_000)),
            task: Some(at(9_000))
        }
    );
    // Once the timer is taken, the late event is the next turn's work.
    let timer = turn_of(&*store, "n", at(8_000)).await;
    assert_eq!(timer.messages.len(), 1, "only the timer is visible at 8 s");
    commit(&*store, commit_of(&timer, at(8_000))).await.unwrap();
    assert_eq!(
        store.next_due(at(9_000)).await.unwrap(),
        NextDue {
            turn: Some(at(12_000)),
            task: Some(at(5_000 + LEASE_MS))
        }
    );
}

/// `stats` counts instances by status, waiting messages and tasks.
pub async fn stats_count_instances_messages_and_tasks(store: Arc<dyn Store>) {
    let empty = store.manage().stats().await.unwrap();
    assert!(InstanceStatus::ALL.iter().all(|s| count(&empty, *s) == 0));
    assert_eq!(empty.messages, 0);
    assert_eq!(empty.tasks, 0);

    start(
        &*store,
        "a",
        vec![new_task("a", 1, T0), new_task("a", 2, at(60_000))],
    )
    .await;
    store
        .create_instance(new_instance("b", "wf"))
        .await
        .unwrap();
    store.send(user_event("b", "x", T0)).await.unwrap();
    store.send(user_event("b", "y", at(60_000))).await.unwrap();
    store
        .create_instance(new_instance("c", "wf"))
        .await
        .unwrap();
    finish(&*store, "c", T0, InstanceStatus::Completed).await;
    store
        .create_instance(new_instance("d", "wf"))
        .await
        .unwrap();
    finish(&*store, "d", T0, InstanceStatus::Failed).await;

    let stats = store.manage().stats().await.unwrap();
    assert_eq!(count(&stats, InstanceStatus::Pending), 1);
    assert_eq!(count(&stats, InstanceStatus::Running), 1);
    assert_eq!(count(&stats, InstanceStatus::Completed), 1);
    assert_eq!(count(&stats, InstanceStatus::Failed), 1);
    assert_eq!(count(&stats, InstanceStatus::Cancelled), 0);
    assert_eq!(count(&stats, InstanceStatus::Terminated), 0);
    assert_eq!(stats.messages, 3, "b's start message and two events");
    assert_eq!(stats.tasks, 2, "leased or not, delayed or not");
}

/// A store with a notifier wakes `turns` waiters when a message becomes visible, `tasks`
/// waiters when a task does, and `instances` waiters when an instance finishes or continues
/// as new. (A store without one is polled; the test passes.)
pub async fn notifier_wakes_waiters(store: Arc<dyn Store>) {
    let Some(notifier) = store.notifier() else {
        return;
    };

    // Creating an instance: its start message.
    let turns = notifier.turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    assert!(fired(turns), "create_instance wakes turns");

    // A turn that schedules a task visible now.
    let work = turn_of(&*store, "a", T0).await;
    let tasks = notifier.tasks.notified();
    tokio::pin!(tasks);
    tasks.as_mut().enable();
    let mut c = commit_of(&work, T0);
    c.tasks = vec![new_task("a", 1, T0)];
    commit(&*store, c).await.unwrap();
    assert!(fired(tasks), "a commit with a task wakes tasks");

    // Sending a message visible now.
    let turns = notifier.turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    store.send(user_event("a", "x", T0)).await.unwrap();
    assert!(fired(turns), "send wakes turns");

    // Completing a task posts its result.
    let work = turn_of(&*store, "a", T0).await;
    commit(&*store, commit_of(&work, T0)).await.unwrap();
    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    let turns = notifier.turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    let done = TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(super::payload(1)),
        claim_turn: None,
    };
    store
        .complete_tasks(&crate::FetchFilter::default(), T0, vec![done], None)
        .await
        .unwrap();
    assert!(fired(turns), "complete_tasks wakes turns");

    // Handing a task back makes it visible now.
    store
        .create_instance(new_instance("b", "wf"))
        .await
        .unwrap();
    start(&*store, "c", vec![new_task("c", 1, T0)]).await;
    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    let tasks = notifier.tasks.notified();
    tokio::pin!(tasks);
    tasks.as_mut().enable();
    store
        .release_task(task.id, task.token, crate::types::TaskRelease::HandBack)
        .await
        .unwrap();
    assert!(fired(tasks), "a hand-back wakes tasks");

    // Continuing as new.
    let work = turn_of(&*store, "a", T0).await;
    let instances = notifier.instances.notified();
    tokio::pin!(instances);
    instances.as_mut().enable();
    let mut c = commit_of(&work, T0);
    c.continue_as_new = Some(super::payload(2));
    commit(&*store, c).await.unwrap();
    assert!(fired(instances), "continue-as-new wakes instances");

    // Finishing.
    let instances = notifier.instances.notified();
    tokio::pin!(instances);
    instances.as_mut().enable();
    finish(&*store, "b", T0, InstanceStatus::Completed).await;
    assert!(fired(instances), "finishing wakes instances");
}

/// A message posted to an instance that is already due (a task's result, or a message a
/// commit sends) wakes `turns` waiters too: a dispatcher may have passed the instance over
/// while the posting write held it (PostgreSQL's fetches skip locked rows), and nothing else
/// would wake it. (A store without a notifier is polled; the test passes.)
pub async fn a_message_to_an_instance_already_due_wakes_turns(store: Arc<dyn Store>) {
    let Some(notifier) = store.notifier() else {
        return;
    };
    let tasks = two_leased_tasks(&*store, "a").await;
    let complete = |task: &crate::TaskWork| TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(super::payload(1)),
        claim_turn: None,
    };
    store
        .complete_tasks(
            &crate::FetchFilter::default(),
            T0,
            vec![complete(&tasks.0)],
            None,
        )
        .await
        .unwrap();

    // `a` is due with the first result; the second is posted to it.
    let turns = notifier.turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    store
        .complete_tasks(
            &crate::FetchFilter::default(),
            T0,
            vec![complete(&tasks.1)],
            None,
        )
        .await
        .unwrap();
    assert!(
        fired(turns),
        "a result posted to a due instance wakes turns"
    );

    // `b`'s commit sends `a`, still due, a message.
    store
        .create_instance(new_instance("b", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "b", T0).await;
    let turns = notifier.turns.notified();
    tokio::pin!(turns);
    turns.as_mut().enable();
    let mut c = commit_of(&work, T0);
    c.messages = vec![user_event("a", "x", T0)];
    commit(&*store, c).await.unwrap();
    assert!(fired(turns), "a message sent to a due instance wakes turns");
}

/// A store with a notifier wakes the watchers of an instance ([`crate::Notifier::watch`])
/// when a commit finishes it or continues it as new, once the commit has returned.
pub async fn notifier_wakes_the_watchers_of_a_finished_instance(store: Arc<dyn Store>) {
    let Some(notifier) = store.notifier() else {
        return;
    };
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store
        .create_instance(new_instance("b", "wf"))
        .await
        .unwrap();

    {
        let a = notifier.watch("a");
        let changed = a.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let seen = a.changes();
        let work = turn_of(&*store, "a", T0).await;
        let mut c = commit_of(&work, T0);
        c.continue_as_new = Some(super::payload(2));
        commit(&*store, c).await.unwrap();
        assert!(
            fired(changed),
            "continue-as-new wakes the instance's watchers"
        );
        assert!(
            a.finished_after(seen).is_none(),
            "an instance that goes on is handed over as nothing"
        );
    }
    {
        let b = notifier.watch("b");
        let changed = b.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let seen = b.changes();
        finish(&*store, "b", T0, InstanceStatus::Completed).await;
        assert!(fired(changed), "finishing wakes the instance's watchers");
        // A store may hand the finished state over (the workspace's three do; their own tests
        // say so, with `optional`'s case); what it hands over is what a read returns.
        if let Some(handed) = b.finished_after(seen) {
            let read = store.instance("b").await.unwrap().unwrap();
            assert_eq!(
                handed, read,
                "the state handed over is the instance as stored"
            );
        }
    }
    assert_eq!(notifier.watched_instances(), 0, "dropped watches are gone");
}

/// `checkpoint` keeps everything, and the store goes on working after it.
pub async fn checkpoint_keeps_everything_and_the_store_goes_on(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store.send(user_event("a", "e", T0)).await.unwrap();
    store.checkpoint().await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    assert_eq!(work.messages.len(), 2, "the start and the event");
    store
        .create_instance(new_instance("b", "wf"))
        .await
        .unwrap();
    store.checkpoint().await.unwrap();
    let stats = store.manage().stats().await.unwrap();
    let total: u64 = stats.instances.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 2);
}
