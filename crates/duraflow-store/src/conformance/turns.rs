//! Turns: fetching instances with work under a lease, committing, abandoning.

use std::collections::HashSet;
use std::sync::Arc;

use duraflow_core::OpId;

use super::Manage;
use super::{
    assert_lease_lost, at, commit, commit_of, event, event_name, failure, finish, journal_len,
    new_instance, new_task, parent_link, payload, start, started, turn_of, user_event, LEASE,
    LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{InstanceStatus, Journal, MessageKind, NewMessage, TurnCommit};

/// A leased instance is not fetched again, even when new messages arrive; `max` is respected.
pub async fn fetch_turns_leases_exclusively(store: Arc<dyn Store>) {
    for id in ["a", "b", "c"] {
        store.create_instance(new_instance(id, "wf")).await.unwrap();
    }
    let first = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 2, LEASE, None)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    for work in &first {
        assert_eq!(work.messages.len(), 1);
    }
    let second = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 2, LEASE, None)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);

    let mut ids: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|w| w.instance.id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"]);
    let tokens: HashSet<_> = first.iter().chain(&second).map(|w| w.token).collect();
    assert_eq!(tokens.len(), 3, "every fetch issues a new token");

    // New messages to leased instances do not make them fetchable.
    store.send(user_event("a", "more", T0)).await.unwrap();
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), T0, 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(LEASE_MS - 1),
            10,
            LEASE,
            None
        )
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .fetch_turns(&crate::FetchFilter::default(), T0, 0, LEASE, None)
            .await
            .unwrap()
            .len(),
        0
    );
}

/// Instances are fetched in the order of their oldest visible message.
pub async fn fetch_turns_takes_the_oldest_work_first(store: Arc<dyn Store>) {
    start(&*store, "x", vec![]).await;
    start(&*store, "y", vec![]).await;
    start(&*store, "z", vec![]).await;
    store.send(user_event("y", "1", T0)).await.unwrap();
    store.send(user_event("z", "2", T0)).await.unwrap();
    store.send(user_event("x", "3", T0)).await.unwrap();
    store.send(user_event("y", "4", T0)).await.unwrap();

    let order: Vec<String> = [
        store
            .fetch_turns(&crate::FetchFilter::default(), at(1), 1, LEASE, None)
            .await
            .unwrap(),
        store
            .fetch_turns(&crate::FetchFilter::default(), at(1), 1, LEASE, None)
            .await
            .unwrap(),
        store
            .fetch_turns(&crate::FetchFilter::default(), at(1), 1, LEASE, None)
            .await
            .unwrap(),
    ]
    .into_iter()
    .flatten()
    .map(|w| w.instance.id)
    .collect();
    assert_eq!(order, ["y", "z", "x"]);
}

/// Many concurrent `fetch_turns` calls never lease the same instance twice.
pub async fn concurrent_fetch_turns_never_lease_twice(store: Arc<dyn Store>) {
    const INSTANCES: usize = 40;
    for i in 0..INSTANCES {
        store
            .create_instance(new_instance(&format!("wf-{i:02}"), "wf"))
            .await
            .unwrap();
    }
    let fetchers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Bounded, so that a store that leases twice fails instead of looping.
                for _ in 0..INSTANCES {
                    let work = store
                        .fetch_turns(&crate::FetchFilter::default(), T0, 3, LEASE, None)
                        .await
                        .unwrap();
                    if work.is_empty() {
                        break;
                    }
                    got.extend(work.into_iter().map(|w| (w.instance.id, w.token)));
                    tokio::task::yield_now().await;
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for fetcher in fetchers {
        all.extend(fetcher.await.unwrap());
    }
    assert_eq!(
        all.len(),
        INSTANCES,
        "each instance is leased exactly once: {all:?}"
    );
    let ids: HashSet<_> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), INSTANCES);
    let tokens: HashSet<_> = all.iter().map(|(_, token)| *token).collect();
    assert_eq!(tokens.len(), INSTANCES);
}

