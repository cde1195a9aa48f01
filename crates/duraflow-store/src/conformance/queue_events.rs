//! Queue-wide events: the first emit of a name in a queue wins and answers every waiter of
//! that queue and name, atomically; an await of an emitted event is answered in the commit
//! that registers it; waiters of finished instances (and of ended executions) are gone.

use std::sync::Arc;

use duraflow_core::{EmitOutcome, NewAwait, NewEmit, OpId, Payload, Timestamp};

use super::{
    assert_lease_lost, at, commit, commit_of, finish, first_turn, new_instance, payload, started,
    turn_in, turn_of, user_event, LEASE, LEASE_MS, T0,
};
use crate::store::Store;
use crate::types::{FetchFilter, InstanceStatus, MessageKind, NewMessage, TurnCommit, TurnWork};

/// The await of operation `seq` of execution 1 of `id` for `name` in `queue`.
fn await_of(id: &str, seq: u32, queue: &str, name: &str) -> NewAwait {
    NewAwait {
        instance_id: id.to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
        queue: queue.to_owned(),
        name: name.to_owned(),
    }
}

/// The emit of operation `seq` of execution 1 of `id` of `name` with `data` in `queue`.
fn emit_of(id: &str, seq: u32, queue: &str, name: &str, data: &str) -> NewEmit {
    NewEmit {
        instance_id: id.to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
        queue: queue.to_owned(),
        name: name.to_owned(),
        data: payload(data),
    }
}

/// Creates `id` in `queue` and commits its first turn with `awaits`.
async fn start_awaiting(store: &dyn Store, id: &str, queue: &str, awaits: Vec<NewAwait>) {
    let mut new = new_instance(id, "wf");
    new.queue = queue.to_owned();
    store.create_instance(new).await.unwrap();
    let work = turn_of_in(store, id, queue, T0).await;
    let c = TurnCommit {
        new_events: vec![started(1)],
        awaits,
        ..commit_of(&work, T0)
    };
    commit(store, c).await.unwrap();
}

/// The turn of `id` in `queue` at `now`.
async fn turn_of_in(store: &dyn Store, id: &str, queue: &str, now: Timestamp) -> TurnWork {
    turn_in(store, id, &FetchFilter::queues([queue]), now).await
}

/// A queue event a turn received: the awaiting operation, the name, the data.
type Answer = (OpId, String, Payload);

/// The queue events and emit results (operation, outcome) of a turn's messages, in order.
fn answers(work: &TurnWork) -> (Vec<Answer>, Vec<(OpId, EmitOutcome)>) {
    let mut events = Vec::new();
    let mut results = Vec::new();
    for m in &work.messages {
        match &m.kind {
            MessageKind::QueueEvent {
                execution: 1,
                op,
                name,
                data,
            } => events.push((op.clone(), name.clone(), data.clone())),
            MessageKind::EmitResult {
                execution: 1,
                op,
                outcome,
            } => results.push((op.clone(), *outcome)),
            _ => {}
        }
    }
    (events, results)
}

