//! Creating instances and sending them messages.

use std::sync::Arc;

use super::Manage;
use super::{at, finish, new_instance, parent_link, payload, user_event, T0};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{CreateOutcome, InstanceStatus, Journal, MessageKind};

/// Creating an instance whose id is taken changes nothing and returns the existing instance.
pub async fn create_instance_is_idempotent(store: Arc<dyn Store>) {
    let first = new_instance("order-1", "checkout");
    assert_eq!(
        store.create_instance(first.clone()).await.unwrap(),
        CreateOutcome::Created
    );
    let before = store.instance("order-1").await.unwrap().unwrap();

    let mut again = new_instance("order-1", "something-else");
    again.input = payload("another input");
    again.parent = Some(parent_link("someone", 1));
    again.created_at = at(5_000);
    match store.create_instance(again).await.unwrap() {
        CreateOutcome::Existing(info) => assert_eq!(*info, before),
        other => panic!("expected Existing, got {other:?}"),
    }

    let after = store.instance("order-1").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(after.name, "checkout");
    assert_eq!(after.input, first.input);
    assert_eq!(after.parent, None);
    assert_eq!(after.created_at, T0);
    // Still exactly one start message.
    assert_eq!(store.manage().stats().await.unwrap().messages, 1);
    let work = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(5_000),
            10,
            super::LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].messages.len(), 1);
    assert_eq!(work[0].messages[0].kind, MessageKind::start(1));
}

/// A batch creates every free id with its start message, reports a taken id (and an id
/// repeated in the batch) as existing without changing it, answers in the order given, and
/// refuses the whole batch, writing nothing, when one id is invalid.
pub async fn create_instances_creates_a_batch(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("taken", "checkout"))
        .await
        .unwrap();
    let before = store.instance("taken").await.unwrap().unwrap();

    let mut batch: Vec<_> = (0..300)
        .map(|i| new_instance(&format!("batch-{i:03}"), "shipping"))
        .collect();
    batch.insert(7, new_instance("taken", "something-else"));
    batch.push(new_instance("batch-001", "repeated"));
    let outcomes = store.create_instances(batch).await.unwrap();
    assert_eq!(outcomes.len(), 302);
    for (i, outcome) in outcomes.iter().enumerate() {
        match i {
            7 => assert_eq!(outcome, &CreateOutcome::Existing(Box::new(before.clone()))),
            301 => match outcome {
                CreateOutcome::Existing(info) => {
                    assert_eq!(info.id, "batch-001");
                    assert_eq!(info.name, "shipping");
                }
                other => panic!("the repeated id: expected Existing, got {other:?}"),
            },
            _ => assert_eq!(outcome, &CreateOutcome::Created, "outcome {i}"),
        }
    }
    for i in [0, 1, 150, 299] {
        let info = store
            .instance(&format!("batch-{i:03}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.name, "shipping");
        assert_eq!(info.status, InstanceStatus::Pending);
    }
    assert_eq!(store.instance("taken").await.unwrap().unwrap(), before);
    // One start message each: 300 new ones and the first instance's.
    assert_eq!(store.manage().stats().await.unwrap().messages, 301);
    let work = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(5_000),
            1_000,
            super::LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 301);

    let refused = store
        .create_instances(vec![
            new_instance("fine-1", "shipping"),
            new_instance("", "shipping"),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(store.instance("fine-1").await.unwrap(), None);
    assert_eq!(store.create_instances(vec![]).await.unwrap(), vec![]);
}

/// A batch that asks to claim some first turns gets at most those (a store may grant none):
/// each claimed turn is leased, with its start message, and no fetch takes it while the lease
/// lasts; every other new instance is due for a fetch, and a taken id is claimed by nobody.
pub async fn create_instances_claiming_leases_only_what_it_asked_for(store: Arc<dyn Store>) {
    create_instances_claiming_leases(store, false).await;
}

/// The case of [`create_instances_claiming_leases_only_what_it_asked_for`]; with `claim`, the
/// store must claim every new instance's first turn that was asked for.
pub(crate) async fn create_instances_claiming_leases(store: Arc<dyn Store>, claim: bool) {
    store
        .create_instance(new_instance("taken", "checkout"))
        .await
        .unwrap();
    let batch: Vec<_> = ["c-0", "c-1", "taken", "c-3"]
        .into_iter()
        .map(|id| new_instance(id, "shipping"))
        .collect();
    let created = store
        .create_instances_claiming(batch, vec![true, false, true, true], super::LEASE)
        .await
        .unwrap();
    assert_eq!(created.len(), 4);
    assert!(matches!(created[2], (CreateOutcome::Existing(_), None)));
    let mut claimed = Vec::new();
    for (i, (outcome, turn)) in created.iter().enumerate() {
        if i != 2 {
            assert_eq!(outcome, &CreateOutcome::Created, "outcome {i}");
        }
        if let Some(work) = turn {
            assert!(
                [0, 3].contains(&i),
                "instance {i} was not asked to be claimed"
            );
            assert_eq!(work.instance.id, format!("c-{i}"));
            assert_eq!(work.messages.len(), 1);
            assert_eq!(work.messages[0].kind, MessageKind::start(1));
            claimed.push(work.instance.id.clone());
        }
    }
    let fetched = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(5_000),
            10,
            super::LEASE,
            None,
        )
        .await
        .unwrap();
    if claim {
        assert_eq!(
            claimed,
            ["c-0", "c-3"],
            "this store claims what it was asked to"
        );
    }
    let mut fetched: Vec<String> = fetched.into_iter().map(|w| w.instance.id).collect();
    fetched.sort();
    let mut expected: Vec<String> = ["c-0", "c-1", "c-3", "taken"]
        .into_iter()
        .map(str::to_owned)
        .filter(|id| !claimed.contains(id))
        .collect();
    expected.sort();
    assert_eq!(fetched, expected, "claimed: {claimed:?}");
    // A claim that lapses (its turn never committed) leaves the first turn to a fetch, its
    // start visible since the creation, not since the lapsed lease.
    let refetched = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(super::LEASE_MS + 1),
            10,
            super::LEASE,
            None,
        )
        .await
        .unwrap();
    let mut again: Vec<&str> = refetched.iter().map(|w| w.instance.id.as_str()).collect();
    again.sort_unstable();
    assert_eq!(again, claimed, "the lapsed claims are fetched again");
    for work in &refetched {
        assert_eq!(work.messages.len(), 1);
        assert_eq!(work.messages[0].kind, MessageKind::start(1));
        assert_eq!(work.messages[0].visible_at, T0, "{}", work.instance.id);
    }
}

