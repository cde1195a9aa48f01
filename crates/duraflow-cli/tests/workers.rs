//! The worker protocol of `duraflow serve`, spoken over HTTP by the test itself as a worker in
//! another language would: an engine in this test runs a workflow whose activity nobody in
//! the engine registers, and the server hands its task to the "worker".

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::any::Any;
use std::time::Duration;

use axum::http::StatusCode;
use common::server::{expect_error, Server, Token};
use common::DEADLINE;
use duraflow::prelude::*;
use duraflow::{InstanceInfo, IntoStore, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const TOKEN: &str = "w0rker-token";
const AUTH: Token<'static> = Token::Bearer(TOKEN);
/// The queue the external activities run on.
const QUEUE: &str = "ext";

/// What the workflow `calls` runs: one activity on [`QUEUE`], served by no engine.
#[derive(Debug, Serialize, Deserialize)]
struct Call {
    activity: String,
    input: Value,
    max_attempts: u32,
    heartbeat_timeout_ms: Option<u64>,
    attempt_timeout_ms: Option<u64>,
}

impl Call {
    fn new(activity: &str, input: Value) -> Call {
        Call {
            activity: activity.to_owned(),
            input,
            max_attempts: 3,
            heartbeat_timeout_ms: None,
            attempt_timeout_ms: None,
        }
    }
}

async fn calls(ctx: WorkflowContext, call: Call) -> Result<Value, WorkflowError> {
    let mut activity = ctx
        .activity(&call.activity, &call.input)
        .queue(QUEUE)
        .retry(RetryPolicy::fixed(Duration::from_millis(10)).max_attempts(call.max_attempts));
    if let Some(ms) = call.heartbeat_timeout_ms {
        activity = activity.heartbeat_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = call.attempt_timeout_ms {
        activity = activity.attempt_timeout(Duration::from_millis(ms));
    }
    activity.await
}

struct Setup {
    engine: Engine,
    client: Client,
    server: Server,
    /// What must live as long as the store (a temporary directory, a test database).
    _keep: Box<dyn Any + Send>,
}

/// An engine running `calls` on a SQLite file, and a server on it that requires [`TOKEN`].
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let db = format!("sqlite:{}", path.display());
    setup_on(store, db, Box::new(dir)).await
}

/// An engine running `calls` on `store` (at `db`), and a server on it that requires [`TOKEN`].
async fn setup_on(store: impl IntoStore, db: String, keep: Box<dyn Any + Send>) -> Setup {
    let engine = Engine::builder()
        .store(store)
        .options(EngineOptions {
            poll_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        })
        .workflow("calls", calls)
        .start()
        .await
        .unwrap();
    let server = Server::start(&db, &["--token", TOKEN, "--max-body", "4096"], &[]);
    Setup {
        client: engine.client(),
        engine,
        server,
        _keep: keep,
    }
}

impl Setup {
    /// Claims one task of `activity`, waiting for it.
    async fn claim_one(&self, activity: &str, lease_ms: Option<u64>) -> Value {
        let mut request = json!({ "worker": "test-1", "activities": [activity], "wait_ms": 5000 });
        if let Some(ms) = lease_ms {
            request["lease_ms"] = json!(ms);
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = self
                .server
                .post(
                    &format!("/v1/workers/{QUEUE}/claim"),
                    AUTH,
                    &request.to_string(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if let Some(task) = body["tasks"].as_array().unwrap().first() {
                return task.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no task of {activity} within {DEADLINE:?}"
            );
        }
    }

    async fn report(&self, task: &Value, verb: &str, body: Value) -> (StatusCode, Value) {
        let path = format!("/v1/tasks/{}/{verb}", task["id"]);
        let mut body = body;
        body["token"] = task["token"].clone();
        self.server.post(&path, AUTH, &body.to_string()).await
    }

    async fn finished(&self, id: &str) -> InstanceInfo {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let info = self.client.status(id).await.unwrap();
            if info.status != InstanceStatus::Running && info.status != InstanceStatus::Pending {
                return info;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(self) {
        self.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_heartbeats_and_completes() {
    let s = setup().await;
    s.client
        .start("calls", &Call::new("echo", json!({ "n": 1 })))
        .id("run-1")
        .await
        .unwrap();
    let task = s.claim_one("echo", None).await;
    assert_eq!(task["name"], "echo");
    assert_eq!(task["input"], json!({ "n": 1 }));
    assert_eq!(task["attempt"], 1);
    assert_eq!(task["max_attempts"], 3);
    assert_eq!(task["instance_id"], "run-1");
    assert!(task["heartbeat_details"].is_null());

    let (status, body) = s
        .report(&task, "heartbeat", json!({ "details": { "done": 5 } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cancelled"], false);

    let (status, body) = s
        .report(&task, "complete", json!({ "output": { "echo": 1 } }))
        .await;
    assert_eq!((status, &body["recorded"]), (StatusCode::OK, &json!(true)));
    let info = s.finished("run-1").await;
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.output.unwrap().as_json(), r#"{"echo":1}"#);

    // A second report of the same attempt finds the task gone and changes nothing.
    expect_error(
        s.report(&task, "complete", json!({ "output": 2 })).await,
        StatusCode::NOT_FOUND,
        "task_not_found",
    );

    // The worker's activity is now known on the queue.
    let (_, body) = s.server.get("/v1/workflows", AUTH).await;
    let registrations = body["registrations"].as_array().unwrap();
    assert!(registrations
        .iter()
        .any(|r| r["kind"] == "activity" && r["queue"] == QUEUE && r["name"] == "echo"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_follow_the_retry_policy() {
    let s = setup().await;
    s.client
        .start("calls", &Call::new("flaky", json!(null)))
        .id("run-1")
        .await
        .unwrap();
    let first = s.claim_one("flaky", None).await;
    s.report(&first, "heartbeat", json!({ "details": "half" }))
        .await;
    let (status, body) = s
        .report(
            &first,
            "fail",
            json!({ "message": "timeout talking to the bank", "type": "BankTimeout" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "retry");

    // The retry sees the failure and the heartbeat details of the first attempt.
    let second = s.claim_one("flaky", None).await;
    assert_eq!(second["attempt"], 2);
    assert_eq!(second["last_failure"]["code"], "BankTimeout");
    assert_eq!(second["heartbeat_details"], "half");
    let (_, body) = s
        .report(
            &second,
            "fail",
            json!({ "message": "card declined", "type": "Declined", "retryable": false }),
        )
        .await;
    assert_eq!(body["outcome"], "failed");
    let info = s.finished("run-1").await;
    assert_eq!(info.status, InstanceStatus::Failed);
    let failure = info.failure.unwrap();
    assert_eq!(failure.code.as_deref(), Some("Declined"), "{failure:?}");
    assert!(failure.message.contains("card declined"), "{failure:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_is_refused_and_changes_nothing() {
    let s = setup().await;
    s.client
        .start("calls", &Call::new("slow", json!(7)))
        .id("run-1")
        .await
        .unwrap();
    // The first worker takes the task with a short lease and goes silent.
    let lost = s.claim_one("slow", Some(1000)).await;
    // After the lease expires, the task is claimed again under a new token.
    let again = s.claim_one("slow", Some(30_000)).await;
    assert_eq!(again["attempt"], 2);
    assert_ne!(again["token"], lost["token"]);

    // The dead worker's late reports are refused.
    for verb in ["complete", "heartbeat", "release"] {
        expect_error(
            s.report(&lost, verb, json!({})).await,
            StatusCode::CONFLICT,
            "lease_lost",
        );
    }
    expect_error(
        s.report(&lost, "fail", json!({ "message": "late" })).await,
        StatusCode::CONFLICT,
        "lease_unknown",
    );
    let (status, body) = s.report(&again, "complete", json!({ "output": 8 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let info = s.finished("run-1").await;
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.output.unwrap().as_json(), "8");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_work_and_returns_empty_when_there_is_none() {
    let s = setup().await;
    let started = std::time::Instant::now();
    let (status, body) = s
        .server
        .post(
            &format!("/v1/workers/{QUEUE}/claim"),
            AUTH,
            r#"{"worker": "w", "activities": ["idle"], "wait_ms": 300}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tasks"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A claim that is already waiting gets a task scheduled while it waits.
    let claim = {
        let base = s.server.base.clone();
        tokio::spawn(async move {
            let server = Server::attach(&base);
            server
                .post(
                    &format!("/v1/workers/{QUEUE}/claim"),
                    AUTH,
                    r#"{"worker": "w", "activities": ["late"], "wait_ms": 20000, "max": 10}"#,
                )
                .await
        })
    };
    s.client
        .start("calls", &Call::new("late", json!(1)))
        .id("run-1")
        .await
        .unwrap();
    let (status, body) = claim.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tasks"][0]["instance_id"], "run-1");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_not_recorded() {
    let s = setup().await;
    let mut call = Call::new("late", json!(1));
    call.attempt_timeout_ms = Some(200);
    call.max_attempts = 1;
    s.client.start("calls", &call).id("run-1").await.unwrap();
    let task = s.claim_one("late", None).await;
    assert!(task["deadline"].is_i64());
    // Wait past the deadline as the clock of the server sees it.
    let deadline = task["deadline"].as_i64().unwrap();
    while Timestamp::now_system().as_millis() <= deadline + 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = s.report(&task, "heartbeat", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["cancelled"], &body["reason"]),
        (&json!(true), &json!("timed_out"))
    );
    let info = s.finished("run-1").await;
    assert_eq!(info.status, InstanceStatus::Failed);
    assert!(info.failure.unwrap().message.contains("timed out"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let s = setup().await;
    s.client
        .start("calls", &Call::new("echo", json!("x")))
        .id("run-1")
        .await
        .unwrap();
    let claim = format!("/v1/workers/{QUEUE}/claim");
    let good = r#"{"worker": "w", "activities": ["echo"]}"#;
    expect_error(
        s.server.post(&claim, Token::None, good).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    expect_error(
        s.server.post(&claim, Token::Bearer("wrong"), good).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    expect_error(
        s.server.post(&claim, AUTH, r#"{"worker": "#).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    for bad in [
        r#"{"worker": "w", "activities": []}"#,
        r#"{"worker": "w", "activities": ["echo"], "max": 0}"#,
        r#"{"worker": "w", "activities": ["echo"], "wait_ms": 3600000}"#,
        r#"{"worker": "w", "activities": ["echo"], "lease_ms": 5}"#,
        r#"{"worker": "", "activities": ["echo"]}"#,
        r#"{"worker": "w", "activities": [""]}"#,
        r#"{"activities": ["echo"]}"#,
        r#"{"worker": "w", "activities": ["echo"], "extra": 1}"#,
    ] {
        expect_error(
            s.server.post(&claim, AUTH, bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    expect_error(
        s.server
            .post("/v1/tasks/987654/complete", AUTH, r#"{"token": "1"}"#)
            .await,
        StatusCode::NOT_FOUND,
        "task_not_found",
    );
    expect_error(
        s.server
            .post("/v1/tasks/abc/complete", AUTH, r#"{"token": "1"}"#)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // The real task is still there; reports about it that are wrong change nothing.
    let task = s.claim_one("echo", None).await;
    let path = format!("/v1/tasks/{}/complete", task["id"]);
    expect_error(
        s.server
            .post(&path, AUTH, r#"{"token": "not-a-number"}"#)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    expect_error(
        s.server.post(&path, AUTH, r#"{"token": "12345"}"#).await,
        StatusCode::CONFLICT,
        "lease_lost",
    );
    let huge = json!({ "token": task["token"], "output": "x".repeat(10_000) });
    expect_error(
        s.server.post(&path, AUTH, &huge.to_string()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    expect_error(
        s.server.post(&path, AUTH, r#"{"token": "5", "#).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert_eq!(
        s.client.status("run-1").await.unwrap().status,
        InstanceStatus::Running
    );
    let (status, body) = s.report(&task, "complete", json!({ "output": "ok" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(s.finished("run-1").await.status, InstanceStatus::Completed);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_task_is_claimed_again_without_counting_an_attempt() {
    let s = setup().await;
    s.client
        .start("calls", &Call::new("echo", json!(1)))
        .id("run-1")
        .await
        .unwrap();
    let task = s.claim_one("echo", None).await;
    let (status, body) = s.report(&task, "release", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = s.claim_one("echo", None).await;
    assert_eq!(again["id"], task["id"]);
    assert_eq!(again["attempt"], 1);
    s.report(&again, "complete", json!({ "output": 1 })).await;
    assert_eq!(s.finished("run-1").await.status, InstanceStatus::Completed);
    s.shutdown().await;
}

/// The protocol on PostgreSQL: claim, a heartbeat, a retry, a stale lease refused, the result.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_works_on_postgres() {
    let (database, url) = common::postgres::Database::create().await;
    let store = PostgresStore::connect(&url).await.unwrap();
    let s = setup_on(store, url, Box::new(database)).await;
    s.client
        .start("calls", &Call::new("pg", json!(1)))
        .id("run-1")
        .await
        .unwrap();
    let first = s.claim_one("pg", None).await;
    let (status, body) = s
        .report(&first, "heartbeat", json!({ "details": [1] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = s
        .report(&first, "fail", json!({ "message": "again" }))
        .await;
    assert_eq!(body["outcome"], "retry");
    let second = s.claim_one("pg", None).await;
    assert_eq!(
        (&second["attempt"], &second["heartbeat_details"]),
        (&json!(2), &json!([1]))
    );
    expect_error(
        s.report(&first, "complete", json!({ "output": 0 })).await,
        StatusCode::CONFLICT,
        "lease_lost",
    );
    s.report(&second, "complete", json!({ "output": 2 })).await;
    let info = s.finished("run-1").await;
    assert_eq!(info.output.unwrap().as_json(), "2");
    s.shutdown().await;
}
