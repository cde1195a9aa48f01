//! The management extension beyond listing by status and name (see `admin`): time ranges,
//! purging by filter, and queue depths.

use std::sync::Arc;

use super::Manage;
use super::{at, commit, commit_of, finish, new_instance, new_task, start, turn_of, LEASE, T0};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{FetchFilter, InstanceStatus, ListFilter, NewInstance, Page};

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
