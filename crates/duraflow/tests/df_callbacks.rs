//! Reference cases, section `callback` (4-x) of `durable-functions-behaviours.md`: each case
//! as a test named after its id, on the memory and SQLite stores under virtual time, with the
//! test acting as the external party (completing or failing the callback by token through the
//! client after the stated delay), comparing the journal record by record (see `df_support`
//! for the record notation).
//!
//! Where duraflow deliberately differs from AWS, the tests follow duraflow:
//!
//! - AWS's callback `started`/`succeeded`/`failed`/`timed out` are `callback_created`,
//!   `callback_completed` and `callback_failed`; a timeout is a `callback_failed` of kind
//!   `timeout` with code `callback_timed_out` (AWS `Callback.Timeout`) or
//!   `callback_heartbeat_timed_out` (AWS `Callback.Heartbeat`).
//! - The timeout is recorded as a deadline (`timeout_at`, in milliseconds), not as a number of
//!   seconds; the record shows it as the time from the record to the deadline.
//! - An external failure is an application failure whose code is the sender's error type
//!   (`RejectedError`) and whose message is the sender's, both verbatim; uncaught, the
//!   execution fails with that same failure (code and message), not a wrapping error.
//! - A heartbeat is journaled (`callback_heartbeat`), not invisible as in AWS.
//! - Turn boundaries (`‖`) are not journaled: a suspension is checked by the journal standing
//!   still at that record with the instance running, until the test moves the clock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;
mod df_support;

use df_support::{
    assert_recs, at_of, between, finished, on_both_stores, random_alnum, suspended_at, token_of,
};
use duraflow::prelude::*;
use duraflow::EventKind;

/// Opens a callback named `name` (with a timeout, in seconds, unless 0) and returns its value.
async fn one_callback(
    ctx: WorkflowContext,
    (name, timeout): (String, u64),
) -> Result<String, WorkflowError> {
    let mut cb = ctx.callback::<String>(&name);
    if timeout > 0 {
        cb = cb.timeout(Duration::from_secs(timeout));
    }
    cb.await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_4_1_create_callback_success() {
    on_both_stores(
        |b| b.workflow("cb", one_callback),
        |rig| async move {
            let (name, payload) = (random_alnum(10), random_alnum(12));
            let id = rig.client.start("cb", &(&name, 0u64)).await.unwrap();
            let created = format!("callback_created 0 {name}");
            suspended_at(&rig, id.as_ref(), &["workflow_started", &created]).await;
            let token = token_of(&rig, id.as_ref(), &name).await;
            rig.clock.advance(Duration::from_secs(1));
            rig.client
                .complete_callback(&token, &payload)
                .await
                .unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), payload.as_str());
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    &created,
                    &format!("callback_completed 0 \"{payload}\""),
                    &format!("workflow_completed \"{payload}\""),
                ],
            );
            // Resumed only after the completion, a second later.
            let opened = at_of(&journal, |k| matches!(k, EventKind::CallbackCreated { .. }));
            let done = at_of(&journal, |k| {
                matches!(k, EventKind::CallbackCompleted { .. })
            });
            assert!(between(opened, done) >= Duration::from_secs(1));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_4_3_general_timeout() {
    on_both_stores(
        |b| b.workflow("cb", one_callback),
        |rig| async move {
            let name = random_alnum(10);
            let id = rig.client.start("cb", &(&name, 5u64)).await.unwrap();
            let created = format!("callback_created 0 {name} timeout=5000ms");
            suspended_at(&rig, id.as_ref(), &["workflow_started", &created]).await;
            rig.clock.advance(Duration::from_secs(5));
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    &created,
                    "callback_failed 0 timeout/callback_timed_out",
                    "workflow_failed timeout/callback_timed_out",
                ],
            );
            // Not before its 5 seconds.
            let opened = at_of(&journal, |k| matches!(k, EventKind::CallbackCreated { .. }));
            let failed = at_of(&journal, |k| matches!(k, EventKind::CallbackFailed { .. }));
            assert!(between(opened, failed) >= Duration::from_secs(5));
            let failure = out.unwrap_err();
            assert_eq!(failure.kind, FailureKind::Timeout);
            assert_eq!(failure.code.as_deref(), Some("callback_timed_out"));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_4_6_external_failure_uncaught() {
    on_both_stores(
        |b| b.workflow("cb", one_callback),
        |rig| async move {
            let name = random_alnum(10);
            let id = rig.client.start("cb", &(&name, 0u64)).await.unwrap();
            let created = format!("callback_created 0 {name}");
            suspended_at(&rig, id.as_ref(), &["workflow_started", &created]).await;
            let token = token_of(&rig, id.as_ref(), &name).await;
            rig.clock.advance(Duration::from_secs(1));
            rig.client
                .fail_callback(&token, "RejectedError", "not approved")
                .await
                .unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    &created,
                    "callback_failed 0 application/RejectedError",
                    "workflow_failed application/RejectedError",
                ],
            );
            let EventKind::CallbackFailed { failure, .. } = &journal[2].kind else {
                unreachable!()
            };
            assert_eq!(failure.message, "not approved");
            let failure = out.unwrap_err();
            assert_eq!(failure.message, "not approved");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_4_17_two_callbacks_sequential() {
    on_both_stores(
        |b| {
            b.workflow(
                "two",
                |ctx: WorkflowContext, (a, b): (String, String)| async move {
                    let ra: String = ctx.callback::<String>(&a).await?;
                    let rb: String = ctx.callback::<String>(&b).await?;
                    Ok(vec![ra, rb])
                },
            )
        },
        |rig| async move {
            let (a, b) = (random_alnum(10), random_alnum(10));
            let (pa, pb) = (random_alnum(12), random_alnum(12));
            let id = rig.client.start("two", &(&a, &b)).await.unwrap();
            let created_a = format!("callback_created 0 {a}");
            suspended_at(&rig, id.as_ref(), &["workflow_started", &created_a]).await;
            let token_a = token_of(&rig, id.as_ref(), &a).await;
            rig.clock.advance(Duration::from_secs(1));
            rig.client.complete_callback(&token_a, &pa).await.unwrap();
            // B is created only once A has resolved.
            let completed_a = format!("callback_completed 0 \"{pa}\"");
            let created_b = format!("callback_created 1 {b}");
            suspended_at(
                &rig,
                id.as_ref(),
                &["workflow_started", &created_a, &completed_a, &created_b],
            )
            .await;
            let token_b = token_of(&rig, id.as_ref(), &b).await;
            assert_ne!(token_a, token_b);
            rig.clock.advance(Duration::from_secs(1));
            rig.client.complete_callback(&token_b, &pb).await.unwrap();
            let (out, journal) = finished(&rig, id.as_ref()).await;
            assert_eq!(out.unwrap(), serde_json::json!([pa, pb]));
            assert_recs(
                &rig.backend,
                &journal,
                &[
                    "workflow_started",
                    &created_a,
                    &completed_a,
                    &created_b,
                    &format!("callback_completed 1 \"{pb}\""),
                    &format!("workflow_completed [\"{pa}\",\"{pb}\"]"),
                ],
            );
        },
    )
    .await;
}
