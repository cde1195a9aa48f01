//! Sends that claim: a message sent with [`Store::send_claiming`] may lease its instance's
//! next turn to the sender, in the same write, when the turn is free at once; otherwise the
//! message waits in the inbox as after a plain send.

use std::sync::Arc;

use super::Manage;
use super::{at, commit, commit_of, new_instance, start, turn_of, user_event, LEASE, LEASE_MS, T0};
use crate::error::StoreError;
use crate::queue_config::QueueConfig;
use crate::store::Store;
use crate::types::{FetchFilter, InstanceStatus, MessageKind, NewMessage, TurnWork};

/// The names of the external events in `turn`'s messages, in order.
fn event_names(turn: &TurnWork) -> Vec<&str> {
    turn.messages
        .iter()
        .filter_map(|m| super::event_name(&m.kind))
        .collect()
}

/// Sends `message` claiming, as a caller serving `filter` at `now` would.
async fn send_claiming(
    store: &dyn Store,
    message: NewMessage,
    filter: &FetchFilter,
    now: duraflow_core::Timestamp,
) -> Result<Option<TurnWork>, StoreError> {
    store.send_claiming(message, filter, now, LEASE, None).await
}

/// A message sent to a running instance whose turn is free: a store that claims leases the
/// turn to the sender with every visible message of the inbox in send order (an earlier one
/// first), the instance as stored and its journal; no fetch gets the turn while the lease
/// lasts, and committing it empties the inbox. A store that grants no claim leaves the turn
/// to a fetch, which finds the same messages. With `claim`, the store must claim.
pub(crate) async fn a_sent_message_claims_a_free_turn(store: Arc<dyn Store>, claim: bool) {
    start(&*store, "s", Vec::new()).await;
    store.send(user_event("s", "first", T0)).await.unwrap();
    let claimed = send_claiming(
        &*store,
        user_event("s", "second", at(1)),
        &FetchFilter::default(),
        at(1),
    )
    .await
    .unwrap();
    let turn = match claimed {
        Some(turn) => {
            assert!(
                store
                    .fetch_turns(&FetchFilter::default(), at(2), 10, LEASE, None)
                    .await
                    .unwrap()
                    .is_empty(),
                "a claimed turn is leased"
            );
            assert_eq!(
                store.next_due(at(2)).await.unwrap().turn,
                Some(at(1 + LEASE_MS)),
                "the instance is due again when the claim's lease ends"
            );
            turn
        }
        None => {
            assert!(!claim, "this store claims the free turn of a sent message");
            turn_of(&*store, "s", at(2)).await
        }
    };
    assert_eq!(turn.instance.id, "s");
    assert_eq!(turn.instance.status, InstanceStatus::Running);
    assert_eq!(event_names(&turn), ["first", "second"]);
    let journal = store.journal("s", None).await.unwrap();
    match &turn.journal {
        Ok(crate::Journal::Events(events)) => assert_eq!(events, &journal),
        other => panic!("without a cache the journal comes along: {other:?}"),
    }
    commit(&*store, commit_of(&turn, at(3))).await.unwrap();
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}

/// The suite's case of [`a_sent_message_claims_a_free_turn`]: a store may grant no claim.
pub async fn a_sent_message_may_claim_a_free_turn(store: Arc<dyn Store>) {
    a_sent_message_claims_a_free_turn(store, false).await;
}

/// A message sent to an instance whose turn somebody holds claims nothing: it waits in the
/// inbox, the holder's commit leaves it there, and the next turn takes it.
pub async fn a_sent_message_claims_no_held_turn(store: Arc<dyn Store>) {
    start(&*store, "h", Vec::new()).await;
    store.send(user_event("h", "held", T0)).await.unwrap();
    let held = turn_of(&*store, "h", at(1)).await;
    let claimed = send_claiming(
        &*store,
        user_event("h", "later", at(2)),
        &FetchFilter::default(),
        at(2),
    )
    .await
    .unwrap();
    assert!(claimed.is_none(), "{claimed:?}");
    commit(&*store, commit_of(&held, at(3))).await.unwrap();
    let next = turn_of(&*store, "h", at(3)).await;
    assert_eq!(event_names(&next), ["later"]);
}

/// A message sent by a caller that does not serve its instance's queue or workflow, or sent
/// for later, claims nothing: the instance is due for a fetcher that serves it, when the
/// message is visible.
pub async fn a_sent_message_claims_nothing_for_others_or_for_later(store: Arc<dyn Store>) {
    start(&*store, "o", Vec::new()).await;
    for filter in [
        FetchFilter::queues(["elsewhere"]),
        FetchFilter::default().names(["another-workflow"]),
    ] {
        let claimed = send_claiming(&*store, user_event("o", "e", T0), &filter, T0)
            .await
            .unwrap();
        assert!(claimed.is_none(), "{filter:?}: {claimed:?}");
    }
    let turn = turn_of(&*store, "o", at(1)).await;
    assert_eq!(event_names(&turn), ["e", "e"]);
    commit(&*store, commit_of(&turn, at(1))).await.unwrap();

    let claimed = send_claiming(
        &*store,
        user_event("o", "later", at(10)),
        &FetchFilter::default(),
        at(2),
    )
    .await
    .unwrap();
    assert!(claimed.is_none(), "{claimed:?}");
    assert!(store
        .fetch_turns(&FetchFilter::default(), at(9), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(event_names(&turn_of(&*store, "o", at(10)).await), ["later"]);
}

/// A message sent to an instance whose first turn needs an admission (its queue has a limit)
/// claims nothing: a fetch admits the instance and takes the start with the message.
pub async fn a_sent_message_claims_no_turn_that_needs_admission(store: Arc<dyn Store>) {
    store
        .configure_queue(QueueConfig::new("one").concurrency(1))
        .await
        .unwrap();
    let mut new = new_instance("limited", "wf");
    new.queue = "one".into();
    store.create_instance(new).await.unwrap();
    let filter = FetchFilter::queues(["one"]);
    let claimed = send_claiming(&*store, user_event("limited", "e", T0), &filter, T0)
        .await
        .unwrap();
    assert!(claimed.is_none(), "{claimed:?}");
    let work = store
        .fetch_turns(&filter, at(1), 10, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].messages.len(), 2);
    assert_eq!(work[0].messages[0].kind, MessageKind::start(1));
}

/// A claiming send is refused as a plain one is: `NotFound` for an unknown instance,
/// `InstanceFinished` for a finished one, and nothing is written.
pub async fn a_claiming_send_is_refused_as_a_send_is(store: Arc<dyn Store>) {
    let unknown = send_claiming(
        &*store,
        user_event("nobody", "e", T0),
        &FetchFilter::default(),
        T0,
    )
    .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    start(&*store, "f", Vec::new()).await;
    super::finish(&*store, "f", at(1), InstanceStatus::Completed).await;
    let finished = send_claiming(
        &*store,
        user_event("f", "e", at(2)),
        &FetchFilter::default(),
        at(2),
    )
    .await;
    assert!(
        matches!(finished, Err(StoreError::InstanceFinished { .. })),
        "{finished:?}"
    );
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}
