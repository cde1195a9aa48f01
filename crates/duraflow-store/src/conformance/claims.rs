//! Warm journals and claims: a fetch leaves unread the journals the caller holds, a commit may
//! lease its new tasks to the committer, a completion may lease the instance's next turn to
//! the completer, and a creation its first turn to the creator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Manage;
use super::{
    at, commit_of, journal_len, new_instance, new_task, payload, start, turn_of, user_event, LEASE,
    LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::journal_cache::JournalCache;
use crate::store::Store;
use crate::types::{
    Committed, Completed, CreateOutcome, InstanceStatus, Journal, LeaseToken, MessageKind,
    OpResult, TaskClaim, TaskCompletion, TaskWork, TurnCommit,
};

/// A journal cache that holds what the test says it holds.
#[derive(Default)]
pub(super) struct Holding(Mutex<Vec<(String, u32, LeaseToken)>>);

impl Holding {
    pub(super) fn hold(&self, id: &str, execution: u32, token: LeaseToken) {
        let mut held = self.0.lock().unwrap();
        held.retain(|(i, _, _)| i != id);
        held.push((id.to_owned(), execution, token));
    }
}

impl JournalCache for Holding {
    fn holds(&self, instance_id: &str, execution: u32, token: LeaseToken) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|(i, e, t)| i == instance_id && *e == execution && *t == token)
    }
}

async fn commit_one(store: &dyn Store, commit: TurnCommit) -> Result<Committed, StoreError> {
    let mut results = store.commit_turns(vec![commit]).await.unwrap();
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn completion(task: &TaskWork, claim: bool) -> TaskCompletion {
    TaskCompletion {
        id: task.id,
        token: task.token,
        result: OpResult::Ok(payload(task.op.to_string())),
        claim_turn: claim.then_some(LEASE),
    }
}

async fn complete_all(
    store: &dyn Store,
    now: duraflow_core::Timestamp,
    completions: Vec<TaskCompletion>,
) -> Vec<Result<Completed, StoreError>> {
    let n = completions.len();
    let results = store
        .complete_tasks(&crate::FetchFilter::default(), now, completions, None)
        .await
        .unwrap();
    assert_eq!(results.len(), n);
    results
}

/// A turn's journal, however long, comes with the turn or is left for the caller to read
/// ([`Journal::Unread`]); either way it is the journal `Store::journal` then reads, and a
/// journal of up to [`crate::INLINE_JOURNAL`] events comes along whenever it is read.
pub async fn long_journals_come_along_or_are_left_to_read(store: Arc<dyn Store>) {
    for len in [crate::INLINE_JOURNAL, crate::INLINE_JOURNAL + 1, 1_000] {
        let id = format!("long-{len}");
        let work = super::first_turn(&*store, &id).await;
        let mut c = commit_of(&work, T0);
        c.new_events = std::iter::once(super::started(1))
            .chain((1..len).map(|seq| super::event(u32::try_from(seq).unwrap())))
            .collect();
        commit_one(&*store, c).await.unwrap();
        store.send(user_event(&id, "go", at(1))).await.unwrap();
        let turn = turn_of(&*store, &id, at(1)).await;
        let stored = store.journal(&id, None).await.unwrap();
        assert_eq!(stored.len(), len);
        match turn.journal.unwrap() {
            Journal::Events(events) => assert_eq!(events, stored, "{len} events"),
            Journal::Unread => assert!(len > crate::INLINE_JOURNAL, "{len} events left unread"),
            Journal::Cached => panic!("no cache was given, yet the journal was not read"),
        }
    }
}

/// A fetch leaves unread the journal the caller holds as its own last commit left it, and
/// reads it once another commit (or none of the caller's) made it.
pub async fn warm_journals_are_left_unread(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("w", "wf"))
        .await
        .unwrap();
    let holding = Arc::new(Holding::default());
    let cache: Arc<dyn JournalCache> = holding.clone();

    // Nothing held: the (empty) journal is read.
    let first = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 10, LEASE, Some(&cache))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].journal, Ok(Journal::Events(vec![])));
    let mut c = commit_of(&first[0], T0);
    c.new_events = vec![super::started(1), super::event(2)];
    commit_one(&*store, c).await.unwrap();

    // The caller holds what its commit left: not read again.
    holding.hold("w", 1, first[0].token);
    store.send(user_event("w", "a", T0)).await.unwrap();
    let warm = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(1),
            10,
            LEASE,
            Some(&cache),
        )
        .await
        .unwrap();
    assert_eq!(warm.len(), 1);
    assert_eq!(warm[0].journal, Ok(Journal::Cached));
    assert_eq!(warm[0].messages.len(), 1, "messages are read as always");

    // Another turn commits (the caller does not hold its result): read in full.
    let mut c = commit_of(&warm[0], at(1));
    c.journal_base = 2;
    c.new_events = vec![super::event(3)];
    commit_one(&*store, c).await.unwrap();
    store.send(user_event("w", "b", at(1))).await.unwrap();
    let cold = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(2),
            10,
            LEASE,
            Some(&cache),
        )
        .await
        .unwrap();
    assert_eq!(cold.len(), 1);
    assert_eq!(
        cold[0].journal,
        Ok(Journal::Events(vec![
            super::started(1),
            super::event(2),
            super::event(3)
        ]))
    );

    // A holding for another execution does not count either.
    let mut c = commit_of(&cold[0], at(2));
    c.journal_base = 3;
    commit_one(&*store, c).await.unwrap();
    holding.hold("w", 2, cold[0].token);
    store.send(user_event("w", "c", at(2))).await.unwrap();
    let other = store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(3),
            10,
            LEASE,
            Some(&cache),
        )
        .await
        .unwrap();
    assert_eq!(journal_len(&other[0]), 3);
}