/// When a turn's lease expires the instance is fetched again with a new token, and a commit
/// with the old token is rejected.
pub async fn expired_turn_lease_is_fetched_again_and_fences_the_old_token(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    let old = turn_of(&*store, "a", T0).await;
    assert!(store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(LEASE_MS - 1),
            10,
            LEASE,
            None
        )
        .await
        .unwrap()
        .is_empty());

    let new = turn_of(&*store, "a", at(LEASE_MS)).await;
    assert_ne!(new.token, old.token);
    assert_eq!(new.messages, old.messages);

    let mut stale = commit_of(&old, at(LEASE_MS + 1));
    stale.new_events = vec![started(1)];
    assert_lease_lost(commit(&*store, stale).await, "commit with the old token");
    assert_lease_lost(
        store.abandon_turn("a", old.token, at(LEASE_MS + 1)).await,
        "abandon with the old token",
    );

    let mut current = commit_of(&new, at(LEASE_MS + 1));
    current.new_events = vec![started(2)];
    commit(&*store, current).await.unwrap();
    assert_eq!(store.journal("a", None).await.unwrap(), vec![started(2)]);
}

/// A commit made after its lease ran out is rejected, even if nobody fetched the instance since.
pub async fn commit_after_lease_expiry_is_rejected(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "a", T0).await;
    let mut late = commit_of(&work, at(LEASE_MS));
    late.new_events = vec![started(1)];
    assert_lease_lost(commit(&*store, late).await, "commit at lease_until");
    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);
    assert_eq!(
        store.instance("a").await.unwrap().unwrap().status,
        InstanceStatus::Pending
    );

    // Once another fetch has taken the instance over, even a commit stamped before the old
    // lease's expiry is rejected.
    let again = turn_of(&*store, "a", at(LEASE_MS)).await;
    let mut in_time = commit_of(&work, at(LEASE_MS - 1));
    in_time.new_events = vec![started(1)];
    assert_lease_lost(
        commit(&*store, in_time).await,
        "commit with a superseded token",
    );
    commit(&*store, commit_of(&again, at(LEASE_MS)))
        .await
        .unwrap();
}

/// A commit appends events, consumes messages, delivers new messages in order, creates tasks
/// and child instances, and sets the status.
pub async fn commit_applies_everything(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("parent", "wf"))
        .await
        .unwrap();
    start(&*store, "peer", vec![]).await;
    store.send(user_event("parent", "hello", T0)).await.unwrap();
    let work = turn_of(&*store, "parent", at(1)).await;
    assert_eq!(work.messages.len(), 2);

    let mut child = new_instance("child", "child-wf");
    child.parent = Some(parent_link("parent", 3));
    child.created_at = at(1);
    let c = TurnCommit {
        new_events: vec![started(1), event(2), event(3)],
        messages: vec![
            user_event("peer", "first", at(1)),
            user_event("peer", "second", at(1)),
            user_event("child", "for-child", at(1)),
            NewMessage {
                instance_id: "parent".into(),
                kind: MessageKind::TimerFired {
                    execution: 1,
                    op: OpId::new(None, 4),
                },
                visible_at: at(60_000),
            },
        ],
        new_instances: vec![child.clone()],
        tasks: vec![new_task("parent", 1, at(1)), new_task("parent", 2, at(1))],
        ..commit_of(&work, at(1))
    };
    commit(&*store, c).await.unwrap();

    // Events appended to the current execution.
    let journal = vec![started(1), event(2), event(3)];
    assert_eq!(store.journal("parent", None).await.unwrap(), journal);
    assert_eq!(store.journal("parent", Some(1)).await.unwrap(), journal);

    // Status and times.
    let info = store.instance("parent").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Running);
    assert_eq!(info.execution, 1);
    assert_eq!(info.created_at, T0);
    assert_eq!(info.updated_at, at(1));

    // The child exists, pending, with its start message first.
    let child_info = store.instance("child").await.unwrap().unwrap();
    assert_eq!(child_info.status, InstanceStatus::Pending);
    assert_eq!(child_info.name, "child-wf");
    assert_eq!(child_info.input, child.input);
    assert_eq!(child_info.parent, child.parent);
    assert_eq!(child_info.execution, 1);

    let fetched = store
        .fetch_turns(&crate::FetchFilter::default(), at(1), 10, LEASE, None)
        .await
        .unwrap();
    let ids: HashSet<_> = fetched.iter().map(|w| w.instance.id.as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from(["child", "peer"]),
        "parent's messages were consumed"
    );
    for w in &fetched {
        let kinds: Vec<_> = w.messages.iter().map(|m| m.kind.clone()).collect();
        match w.instance.id.as_str() {
            "child" => {
                assert_eq!(kinds.len(), 2);
                assert_eq!(kinds[0], MessageKind::start(1));
                assert_eq!(event_name(&kinds[1]), Some("for-child"));
                assert_eq!(w.journal, Ok(Journal::Events(vec![])));
            }
            _ => {
                let names: Vec<_> = kinds.iter().map(|k| event_name(k)).collect();
                assert_eq!(names, [Some("first"), Some("second")]);
            }
        }
    }

    // The timer message to itself is delivered at its time.
    let timer = turn_of(&*store, "parent", at(60_000)).await;
    assert_eq!(timer.journal, Ok(Journal::Events(journal)));
    assert_eq!(timer.messages.len(), 1);
    assert!(matches!(
        timer.messages[0].kind,
        MessageKind::TimerFired { .. }
    ));

    // The tasks are fetchable.
    let tasks = store
        .fetch_tasks(&crate::FetchFilter::default(), at(1), 10, LEASE)
        .await
        .unwrap();
    let mut ops: Vec<_> = tasks.iter().map(|t| t.op.clone()).collect();
    ops.sort();
    assert_eq!(ops, [OpId::new(None, 1), OpId::new(None, 2)]);
    assert!(tasks
        .iter()
        .all(|t| t.instance_id == "parent" && t.execution == 1));

    // Finishing sets the output.
    let mut done = commit_of(&timer, at(60_001));
    done.new_events = vec![event(4)];
    done.status = InstanceStatus::Completed;
    done.output = Some(payload("the output"));
    commit(&*store, done).await.unwrap();
    let info = store.instance("parent").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.output, Some(payload("the output")));
    assert_eq!(info.failure, None);
    assert_eq!(info.updated_at, at(60_001));
    assert_eq!(store.journal("parent", None).await.unwrap().len(), 4);
}

