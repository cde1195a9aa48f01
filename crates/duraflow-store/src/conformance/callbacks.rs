//! Callbacks: opened by turn commits, resolved by external parties by token
//! ([`Store::resolve_callback`]).

use std::sync::Arc;

use duraflow_core::{OpId, Timestamp};

use super::Manage;
use super::{
    assert_lease_lost, at, commit, commit_of, event_name, failure, finish, first_turn, payload,
    started, turn_of, user_event, LEASE_MS, T0,
};
use crate::error::StoreError;
use crate::store::Store;
use crate::types::{
    CallbackResolution, CallbackStatus, CallbackTarget, InstanceStatus, MessageKind, NewCallback,
    NewMessage, OpResult, TurnCommit,
};

/// A callback of execution 1 of `id` for operation `seq`, with `token`.
fn callback(id: &str, seq: u32, token: &str, timeout_at: Option<Timestamp>) -> NewCallback {
    NewCallback {
        token: token.to_owned(),
        instance_id: id.to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
        name: format!("approval-{seq}"),
        timeout_at,
        created_at: T0,
    }
}

/// What resolving `cb` reaches.
fn target(cb: &NewCallback) -> CallbackTarget {
    CallbackTarget {
        instance_id: cb.instance_id.clone(),
        execution: cb.execution,
        op: cb.op.clone(),
        name: cb.name.clone(),
    }
}

/// Creates instance `id` and runs its first turn at `T0`, opening `callbacks`.
async fn start_with(store: &dyn Store, id: &str, callbacks: Vec<NewCallback>) {
    let work = first_turn(store, id).await;
    let c = TurnCommit {
        new_events: vec![started(1)],
        callbacks,
        ..commit_of(&work, T0)
    };
    commit(store, c).await.unwrap();
}

async fn complete(
    store: &dyn Store,
    now: Timestamp,
    token: &str,
) -> Result<CallbackTarget, StoreError> {
    store
        .resolve_callback(now, token, CallbackResolution::Complete(payload("yes")))
        .await
}

