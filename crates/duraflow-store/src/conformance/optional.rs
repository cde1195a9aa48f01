//! Cases for what a store may offer beyond the contract, which [`conformance_tests!`]
//! does not run: a store that offers it runs the case from its own tests. The suite's own case
//! holds every store to the rest (what a store hands over, if anything, equals a read).
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::sync::Arc;

use super::{finish, new_instance, T0};
use crate::notify::fired;
use crate::store::Store;
use crate::types::InstanceStatus;

/// A store that hands a finished instance's state to its watchers in its own process (memory,
/// SQLite and PostgreSQL do), so that a waiting client need not read it, hands it over at each
/// finish, as a read returns it; an unwatched instance's finish keeps nothing.
pub async fn a_finished_instance_is_handed_to_its_watchers(store: Arc<dyn Store>) {
    let notifier = store
        .notifier()
        .expect("the store wakes waiters in its process");
    for (id, status) in [
        ("done", InstanceStatus::Completed),
        ("broken", InstanceStatus::Failed),
    ] {
        store.create_instance(new_instance(id, "wf")).await.unwrap();
        let watch = notifier.watch(id);
        let changed = watch.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let seen = watch.changes();
        finish(&*store, id, T0, status).await;
        assert!(fired(changed), "finishing wakes the watcher of {id}");
        let read = store.instance(id).await.unwrap().unwrap();
        assert_eq!(read.status, status);
        assert_eq!(
            watch.finished_after(seen),
            Some(read),
            "the finish of {id} hands over the instance as stored"
        );
    }
    store
        .create_instance(new_instance("unwatched", "wf"))
        .await
        .unwrap();
    finish(&*store, "unwatched", T0, InstanceStatus::Completed).await;
    assert_eq!(notifier.watched_instances(), 0, "nothing is kept for it");
}

/// A store that claims the turns of sent messages (memory, SQLite and PostgreSQL do, see
/// `Store::send_claiming`) claims a free one: the case of the suite, with the claim required.
pub async fn a_sent_message_claims_a_free_turn(store: Arc<dyn Store>) {
    super::sends::a_sent_message_claims_a_free_turn(store, true).await;
}

/// A store that claims the first turns of the instances a batch creates (memory, SQLite and
/// PostgreSQL do, see `Store::create_instances_claiming`) claims each one asked for: the case
/// of the suite, with the claims required.
pub async fn a_batch_of_creations_claims_the_first_turns_asked_for(store: Arc<dyn Store>) {
    super::instances::create_instances_claiming_leases(store, true).await;
}
