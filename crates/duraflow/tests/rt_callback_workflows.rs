//! Callbacks end to end, on the memory and SQLite stores under virtual time: a workflow opens
//! a callback, the test completes, fails or heartbeats it by token through the client, and the
//! workflow sees the value, the failure or the timeout; forged, second and expired
//! resolutions are refused with clear errors and change nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{eventually, virtual_clock, virtual_options};
use duraflow::prelude::*;
use duraflow::{CallbackStatus, EventKind, ManualClock, SqliteStore, Store};

/// Opens callback `approve` with the given limits (in seconds, 0 for none), waits for it, then
/// waits for event `done` before returning its value or failing with its error (so that the
/// instance is still running when the test tries the closed token).
async fn approval(ctx: WorkflowContext, limits: (u64, u64)) -> Result<String, WorkflowError> {
    let mut cb = ctx.callback::<String>("approve");
    if limits.0 > 0 {
        cb = cb.timeout(Duration::from_secs(limits.0));
    }
    if limits.1 > 0 {
        cb = cb.heartbeat_timeout(Duration::from_secs(limits.1));
    }
    let result = cb.await;
    let () = ctx.wait_for_event("done").await?;
    result
}

async fn stores() -> (Vec<Arc<dyn Store>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("cb.db")).await.unwrap();
    (vec![Arc::new(MemoryStore::new()), Arc::new(sqlite)], dir)
}

async fn engine(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Engine {
    Engine::builder()
        .shared_store(store)
        .clock(clock)
        .options(virtual_options())
        .workflow("approval", approval)
        .start()
        .await
        .unwrap()
}

/// The token of the instance's callback, once it is open.
async fn token_of(client: &Client, id: &RunHandle) -> String {
    eventually("the callback is open", || async {
        let journal = client.history(id, None).await.ok()?;
        journal.iter().find_map(|e| match &e.kind {
            EventKind::CallbackCreated { token, .. } => Some(token.clone()),
            _ => None,
        })
    })
    .await
}

async fn status_of(client: &Client, id: &RunHandle) -> InstanceStatus {
    client.status(id).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_completed_by_token_resumes_the_workflow_once() {
    let (stores, _dir) = stores().await;
    for store in stores {
        let engine = engine(store.clone(), virtual_clock()).await;
        let client = engine.client();
        let id = client.start("approval", &(3600u64, 0u64)).await.unwrap();
        let token = token_of(&client, &id).await;
        // A forged token touches nothing.
        let forged = format!("{}0", &token[..token.len() - 1]);
        let forged = if forged == token {
            format!("{token}x")
        } else {
            forged
        };
        assert!(matches!(
            client.complete_callback(&forged, "no").await,
            Err(ClientError::CallbackNotFound)
        ));
        client.complete_callback(&token, "approved").await.unwrap();
        match client.complete_callback(&token, "twice").await {
            Err(ClientError::CallbackClosed { status }) => {
                assert_eq!(status, CallbackStatus::Completed)
            }
            other => panic!("expected the second completion refused, got {other:?}"),
        }
        client.raise_event(&id, "done", &()).await.unwrap();
        let out: String = client.wait(&id).timeout(common::DEADLINE).await.unwrap();
        assert_eq!(out, "approved", "{}", store.backend());
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_by_token_fails_the_workflow_with_its_code_and_message() {
    let (stores, _dir) = stores().await;
    for store in stores {
        let engine = engine(store.clone(), virtual_clock()).await;
        let client = engine.client();
        let id = client.start("approval", &(0u64, 0u64)).await.unwrap();
        let token = token_of(&client, &id).await;
        client
            .fail_callback(&token, "RejectedError", "not approved")
            .await
            .unwrap();
        client.raise_event(&id, "done", &()).await.unwrap();
        let failure = common::failure_of(&client, id.as_ref()).await;
        assert_eq!(failure.message, "not approved");
        assert_eq!(failure.code.as_deref(), Some("RejectedError"));
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_times_out_and_its_token_is_refused_after() {
    let (stores, _dir) = stores().await;
    for store in stores {
        let clock = virtual_clock();
        let engine = engine(store.clone(), clock.clone()).await;
        let client = engine.client();
        let id = client.start("approval", &(60u64, 0u64)).await.unwrap();
        let token = token_of(&client, &id).await;
        clock.advance(Duration::from_secs(61));
        // The workflow saw the timeout and waits for `done`.
        eventually("the timeout is journaled", || async {
            let journal = client.history(&id, None).await.ok()?;
            journal
                .iter()
                .any(|e| matches!(&e.kind, EventKind::EventWaitStarted { .. }))
                .then_some(())
        })
        .await;
        match client.complete_callback(&token, "too late").await {
            Err(ClientError::CallbackClosed { status }) => {
                assert_eq!(status, CallbackStatus::TimedOut)
            }
            other => panic!("expected the late completion refused, got {other:?}"),
        }
        client.raise_event(&id, "done", &()).await.unwrap();
        let failure = common::failure_of(&client, id.as_ref()).await;
        assert_eq!(failure.kind, FailureKind::Timeout);
        assert_eq!(failure.code.as_deref(), Some("callback_timed_out"));
        // The instance has finished: the token is unknown now.
        assert!(matches!(
            client.complete_callback(&token, "later").await,
            Err(ClientError::CallbackNotFound)
        ));
        assert_eq!(status_of(&client, &id).await, InstanceStatus::Failed);
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_callback_alive_until_they_stop() {
    let (stores, _dir) = stores().await;
    for store in stores {
        let clock = virtual_clock();
        let engine = engine(store.clone(), clock.clone()).await;
        let client = engine.client();
        let id = client.start("approval", &(0u64, 600u64)).await.unwrap();
        let token = token_of(&client, &id).await;
        // A heartbeat every 5 minutes for 20 minutes: twice the heartbeat timeout.
        for n in 1..=4usize {
            clock.advance(Duration::from_secs(300));
            client.heartbeat_callback(&token).await.unwrap();
            eventually("the heartbeat is journaled", || async {
                let journal = client.history(&id, None).await.ok()?;
                let beats = common::count(&journal, |k| {
                    matches!(k, EventKind::CallbackHeartbeat { .. })
                });
                (beats == n).then_some(())
            })
            .await;
        }
        assert_eq!(status_of(&client, &id).await, InstanceStatus::Running);
        // Then silence: ten minutes later it has timed out.
        clock.advance(Duration::from_secs(601));
        eventually("the heartbeat timeout is journaled", || async {
            let journal = client.history(&id, None).await.ok()?;
            journal
                .iter()
                .any(|e| {
                    matches!(&e.kind, EventKind::CallbackFailed { failure, .. }
                    if failure.code.as_deref() == Some("callback_heartbeat_timed_out"))
                })
                .then_some(())
        })
        .await;
        match client.heartbeat_callback(&token).await {
            Err(ClientError::CallbackClosed { status }) => {
                assert_eq!(status, CallbackStatus::TimedOut)
            }
            other => panic!("expected the heartbeat refused, got {other:?}"),
        }
        client.raise_event(&id, "done", &()).await.unwrap();
        let failure = common::failure_of(&client, id.as_ref()).await;
        assert_eq!(
            failure.code.as_deref(),
            Some("callback_heartbeat_timed_out")
        );
        engine.shutdown().await;
    }
}