fn assert_closed<T: std::fmt::Debug>(result: Result<T, StoreError>, status: CallbackStatus) {
    match result {
        Err(StoreError::CallbackClosed { status: s }) if s == status => {}
        other => panic!("expected CallbackClosed({status}), got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::CallbackNotFound) => {}
        other => panic!("{what}: expected CallbackNotFound, got {other:?}"),
    }
}

/// The number of inbox messages and open callbacks.
async fn counts(store: &dyn Store) -> (u64, u64) {
    let stats = store.manage().stats().await.unwrap();
    (stats.messages, stats.callbacks)
}

/// Completing a callback by its token closes it and puts a `callback_result` in its instance's
/// inbox, after the messages sent before it; a second completion is refused and posts nothing.
pub async fn completing_a_callback_posts_its_result(store: Arc<dyn Store>) {
    let cb = callback("a", 1, "tok-a", None);
    start_with(&*store, "a", vec![cb.clone()]).await;
    assert_eq!(counts(&*store).await, (0, 1));
    store.send(user_event("a", "before", at(1))).await.unwrap();

    assert_eq!(
        complete(&*store, at(2), "tok-a").await.unwrap(),
        target(&cb)
    );
    assert_eq!(counts(&*store).await, (2, 0));
    assert_closed(
        complete(&*store, at(3), "tok-a").await,
        CallbackStatus::Completed,
    );
    assert_closed(
        store
            .resolve_callback(at(3), "tok-a", CallbackResolution::Heartbeat)
            .await,
        CallbackStatus::Completed,
    );
    assert_eq!(counts(&*store).await, (2, 0), "no second message");

    let work = turn_of(&*store, "a", at(3)).await;
    assert_eq!(work.messages.len(), 2);
    assert_eq!(event_name(&work.messages[0].kind), Some("before"));
    assert!(work.messages[0].id < work.messages[1].id);
    assert_eq!(work.messages[1].visible_at, at(2));
    assert_eq!(
        work.messages[1].kind,
        MessageKind::CallbackResult {
            execution: 1,
            op: cb.op.clone(),
            result: OpResult::Ok(payload("yes")),
        }
    );
}

/// Failing a callback posts its failure as an `Err` result and closes it as failed.
pub async fn failing_a_callback_posts_an_error(store: Arc<dyn Store>) {
    let cb = callback("a", 1, "tok-a", None);
    start_with(&*store, "a", vec![cb.clone()]).await;
    let why = failure("not approved").with_code(Some("RejectedError".into()));
    let reached = store
        .resolve_callback(at(1), "tok-a", CallbackResolution::Fail(why.clone()))
        .await
        .unwrap();
    assert_eq!(reached, target(&cb));
    assert_closed(
        complete(&*store, at(2), "tok-a").await,
        CallbackStatus::Failed,
    );
    let work = turn_of(&*store, "a", at(2)).await;
    assert_eq!(work.messages.len(), 1);
    assert_eq!(
        work.messages[0].kind,
        MessageKind::CallbackResult {
            execution: 1,
            op: cb.op,
            result: OpResult::Err(why),
        }
    );
}

/// A token nobody issued is not found, and nothing changes.
pub async fn an_unknown_token_is_not_found(store: Arc<dyn Store>) {
    start_with(&*store, "a", vec![callback("a", 1, "tok-a", None)]).await;
    for forged in ["tok-b", "", "tok-a ", "TOK-A"] {
        assert_not_found(complete(&*store, at(1), forged).await, forged);
        assert_not_found(
            store
                .resolve_callback(at(1), forged, CallbackResolution::Heartbeat)
                .await,
            forged,
        );
    }
    assert_eq!(counts(&*store).await, (0, 1));
    complete(&*store, at(2), "tok-a").await.unwrap();
}

/// A callback whose `timeout_at` has come is closed as timed out and refused, from then on.
pub async fn a_callback_past_its_timeout_is_refused(store: Arc<dyn Store>) {
    let cbs = vec![
        callback("a", 1, "tok-1", Some(at(100))),
        callback("a", 2, "tok-2", Some(at(100))),
    ];
    start_with(&*store, "a", cbs).await;
    assert_closed(
        complete(&*store, at(100), "tok-1").await,
        CallbackStatus::TimedOut,
    );
    assert_closed(
        complete(&*store, at(50), "tok-1").await,
        CallbackStatus::TimedOut,
    );
    assert_eq!(
        counts(&*store).await,
        (0, 1),
        "no message, one callback still open"
    );
    complete(&*store, at(99), "tok-2").await.unwrap();
}

/// A callback a turn closed itself (`closed_callbacks`) refuses later resolutions with that
/// status; the others stay open, and a callback already completed keeps its status.
pub async fn callbacks_closed_by_a_turn_are_refused(store: Arc<dyn Store>) {
    let cbs = vec![
        callback("a", 1, "tok-1", None),
        callback("a", 2, "tok-2", None),
        callback("a", 3, "tok-3", None),
    ];
    start_with(&*store, "a", cbs).await;
    complete(&*store, at(1), "tok-3").await.unwrap();
    let work = turn_of(&*store, "a", at(2)).await;
    let c = TurnCommit {
        journal_base: 1,
        closed_callbacks: vec![
            (OpId::new(None, 1), CallbackStatus::TimedOut),
            (OpId::new(None, 3), CallbackStatus::TimedOut),
        ],
        ..commit_of(&work, at(2))
    };
    commit(&*store, c).await.unwrap();
    assert_closed(
        complete(&*store, at(3), "tok-1").await,
        CallbackStatus::TimedOut,
    );
    assert_closed(
        complete(&*store, at(3), "tok-3").await,
        CallbackStatus::Completed,
    );
    complete(&*store, at(3), "tok-2").await.unwrap();
}

/// A heartbeat puts a `callback_heartbeat` in the inbox and leaves the callback open.
pub async fn a_heartbeat_keeps_the_callback_open(store: Arc<dyn Store>) {
    let cb = callback("a", 1, "tok-a", None);
    start_with(&*store, "a", vec![cb.clone()]).await;
    let reached = store
        .resolve_callback(at(1), "tok-a", CallbackResolution::Heartbeat)
        .await
        .unwrap();
    assert_eq!(reached, target(&cb));
    assert_eq!(counts(&*store).await, (1, 1));
    complete(&*store, at(2), "tok-a").await.unwrap();
    let work = turn_of(&*store, "a", at(2)).await;
    let kinds: Vec<_> = work.messages.iter().map(|m| m.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            MessageKind::CallbackHeartbeat {
                execution: 1,
                op: cb.op.clone(),
            },
            MessageKind::CallbackResult {
                execution: 1,
                op: cb.op,
                result: OpResult::Ok(payload("yes")),
            },
        ]
    );
}