/// A new instance is pending in execution 1 with an empty journal and a start message visible
/// from its creation time.
pub async fn create_instance_posts_a_start_message(store: Arc<dyn Store>) {
    let mut new = new_instance("child-1", "shipping");
    new.parent = Some(parent_link("order-1", 3));
    new.created_at = at(1_000);
    store.create_instance(new.clone()).await.unwrap();

    let info = store.instance("child-1").await.unwrap().unwrap();
    assert_eq!(info.id, "child-1");
    assert_eq!(info.name, "shipping");
    assert_eq!(info.status, InstanceStatus::Pending);
    assert_eq!(info.execution, 1);
    assert_eq!(info.input, new.input);
    assert_eq!(info.output, None);
    assert_eq!(info.failure, None);
    assert_eq!(info.parent, new.parent);
    assert_eq!(info.created_at, at(1_000));
    assert_eq!(info.updated_at, at(1_000));
    assert_eq!(store.journal("child-1", None).await.unwrap(), vec![]);
    assert_eq!(store.journal("child-1", Some(1)).await.unwrap(), vec![]);

    assert!(store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(999),
            10,
            super::LEASE,
            None
        )
        .await
        .unwrap()
        .is_empty());
    let work = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(1_000),
            10,
            super::LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    let work = &work[0];
    assert_eq!(work.instance, info);
    assert_eq!(work.journal, Ok(Journal::Events(vec![])));
    assert_eq!(work.messages.len(), 1);
    let start = &work.messages[0];
    assert_eq!(start.instance_id, "child-1");
    assert_eq!(start.kind, MessageKind::start(1));
    assert_eq!(start.visible_at, at(1_000));
}

/// Sending to an instance that does not exist fails with `NotFound`.
pub async fn send_to_an_unknown_instance_is_not_found(store: Arc<dyn Store>) {
    match store.send(user_event("nobody", "ping", T0)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}

/// Sending to a finished instance fails with `InstanceFinished` and stores nothing.
pub async fn send_to_a_finished_instance_is_refused(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("done", "wf"))
        .await
        .unwrap();
    finish(&*store, "done", T0, InstanceStatus::Completed).await;
    store
        .create_instance(new_instance("failed", "wf"))
        .await
        .unwrap();
    finish(&*store, "failed", T0, InstanceStatus::Failed).await;

    match store.send(user_event("done", "late", at(1))).await {
        Err(StoreError::InstanceFinished { id, status }) => {
            assert_eq!(id, "done");
            assert_eq!(status, "completed");
        }
        other => panic!("expected InstanceFinished, got {other:?}"),
    }
    match store.send(user_event("failed", "late", at(1))).await {
        Err(StoreError::InstanceFinished { id, status }) => {
            assert_eq!(id, "failed");
            assert_eq!(status, "failed");
        }
        other => panic!("expected InstanceFinished, got {other:?}"),
    }
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
    assert!(store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(1),
            10,
            super::LEASE,
            None
        )
        .await
        .unwrap()
        .is_empty());
}