/// A rejected commit changes nothing: journal, inbox, tasks, children and status stay as they
/// were.
pub async fn rejected_commit_changes_nothing(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    start(&*store, "peer", vec![]).await;
    store.send(user_event("a", "e", T0)).await.unwrap();
    let old = turn_of(&*store, "a", T0).await;
    let new = turn_of(&*store, "a", at(LEASE_MS)).await;

    let stale = TurnCommit {
        new_events: vec![started(1)],
        messages: vec![
            user_event("peer", "x", at(LEASE_MS)),
            user_event("a", "self", at(LEASE_MS)),
        ],
        new_instances: vec![new_instance("child", "wf")],
        tasks: vec![new_task("a", 1, at(LEASE_MS))],
        status: InstanceStatus::Completed,
        output: Some(payload("nope")),
        ..commit_of(&old, at(LEASE_MS + 1))
    };
    assert_lease_lost(
        commit(&*store, stale).await,
        "commit with a superseded token",
    );

    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);
    let info = store.instance("a").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Pending);
    assert_eq!(info.output, None);
    assert_eq!(info.updated_at, T0);
    assert_eq!(store.instance("child").await.unwrap(), None);
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(LEASE_MS + 1), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let stats = store.manage().stats().await.unwrap();
    assert_eq!(stats.messages, 2, "a's start and event, nothing else");
    assert_eq!(stats.tasks, 0);
    // Nothing for the peer, and a's inbox is what it was (once the current lease expires).
    assert!(store
        .fetch_turns(
            &crate::FetchFilter::default(),
            at(LEASE_MS + 1),
            10,
            LEASE,
            None
        )
        .await
        .unwrap()
        .is_empty());
    let later = turn_of(&*store, "a", at(2 * LEASE_MS)).await;
    assert_eq!(later.messages, new.messages);
    assert_eq!(later.messages, old.messages);
}