/// The first emit of a name in a queue is stored and wins; a later one, by a client or a
/// turn, changes nothing and says so, and the stored data stays the first emit's.
pub async fn the_first_emit_wins(store: Arc<dyn Store>) {
    let first = store
        .emit_event("default", "ready", payload("first"), T0)
        .await
        .unwrap();
    assert_eq!(first, EmitOutcome::Emitted { woken: 0 });
    let second = store
        .emit_event("default", "ready", payload("second"), at(1))
        .await
        .unwrap();
    assert_eq!(second, EmitOutcome::AlreadyEmitted);

    // A turn's emits: one of the same name, one of a new name; each operation is told.
    let work = first_turn(&*store, "a").await;
    let c = TurnCommit {
        new_events: vec![started(1)],
        emits: vec![
            emit_of("a", 1, "default", "ready", "third"),
            emit_of("a", 2, "default", "done", "a's"),
        ],
        ..commit_of(&work, at(2))
    };
    commit(&*store, c).await.unwrap();
    let stored = store
        .queue_event("default", "ready")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.data, stored.emitted_at),
        (payload("first"), T0),
        "the first emit's data stays"
    );
    let done = store.queue_event("default", "done").await.unwrap().unwrap();
    assert_eq!(
        (done.queue.as_str(), done.name.as_str()),
        ("default", "done")
    );
    assert_eq!(done.data, payload("a's"));
    assert_eq!(store.queue_event("default", "never").await.unwrap(), None);

    let work = turn_of(&*store, "a", at(2)).await;
    let (events, results) = answers(&work);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(
        results,
        vec![
            (OpId::new(None, 1), EmitOutcome::AlreadyEmitted),
            (OpId::new(None, 2), EmitOutcome::Emitted { woken: 0 }),
        ]
    );
    // Names no store can keep are refused.
    for (queue, name) in [("default", ""), ("", "x"), ("default", "nul\0")] {
        let refused = store.emit_event(queue, name, payload(1), at(3)).await;
        assert!(
            matches!(refused, Err(crate::StoreError::Invalid(_))),
            "{queue:?} {name:?}: {refused:?}"
        );
    }
}

/// An await of an event emitted before it is answered in the commit that registers it, with
/// the stored data, and leaves no waiter behind.
pub async fn an_await_of_an_emitted_event_is_answered_at_once(store: Arc<dyn Store>) {
    store
        .emit_event("default", "ready", payload("early"), T0)
        .await
        .unwrap();
    start_awaiting(
        &*store,
        "a",
        "default",
        vec![await_of("a", 1, "default", "ready")],
    )
    .await;
    let work = turn_of(&*store, "a", T0).await;
    let (events, _) = answers(&work);
    assert_eq!(
        events,
        vec![(OpId::new(None, 1), "ready".to_owned(), payload("early"))]
    );
    commit(&*store, TurnCommit::consuming(&work, at(1)))
        .await
        .unwrap();
    // Emitting another name wakes nobody; the instance has no work.
    let other = store
        .emit_event("default", "other", payload(0), at(2))
        .await
        .unwrap();
    assert_eq!(other, EmitOutcome::Emitted { woken: 0 });
    let due = store
        .fetch_turns(&FetchFilter::default(), at(3), 10, LEASE, None)
        .await
        .unwrap();
    assert!(due.is_empty(), "nothing is due: {due:?}");
}

/// One emit answers every waiter of its queue and name, each exactly once: a thousand
/// instances awaiting, some of them twice.
pub async fn one_emit_wakes_a_thousand_waiters(store: Arc<dyn Store>) {
    const N: usize = 1000;
    let mut created = tokio::task::JoinSet::new();
    for i in 0..N {
        let store = store.clone();
        created.spawn(async move {
            store
                .create_instance(new_instance(&format!("w{i:04}"), "wf"))
                .await
                .unwrap();
        });
    }
    while let Some(done) = created.join_next().await {
        done.unwrap();
    }
    let work = store
        .fetch_turns(&FetchFilter::default(), T0, N, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), N);
    let commits: Vec<TurnCommit> = work
        .iter()
        .map(|w| {
            let id = &w.instance.id;
            let mut awaits = vec![await_of(id, 1, "default", "go")];
            if id.ends_with('7') {
                awaits.push(await_of(id, 2, "default", "go"));
            }
            TurnCommit {
                new_events: vec![started(1)],
                awaits,
                ..commit_of(w, T0)
            }
        })
        .collect();
    for result in store.commit_turns(commits).await.unwrap() {
        result.unwrap();
    }
    let twice = (0..N).filter(|i| i % 10 == 7).count();
    let outcome = store
        .emit_event("default", "go", payload("now"), at(1))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        EmitOutcome::Emitted {
            woken: (N + twice) as u64
        }
    );
    assert_eq!(
        store
            .emit_event("default", "go", payload("again"), at(2))
            .await
            .unwrap(),
        EmitOutcome::AlreadyEmitted
    );
    let work = store
        .fetch_turns(&FetchFilter::default(), at(2), 2 * N, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), N, "every waiter's instance is due");
    for w in &work {
        let (events, results) = answers(w);
        assert!(results.is_empty());
        let mut expected = vec![(OpId::new(None, 1), "go".to_owned(), payload("now"))];
        if w.instance.id.ends_with('7') {
            expected.push((OpId::new(None, 2), "go".to_owned(), payload("now")));
        }
        assert_eq!(events, expected, "{}", w.instance.id);
        assert_eq!(w.messages.len(), expected.len(), "{}", w.instance.id);
    }
}