/// A commit leases the first of its new tasks to the committer: they come back with the
/// commit, first attempt counted, and no fetch returns them while the lease lasts; the rest
/// are fetchable as usual. A claimed task's lease expires like a fetched one.
pub async fn commit_claims_its_new_tasks(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("c", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "c", T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = vec![new_task("c", 1, T0), new_task("c", 2, T0)];
    c.claim_tasks = Some(TaskClaim {
        max: 1,
        lease: Duration::from_secs(10),
    });
    let committed = commit_one(&*store, c).await.unwrap();
    assert_eq!(committed.tasks.len(), 1, "{committed:?}");
    let claimed = &committed.tasks[0];
    assert_eq!(claimed.instance_id, "c");
    assert_eq!(claimed.op, new_task("c", 1, T0).op);
    assert_eq!(claimed.name, "activity-1");
    assert_eq!(claimed.input, payload(1u32));
    assert_eq!(claimed.options, new_task("c", 1, T0).options);
    assert_eq!(claimed.attempt, 1);
    assert_eq!(claimed.lease_until, at(10_000));
    assert_eq!(claimed.last_failure, None);

    let fetched = store
        .fetch_tasks(&crate::FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1, "only the unclaimed task: {fetched:?}");
    assert_eq!(fetched[0].op, new_task("c", 2, T0).op);
    assert_ne!(fetched[0].token, claimed.token);

    // The claim is a lease like any other: renewable with its token...
    assert_eq!(
        store
            .renew_task(
                claimed.id,
                claimed.token,
                at(5_000),
                Duration::from_secs(10),
                None
            )
            .await
            .unwrap(),
        at(15_000)
    );
    // ...and once it expires the task is fetched again, with the next attempt.
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(14_999), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .fetch_tasks(&crate::FetchFilter::default(), at(15_000), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed.id);
    assert_eq!(again[0].attempt, 2);
    let stale = complete_all(&*store, at(15_001), vec![completion(claimed, false)]).await;
    assert!(
        matches!(stale[0], Err(StoreError::LeaseLost { .. })),
        "{stale:?}"
    );
}

/// A commit without a claim, or whose claim is larger than its tasks, claims what there is.
pub async fn claims_never_exceed_the_new_tasks(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("d", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "d", T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = vec![new_task("d", 1, T0)];
    let committed = commit_one(&*store, c).await.unwrap();
    assert!(committed.tasks.is_empty(), "no claim asked for");

    store.send(user_event("d", "x", T0)).await.unwrap();
    let work = turn_of(&*store, "d", at(1)).await;
    let mut c = commit_of(&work, at(1));
    c.tasks = vec![new_task("d", 2, at(1))];
    c.claim_tasks = Some(TaskClaim {
        max: 5,
        lease: LEASE,
    });
    let committed = commit_one(&*store, c).await.unwrap();
    assert_eq!(committed.tasks.len(), 1);
    assert_eq!(committed.tasks[0].op, new_task("d", 2, T0).op);
    let fetched = store
        .fetch_tasks(&crate::FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1, "the unclaimed first task");
    assert_eq!(fetched[0].op, new_task("d", 1, T0).op);
}

/// A completion that asks for the turn of a free instance gets it, leased, with every visible
/// message of the inbox (the result included); the turn commits with its token.
pub async fn completion_claims_a_free_turn(store: Arc<dyn Store>) {
    start(&*store, "f", vec![new_task("f", 1, T0)]).await;
    store.send(user_event("f", "early", T0)).await.unwrap();
    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    // The instance is due (the event) but nobody took it: the completion may.
    let results = complete_all(&*store, at(2), vec![completion(&task, true)]).await;
    let turn = match &results[0] {
        Ok(Completed { turn: Some(turn) }) => turn,
        other => panic!("expected a claimed turn, got {other:?}"),
    };
    assert_eq!(turn.instance.id, "f");
    assert_eq!(turn.instance.status, InstanceStatus::Running);
    assert_eq!(turn.journal, Ok(Journal::Events(vec![])));
    let kinds: Vec<_> = turn.messages.iter().map(|m| &m.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(matches!(kinds[0], MessageKind::Event { .. }));
    assert!(matches!(
        kinds[1],
        MessageKind::ActivityResult {
            result: OpResult::Ok(_),
            ..
        }
    ));
    // Leased: no fetch gets it until the lease ends.
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(3), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_due(at(3)).await.unwrap().turn,
        Some(at(2 + LEASE_MS))
    );
    commit_one(&*store, commit_of(turn, at(3))).await.unwrap();
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}

/// A creation may lease the new instance's first turn to the creator: the turn holds the start
/// message and an empty journal, and no fetch gets it while the lease lasts. A store that grants
/// no claim leaves the turn to a fetch. An id that exists is neither created nor claimed.
pub async fn creation_claims_the_first_turn(store: Arc<dyn Store>) {
    let (outcome, turn) = store
        .create_instance_claiming(new_instance("c", "wf"), LEASE)
        .await
        .unwrap();
    assert!(matches!(outcome, CreateOutcome::Created), "{outcome:?}");
    match turn {
        Some(turn) => {
            assert_eq!(turn.instance.id, "c");
            assert_eq!(turn.instance.status, InstanceStatus::Pending);
            assert_eq!(turn.journal, Ok(Journal::Events(vec![])));
            assert_eq!(turn.messages.len(), 1);
            assert_eq!(turn.messages[0].kind, MessageKind::start(1));
            assert!(store
                .fetch_turns(&crate::FetchFilter::default(), at(1), 10, LEASE, None)
                .await
                .unwrap()
                .is_empty());
            assert_eq!(
                store.next_due(at(1)).await.unwrap().turn,
                Some(at(LEASE_MS))
            );
            commit_one(&*store, commit_of(&turn, at(1))).await.unwrap();
        }
        None => {
            let fetched = store
                .fetch_turns(&crate::FetchFilter::default(), at(1), 10, LEASE, None)
                .await
                .unwrap();
            assert_eq!(fetched.len(), 1);
            commit_one(&*store, commit_of(&fetched[0], at(1)))
                .await
                .unwrap();
        }
    }
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
    let (again, turn) = store
        .create_instance_claiming(new_instance("c", "other"), LEASE)
        .await
        .unwrap();
    match again {
        CreateOutcome::Existing(info) => {
            assert_eq!(info.name, "wf");
            assert_eq!(info.status, InstanceStatus::Running);
        }
        other => panic!("expected the existing instance, got {other:?}"),
    }
    assert!(turn.is_none());
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(2), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
}

/// A completion does not claim a turn somebody holds: its result waits in the inbox and the
/// holder's commit leaves it there for the next turn.
pub async fn completion_does_not_claim_a_leased_turn(store: Arc<dyn Store>) {
    start(&*store, "g", vec![new_task("g", 1, T0)]).await;
    store.send(user_event("g", "e", T0)).await.unwrap();
    let held = turn_of(&*store, "g", at(1)).await;
    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    let results = complete_all(&*store, at(2), vec![completion(&task, true)]).await;
    assert!(
        matches!(&results[0], Ok(Completed { turn: None })),
        "{results:?}"
    );
    commit_one(&*store, commit_of(&held, at(3))).await.unwrap();
    let next = turn_of(&*store, "g", at(3)).await;
    assert_eq!(next.messages.len(), 1);
    assert!(matches!(
        next.messages[0].kind,
        MessageKind::ActivityResult { .. }
    ));
}

/// Claims in a batch are granted after every result is posted, once per instance: the claimed
/// turn sees every result of the batch. A turn put off until later is not claimed before then.
pub async fn claims_in_a_batch_come_after_every_result(store: Arc<dyn Store>) {
    start(
        &*store,
        "h",
        vec![
            new_task("h", 1, T0),
            new_task("h", 2, T0),
            new_task("h", 3, T0),
        ],
    )
    .await;
    let tasks = store
        .fetch_tasks(&crate::FetchFilter::default(), T0, 10, LEASE)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 3);
    let results = complete_all(
        &*store,
        at(1),
        vec![
            completion(&tasks[0], true),
            completion(&tasks[1], true),
            completion(&tasks[2], false),
        ],
    )
    .await;
    let claimed: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|c| c.turn.as_ref()))
        .collect();
    assert_eq!(claimed.len(), 1, "one claim per instance: {results:?}");
    assert_eq!(claimed[0].messages.len(), 3, "every result of the batch");

    commit_one(&*store, commit_of(claimed[0], at(2)))
        .await
        .unwrap();

    // An instance whose turn was put off (abandoned until later) is not claimed before then.
    start(&*store, "i", vec![new_task("i", 1, T0)]).await;
    let task = store
        .fetch_tasks(&crate::FetchFilter::default(), at(2), 10, LEASE)
        .await
        .unwrap()
        .remove(0);
    store.send(user_event("i", "e", at(2))).await.unwrap();
    let put_off = turn_of(&*store, "i", at(2)).await;
    store
        .abandon_turn("i", put_off.token, at(60_000))
        .await
        .unwrap();
    let results = complete_all(&*store, at(3), vec![completion(&task, true)]).await;
    assert!(
        matches!(&results[0], Ok(Completed { turn: None })),
        "{results:?}"
    );
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(59_999), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    let later = turn_of(&*store, "i", at(60_000)).await;
    assert_eq!(later.messages.len(), 2, "the event and the result");
}