/// A commit whose `journal_base` is not the journal's length is rejected.
pub async fn journal_base_mismatch_is_rejected(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "a", T0).await;
    let mut ahead = commit_of(&work, T0);
    ahead.journal_base = 1;
    ahead.new_events = vec![started(1)];
    assert_lease_lost(
        commit(&*store, ahead).await,
        "journal_base beyond the journal",
    );
    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);

    let mut ok = commit_of(&work, T0);
    ok.new_events = vec![started(1), event(2)];
    commit(&*store, ok).await.unwrap();

    store.send(user_event("a", "e", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    assert_eq!(journal_len(&work), 2);
    let mut behind = commit_of(&work, T0);
    behind.journal_base = 1;
    behind.new_events = vec![event(3)];
    assert_lease_lost(
        commit(&*store, behind).await,
        "journal_base behind the journal",
    );
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2)]
    );

    let mut ok = commit_of(&work, T0);
    ok.new_events = vec![event(3)];
    commit(&*store, ok).await.unwrap();
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2), event(3)]
    );
}

/// A commit that would begin an execution's journal with anything but `workflow_started`, or
/// hold `workflow_started` anywhere else, is refused with an error that says so, and writes
/// nothing: not its events, its consumed messages, nor its status.
pub async fn a_journal_always_begins_with_its_start(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store.send(user_event("a", "e", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    let mut headless = commit_of(&work, T0);
    headless.new_events = vec![event(1), started(2)];
    let refused = commit(&*store, headless).await;
    match &refused {
        Err(StoreError::Invalid(m)) if m.contains("would begin with `step_completed`") => {}
        other => panic!("a journal that does not begin with its start: {other:?}"),
    }
    let twice = {
        let mut c = commit_of(&work, T0);
        c.new_events = vec![started(1), event(2), started(3)];
        commit(&*store, c).await
    };
    match &twice {
        Err(StoreError::Invalid(m)) if m.contains("`workflow_started` again at position 2") => {}
        other => panic!("a second start in one journal: {other:?}"),
    }
    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);
    let info = store.instance("a").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Pending);

    let mut ok = commit_of(&work, T0);
    ok.new_events = vec![started(1), event(2)];
    commit(&*store, ok).await.unwrap();
    store.send(user_event("a", "f", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    let mut restart = commit_of(&work, T0);
    restart.new_events = vec![started(3)];
    assert!(
        matches!(commit(&*store, restart).await, Err(StoreError::Invalid(_))),
        "a start appended to a journal that has one"
    );
    assert_eq!(
        store.journal("a", None).await.unwrap(),
        vec![started(1), event(2)]
    );
}

/// One commit's rejection in a batch does not affect the others.
pub async fn commits_in_a_batch_are_independent(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("x", "wf"))
        .await
        .unwrap();
    store
        .create_instance(new_instance("y", "wf"))
        .await
        .unwrap();
    let work = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 10, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), 2);
    let (x, y) = if work[0].instance.id == "x" {
        (&work[0], &work[1])
    } else {
        (&work[1], &work[0])
    };

    let mut wrong = commit_of(x, T0);
    wrong.token = y.token; // the other instance's token is not x's
    wrong.new_events = vec![started(1)];
    let mut right = commit_of(y, T0);
    right.new_events = vec![started(2)];
    let results = store.commit_turns(vec![wrong, right]).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        matches!(results[0], Err(StoreError::LeaseLost { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");

    assert_eq!(store.journal("x", None).await.unwrap(), vec![]);
    assert_eq!(store.journal("y", None).await.unwrap(), vec![started(2)]);
    assert_eq!(
        store.instance("y").await.unwrap().unwrap().status,
        InstanceStatus::Running
    );
    assert_eq!(
        store.instance("x").await.unwrap().unwrap().status,
        InstanceStatus::Pending
    );
}

/// A commit that fails part way (here: its last child instance has an invalid id, which a
/// store may only find after writing the rest) leaves nothing half-written, and the turn's
/// lease still holds for a correct commit.
pub async fn a_commit_that_fails_part_way_leaves_nothing(store: Arc<dyn Store>) {
    start(&*store, "peer", vec![]).await;
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store.send(user_event("a", "e", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    assert_eq!(work.messages.len(), 2);

    let broken = TurnCommit {
        new_events: vec![started(1), event(2)],
        messages: vec![user_event("peer", "x", T0)],
        new_instances: vec![new_instance("child", "wf"), new_instance("", "wf")],
        tasks: vec![new_task("a", 1, T0)],
        status: InstanceStatus::Completed,
        output: Some(payload("nope")),
        ..commit_of(&work, T0)
    };
    let result = commit(&*store, broken).await;
    assert!(matches!(result, Err(StoreError::Invalid(_))), "{result:?}");

    assert_eq!(store.journal("a", None).await.unwrap(), vec![]);
    let info = store.instance("a").await.unwrap().unwrap();
    assert_eq!((info.status, info.output), (InstanceStatus::Pending, None));
    assert_eq!(store.instance("child").await.unwrap(), None);
    let stats = store.manage().stats().await.unwrap();
    assert_eq!(stats.tasks, 0);
    assert_eq!(
        stats.messages, 2,
        "a's start and event; nothing sent to the peer"
    );

    // The same turn commits correctly afterwards.
    let mut fixed = commit_of(&work, T0);
    fixed.new_events = vec![started(1)];
    commit(&*store, fixed).await.unwrap();
    assert_eq!(store.journal("a", None).await.unwrap(), vec![started(1)]);
    assert_eq!(store.manage().stats().await.unwrap().messages, 0);
}

/// Messages a turn did not consume are fetched again once the turn commits.
pub async fn unconsumed_messages_are_fetched_again(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    store.send(user_event("a", "later", T0)).await.unwrap();
    let work = turn_of(&*store, "a", T0).await;
    assert_eq!(work.messages.len(), 2);
    let mut c = commit_of(&work, T0);
    c.consumed = vec![work.messages[0].id];
    commit(&*store, c).await.unwrap();

    let again = turn_of(&*store, "a", T0).await;
    assert_ne!(again.token, work.token);
    assert_eq!(again.messages, work.messages[1..]);
}

/// A message is not fetched before its `visible_at`, and is fetched from then on.
pub async fn delayed_messages_are_not_visible_early(store: Arc<dyn Store>) {
    start(&*store, "a", vec![]).await;
    store
        .send(user_event("a", "delayed", at(10_000)))
        .await
        .unwrap();
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(9_999), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    let work = turn_of(&*store, "a", at(10_000)).await;
    assert_eq!(work.messages.len(), 1);
    assert_eq!(work.messages[0].visible_at, at(10_000));
    assert_eq!(event_name(&work.messages[0].kind), Some("delayed"));

    // The same for a message a turn sends (a timer).
    let mut c = commit_of(&work, at(10_000));
    c.messages = vec![NewMessage {
        instance_id: "a".into(),
        kind: MessageKind::TimerFired {
            execution: 1,
            op: OpId::new(None, 1),
        },
        visible_at: at(20_000),
    }];
    commit(&*store, c).await.unwrap();
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(19_999), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    let work = turn_of(&*store, "a", at(20_000)).await;
    assert_eq!(
        work.messages[0].kind,
        MessageKind::TimerFired {
            execution: 1,
            op: OpId::new(None, 1)
        }
    );

    // Only the visible ones are handed out with a turn.
    store
        .send(user_event("a", "now", at(20_000)))
        .await
        .unwrap();
    store
        .send(user_event("a", "soon", at(25_000)))
        .await
        .unwrap();
    commit(&*store, commit_of(&work, at(20_000))).await.unwrap();
    let work = turn_of(&*store, "a", at(20_000)).await;
    let names: Vec<_> = work.messages.iter().map(|m| event_name(&m.kind)).collect();
    assert_eq!(names, [Some("now")]);
}

/// An instance's messages are delivered in the order they were sent, whatever their
/// `visible_at`.
pub async fn messages_are_delivered_in_send_order(store: Arc<dyn Store>) {
    start(&*store, "a", vec![]).await;
    start(&*store, "b", vec![]).await;
    let sends = [("m0", 3), ("m1", 1), ("m2", 2), ("m3", 0), ("m4", 5)];
    for (name, offset) in sends {
        store.send(user_event("a", name, at(offset))).await.unwrap();
        store.send(user_event("b", name, at(offset))).await.unwrap();
    }
    for id in ["a", "b"] {
        let work = turn_of(&*store, id, at(10)).await;
        let names: Vec<_> = work.messages.iter().map(|m| event_name(&m.kind)).collect();
        assert_eq!(
            names,
            [Some("m0"), Some("m1"), Some("m2"), Some("m3"), Some("m4")]
        );
        assert!(
            work.messages.windows(2).all(|w| w[0].id < w[1].id),
            "ids increase"
        );

        // Messages a commit sends come after, in the commit's order.
        let mut c = commit_of(&work, at(10));
        c.messages = vec![user_event(id, "c0", at(10)), user_event(id, "c1", at(10))];
        commit(&*store, c).await.unwrap();
        store.send(user_event(id, "s2", at(10))).await.unwrap();
        let work = turn_of(&*store, id, at(10)).await;
        let names: Vec<_> = work.messages.iter().map(|m| event_name(&m.kind)).collect();
        assert_eq!(names, [Some("c0"), Some("c1"), Some("s2")]);
    }
}

/// Messages a commit addresses to unknown or finished instances are dropped without failing
/// the commit.
pub async fn commit_drops_messages_to_unknown_or_finished_instances(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("done", "wf"))
        .await
        .unwrap();
    finish(&*store, "done", T0, InstanceStatus::Completed).await;
    store
        .create_instance(new_instance("a", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "a", T0).await;
    let mut c = commit_of(&work, T0);
    c.messages = vec![
        user_event("ghost", "x", T0),
        user_event("done", "y", T0),
        user_event("a", "z", T0),
    ];
    commit(&*store, c).await.unwrap();

    assert_eq!(store.instance("ghost").await.unwrap(), None);
    assert_eq!(store.manage().stats().await.unwrap().messages, 1);
    let work = store
        .fetch_turns(&crate::FetchFilter::default(), T0, 10, LEASE, None)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].instance.id, "a");
    assert_eq!(event_name(&work[0].messages[0].kind), Some("z"));
}

/// A child instance that already exists is left as it is (and gets no second start message).
pub async fn commit_leaves_existing_child_instances_untouched(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("kid", "kid-wf"))
        .await
        .unwrap();
    let before = store.instance("kid").await.unwrap().unwrap();
    store
        .create_instance(new_instance("p", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "p", T0).await;
    let mut again = new_instance("kid", "other-wf");
    again.input = payload(42);
    again.parent = Some(parent_link("p", 1));
    again.created_at = at(5);
    let mut c = commit_of(&work, at(5));
    c.new_instances = vec![again];
    commit(&*store, c).await.unwrap();

    assert_eq!(store.instance("kid").await.unwrap().unwrap(), before);
    let kid = turn_of(&*store, "kid", at(5)).await;
    assert_eq!(kid.messages.len(), 1);
    assert_eq!(kid.messages[0].kind, MessageKind::start(1));
}

/// Continue-as-new moves to execution 2 with a fresh journal, keeps the old journal readable,
/// and leaves the instance running.
pub async fn continue_as_new_starts_a_fresh_execution(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("c", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "c", T0).await;
    let c = TurnCommit {
        new_events: vec![started(1), event(2)],
        messages: vec![NewMessage {
            instance_id: "c".into(),
            kind: MessageKind::start(2),
            visible_at: at(1),
        }],
        continue_as_new: Some(payload("second input")),
        ..commit_of(&work, at(1))
    };
    commit(&*store, c).await.unwrap();

    let info = store.instance("c").await.unwrap().unwrap();
    assert_eq!(info.execution, 2);
    assert_eq!(info.input, payload("second input"));
    assert_eq!(info.status, InstanceStatus::Running);
    assert_eq!(info.updated_at, at(1));
    assert_eq!(store.journal("c", None).await.unwrap(), vec![]);
    assert_eq!(store.journal("c", Some(2)).await.unwrap(), vec![]);
    assert_eq!(
        store.journal("c", Some(1)).await.unwrap(),
        vec![started(1), event(2)]
    );

    let work = turn_of(&*store, "c", at(1)).await;
    assert_eq!(work.instance.execution, 2);
    assert_eq!(work.journal, Ok(Journal::Events(vec![])));
    assert_eq!(work.messages.len(), 1);
    assert_eq!(work.messages[0].kind, MessageKind::start(2));

    let mut next = commit_of(&work, at(2));
    next.new_events = vec![started(3)];
    commit(&*store, next).await.unwrap();
    assert_eq!(store.journal("c", None).await.unwrap(), vec![started(3)]);
    assert_eq!(store.journal("c", Some(2)).await.unwrap(), vec![started(3)]);
    assert_eq!(
        store.journal("c", Some(1)).await.unwrap(),
        vec![started(1), event(2)]
    );
    match store.journal("c", Some(3)).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound for execution 3, got {other:?}"),
    }
}

/// A continue-as-new that is a workflow's retry sets the instance's attempt, and the instance
/// is not due before the retry's start, even for messages sent to it during the backoff; a
/// plain continue-as-new sets the attempt back to 1; a next attempt without a continue-as-new
/// is refused and writes nothing.
pub async fn a_retry_starts_the_next_attempt_after_its_backoff(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("r", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "r", T0).await;
    let mut wrong = commit_of(&work, at(1));
    wrong.next_attempt = Some(crate::NextAttempt {
        attempt: 2,
        start_at: at(10_000),
    });
    match store.commit_turns(vec![wrong]).await.unwrap().remove(0) {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("a next attempt without continue-as-new was {other:?}"),
    }
    let c = TurnCommit {
        new_events: vec![started(1), event(2)],
        messages: vec![NewMessage {
            instance_id: "r".into(),
            kind: MessageKind::start(2),
            visible_at: at(10_000),
        }],
        continue_as_new: Some(payload("same input")),
        next_attempt: Some(crate::NextAttempt {
            attempt: 2,
            start_at: at(10_000),
        }),
        ..commit_of(&work, at(1))
    };
    commit(&*store, c).await.unwrap();
    let info = store.instance("r").await.unwrap().unwrap();
    assert_eq!((info.execution, info.attempt), (2, 2));
    assert_eq!(info.status, InstanceStatus::Running);

    // An event sent during the backoff waits for the start.
    store.send(user_event("r", "early", at(2))).await.unwrap();
    let filter = crate::FetchFilter::default();
    let early = store
        .fetch_turns(&filter, at(9_999), 10, LEASE, None)
        .await
        .unwrap();
    assert!(early.is_empty(), "due during the backoff: {early:?}");
    assert_eq!(store.next_due(at(2)).await.unwrap().turn, Some(at(10_000)));
    let work = turn_of(&*store, "r", at(10_000)).await;
    assert_eq!(work.instance.attempt, 2);
    let kinds: Vec<_> = work.messages.iter().map(|m| &m.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(kinds[0], &MessageKind::start(2));

    // A plain continue-as-new runs attempt 1 again.
    let c = TurnCommit {
        new_events: vec![started(1)],
        messages: vec![NewMessage {
            instance_id: "r".into(),
            kind: MessageKind::start(3),
            visible_at: at(10_001),
        }],
        continue_as_new: Some(payload("next")),
        ..TurnCommit::consuming(&work, at(10_001))
    };
    commit(&*store, c).await.unwrap();
    let info = store.instance("r").await.unwrap().unwrap();
    assert_eq!((info.execution, info.attempt), (3, 1));
}

/// A plain continue-as-new makes the instance due no earlier than its new execution's start
/// message is visible. A message sent meanwhile with an earlier time (by a client whose clock
/// is behind, or seen by a fetch whose time was read before the commit) does not make the new
/// execution's first turn fetchable without its start, which carries over what the last
/// execution left: that turn would begin the execution without it.
pub async fn a_new_execution_is_not_due_before_its_start(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("n", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "n", T0).await;
    let start = MessageKind::Start {
        execution: 2,
        carried: vec![MessageKind::Event {
            name: "carried".into(),
            data: payload("carried"),
        }],
        retry: None,
    };
    let c = TurnCommit {
        new_events: vec![started(1), event(2)],
        messages: vec![NewMessage {
            instance_id: "n".into(),
            kind: start.clone(),
            visible_at: at(100),
        }],
        continue_as_new: Some(payload("next")),
        ..commit_of(&work, at(100))
    };
    commit(&*store, c).await.unwrap();
    store.send(user_event("n", "late", at(50))).await.unwrap();

    let filter = crate::FetchFilter::default();
    let early = store
        .fetch_turns(&filter, at(99), 10, LEASE, None)
        .await
        .unwrap();
    assert!(early.is_empty(), "due before its start: {early:?}");
    assert_eq!(store.next_due(at(50)).await.unwrap().turn, Some(at(100)));
    let work = turn_of(&*store, "n", at(100)).await;
    assert_eq!(work.instance.execution, 2);
    let kinds: Vec<_> = work.messages.iter().map(|m| &m.kind).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&&start), "{kinds:?}");
}