/// An emit reaches only the waiters of its own queue; a turn emits in the queue it names.
pub async fn emits_stay_in_their_queue(store: Arc<dyn Store>) {
    start_awaiting(&*store, "in-a", "a", vec![await_of("in-a", 1, "a", "go")]).await;
    start_awaiting(&*store, "in-b", "b", vec![await_of("in-b", 1, "b", "go")]).await;
    let in_b = store
        .emit_event("b", "go", payload("for b"), at(1))
        .await
        .unwrap();
    assert_eq!(in_b, EmitOutcome::Emitted { woken: 1 });
    assert_eq!(store.queue_event("a", "go").await.unwrap(), None);
    let due_a = store
        .fetch_turns(&FetchFilter::queues(["a"]), at(2), 10, LEASE, None)
        .await
        .unwrap();
    assert!(due_a.is_empty(), "queue a's waiter is not woken: {due_a:?}");
    let work = turn_of_in(&*store, "in-b", "b", at(2)).await;
    assert_eq!(
        answers(&work).0,
        vec![(OpId::new(None, 1), "go".to_owned(), payload("for b"))]
    );
    let in_a = store
        .emit_event("a", "go", payload("for a"), at(3))
        .await
        .unwrap();
    assert_eq!(in_a, EmitOutcome::Emitted { woken: 1 });
    let work = turn_of_in(&*store, "in-a", "a", at(3)).await;
    assert_eq!(
        answers(&work).0,
        vec![(OpId::new(None, 1), "go".to_owned(), payload("for a"))]
    );
}

/// A finished instance's waiters are gone, and so are those of an execution that continued as
/// new; an emit then answers nobody.
pub async fn waiters_of_finished_instances_are_gone(store: Arc<dyn Store>) {
    start_awaiting(
        &*store,
        "done",
        "default",
        vec![await_of("done", 1, "default", "go")],
    )
    .await;
    finish(&*store, "done", at(1), InstanceStatus::Completed).await;
    let outcome = store
        .emit_event("default", "go", payload(1), at(2))
        .await
        .unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 0 });

    // Execution 1 awaits, then continues as new: its waiter goes with it.
    start_awaiting(
        &*store,
        "looper",
        "default",
        vec![await_of("looper", 1, "default", "later")],
    )
    .await;
    store
        .send(user_event("looper", "next", at(3)))
        .await
        .unwrap();
    let work = turn_of(&*store, "looper", at(3)).await;
    let c = TurnCommit {
        journal_base: 1,
        messages: vec![NewMessage {
            instance_id: "looper".into(),
            kind: MessageKind::start(2),
            visible_at: at(3),
        }],
        continue_as_new: Some(payload("again")),
        ..commit_of(&work, at(3))
    };
    commit(&*store, c).await.unwrap();
    let work = turn_of(&*store, "looper", at(4)).await;
    commit(&*store, TurnCommit::consuming(&work, at(4)))
        .await
        .unwrap();
    let outcome = store
        .emit_event("default", "later", payload(2), at(5))
        .await
        .unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 0 });
}

