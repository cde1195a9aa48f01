//! Reference cases, section `wait_for_callback` (7-x) of `durable-functions-behaviours.md`:
//! each case as a test named after its id, on the memory and SQLite stores under virtual time,
//! with the test acting as the external party (completing or failing the callback by token
//! through the client after the stated delay), comparing the journal record by record (see
//! `df_support` for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - The composite is a child context named like the callback (`context_started 0 <name>`),
//!   holding the callback (`0.0`) and the submitter, a step named `submit` (`0.1`).
//! - Callback records and timeouts as in `df_callbacks`: a timeout is `callback_failed` of
//!   kind `timeout` with code `callback_timed_out`, the timeout recorded as a deadline in
//!   milliseconds; an external failure keeps the sender's type (as the code) and message.
//! - A failed context records the callback's failure as it is, and so does the execution.
//! - Turn boundaries (`‖`) are not journaled: a suspension is checked by the journal standing
//!   still at that record with the instance running, until the test moves the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use std::sync::{Arc, Mutex};

use df_support::{assert_recs, finished, on_both_stores, random_alnum, suspended_at, Rig};
use duraflow::prelude::*;
use duraflow::{EngineBuilder, EventKind};

/// The tokens the submitter handed out (one per run of the submitter).
type Tokens = Arc<Mutex<Vec<String>>>;

/// Registers `wfc`: `wait_for_callback` named after the input, with a timeout (seconds) unless
/// 0, whose submitter hands the token to `tokens`.
fn register(b: EngineBuilder, tokens: &Tokens) -> EngineBuilder {
    let tokens = tokens.clone();
    b.workflow(
        "wfc",
        move |ctx: WorkflowContext, (name, timeout): (String, u64)| {
            let tokens = tokens.clone();
            async move {
                let wait = ctx.wait_for_callback::<String, _, _>(&name, move |token, _| {
                    tokens.lock().unwrap().push(token);
                    async { Ok(()) }
                });
                if timeout > 0 {
                    wait.timeout(Duration::from_secs(timeout)).await
                } else {
                    wait.await
                }
            }
        },
    )
}

/// Starts `wfc` and waits for its suspension after the submitter; returns the instance id, the
/// records so far and the token.
async fn submitted(
    rig: &Rig,
    tokens: &Tokens,
    name: &str,
    timeout: u64,
) -> (String, Vec<String>, String) {
    tokens.lock().unwrap().clear();
    let id = rig.client.start("wfc", &(name, timeout)).await.unwrap();
    let created = if timeout > 0 {
        format!("callback_created 0.0 {name} timeout={}ms", timeout * 1000)
    } else {
        format!("callback_created 0.0 {name}")
    };
    let before = vec![
        "workflow_started".to_owned(),
        format!("context_started 0 {name}"),
        created,
        "step_started 0.1 submit".to_owned(),
        "step_completed 0.1 null".to_owned(),
    ];
    let e: Vec<&str> = before.iter().map(String::as_str).collect();
    let journal = suspended_at(rig, id.as_ref(), &e).await;
    let recorded = journal
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::CallbackCreated { token, .. } => Some(token.clone()),
            _ => None,
        })
        .unwrap();
    let handed = tokens.lock().unwrap().clone();
    // The submitter ran once, after the token existed, and got the recorded token.
    assert_eq!(handed, std::slice::from_ref(&recorded), "[{}]", rig.backend);
    (id.to_string(), before, recorded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_callback_7_1_basic_success() {
    let tokens = Tokens::default();
    let t = tokens.clone();
    on_both_stores(
        |b| register(b, &t),
        |rig| {
            let tokens = tokens.clone();
            async move {
                let (name, payload) = (random_alnum(10), random_alnum(12));
                let (id, mut expected, token) = submitted(&rig, &tokens, &name, 0).await;
                rig.clock.advance(Duration::from_secs(1));
                rig.client
                    .complete_callback(&token, &payload)
                    .await
                    .unwrap();
                let (out, journal) = finished(&rig, &id).await;
                assert_eq!(out.unwrap(), payload.as_str());
                expected.extend([
                    format!("callback_completed 0.0 \"{payload}\""),
                    format!("context_completed 0 \"{payload}\""),
                    format!("workflow_completed \"{payload}\""),
                ]);
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                // Not run again by the replay of the last turn.
                assert_eq!(tokens.lock().unwrap().len(), 1, "[{}]", rig.backend);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_callback_7_4_external_failure_uncaught() {
    let tokens = Tokens::default();
    let t = tokens.clone();
    on_both_stores(
        |b| register(b, &t),
        |rig| {
            let tokens = tokens.clone();
            async move {
                let name = random_alnum(10);
                let (id, mut expected, token) = submitted(&rig, &tokens, &name, 0).await;
                rig.clock.advance(Duration::from_secs(1));
                rig.client
                    .fail_callback(&token, "RejectedError", "not approved")
                    .await
                    .unwrap();
                let (out, journal) = finished(&rig, &id).await;
                expected.extend(
                    [
                        "callback_failed 0.0 application/RejectedError",
                        "context_failed 0 application/RejectedError",
                        "workflow_failed application/RejectedError",
                    ]
                    .map(str::to_owned),
                );
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                let EventKind::CallbackFailed { failure, .. } = &journal[5].kind else {
                    unreachable!()
                };
                assert_eq!(failure.message, "not approved");
                assert_eq!(out.unwrap_err().message, "not approved");
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_callback_7_5_timeout() {
    let tokens = Tokens::default();
    let t = tokens.clone();
    on_both_stores(
        |b| register(b, &t),
        |rig| {
            let tokens = tokens.clone();
            async move {
                let name = random_alnum(10);
                let (id, mut expected, _) = submitted(&rig, &tokens, &name, 3).await;
                rig.clock.advance(Duration::from_secs(3));
                let (out, journal) = finished(&rig, &id).await;
                expected.extend(
                    [
                        "callback_failed 0.0 timeout/callback_timed_out",
                        "context_failed 0 timeout/callback_timed_out",
                        "workflow_failed timeout/callback_timed_out",
                    ]
                    .map(str::to_owned),
                );
                let e: Vec<&str> = expected.iter().map(String::as_str).collect();
                assert_recs(&rig.backend, &journal, &e);
                let (opened, timed_out) = (journal[2].at, journal[5].at);
                assert!(timed_out.since(opened) >= Duration::from_secs(3));
                assert_eq!(out.unwrap_err().kind, FailureKind::Timeout);
            }
        },
    )
    .await;
}