/// The callbacks of a finished instance are gone: not found, not counted; and purging it
/// leaves none behind.
pub async fn callbacks_of_a_finished_instance_are_not_found(store: Arc<dyn Store>) {
    start_with(&*store, "a", vec![callback("a", 1, "tok-a", None)]).await;
    finish(&*store, "a", at(1), InstanceStatus::Completed).await;
    assert_not_found(complete(&*store, at(2), "tok-a").await, "finished");
    assert_eq!(counts(&*store).await, (0, 0));
    assert!(store.manage().purge("a").await.unwrap());
    assert_not_found(complete(&*store, at(3), "tok-a").await, "purged");
}

/// Continuing as new drops the callbacks of the execution before; those the new execution
/// opens work.
pub async fn continue_as_new_drops_the_old_executions_callbacks(store: Arc<dyn Store>) {
    start_with(&*store, "a", vec![callback("a", 1, "tok-1", None)]).await;
    store.send(user_event("a", "go", at(1))).await.unwrap();
    let work = turn_of(&*store, "a", at(1)).await;
    let c = TurnCommit {
        journal_base: 1,
        messages: vec![NewMessage {
            instance_id: "a".into(),
            kind: MessageKind::start(2),
            visible_at: at(1),
        }],
        // Opened by the execution that ends here: dropped with it.
        callbacks: vec![callback("a", 2, "tok-2", None)],
        continue_as_new: Some(payload("next")),
        ..commit_of(&work, at(1))
    };
    commit(&*store, c).await.unwrap();
    assert_not_found(complete(&*store, at(2), "tok-1").await, "old execution");
    assert_not_found(
        complete(&*store, at(2), "tok-2").await,
        "opened as it ended",
    );
    assert_eq!(counts(&*store).await.1, 0);

    let work = turn_of(&*store, "a", at(2)).await;
    assert_eq!(work.instance.execution, 2);
    let mut cb = callback("a", 1, "tok-3", None);
    cb.execution = 2;
    let c = TurnCommit {
        new_events: vec![started(2)],
        callbacks: vec![cb.clone()],
        ..commit_of(&work, at(2))
    };
    commit(&*store, c).await.unwrap();
    assert_eq!(
        complete(&*store, at(3), "tok-3").await.unwrap(),
        target(&cb)
    );
}

/// A commit refused for a lost lease opens no callback; nor does one whose token is taken,
/// which is refused as invalid and writes nothing.
pub async fn refused_commits_open_no_callbacks(store: Arc<dyn Store>) {
    let old = first_turn(&*store, "a").await;
    let new = turn_of(&*store, "a", at(LEASE_MS)).await;
    let stale = TurnCommit {
        new_events: vec![started(1)],
        callbacks: vec![callback("a", 1, "tok-a", None)],
        ..commit_of(&old, at(LEASE_MS + 1))
    };
    assert_lease_lost(commit(&*store, stale).await, "the old token");
    assert_not_found(
        complete(&*store, at(LEASE_MS + 2), "tok-a").await,
        "lost lease",
    );

    let c = TurnCommit {
        new_events: vec![started(1)],
        callbacks: vec![callback("a", 1, "tok-a", None)],
        ..commit_of(&new, at(LEASE_MS + 1))
    };
    commit(&*store, c).await.unwrap();
    start_with(&*store, "b", vec![]).await;
    store.send(user_event("b", "go", at(1))).await.unwrap();
    let work = turn_of(&*store, "b", at(LEASE_MS + 2)).await;
    let taken = TurnCommit {
        journal_base: 1,
        callbacks: vec![callback("b", 1, "tok-a", None)],
        ..commit_of(&work, at(LEASE_MS + 2))
    };
    match commit(&*store, taken).await {
        Err(StoreError::Invalid(message)) => assert!(message.contains("token"), "{message}"),
        other => panic!("expected Invalid for a taken token, got {other:?}"),
    }
    assert_eq!(
        complete(&*store, at(LEASE_MS + 3), "tok-a")
            .await
            .unwrap()
            .instance_id,
        "a",
        "the taken token still reaches its own callback"
    );
    assert_eq!(counts(&*store).await.0, 2, "b's message was not consumed");
}
