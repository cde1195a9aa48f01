//! Checkpoints (commits that keep the turn's lease, [`TurnCommit::keep_lease`]) and turn lease
//! renewal.

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Event, Timestamp};

use super::{
    assert_lease_lost, at, commit, commit_of, event, event_name, failure, first_turn, journal_len,
    new_instance, payload, started, turn_of, user_event, LEASE, LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{InstanceStatus, TurnCommit, TurnWork};

/// A checkpoint of `work` at `now` that appends `events` after `base`, consumes nothing and
/// keeps the lease for [`LEASE`].
fn checkpoint(work: &TurnWork, now: Timestamp, base: usize, events: Vec<Event>) -> TurnCommit {
    TurnCommit {
        journal_base: base,
        new_events: events,
        consumed: Vec::new(),
        keep_lease: Some(LEASE),
        ..commit_of(work, now)
    }
}

/// Whether a fetch at `now` leases instance `id` (others it leases are abandoned).
async fn fetched(store: &dyn Store, id: &str, now: Timestamp) -> bool {
    let mut found = false;
    for work in store
        .fetch_turns(&crate::FetchFilter::default(), now, 100, LEASE, None)
        .await
        .unwrap()
    {
        found |= work.instance.id == id;
        store
            .abandon_turn(&work.instance.id, work.token, now)
            .await
            .unwrap();
    }
    found
}

/// A checkpoint applies its events and messages, and the lease stays with the turn until
/// `now + keep_lease`: a fetch after the first lease's expiry does not return the instance,
/// even with a visible message. The same token then commits the rest, and the journal is the
/// concatenation.
pub async fn a_checkpoint_keeps_and_extends_the_lease(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "a").await;
    let mut first = checkpoint(&work, at(1_000), 0, vec![started(1), event(2)]);
    first.consumed = work.messages.iter().map(|m| m.id).collect();
    commit(&*store, first).await.unwrap();
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2)],
        "a checkpoint's events are in the journal at once"
    );

    store
        .send(user_event("a", "later", at(1_000)))
        .await
        .unwrap();
    assert!(
        !fetched(&*store, "a", at(LEASE_MS + 500)).await,
        "the checkpoint extended the lease to {}",
        at(1_000 + LEASE_MS)
    );

    // Another checkpoint, then the final commit, with the same token.
    let second = checkpoint(&work, at(LEASE_MS + 500), 2, vec![event(3)]);
    commit(&*store, second).await.unwrap();
    let mut last = commit_of(&work, at(2 * LEASE_MS));
    last.journal_base = 3;
    last.new_events = vec![event(4)];
    last.consumed = Vec::new();
    commit(&*store, last).await.unwrap();
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2), event(3), event(4)]
    );
    let info = store.instance("a").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Running);

    // The final commit released the lease; the message sent meanwhile is delivered.
    let next = turn_of(&*store, "a", at(2 * LEASE_MS)).await;
    assert_ne!(next.token, work.token);
    let names: Vec<_> = next
        .messages
        .iter()
        .filter_map(|m| event_name(&m.kind))
        .collect();
    assert_eq!(names, ["later"]);
    assert_eq!(journal_len(&next), 4);
}

/// A checkpoint that finishes the instance or continues as new is refused as invalid and
/// writes nothing; the turn still holds its lease.
pub async fn a_checkpoint_that_ends_the_execution_is_refused(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "a").await;
    let with_status = |status, output, fail| {
        let mut c = checkpoint(&work, at(1), 0, vec![started(1)]);
        c.consumed = work.messages.iter().map(|m| m.id).collect();
        c.messages = vec![user_event("a", "x", T0)];
        c.status = status;
        c.output = output;
        c.failure = fail;
        c
    };
    let completed = with_status(InstanceStatus::Completed, Some(payload("done")), None);
    let failed = with_status(InstanceStatus::Failed, None, Some(failure("no")));
    let mut continued = with_status(InstanceStatus::Running, None, None);
    continued.continue_as_new = Some(payload("next"));
    for (what, c) in [
        ("completed", completed),
        ("failed", failed),
        ("continue_as_new", continued),
    ] {
        match commit(&*store, c).await {
            Err(StoreError::Invalid(message)) => assert!(
                message.contains("checkpoint"),
                "{what}: the refusal names the checkpoint: {message}"
            ),
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);
    let info = store.instance("a").await.unwrap().unwrap();
    assert_eq!((info.status, info.execution), (InstanceStatus::Pending, 1));

    // Nothing was consumed or sent, and the lease is still the turn's.
    let mut c = commit_of(&work, at(2));
    c.new_events = vec![started(1)];
    commit(&*store, c).await.unwrap();
    assert!(
        !fetched(&*store, "a", at(3)).await,
        "the start was consumed by the commit, no message was sent"
    );
}