/// A commit refused for a lost lease emits nothing and registers no await.
pub async fn refused_commits_emit_and_await_nothing(store: Arc<dyn Store>) {
    let old = first_turn(&*store, "a").await;
    let _new = turn_of(&*store, "a", at(LEASE_MS)).await;
    let stale = TurnCommit {
        emits: vec![emit_of("a", 1, "default", "ready", "stale")],
        awaits: vec![await_of("a", 2, "default", "go")],
        ..commit_of(&old, at(LEASE_MS + 1))
    };
    assert_lease_lost(commit(&*store, stale).await, "a stale commit");
    assert_eq!(store.queue_event("default", "ready").await.unwrap(), None);
    let outcome = store
        .emit_event("default", "go", payload(1), at(LEASE_MS + 2))
        .await
        .unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 0 });
}

/// Concurrent emits of one name: exactly one is stored, and its data is the one kept. Awaits
/// committed while a client emits never miss the event: each instance gets it exactly once,
/// from the emit or from its own commit.
pub async fn concurrent_emits_and_awaits_never_miss_each_other(store: Arc<dyn Store>) {
    let mut emits = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let store = store.clone();
        emits.spawn(async move {
            let outcome = store
                .emit_event("default", "race", payload(i), at(1))
                .await
                .unwrap();
            (i, outcome)
        });
    }
    let mut stored = Vec::new();
    while let Some(done) = emits.join_next().await {
        let (i, outcome) = done.unwrap();
        if outcome.is_emitted() {
            stored.push(i);
        }
    }
    assert_eq!(stored.len(), 1, "exactly one emit is stored: {stored:?}");
    let kept = store.queue_event("default", "race").await.unwrap().unwrap();
    assert_eq!(kept.data, payload(stored[0]));

    const N: usize = 40;
    for i in 0..N {
        store
            .create_instance(new_instance(&format!("r{i:02}"), "wf"))
            .await
            .unwrap();
    }
    let work = store
        .fetch_turns(&FetchFilter::default(), T0, N, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), N);
    let mut commits = tokio::task::JoinSet::new();
    for (i, w) in work.into_iter().enumerate() {
        let store = store.clone();
        commits.spawn(async move {
            let c = TurnCommit {
                new_events: vec![started(1)],
                awaits: vec![await_of(&w.instance.id, 1, "default", "go")],
                ..commit_of(&w, at(1))
            };
            commit(&*store, c).await.unwrap();
            if i == N / 2 {
                store
                    .emit_event("default", "go", payload("raced"), at(1))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = commits.join_next().await {
        done.unwrap();
    }
    let work = store
        .fetch_turns(&FetchFilter::default(), at(2), 2 * N, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), N, "every instance got the event");
    for w in &work {
        assert_eq!(
            answers(w).0,
            vec![(OpId::new(None, 1), "go".to_owned(), payload("raced"))],
            "{}",
            w.instance.id
        );
    }
}

/// The awaits a turn cancels (timed out or dropped) lose their waiters; the instance's other
/// awaits, and other instances', keep theirs.
pub async fn cancelled_awaits_lose_their_waiters(store: Arc<dyn Store>) {
    start_awaiting(
        &*store,
        "a",
        "default",
        vec![
            await_of("a", 1, "default", "go"),
            await_of("a", 2, "default", "go"),
        ],
    )
    .await;
    start_awaiting(
        &*store,
        "b",
        "default",
        vec![await_of("b", 1, "default", "go")],
    )
    .await;
    store.send(user_event("a", "tick", at(1))).await.unwrap();
    let work = turn_of(&*store, "a", at(1)).await;
    let c = TurnCommit {
        journal_base: 1,
        cancelled_awaits: vec![OpId::new(None, 1)],
        ..commit_of(&work, at(1))
    };
    commit(&*store, c).await.unwrap();
    let outcome = store
        .emit_event("default", "go", payload("now"), at(2))
        .await
        .unwrap();
    assert_eq!(outcome, EmitOutcome::Emitted { woken: 2 });
    for (id, seq) in [("a", 2), ("b", 1)] {
        let work = turn_of(&*store, id, at(2)).await;
        assert_eq!(
            answers(&work).0,
            vec![(OpId::new(None, seq), "go".to_owned(), payload("now"))],
            "{id}"
        );
    }
}