/// An unknown instance has no state and no journal; an unknown execution has no journal.
pub async fn unknown_instances_and_executions_are_reported(store: Arc<dyn Store>) {
    assert_eq!(store.instance("ghost").await.unwrap(), None);
    match store.journal("ghost", None).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    store
        .create_instance(new_instance("real", "wf"))
        .await
        .unwrap();
    match store.journal("real", Some(2)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound for execution 2, got {other:?}"),
    }
    match store.journal("ghost", Some(1)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// What a start sets besides the input (priority, concurrency key, headers, policies) is kept
/// with the instance, read back by `instance` and handed out with its turns.
pub async fn options_are_kept_with_the_instance(store: Arc<dyn Store>) {
    let mut new = new_instance("opt-1", "checkout");
    new.options.priority = -3;
    new.options.concurrency_key = Some("customer-42".into());
    new.options.headers.insert("tenant".into(), "acme".into());
    new.options.retry = Some(duraflow_core::RetryPolicy::fixed(
        std::time::Duration::from_secs(2),
    ));
    new.options.cancellation = Some(
        duraflow_core::CancellationPolicy::new()
            .max_pending(std::time::Duration::from_secs(60))
            .max_duration(std::time::Duration::from_secs(3_600)),
    );
    store.create_instance(new.clone()).await.unwrap();
    store
        .create_instance(new_instance("plain", "checkout"))
        .await
        .unwrap();

    let info = store.instance("opt-1").await.unwrap().unwrap();
    assert_eq!(info.options, new.options);
    let plain = store.instance("plain").await.unwrap().unwrap();
    assert!(plain.options.is_default(), "{:?}", plain.options);

    let work = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 10, super::LEASE, None)
        .await
        .unwrap();
    let leased = work.iter().find(|w| w.instance.id == "opt-1").unwrap();
    assert_eq!(leased.instance.options, new.options);
}

/// A delayed start creates the instance at once (pending) but its first turn is not due before
/// its `start_at`, even when the instance is sent a message meanwhile (its first turn would
/// begin the execution without the start); `next_due` reports that time, and a creation that
/// would claim the first turn claims nothing.
pub async fn a_delayed_start_is_not_due_early(store: Arc<dyn Store>) {
    let mut new = new_instance("later", "report");
    new.start_at = Some(at(60_000));
    store.create_instance(new).await.unwrap();
    let mut sent = new_instance("later-sent", "report");
    sent.start_at = Some(at(60_000));
    store.create_instance(sent).await.unwrap();
    store
        .send(super::user_event("later-sent", "early", at(1)))
        .await
        .unwrap();
    let mut claimed = new_instance("later-claimed", "report");
    claimed.start_at = Some(at(60_000));
    let (outcome, turn) = store
        .create_instance_claiming(claimed, super::LEASE)
        .await
        .unwrap();
    assert_eq!(outcome, CreateOutcome::Created);
    assert!(turn.is_none(), "a delayed start was claimed");

    let info = store.instance("later").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Pending);
    let filter = crate::FetchFilter::default();
    let early = store
        .fetch_turns(&filter, at(59_999), 10, super::LEASE, None)
        .await
        .unwrap();
    assert!(early.is_empty(), "fetched before its start: {early:?}");
    assert_eq!(store.next_due(T0).await.unwrap().turn, Some(at(60_000)));

    let due = store
        .fetch_turns(&filter, at(60_000), 10, super::LEASE, None)
        .await
        .unwrap();
    let mut ids: Vec<_> = due.iter().map(|w| w.instance.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["later", "later-claimed", "later-sent"]);
    for w in &due {
        let kinds: Vec<_> = w.messages.iter().map(|m| &m.kind).collect();
        assert_eq!(
            kinds[0],
            &MessageKind::start(1),
            "{}: {kinds:?}",
            w.instance.id
        );
        let expected = if w.instance.id == "later-sent" { 2 } else { 1 };
        assert_eq!(kinds.len(), expected, "{}: {kinds:?}", w.instance.id);
    }
}
