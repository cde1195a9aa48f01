//! Activity heartbeats: a renewal with details records them on the task, and the next
//! attempt's fetch returns them.

use std::sync::Arc;
use std::time::Duration;

use super::tasks::one_task;
use super::{assert_lease_lost, at, failure, new_task, payload, start, LEASE, LEASE_MS, T0};
use crate::store::Store;
use crate::types::TaskRelease;

/// Details written by a heartbeat come back with the task on its next fetch after the attempt
/// is released for a retry or handed back; a renewal without details keeps them, and the
/// latest heartbeat's details win.
pub async fn heartbeat_details_reach_the_next_attempt(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    assert_eq!(first.heartbeat_details, None, "a new task has no details");
    let until = store
        .renew_task(first.id, first.token, at(1_000), LEASE, Some(payload(10)))
        .await
        .unwrap();
    assert_eq!(until, at(1_000 + LEASE_MS));
    store
        .renew_task(first.id, first.token, at(2_000), LEASE, Some(payload(20)))
        .await
        .unwrap();
    store
        .renew_task(first.id, first.token, at(3_000), LEASE, None)
        .await
        .unwrap();
    let retry = TaskRelease::Retry {
        visible_at: at(4_000),
        failure: failure("boom"),
    };
    store
        .release_task(first.id, first.token, retry)
        .await
        .unwrap();

    let second = one_task(&*store, at(4_000)).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(second.heartbeat_details, Some(payload(20)));
    store
        .renew_task(second.id, second.token, at(5_000), LEASE, Some(payload(30)))
        .await
        .unwrap();
    store
        .release_task(second.id, second.token, TaskRelease::HandBack)
        .await
        .unwrap();
    let third = one_task(&*store, at(5_000)).await;
    assert_eq!(third.attempt, 2, "a hand-back does not count");
    assert_eq!(third.heartbeat_details, Some(payload(30)));
}

/// An attempt that heartbeats and then goes silent (its worker died) leaves its details for
/// the attempt that takes the task over once its lease expires. A heartbeat may shorten the
/// lease: the task is due again at the shorter expiry.
pub async fn heartbeat_details_survive_lease_expiry(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    let until = store
        .renew_task(
            first.id,
            first.token,
            at(1_000),
            Duration::from_secs(5),
            Some(payload("half way")),
        )
        .await
        .unwrap();
    assert_eq!(until, at(6_000), "a renewal may shorten the lease");
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(5_999), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_due(at(1_000)).await.unwrap().task,
        Some(at(6_000))
    );

    let second = one_task(&*store, at(6_000)).await;
    assert_eq!(second.attempt, 2);
    assert_ne!(second.token, first.token);
    assert_eq!(second.heartbeat_details, Some(payload("half way")));
}

/// A heartbeat with a lease that is no longer current (another attempt holds the task) or no
/// longer live (expired) is `LeaseLost` and writes nothing: neither its details nor its lease.
pub async fn a_stale_heartbeat_is_lease_lost_and_writes_nothing(store: Arc<dyn Store>) {
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let first = one_task(&*store, T0).await;
    store
        .renew_task(first.id, first.token, at(1_000), LEASE, Some(payload(1)))
        .await
        .unwrap();
    // Too late: the lease ran out at `1_000 + LEASE`.
    assert_lease_lost(
        store
            .renew_task(
                first.id,
                first.token,
                at(1_000 + LEASE_MS),
                LEASE,
                Some(payload(2)),
            )
            .await,
        "a heartbeat after the lease expired",
    );
    let second = one_task(&*store, at(1_000 + LEASE_MS)).await;
    assert_eq!(second.heartbeat_details, Some(payload(1)));
    // The old attempt comes back with the old token while the new one holds the lease.
    assert_lease_lost(
        store
            .renew_task(
                first.id,
                first.token,
                at(2_000 + LEASE_MS),
                LEASE,
                Some(payload(3)),
            )
            .await,
        "a heartbeat with a superseded token",
    );
    // The refused heartbeats changed nothing: the lease still runs out when the second
    // attempt's does, and the details are the first attempt's.
    assert!(store
        .fetch_tasks(
            &crate::FetchFilter::default(),
            at(2 * LEASE_MS + 999),
            10,
            LEASE
        )
        .await
        .unwrap()
        .is_empty());
    let third = one_task(&*store, at(2 * LEASE_MS + 1_000)).await;
    assert_eq!(third.attempt, 3);
    assert_eq!(third.heartbeat_details, Some(payload(1)));
}
