//! The management extension beyond listing by status and name (see `admin`): time ranges,
//! purging by filter, queue depths, an instance described with its journal's length and last
//! event time, and the workflow version an execution started with.

use std::sync::Arc;

use duraflow_core::{Event, EventKind};

use super::Manage;
use super::{
    at, commit, commit_of, event, finish, new_instance, new_task, payload, start, started, turn_of,
    user_event, LEASE, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{
    FetchFilter, InstanceStatus, ListFilter, ListOrder, MessageKind, NewInstance, NewMessage, Page,
};

/// Every combination of the listing's filters (a status, a name, a cursor after `i-0100`, a
/// queue) in each of its orders (by id; by creation time, with a creation range; finished
/// instances by their last change, with an update range), each with a label that names it:
/// what a store's plan test explains, so that every listing it can be asked for is checked.
pub fn listing_filters() -> Vec<(String, ListFilter)> {
    let mut out = Vec::new();
    for (order, expected) in [ListOrder::Id, ListOrder::Created, ListOrder::Finished]
        .into_iter()
        .enumerate()
    {
        for mask in 0..16u8 {
            let mut filter = ListFilter {
                statuses: if mask & 1 != 0 {
                    vec![InstanceStatus::Pending]
                } else {
                    Vec::new()
                },
                name: (mask & 2 != 0).then(|| "wf-1".to_owned()),
                after: (mask & 4 != 0).then(|| "i-0100".to_owned()),
                queue: (mask & 8 != 0).then(|| "q-2".to_owned()),
                limit: 10,
                ..ListFilter::default()
            };
            match expected {
                ListOrder::Created => filter.created_from = Some(duraflow_core::Timestamp(0)),
                ListOrder::Finished => {
                    filter.statuses = vec![InstanceStatus::Completed];
                    filter.updated_before = Some(duraflow_core::Timestamp(10_000));
                }
                ListOrder::Id => {}
            }
            if expected != ListOrder::Id && filter.after.is_some() {
                filter.after = Some("1000/i-0100".to_owned());
            }
            assert_eq!(filter.order(), expected);
            out.push((format!("order {order}, filters {mask:04b}"), filter));
        }
    }
    out
}

fn ids(page: &Page) -> Vec<&str> {
    page.instances.iter().map(|i| i.id.as_str()).collect()
}

/// Instance `id` created at `at(ms)`.
fn created(id: &str, ms: i64) -> NewInstance {
    NewInstance {
        created_at: at(ms),
        ..new_instance(id, "wf")
    }
}

/// `list` bounds creation and update times: `*_from` inclusive, `*_before` exclusive.
pub async fn list_filters_by_creation_and_update_time(store: Arc<dyn Store>) {
    for (id, ms) in [("t0", 0), ("t1", 1_000), ("t2", 2_000), ("t3", 3_000)] {
        store.create_instance(created(id, ms)).await.unwrap();
    }
    // t1 finishes at 5 s, t2 at 9 s; t0 and t3 stay pending (updated when created).
    finish(&*store, "t1", at(5_000), InstanceStatus::Completed).await;
    finish(&*store, "t2", at(9_000), InstanceStatus::Failed).await;
    let list = |filter: ListFilter| {
        let store = store.clone();
        async move { store.manage().list(filter).await.unwrap() }
    };
    let page = list(ListFilter {
        created_from: Some(at(1_000)),
        created_before: Some(at(3_000)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(&page), ["t1", "t2"]);
    let page = list(ListFilter {
        updated_from: Some(at(4_000)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(&page), ["t1", "t2"]);
    let page = list(ListFilter {
        updated_before: Some(at(9_000)),
        statuses: vec![InstanceStatus::Completed, InstanceStatus::Failed],
        ..ListFilter::default()
    })
    .await;
    assert_eq!(ids(&page), ["t1"], "finished before 9 s");
    let page = list(ListFilter {
        created_before: Some(at(0)),
        ..ListFilter::default()
    })
    .await;
    assert!(page.instances.is_empty(), "nothing was created before t0");
}

/// A listing with a creation-time range comes in creation order (then id), and one of finished
/// instances with an update-time range in the order they finished, page by page through
/// `<milliseconds>/<id>` cursors, whatever their ids' order; a listing by id refuses nothing it
/// did before, and a time-ordered listing refuses a cursor that is not one of its own.
pub async fn time_ranged_listings_come_in_time_order(store: Arc<dyn Store>) {
    // Ids in the reverse of creation order; two share a creation time.
    for (id, ms) in [
        ("e", 1_000),
        ("d", 2_000),
        ("c", 3_000),
        ("b", 3_000),
        ("a", 4_000),
    ] {
        store.create_instance(created(id, ms)).await.unwrap();
    }
    // They finish in yet another order: c, a, e (d and b stay pending).
    finish(&*store, "c", at(5_000), InstanceStatus::Completed).await;
    finish(&*store, "a", at(6_000), InstanceStatus::Failed).await;
    finish(&*store, "e", at(7_000), InstanceStatus::Cancelled).await;
    let pages = |filter: ListFilter| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut cursors = Vec::new();
            let mut filter = ListFilter { limit: 2, ..filter };
            loop {
                let page = store.manage().list(filter.clone()).await.unwrap();
                seen.extend(page.instances.iter().map(|i| i.id.clone()));
                match page.next {
                    Some(next) => {
                        cursors.push(next.clone());
                        filter.after = Some(next);
                    }
                    None => return (seen, cursors),
                }
            }
        }
    };
    let (seen, cursors) = pages(ListFilter {
        created_from: Some(at(0)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen, ["e", "d", "b", "c", "a"], "creation order, then id");
    assert_eq!(
        cursors,
        [format!("{}/d", at(2_000).0), format!("{}/c", at(3_000).0)]
    );
    let (seen, _) = pages(ListFilter {
        created_from: Some(at(2_000)),
        created_before: Some(at(4_000)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen, ["d", "b", "c"]);
    let (seen, cursors) = pages(ListFilter {
        statuses: vec![
            InstanceStatus::Completed,
            InstanceStatus::Failed,
            InstanceStatus::Cancelled,
        ],
        updated_before: Some(at(10_000)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen, ["c", "a", "e"], "the order they finished in");
    assert_eq!(cursors, [format!("{}/a", at(6_000).0)]);
    // With a running status among them, an update range lists by id.
    let (seen, _) = pages(ListFilter {
        statuses: vec![InstanceStatus::Pending, InstanceStatus::Completed],
        updated_from: Some(at(0)),
        ..ListFilter::default()
    })
    .await;
    assert_eq!(seen, ["b", "c", "d"]);
    let refused = store
        .manage()
        .list(ListFilter {
            created_from: Some(at(0)),
            after: Some("d".into()),
            ..ListFilter::default()
        })
        .await;
    match refused {
        Err(StoreError::Invalid(message)) => {
            assert!(message.contains("cursor \"d\""), "{message}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// `purge_finished` purges what its filter selects among finished instances, at most `max`
/// per call in id order, and leaves everything else; running statuses are refused.
pub async fn purge_finished_takes_only_finished_instances_a_batch_at_a_time(store: Arc<dyn Store>) {
    for i in 0..5 {
        let id = format!("done-{i}");
        store.create_instance(created(&id, 0)).await.unwrap();
        finish(&*store, &id, at(1_000 + i), InstanceStatus::Completed).await;
    }
    store.create_instance(created("late", 0)).await.unwrap();
    finish(&*store, "late", at(60_000), InstanceStatus::Completed).await;
    store.create_instance(created("failed", 0)).await.unwrap();
    finish(&*store, "failed", at(1_000), InstanceStatus::Failed).await;
    start(&*store, "running", vec![]).await;
    store.create_instance(created("pending", 0)).await.unwrap();

    let refused = store
        .manage()
        .purge_finished(
            ListFilter {
                statuses: vec![InstanceStatus::Running],
                ..ListFilter::default()
            },
            10,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "purging running instances is refused: {refused:?}"
    );

    // "Completed before 10 s", two at a time.
    let completed_before = ListFilter {
        statuses: vec![InstanceStatus::Completed],
        updated_before: Some(at(10_000)),
        ..ListFilter::default()
    };
    let mut batches = Vec::new();
    loop {
        let purged = store
            .manage()
            .purge_finished(completed_before.clone(), 2)
            .await
            .unwrap();
        if purged.is_empty() {
            break;
        }
        batches.push(purged);
    }
    assert_eq!(
        batches,
        [
            vec!["done-0", "done-1"],
            vec!["done-2", "done-3"],
            vec!["done-4"]
        ]
    );
    for i in 0..5 {
        assert!(store
            .instance(&format!("done-{i}"))
            .await
            .unwrap()
            .is_none());
    }
    let left = store.manage().list(ListFilter::default()).await.unwrap();
    assert_eq!(ids(&left), ["failed", "late", "pending", "running"]);

    // No statuses: every finished one, running and pending ones left alone.
    let purged = store
        .manage()
        .purge_finished(ListFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(purged, ["failed", "late"]);
    let left = store.manage().list(ListFilter::default()).await.unwrap();
    assert_eq!(ids(&left), ["pending", "running"]);
}

/// `queue_depths` counts, per queue, pending and running instances and ready, leased and
/// delayed tasks; finished work and empty queues are not reported.
pub async fn queue_depths_count_the_work_of_each_queue(store: Arc<dyn Store>) {
    for id in ["p1", "p2"] {
        let new = NewInstance {
            queue: "mail".into(),
            ..new_instance(id, "wf")
        };
        store.create_instance(new).await.unwrap();
    }
    // A running instance in "default" with three tasks, one of them visible only in an hour.
    store
        .create_instance(new_instance("r", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "r", T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = vec![
        new_task("r", 1, T0),
        new_task("r", 2, T0),
        new_task("r", 3, at(3_600_000)),
    ];
    commit(&*store, c).await.unwrap();
    let leased = store
        .fetch_tasks(&FetchFilter::default(), at(10), 1, LEASE)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    store
        .create_instance(new_instance("f", "wf"))
        .await
        .unwrap();
    finish(&*store, "f", at(20), InstanceStatus::Completed).await;

    let depths = store.manage().queue_depths(at(20)).await.unwrap();
    let queues: Vec<&str> = depths.iter().map(|d| d.queue.as_str()).collect();
    assert_eq!(queues, ["default", "mail"]);
    let default = &depths[0];
    assert_eq!(
        (
            default.pending_instances,
            default.running_instances,
            default.ready_tasks,
            default.leased_tasks,
            default.delayed_tasks,
        ),
        (0, 1, 1, 1, 1),
        "default: {default:?}"
    );
    let mail = &depths[1];
    assert_eq!(
        (
            mail.pending_instances,
            mail.running_instances,
            mail.ready_tasks
        ),
        (2, 0, 0),
        "mail: {mail:?}"
    );
}

/// An event at `at(ms)`: `started(seq)` when `seq` is 0, else `event(seq)`.
fn event_at(seq: u32, ms: i64) -> Event {
    let mut e = if seq == 0 { started(0) } else { event(seq) };
    e.at = at(ms);
    e
}

/// `describe` reads the current execution's journal length and the time of its last event
/// after each commit; a continue-as-new starts them again from the new execution's journal.
/// The other reads leave them unfilled.
pub async fn describe_reports_the_journal_length_and_last_event_time(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("j", "wf"))
        .await
        .unwrap();
    let described = |store: Arc<dyn Store>| async move {
        let info = store.manage().describe("j").await.unwrap().unwrap();
        (info.journal_len, info.last_event_at)
    };
    assert_eq!(described(store.clone()).await, (Some(0), None), "pending");
    assert!(store.manage().describe("nobody").await.unwrap().is_none());

    let work = turn_of(&*store, "j", T0).await;
    let mut c = commit_of(&work, at(10));
    c.new_events = vec![event_at(0, 10), event_at(1, 11)];
    commit(&*store, c).await.unwrap();
    assert_eq!(described(store.clone()).await, (Some(2), Some(at(11))));

    store.send(user_event("j", "more", at(20))).await.unwrap();
    let work = turn_of(&*store, "j", at(20)).await;
    let mut c = commit_of(&work, at(25));
    c.journal_base = 2;
    c.new_events = vec![event_at(2, 21), event_at(3, 24), event_at(4, 23)];
    commit(&*store, c).await.unwrap();
    assert_eq!(
        described(store.clone()).await,
        (Some(5), Some(at(23))),
        "the last event's time, not the latest"
    );
    let plain = store.instance("j").await.unwrap().unwrap();
    assert_eq!((plain.journal_len, plain.last_event_at), (None, None));
    let listed = store.manage().list(ListFilter::default()).await.unwrap();
    assert_eq!(
        listed.instances[0].journal_len, None,
        "lists leave it unfilled"
    );

    // A continue-as-new: the new execution's journal is empty until its first turn.
    store.send(user_event("j", "again", at(30))).await.unwrap();
    let work = turn_of(&*store, "j", at(30)).await;
    let mut c = commit_of(&work, at(31));
    c.journal_base = 5;
    c.new_events = vec![event_at(5, 31)];
    c.messages = vec![NewMessage {
        instance_id: "j".into(),
        kind: MessageKind::start(2),
        visible_at: at(31),
    }];
    c.continue_as_new = Some(payload("second"));
    commit(&*store, c).await.unwrap();
    let info = store.manage().describe("j").await.unwrap().unwrap();
    assert_eq!(info.execution, 2);
    assert_eq!((info.journal_len, info.last_event_at), (Some(0), None));
    let work = turn_of(&*store, "j", at(32)).await;
    let mut c = commit_of(&work, at(33));
    c.new_events = vec![event_at(0, 33)];
    commit(&*store, c).await.unwrap();
    assert_eq!(described(store.clone()).await, (Some(1), Some(at(33))));

    // A finished instance keeps its journal, so its length.
    finish(&*store, "j", at(40), InstanceStatus::Completed).await;
    assert_eq!(described(store.clone()).await, (Some(1), Some(at(33))));
}

/// The `workflow_started` that begins an execution sets the instance's version, which every
/// read shows; later commits keep it, and the next execution's start replaces it (with none,
/// when its engine registered none).
pub async fn the_started_version_is_kept_with_the_instance(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("v", "wf"))
        .await
        .unwrap();
    let version = |store: Arc<dyn Store>| async move {
        let read = store.instance("v").await.unwrap().unwrap().version;
        let described = store.manage().describe("v").await.unwrap().unwrap().version;
        let listed = store.manage().list(ListFilter::default()).await.unwrap();
        assert_eq!(read, described);
        assert_eq!(read, listed.instances[0].version);
        read
    };
    assert_eq!(version(store.clone()).await, None, "pending");
    let mut start = started(1);
    if let EventKind::WorkflowStarted { version, .. } = &mut start.kind {
        *version = Some("2".into());
    }
    let work = turn_of(&*store, "v", T0).await;
    let mut c = commit_of(&work, at(1));
    c.new_events = vec![start.clone()];
    commit(&*store, c).await.unwrap();
    assert_eq!(version(store.clone()).await.as_deref(), Some("2"));
    assert_eq!(store.journal("v", None).await.unwrap(), vec![start]);

    store.send(user_event("v", "next", at(2))).await.unwrap();
    let work = turn_of(&*store, "v", at(2)).await;
    let mut c = commit_of(&work, at(2));
    c.journal_base = 1;
    c.new_events = vec![event(2)];
    c.messages = vec![NewMessage {
        instance_id: "v".into(),
        kind: MessageKind::start(2),
        visible_at: at(2),
    }];
    c.continue_as_new = Some(payload("second"));
    commit(&*store, c).await.unwrap();
    assert_eq!(
        version(store.clone()).await.as_deref(),
        Some("2"),
        "until the next execution starts"
    );
    let work = turn_of(&*store, "v", at(3)).await;
    let mut c = commit_of(&work, at(3));
    c.new_events = vec![started(3)];
    commit(&*store, c).await.unwrap();
    assert_eq!(
        version(store.clone()).await,
        None,
        "started without a version"
    );
}
