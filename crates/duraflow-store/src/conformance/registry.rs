//! The registry: announcements are upserts that keep the latest time, listed in order.

use std::sync::Arc;

use super::Manage;
use super::{at, T0};
use crate::error::StoreError;
use crate::registry::{RegisteredKind, Registration};
use crate::store::Store;

fn workflow(queue: &str, name: &str) -> Registration {
    Registration::new(RegisteredKind::Workflow, queue, name)
}

fn activity(queue: &str, name: &str) -> Registration {
    Registration::new(RegisteredKind::Activity, queue, name)
}

/// What is announced is listed by kind, queue and name, with the time it was announced.
pub async fn announcements_are_listed_in_order(store: Arc<dyn Store>) {
    assert!(store.manage().registrations().await.unwrap().is_empty());
    store
        .announce(
            vec![
                activity("default", "charge"),
                workflow("orders", "fulfil"),
                workflow("default", "fulfil"),
                workflow("default", "approve"),
            ],
            T0,
        )
        .await
        .unwrap();
    let listed: Vec<(Registration, _)> = store
        .manage()
        .registrations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.registration, r.last_seen))
        .collect();
    assert_eq!(
        listed,
        vec![
            (workflow("default", "approve"), T0),
            (workflow("default", "fulfil"), T0),
            (workflow("orders", "fulfil"), T0),
            (activity("default", "charge"), T0),
        ]
    );
}

/// Announcing again moves `last_seen` forward, never back, and adds no second row.
pub async fn announcing_again_keeps_the_latest_time(store: Arc<dyn Store>) {
    store
        .announce(vec![workflow("q", "a"), workflow("q", "b")], at(10))
        .await
        .unwrap();
    store
        .announce(vec![workflow("q", "a")], at(20))
        .await
        .unwrap();
    store
        .announce(vec![workflow("q", "b")], at(5))
        .await
        .unwrap();
    // Twice in one announcement is once.
    store
        .announce(vec![activity("q", "c"), activity("q", "c")], at(7))
        .await
        .unwrap();
    let listed: Vec<(String, _)> = store
        .manage()
        .registrations()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.registration.name, r.last_seen))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("a".into(), at(20)),
            ("b".into(), at(10)),
            ("c".into(), at(7))
        ]
    );
}

/// An empty name or queue is refused, and nothing of that announcement is recorded.
pub async fn invalid_announcements_record_nothing(store: Arc<dyn Store>) {
    let refused = store
        .announce(vec![workflow("q", "ok"), workflow("q", "")], T0)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    let refused = store.announce(vec![activity("", "x")], T0).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert!(store.manage().registrations().await.unwrap().is_empty());
}

/// A workflow's row keeps the version of its latest announcement: a later one replaces it
/// (with none, too), an earlier one changes nothing; an empty version is refused.
pub async fn a_workflow_keeps_the_version_of_its_latest_announcement(store: Arc<dyn Store>) {
    let versioned =
        |version: Option<&str>| workflow("q", "w").with_version(version.map(Into::into));
    let version = |store: Arc<dyn Store>| async move {
        let listed = store.manage().registrations().await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        (listed[0].registration.version.clone(), listed[0].last_seen)
    };
    store
        .announce(vec![versioned(Some("1"))], at(10))
        .await
        .unwrap();
    assert_eq!(version(store.clone()).await, (Some("1".into()), at(10)));
    store
        .announce(vec![versioned(Some("2"))], at(20))
        .await
        .unwrap();
    assert_eq!(version(store.clone()).await, (Some("2".into()), at(20)));
    store
        .announce(vec![versioned(Some("1"))], at(15))
        .await
        .unwrap();
    assert_eq!(
        version(store.clone()).await,
        (Some("2".into()), at(20)),
        "an older engine's start is not the latest"
    );
    store.announce(vec![versioned(None)], at(30)).await.unwrap();
    assert_eq!(version(store.clone()).await, (None, at(30)));
    let refused = store.announce(vec![versioned(Some(""))], at(40)).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
}
