//! `duraflow serve` run as a process against a SQLite file that an engine in this test fills
//! with real runs (and keeps running, so that what the API sends is acted on). Every mutation
//! is checked in the store afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::server::{code, expect_error, ids, Server, Token};
use common::{exits, run, stderr, Fixture};
use duraflow::prelude::*;
use duraflow::ClientError;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";
const AUTH: Token<'static> = Token::Bearer(TOKEN);

/// The fixture's runs on a SQLite file, and a server on it that requires [`TOKEN`].
async fn sqlite() -> (Fixture, Server) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let db = format!("sqlite:{}", path.display());
    let f = Fixture::start(store, db, Box::new(dir)).await;
    let server = Server::start(&f.db, &["--token", TOKEN, "--max-body", "4096"], &[]);
    (f, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_need_the_token() {
    let (f, server) = sqlite().await;
    let (status, body) = server.get("/v1/stats", Token::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    expect_error(
        server
            .get("/v1/instances", Token::Bearer("s3cret-tokeN"))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let (status, _) = server
        .post("/v1/instances/wait-1/cancel", Token::Bearer("x"), "{}")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing was cancelled.
    assert_eq!(
        f.client.status("wait-1").await.unwrap().status,
        InstanceStatus::Running
    );

    let (status, body) = server.get("/v1/stats", AUTH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Health, the description and the dashboard need no token.
    assert_eq!(server.get("/healthz", Token::None).await.0, StatusCode::OK);
    assert_eq!(
        server.get("/openapi.json", Token::None).await.0,
        StatusCode::OK
    );
    let (status, _) = server
        .send(Method::GET, "/", Token::None, None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);

    // The token from the environment works the same way.
    let env = Server::start(&f.db, &[], &[("DURAFLOW_TOKEN", "from-env")]);
    assert_eq!(
        env.get("/v1/stats", Token::None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.get("/v1/stats", Token::Bearer("from-env")).await.0,
        StatusCode::OK
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_an_open_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let db = format!("sqlite:{}", path.display());
    let args = ["--db", &db, "serve", "--listen", "0.0.0.0:0"];
    let output = run(args.iter().map(|a| (*a).to_owned()).collect(), None).await;
    exits(&output, 2);
    assert!(
        stderr(&output).contains("not a loopback address, without a token"),
        "{}",
        stderr(&output)
    );
    let empty = ["--db", &db, "serve", "--token", " "];
    let output = run(empty.iter().map(|a| (*a).to_owned()).collect(), None).await;
    exits(&output, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (f, server) = sqlite().await;
    let body = expect_error(
        server.post("/v1/instances", AUTH, "{\"workflow\": ").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let body = expect_error(
        server.post("/v1/instances", AUTH, "{\"input\": 1}").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("workflow"),
        "{body}"
    );
    expect_error(
        server
            .send(
                Method::POST,
                "/v1/instances",
                AUTH,
                Some("text/plain"),
                "{}",
            )
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    expect_error(
        server
            .post("/v1/instances/wait-1/events/go", AUTH, "{oops")
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );

    let body = expect_error(
        server
            .post(
                "/v1/instances",
                AUTH,
                r#"{"workflow": "shipit", "input": 1}"#,
            )
            .await,
        StatusCode::NOT_FOUND,
        "workflow_not_found",
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"shipit\"") && message.contains("completes, fails, parent, waits"),
        "{message}"
    );
    let body = expect_error(
        server
            .post(
                "/v1/instances",
                AUTH,
                r#"{"workflow": "completes", "input": 1, "queue": "other"}"#,
            )
            .await,
        StatusCode::NOT_FOUND,
        "workflow_not_found",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("served on queue(s) default"),
        "{body}"
    );
    let (_, listed) = server.get("/v1/instances", AUTH).await;
    assert_eq!(
        listed["instances"].as_array().unwrap().len(),
        7,
        "nothing was created"
    );
    let (status, body) = server.get("/v1/workflows", AUTH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["registrations"][0]["kind"], "workflow");
    assert_eq!(body["registrations"][0]["name"], "completes");
    assert_eq!(body["registrations"][0]["queue"], "default");

    let body = expect_error(
        server.get("/v1/instances/nope", AUTH).await,
        StatusCode::NOT_FOUND,
        "instance_not_found",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GET /v1/instances"));
    expect_error(
        server.post("/v1/instances/nope/cancel", AUTH, "").await,
        StatusCode::NOT_FOUND,
        "instance_not_found",
    );
    expect_error(
        server
            .get("/v1/instances/done-1/history?execution=7", AUTH)
            .await,
        StatusCode::NOT_FOUND,
        "execution_not_found",
    );
    expect_error(
        server.get("/v1/instances?status=sleeping", AUTH).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    expect_error(
        server.get("/v1/nothing-here", AUTH).await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    );
    expect_error(
        server
            .send(Method::PUT, "/v1/stats", AUTH, None, Body::empty())
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    // Over the 4096-byte limit: the start and the event are refused, and nothing changes.
    let big =
        json!({ "workflow": "completes", "input": "x".repeat(5000), "id": "big" }).to_string();
    let body = expect_error(
        server.post("/v1/instances", AUTH, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
    expect_error(
        server
            .post("/v1/instances/wait-1/events/go", AUTH, &big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    assert!(matches!(
        f.client.status("big").await,
        Err(ClientError::NotFound(_))
    ));

    // Operations the instance's state forbids.
    expect_error(
        server.post("/v1/instances/done-1/cancel", AUTH, "").await,
        StatusCode::CONFLICT,
        "instance_finished",
    );
    expect_error(
        server
            .send(
                Method::DELETE,
                "/v1/instances/wait-1",
                AUTH,
                None,
                Body::empty(),
            )
            .await,
        StatusCode::CONFLICT,
        "instance_running",
    );
    expect_error(
        server
            .post(
                "/v1/instances",
                AUTH,
                r#"{"workflow": "completes", "input": 1, "id": "done-1", "if_exists": "fail"}"#,
            )
            .await,
        StatusCode::CONFLICT,
        "instance_exists",
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_visible_in_the_store() {
    let (f, server) = sqlite().await;
    // Start: the engine runs it. Again: the existing instance.
    let start = r#"{"workflow": "completes", "input": 9, "id": "api-1"}"#;
    let (status, body) = server.post("/v1/instances", AUTH, start).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({ "id": "api-1", "existed": false }));
    let info = f.status_becomes("api-1", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), "10");
    let (status, body) = server.post("/v1/instances", AUTH, start).await;
    assert_eq!(
        (status, body["existed"].clone()),
        (StatusCode::OK, json!(true))
    );
    // A generated id.
    let (status, body) = server
        .post(
            "/v1/instances",
            AUTH,
            r#"{"workflow": "completes", "input": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let generated = body["id"].as_str().unwrap().to_owned();
    f.status_becomes(&generated, InstanceStatus::Completed)
        .await;

    // Raise, cancel, terminate.
    let (status, body) = server
        .post("/v1/instances/wait-1/events/go", AUTH, r#""now""#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let info = f.status_becomes("wait-1", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), r#""got now""#);
    let (status, _) = server
        .post(
            "/v1/instances/wait-2/cancel",
            AUTH,
            r#"{"reason": "no longer needed"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let info = f.status_becomes("wait-2", InstanceStatus::Cancelled).await;
    assert!(info.failure.unwrap().message.contains("no longer needed"));
    let (status, _) = server
        .post("/v1/instances/wait-3/terminate", AUTH, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let info = f.status_becomes("wait-3", InstanceStatus::Terminated).await;
    assert!(info
        .failure
        .unwrap()
        .message
        .contains("terminated through duraflow serve"));

    // Purge.
    let (status, body) = server
        .send(
            Method::DELETE,
            "/v1/instances/done-1",
            AUTH,
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "id": "done-1", "purged": true }))
    );
    assert!(matches!(
        f.client.status("done-1").await,
        Err(ClientError::NotFound(_))
    ));
    f.shutdown().await;
}

/// `GET /v1/instances/{id}?wait_ms=N` answers when the instance finishes, not before; an
/// instance that does not finish in time is answered as it is, and bad waits are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_waits_for_the_instance_to_finish() {
    let (f, server) = sqlite().await;
    let server = std::sync::Arc::new(server);
    let waiting = {
        let server = server.clone();
        tokio::spawn(async move { server.get("/v1/instances/wait-1?wait_ms=30000", AUTH).await })
    };
    // The long poll is under way when the event is raised (an answer given at once would say
    // `running`).
    let (status, body) = server
        .post("/v1/instances/wait-1/events/go", AUTH, r#""later""#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["output"], "got later", "{body}");

    // Not finished in time: the instance as it is.
    let (status, body) = server.get("/v1/instances/wait-2?wait_ms=20", AUTH).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    // Already finished: at once, whatever the wait.
    let (status, body) = server.get("/v1/instances/done-1?wait_ms=60000", AUTH).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("completed"))
    );

    expect_error(
        server.get("/v1/instances/nobody?wait_ms=10", AUTH).await,
        StatusCode::NOT_FOUND,
        "instance_not_found",
    );
    let body = expect_error(
        server.get("/v1/instances/wait-2?wait_ms=60001", AUTH).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("60000"),
        "{body}"
    );
    expect_error(
        server.get("/v1/instances/wait-2?wait_ms=soon", AUTH).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_show_what_the_store_holds() {
    let (f, server) = sqlite().await;
    let (status, page) = server
        .get("/v1/instances?status=running,failed", AUTH)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), ["fail-1", "wait-1", "wait-2", "wait-3"]);
    let (_, page) = server.get("/v1/instances?name=waits&limit=2", AUTH).await;
    assert_eq!(page["instances"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let (_, rest) = server
        .get(&format!("/v1/instances?name=waits&cursor={next}"), AUTH)
        .await;
    assert_eq!(rest["instances"][0]["id"], "wait-3");
    let (_, none) = server.get("/v1/instances?queue=elsewhere", AUTH).await;
    assert_eq!(none["instances"], json!([]));

    let (status, parent) = server.get("/v1/instances/parent-1", AUTH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parent["status"], "completed");
    assert_eq!(
        parent["children"],
        json!([{ "id": "child-1", "name": "completes", "detached": false }])
    );
    let (_, child) = server.get("/v1/instances/child-1", AUTH).await;
    assert_eq!(child["parent"]["instance_id"], "parent-1");
    // Its engine registered "completes" with version 2; the journal's length is read.
    assert_eq!(child["version"], "2");
    let journal = f.client.history("child-1", None).await.unwrap();
    assert_eq!(child["journal_len"], journal.len());
    assert_eq!(
        child["last_event_at"],
        journal.last().unwrap().at.as_millis()
    );
    assert_eq!(parent["version"], serde_json::Value::Null);
    let (_, failed) = server.get("/v1/instances/fail-1", AUTH).await;
    assert!(failed["failure"]["message"]
        .as_str()
        .unwrap()
        .contains("card declined"));

    let (status, history) = server.get("/v1/instances/parent-1/history", AUTH).await;
    assert_eq!(status, StatusCode::OK);
    let journal = f.client.history("parent-1", None).await.unwrap();
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), journal.len());
    assert_eq!(events[1]["type"], "child_started");
    assert_eq!(events[1]["index"], 1);
    let (_, timeline) = server
        .get("/v1/instances/parent-1/timeline?execution=1", AUTH)
        .await;
    let op = &timeline["operations"][0];
    assert_eq!(
        (
            op["kind"].as_str(),
            op["child"].as_str(),
            op["outcome"].as_str()
        ),
        (Some("child"), Some("child-1"), Some("completed"))
    );
    assert!(op["duration_ms"].as_i64().unwrap() >= 0);

    let (_, stats) = server.get("/v1/stats", AUTH).await;
    let counts = f.client.count_by_status().await.unwrap();
    for (status, n) in counts {
        assert_eq!(stats["instances"][status.to_string()], json!(n), "{stats}");
    }
    assert_eq!(stats["total"], 7);
    f.shutdown().await;
}

/// The value of the sample `name{labels}` in a Prometheus text scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// `/metrics` serves the store's gauges behind the token, and they follow the store: a
/// started instance shows as pending in its queue, then as running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_serve_the_store_gauges_and_follow_the_runs() {
    let (f, server) = sqlite().await;
    let (status, _) = server.get("/metrics", Token::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let scrape = || async {
        let (status, content_type, body) = server
            .send_raw(Method::GET, "/metrics", AUTH, None, Body::empty())
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        String::from_utf8(body).unwrap()
    };
    let text = scrape().await;
    let counts = f.client.count_by_status().await.unwrap();
    for (status, n) in counts {
        let series = format!("duraflow_store_instances{{status=\"{status}\"}}");
        assert_eq!(
            sample(&text, &series),
            Some(n as f64),
            "{series} in\n{text}"
        );
    }
    let running = r#"duraflow_queue_instances{queue="default",state="running"}"#;
    let before = sample(&text, running).unwrap_or(0.0);

    f.client
        .start("waits", &Value::Null)
        .id("wait-metrics")
        .await
        .unwrap();
    f.until("the new instance to run", |_| async {
        let text = scrape().await;
        (sample(&text, running) == Some(before + 1.0)).then_some(())
    })
    .await;
    f.shutdown().await;
}

/// Every path and method the description lists is served (none is `route_not_found` or
/// `method_not_allowed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_lists_the_routes_there_are() {
    let (f, server) = sqlite().await;
    let (status, doc) = server.get("/openapi.json", Token::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    for (path, methods) in paths {
        let concrete = path.replace("{id}", "fail-1").replace("{name}", "go");
        for method in methods.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let (_, body) = server
                .send(
                    method.clone(),
                    &concrete,
                    AUTH,
                    Some("application/json"),
                    "",
                )
                .await;
            let code = body["error"]["code"].as_str().unwrap_or("");
            assert!(
                code != "route_not_found" && code != "method_not_allowed",
                "{method} {path} is described but not served: {body}"
            );
        }
    }
    let _: Value = doc;
    f.shutdown().await;
}