/// A checkpoint deletes the messages it consumed; the ones it did not are delivered after the
/// turn's final commit, in order.
pub async fn a_checkpoint_consumes_only_its_messages(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store.send(user_event("a", "e1", T0)).await.unwrap();
    store.send(user_event("a", "e2", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    assert_eq!(work.messages.len(), 3);
    let mut first = checkpoint(&work, at(1), 0, vec![started(1), event(2)]);
    first.consumed = work.messages[..2].iter().map(|m| m.id).collect();
    commit(&*store, first).await.unwrap();
    let mut last = commit_of(&work, at(2));
    last.journal_base = 2;
    last.consumed = Vec::new();
    commit(&*store, last).await.unwrap();

    let next = turn_of(&*store, "a", at(3)).await;
    let names: Vec<_> = next
        .messages
        .iter()
        .filter_map(|m| event_name(&m.kind))
        .collect();
    assert_eq!(names, ["e2"], "e1 was consumed by the checkpoint");
    assert_eq!(next.messages.len(), 1);
}

/// When a checkpointed turn's lease runs out, the instance is fetched again (even with an
/// empty inbox) with the journal as checkpointed, and the old token is fenced.
pub async fn a_checkpointed_turn_whose_lease_runs_out_is_redone(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "a").await;
    let mut first = checkpoint(&work, at(1_000), 0, vec![started(1), event(2)]);
    first.consumed = work.messages.iter().map(|m| m.id).collect();
    commit(&*store, first).await.unwrap();
    assert!(!fetched(&*store, "a", at(LEASE_MS + 999)).await);

    let redo = turn_of(&*store, "a", at(LEASE_MS + 1_000)).await;
    assert_ne!(redo.token, work.token);
    assert!(redo.messages.is_empty());
    assert_eq!(
        journal_len(&redo),
        2,
        "the journal as the checkpoint left it"
    );

    let mut stale = commit_of(&work, at(LEASE_MS + 1_001));
    stale.journal_base = 2;
    stale.new_events = vec![event(3)];
    assert_lease_lost(
        commit(&*store, stale).await,
        "the old token after a new fetch",
    );
    let mut current = commit_of(&redo, at(LEASE_MS + 1_001));
    current.new_events = vec![event(3)];
    commit(&*store, current).await.unwrap();
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2), event(3)]
    );
    assert!(
        !fetched(&*store, "a", at(10 * LEASE_MS)).await,
        "a commit that ends the turn leaves nothing due"
    );
}

/// `renew_turn` moves the lease's expiry to `now + lease`: a fetch after the old expiry but
/// before the new one leases nothing, and the turn commits after its first lease would have
/// run out.
pub async fn renew_turn_extends_the_lease(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "a").await;
    let until = store
        .renew_turn("a", work.token, at(10_000), LEASE)
        .await
        .unwrap();
    assert_eq!(until, at(10_000 + LEASE_MS));
    assert!(!fetched(&*store, "a", at(LEASE_MS)).await);
    assert!(!fetched(&*store, "a", at(10_000 + LEASE_MS - 1)).await);

    let mut c = commit_of(&work, at(10_000 + LEASE_MS - 1));
    c.new_events = vec![started(1)];
    commit(&*store, c).await.unwrap();
    assert_eq!(store.journal("a", None).await.unwrap(), vec![started(1)]);
}

/// `renew_turn` with a token that is not the current lease is `LeaseLost` (also once the lease
/// has run out, or after the turn committed); an unknown instance is `NotFound`.
pub async fn renew_turn_fences_stale_tokens_and_unknown_instances(store: Arc<dyn Store>) {
    let old = first_turn(&*store, "a").await;
    assert_lease_lost(
        store.renew_turn("a", old.token, at(LEASE_MS), LEASE).await,
        "renewal at the lease's expiry",
    );
    let new = turn_of(&*store, "a", at(LEASE_MS)).await;
    assert_lease_lost(
        store
            .renew_turn("a", old.token, at(LEASE_MS + 1), LEASE)
            .await,
        "renewal with a replaced token",
    );
    let mut c = commit_of(&new, at(LEASE_MS + 1));
    c.new_events = vec![started(1)];
    commit(&*store, c).await.unwrap();
    assert_lease_lost(
        store
            .renew_turn("a", new.token, at(LEASE_MS + 2), LEASE)
            .await,
        "renewal after the commit",
    );
    match store
        .renew_turn("nobody", new.token, at(1), Duration::from_secs(1))
        .await
    {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// A checkpointed turn that is abandoned is redone at `retry_at`, even though the checkpoint
/// consumed its whole inbox; an abandoned turn that consumed nothing is too, as always.
pub async fn a_checkpointed_turn_that_is_abandoned_is_redone(store: Arc<dyn Store>) {
    let work = first_turn(&*store, "a").await;
    let mut first = checkpoint(&work, at(1), 0, vec![started(1)]);
    first.consumed = work.messages.iter().map(|m| m.id).collect();
    commit(&*store, first).await.unwrap();
    store.abandon_turn("a", work.token, at(500)).await.unwrap();
    assert!(!fetched(&*store, "a", at(499)).await);

    let redo = turn_of(&*store, "a", at(500)).await;
    assert!(redo.messages.is_empty());
    assert_eq!(journal_len(&redo), 1);
    let mut done = commit_of(&redo, at(501));
    done.new_events = vec![event(2)];
    commit(&*store, done).await.unwrap();
    assert!(
        !fetched(&*store, "a", at(10 * LEASE_MS)).await,
        "once a turn commits, an empty inbox leaves nothing due"
    );
}
