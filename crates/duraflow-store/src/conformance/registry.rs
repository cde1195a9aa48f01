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
