//! Direct turns: a turn run on an activity result the committer holds, without leasing its
//! instance, committed with the task's deletion in one write (see `TurnCommit::direct`).

use std::sync::Arc;
use std::time::Duration;

use super::claims::Holding;
use super::{
    at, commit, commit_of, event, new_instance, new_task, started, turn_of, user_event, LEASE,
    LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::journal_cache::JournalCache;
use crate::store::Store;
use crate::types::{
    DirectTurn, Journal, LeaseToken, OpResult, TaskClaim, TaskCompletion, TaskWork, TurnCommit,
    TurnWork,
};

/// Creates instance `id`, commits its first turn (the journal's start) with one task claimed
/// for `task_lease`, and returns the turn and the claimed task.
async fn running(store: &dyn Store, id: &str, task_lease: Duration) -> (TurnWork, TaskWork) {
    store.create_instance(new_instance(id, "wf")).await.unwrap();
    let work = turn_of(store, id, T0).await;
    let mut c = commit_of(&work, T0);
    c.new_events = vec![started(1)];
    c.tasks = vec![new_task(id, 1, T0)];
    c.claim_tasks = Some(TaskClaim {
        max: 1,
        lease: task_lease,
    });
    let mut committed = store
        .commit_turns(vec![c])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(
        committed.tasks.len(),
        1,
        "the task is claimed: {committed:?}"
    );
    (work, committed.tasks.remove(0))
}

/// A direct turn after the first turn `work` (journal of one event), delivering `task` at
/// `now` and appending one event.
fn direct(work: &TurnWork, task: &TaskWork, now: duraflow_core::Timestamp) -> TurnCommit {
    let mut c = TurnCommit::unchanged(&work.instance, work.token, now);
    c.journal_base = 1;
    c.new_events = vec![event(2)];
    c.direct = Some(DirectTurn {
        task: task.id,
        task_token: task.token,
    });
    c
}

/// Completes `task` as its worker would (no claim); the store's answer.
async fn complete(
    store: &dyn Store,
    task: &TaskWork,
    now: duraflow_core::Timestamp,
) -> Result<(), StoreError> {
    let completion = TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(super::payload("done")),
        claim_turn: None,
    };
    let mut results = store
        .complete_tasks(&crate::FetchFilter::default(), now, vec![completion], None)
        .await
        .unwrap();
    results.remove(0).map(|_| ())
}

/// A direct turn commits the turn and deletes its task in one write: the journal grows, the
/// task is gone (its completion is `NotFound`), its result is not posted (the instance is not
/// due), the turn's new tasks are created, and the journal stays named by the commit token the
/// turn continued, so a caller holding it still skips reading it.
pub async fn a_direct_turn_delivers_a_held_result_in_one_commit(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(10)).await;
    let mut c = direct(&work, &task, at(5));
    c.tasks = vec![new_task("d", 3, at(5))];
    commit(&*store, c).await.unwrap();

    assert_eq!(
        store.journal("d", Some(1)).await.unwrap(),
        vec![started(1), event(2)]
    );
    assert!(
        matches!(
            complete(&*store, &task, at(6)).await,
            Err(StoreError::NotFound(_))
        ),
        "the delivered task is gone"
    );
    let due = store
        .fetch_turns(&crate::FetchFilter::default(), at(100), 10, LEASE, None)
        .await
        .unwrap();
    assert!(due.is_empty(), "no result was posted to the inbox: {due:?}");
    let tasks = store
        .fetch_tasks(&crate::FetchFilter::default(), at(6), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "the turn's new task: {tasks:?}");
    assert_eq!(tasks[0].op, new_task("d", 3, T0).op);

    // The journal is still named by the token the direct turn continued.
    let holding = Arc::new(Holding::default());
    holding.hold("d", 1, work.token);
    let cache: Arc<dyn JournalCache> = holding;
    store.send(user_event("d", "e", at(7))).await.unwrap();
    let next = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(7),
            10,
            LEASE,
            Some(&cache),
        )
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].journal, Ok(Journal::Cached));
}

/// A direct turn is refused (`LeaseLost`, nothing written) while another turn holds the
/// instance's live lease; once that lease has run out without a commit, it is accepted.
pub async fn a_direct_turn_is_refused_while_a_turn_holds_the_instance(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(60)).await;
    store.send(user_event("d", "e", at(1))).await.unwrap();
    let other = turn_of(&*store, "d", at(1)).await;
    assert_ne!(other.token, work.token);

    let refused = commit(&*store, direct(&work, &task, at(2))).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert_eq!(store.journal("d", Some(1)).await.unwrap(), vec![started(1)]);

    // The other turn died: its lease ran out, and it committed nothing.
    let later = at(LEASE_MS + 1);
    commit(&*store, direct(&work, &task, later)).await.unwrap();
    assert_eq!(
        store.journal("d", Some(1)).await.unwrap(),
        vec![started(1), event(2)]
    );
    // Its message is still there for the next turn, which reads the journal as it is now.
    let next = turn_of(&*store, "d", at(LEASE_MS + 2)).await;
    assert_eq!(next.messages.len(), 1);
    assert_eq!(
        next.journal,
        Ok(Journal::Events(vec![started(1), event(2)]))
    );
}

