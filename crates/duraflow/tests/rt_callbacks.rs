//! The client's side of callbacks: completing, failing and heartbeating by token, and the
//! errors for forged, closed and timed-out tokens, on the memory and SQLite stores. The
//! callbacks are opened by a turn commit made directly on the store (the workflow side of
//! callbacks comes separately).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use duraflow::crates::store::{Journal, MessageKind, NewCallback, OpResult, TurnCommit, TurnWork};
use duraflow::prelude::*;
use duraflow::{Event, EventKind, OpId, Payload, SqliteStore, Store, Timestamp};

/// When the callbacks are opened: long before the system clock's present, which the client
/// resolves at.
const OPENED: Timestamp = Timestamp(1_000_000);
/// Far after the present: when the test reads the inbox.
const LATER: Timestamp = Timestamp(4_000_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

fn callback(seq: u32, token: &str, timeout_at: Option<Timestamp>) -> NewCallback {
    NewCallback {
        token: token.to_owned(),
        instance_id: "a".to_owned(),
        execution: 1,
        op: OpId::new(None, seq),
        name: format!("approval-{seq}"),
        timeout_at,
        created_at: OPENED,
    }
}

/// The only turn a fetch at `now` leases.
async fn turn(store: &dyn Store, now: Timestamp) -> TurnWork {
    let mut fetched = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            now,
            10,
            LEASE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(fetched.len(), 1);
    fetched.remove(0)
}

/// Creates instance `a` and commits its first turn, opening `callbacks`.
async fn open(store: &dyn Store, callbacks: Vec<NewCallback>) {
    store
        .create_instance(duraflow::crates::store::NewInstance {
            id: "a".into(),
            name: "wf".into(),
            input: Payload::encode(&()).unwrap(),
            parent: None,
            queue: "default".into(),
            created_at: OPENED,
            start_at: None,
            options: Default::default(),
        })
        .await
        .unwrap();
    let work = turn(store, OPENED).await;
    assert_eq!(work.journal, Ok(Journal::Events(vec![])));
    let commit = TurnCommit {
        new_events: vec![Event {
            at: OPENED,
            kind: EventKind::WorkflowStarted {
                name: "wf".into(),
                input: Payload::encode(&()).unwrap(),
                parent: None,
                headers: Default::default(),
                retry: None,
                version: None,
            },
        }],
        callbacks,
        ..TurnCommit::consuming(&work, OPENED)
    };
    let mut results = store.commit_turns(vec![commit]).await.unwrap();
    results.remove(0).unwrap();
}

async fn resolve_by_token(store: Arc<dyn Store>) {
    open(
        &*store,
        vec![
            callback(1, "tok-ok", None),
            callback(2, "tok-fail", None),
            callback(3, "tok-beat", None),
            callback(4, "tok-late", Some(Timestamp(2_000_000))),
        ],
    )
    .await;
    let client = Client::new(store.clone());

    client
        .complete_callback("tok-ok", &serde_json::json!({"approved": true}))
        .await
        .unwrap();
    let again = client.complete_callback("tok-ok", &1).await.unwrap_err();
    assert_eq!(
        again,
        ClientError::CallbackClosed {
            status: CallbackStatus::Completed
        }
    );
    assert!(again.to_string().contains("already completed"), "{again}");

    client
        .fail_callback("tok-fail", "RejectedError", "not approved")
        .await
        .unwrap();
    assert_eq!(
        client.heartbeat_callback("tok-fail").await,
        Err(ClientError::CallbackClosed {
            status: CallbackStatus::Failed
        })
    );

    client.heartbeat_callback("tok-beat").await.unwrap();
    client.heartbeat_callback("tok-beat").await.unwrap();

    let forged = client
        .complete_callback("tok-forged", &1)
        .await
        .unwrap_err();
    assert_eq!(forged, ClientError::CallbackNotFound);
    assert!(
        forged
            .to_string()
            .contains("no open callback has this token"),
        "{forged}"
    );
    assert!(
        !forged.to_string().contains("tok-forged"),
        "a token is never echoed"
    );

    assert_eq!(
        client.complete_callback("tok-late", &1).await,
        Err(ClientError::CallbackClosed {
            status: CallbackStatus::TimedOut
        })
    );

    // A value that cannot be encoded (a map with non-string keys) touches nothing.
    let unencodable = BTreeMap::from([(vec![1u8], 1u8)]);
    match client.complete_callback("tok-beat", &unencodable).await {
        Err(ClientError::Encode { what, .. }) => assert!(what.contains("callback"), "{what}"),
        other => panic!("expected an encode error, got {other:?}"),
    }

    let kinds: Vec<MessageKind> = turn(&*store, LATER)
        .await
        .messages
        .into_iter()
        .map(|m| m.kind)
        .collect();
    let op = |seq| OpId::new(None, seq);
    let rejected = Failure::new(FailureKind::Application, "not approved")
        .with_code(Some("RejectedError".into()));
    assert_eq!(
        kinds,
        [
            MessageKind::CallbackResult {
                execution: 1,
                op: op(1),
                result: OpResult::Ok(
                    Payload::encode(&serde_json::json!({"approved": true})).unwrap()
                ),
            },
            MessageKind::CallbackResult {
                execution: 1,
                op: op(2),
                result: OpResult::Err(rejected),
            },
            MessageKind::CallbackHeartbeat {
                execution: 1,
                op: op(3),
            },
            MessageKind::CallbackHeartbeat {
                execution: 1,
                op: op(3),
            },
        ]
    );
}

#[tokio::test]
async fn callbacks_resolve_by_token_on_the_memory_store() {
    resolve_by_token(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn callbacks_resolve_by_token_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("callbacks.db"))
        .await
        .unwrap();
    resolve_by_token(Arc::new(store)).await;
}