/// Finishing deletes the instance's remaining messages and tasks (including those the
/// finishing turn sends itself), and later sends are refused.
pub async fn finishing_deletes_inbox_and_tasks(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("f", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "f", T0).await;
    let mut c = commit_of(&work, T0);
    c.tasks = vec![new_task("f", 1, T0), new_task("f", 2, at(50_000))];
    c.messages = vec![NewMessage {
        instance_id: "f".into(),
        kind: MessageKind::TimerFired {
            execution: 1,
            op: OpId::new(None, 3),
        },
        visible_at: at(60_000),
    }];
    commit(&*store, c).await.unwrap();
    store.send(user_event("f", "now", at(1))).await.unwrap();
    store.send(user_event("f", "unread", at(1))).await.unwrap();

    let work = turn_of(&*store, "f", at(1)).await;
    assert_eq!(work.messages.len(), 2);
    let mut done = commit_of(&work, at(2));
    done.consumed = vec![work.messages[0].id];
    done.messages = vec![user_event("f", "to-self", at(2))];
    done.tasks = vec![new_task("f", 4, at(2))];
    done.status = InstanceStatus::Failed;
    done.failure = Some(failure("gave up"));
    commit(&*store, done).await.unwrap();

    let info = store.instance("f").await.unwrap().unwrap();
    assert_eq!(info.status, InstanceStatus::Failed);
    assert_eq!(info.failure, Some(failure("gave up")));
    assert_eq!(info.output, None);
    assert_eq!(info.updated_at, at(2));
    let stats = store.manage().stats().await.unwrap();
    assert_eq!(stats.messages, 0);
    assert_eq!(stats.tasks, 0);
    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(100_000), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .fetch_tasks(&crate::FetchFilter::default(), at(100_000), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_due(at(2)).await.unwrap(),
        crate::types::NextDue::default()
    );
    match store.send(user_event("f", "too late", at(3))).await {
        Err(StoreError::InstanceFinished { id, status }) => {
            assert_eq!(id, "f");
            assert_eq!(status, "failed");
        }
        other => panic!("expected InstanceFinished, got {other:?}"),
    }
    // The journal is kept until the instance is purged.
    assert_eq!(store.journal("f", None).await.unwrap(), vec![]);
}

/// An abandoned turn releases the lease; the instance is fetched again at `retry_at`, not
/// before, with a new token, and the old token is dead.
pub async fn abandon_turn_delays_the_retry(store: Arc<dyn Store>) {
    store
        .create_instance(new_instance("r", "wf"))
        .await
        .unwrap();
    let work = turn_of(&*store, "r", T0).await;
    store
        .abandon_turn("r", work.token, at(5_000))
        .await
        .unwrap();

    assert!(store
        .fetch_turns(&crate::FetchFilter::default(), at(4_999), 10, LEASE, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.next_due(T0).await.unwrap().turn, Some(at(5_000)));
    let again = turn_of(&*store, "r", at(5_000)).await;
    assert_ne!(again.token, work.token);
    assert_eq!(again.messages, work.messages);

    assert_lease_lost(
        store.abandon_turn("r", work.token, at(6_000)).await,
        "abandon with the old token",
    );
    assert_lease_lost(
        commit(&*store, commit_of(&work, at(5_000))).await,
        "commit with the old token",
    );
    commit(&*store, commit_of(&again, at(5_000))).await.unwrap();
    assert_eq!(
        store.instance("r").await.unwrap().unwrap().status,
        InstanceStatus::Running
    );
}