/// A direct turn is refused (`LeaseLost`, nothing written) once another turn has committed to
/// the instance since the commit it continued, and the task it would have delivered is left
/// for its worker to complete.
pub async fn a_direct_turn_is_refused_after_another_commit(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(60)).await;
    store.send(user_event("d", "e", at(1))).await.unwrap();
    let other = turn_of(&*store, "d", at(1)).await;
    let mut c = commit_of(&other, at(1));
    c.journal_base = 1;
    commit(&*store, c).await.unwrap();

    let refused = commit(&*store, direct(&work, &task, at(2))).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert_eq!(store.journal("d", Some(1)).await.unwrap(), vec![started(1)]);
    complete(&*store, &task, at(3))
        .await
        .expect("the task is still there, and still leased");
}

/// A direct turn is refused when its task's lease has run out (`LeaseLost`), when its task is
/// gone (`NotFound`) or when it names a commit that is not the instance's last (`LeaseLost`);
/// none writes anything.
pub async fn a_direct_turn_needs_its_task_and_the_last_commit(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(10)).await;

    let expired = commit(&*store, direct(&work, &task, at(10_000))).await;
    assert!(
        matches!(expired, Err(StoreError::LeaseLost { .. })),
        "{expired:?}"
    );

    let mut missing = direct(&work, &task, at(1));
    missing.direct = Some(DirectTurn {
        task: crate::types::TaskId(task.id.0 + 1_000),
        task_token: task.token,
    });
    let missing = commit(&*store, missing).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let mut stale = direct(&work, &task, at(1));
    stale.token = LeaseToken(work.token.0.wrapping_add(1_000_000));
    let stale = commit(&*store, stale).await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "a direct turn that names another commit: {stale:?}"
    );

    assert_eq!(store.journal("d", Some(1)).await.unwrap(), vec![started(1)]);
    complete(&*store, &task, at(2))
        .await
        .expect("nothing refused took the task");
}

/// A direct turn that checkpoints takes the instance's lease with the token it named: no fetch
/// leases the instance while it lasts, the lease renews with that token, and the turn's next
/// commit (not direct) is accepted with it and ends the lease.
pub async fn a_direct_checkpoint_takes_the_lease(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(10)).await;
    let mut c = direct(&work, &task, at(1));
    c.keep_lease = Some(LEASE);
    commit(&*store, c).await.unwrap();

    store.send(user_event("d", "e", at(2))).await.unwrap();
    let fetched = store
        .fetch_turns(&crate::FetchFilter::default(), at(2), 10, LEASE, None)
        .await
        .unwrap();
    assert!(fetched.is_empty(), "the lease is held: {fetched:?}");
    store
        .renew_turn("d", work.token, at(3), LEASE)
        .await
        .expect("the lease is held with the named token");

    let mut last = TurnCommit::unchanged(&work.instance, work.token, at(4));
    last.journal_base = 2;
    last.new_events = vec![event(3)];
    commit(&*store, last).await.unwrap();
    assert_eq!(
        store.journal("d", Some(1)).await.unwrap(),
        vec![started(1), event(2), event(3)]
    );
    let next = turn_of(&*store, "d", at(5)).await;
    assert_eq!(
        next.messages.len(),
        1,
        "the turn ended and its lease with it"
    );
}

/// A direct turn leaves the inbox as it is: a message sent before it stays there and makes the
/// instance due for the next turn, which reads the journal the direct turn wrote.
pub async fn a_direct_turn_leaves_the_inbox_for_the_next_turn(store: Arc<dyn Store>) {
    let (work, task) = running(&*store, "d", Duration::from_secs(10)).await;
    store.send(user_event("d", "e", at(1))).await.unwrap();
    commit(&*store, direct(&work, &task, at(2))).await.unwrap();
    let next = turn_of(&*store, "d", at(3)).await;
    assert_eq!(next.messages.len(), 1);
    assert_eq!(super::event_name(&next.messages[0].kind), Some("e"));
    assert_eq!(
        next.journal,
        Ok(Journal::Events(vec![started(1), event(2)]))
    );
}
