//! The `duraflow` binary run as a process against PostgreSQL: a database of its own per test
//! (the CLI opens the store's default schema), filled with real runs by an engine in the test.
//! The server is `DURAFLOW_TEST_POSTGRES_URL` (default `127.0.0.1:5432`; `scripts/test` starts
//! one when nothing answers there).

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use common::postgres::Database;
use common::{exits, json, stderr, stdout, Fixture};
use duraflow::prelude::*;
use duraflow::ClientError;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verbs_work_on_postgres() {
    let (database, url) = Database::create().await;
    let store = PostgresStore::connect(&url).await.unwrap();
    let f = Fixture::start(store, url, Box::new(())).await;

    let listed = json(&f.cli(&["list", "--json"]).await);
    let statuses: Vec<(&str, &str)> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("child-1", "completed"),
            ("done-1", "completed"),
            ("fail-1", "failed"),
            ("parent-1", "completed"),
            ("wait-1", "running"),
            ("wait-2", "running"),
            ("wait-3", "running"),
        ]
    );

    assert_eq!(
        json(&f.cli(&["show", "done-1", "--json"]).await)["output"],
        42
    );
    let parent = json(&f.cli(&["show", "parent-1", "--json"]).await);
    assert_eq!(parent["children"][0]["id"], "child-1");
    let events = json(&f.cli(&["history", "done-1", "--json"]).await);
    let events = events.as_array().unwrap();
    assert!(events[0]["event"].get("workflow_started").is_some());
    assert!(events.last().unwrap()["event"]
        .get("workflow_completed")
        .is_some());

    exits(
        &f.cli(&["raise", "wait-1", "go", "--data", "\"erin\""])
            .await,
        0,
    );
    let info = f.status_becomes("wait-1", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), "\"got erin\"");

    exits(&f.cli(&["cancel", "wait-2"]).await, 0);
    f.status_becomes("wait-2", InstanceStatus::Cancelled).await;
    exits(&f.cli(&["terminate", "wait-3"]).await, 0);
    f.status_becomes("wait-3", InstanceStatus::Terminated).await;

    let refused = f.cli(&["purge", "done-1"]).await;
    assert_ne!(refused.status.code(), Some(0));
    f.client.status("done-1").await.unwrap();
    exits(&f.cli(&["purge", "done-1", "--yes"]).await, 0);
    assert!(matches!(
        f.client.status("done-1").await,
        Err(ClientError::NotFound(_))
    ));

    let unknown = f.cli(&["show", "nope"]).await;
    exits(&unknown, 3);
    assert!(stderr(&unknown).contains("\"nope\""));
    assert!(stdout(&unknown).is_empty());

    let counts = json(&f.cli(&["stats", "--json"]).await);
    assert_eq!(counts["completed"], 3);
    assert_eq!(counts["cancelled"], 1);
    assert_eq!(counts["terminated"], 1);
    assert_eq!(counts["failed"], 1);
    assert_eq!(counts["running"], Value::from(0));

    f.shutdown().await;
    drop(database);
}

/// `duraflow serve` on PostgreSQL: a start, a raise and a cancel through the API reach the
/// store; an unknown workflow is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_works_on_postgres() {
    use axum::http::StatusCode;
    use common::server::{expect_error, ids, Server, Token};

    let (database, url) = Database::create().await;
    let store = PostgresStore::connect(&url).await.unwrap();
    let f = Fixture::start(store, url, Box::new(())).await;
    let server = Server::start(&f.db, &["--token", "pg-token"], &[]);
    let auth = Token::Bearer("pg-token");
    assert_eq!(
        server.get("/v1/stats", Token::None).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, body) = server
        .post(
            "/v1/instances",
            auth,
            r#"{"workflow": "completes", "input": 1, "id": "pg-api"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let info = f.status_becomes("pg-api", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), "2");
    expect_error(
        server
            .post("/v1/instances", auth, r#"{"workflow": "nope", "input": 1}"#)
            .await,
        StatusCode::NOT_FOUND,
        "workflow_not_found",
    );

    let (status, _) = server
        .post("/v1/instances/wait-1/events/go", auth, r#""pg""#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let info = f.status_becomes("wait-1", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), r#""got pg""#);
    let (status, _) = server.post("/v1/instances/wait-2/cancel", auth, "").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    f.status_becomes("wait-2", InstanceStatus::Cancelled).await;

    let (_, page) = server.get("/v1/instances?status=running", auth).await;
    assert_eq!(ids(&page), ["wait-3"]);
    let (_, timeline) = server.get("/v1/instances/parent-1/timeline", auth).await;
    assert_eq!(timeline["operations"][0]["child"], "child-1");
    drop(server);
    f.shutdown().await;
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_checks_and_applies_the_postgres_schema() {
    let (_database, url) = Database::create().await;
    let cli = |args: &[&str]| {
        let mut all = vec!["--db".to_owned(), url.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        common::run(all, None)
    };
    let supported = duraflow::crates::postgres::schema_version();

    let missing = cli(&["migrate", "--check", "--json"]).await;
    exits(&missing, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&missing)).unwrap()["found"],
        Value::Null
    );

    let created = cli(&["migrate", "--json"]).await;
    exits(&created, 0);
    assert_eq!(json(&created)["found"], supported);

    // One migration forgotten: --check says so and changes nothing.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM duraflow._sqlx_migrations WHERE version = $1")
        .bind(supported)
        .execute(&pool)
        .await
        .unwrap();
    let behind = cli(&["migrate", "--check", "--json"]).await;
    exits(&behind, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&behind)).unwrap()["found"],
        supported - 1
    );
    assert!(
        stderr(&behind).contains("1 missing migration"),
        "{}",
        stderr(&behind)
    );

    // A newer build's migration: refused, with what to do.
    sqlx::query(
        "INSERT INTO duraflow._sqlx_migrations
             (version, description, success, checksum, execution_time)
         VALUES ($1, 'from the future', true, '\\x00', 0)",
    )
    .bind(supported + 1)
    .execute(&pool)
    .await
    .unwrap();
    let newer = cli(&["migrate", "--check"]).await;
    exits(&newer, 1);
    assert!(
        stderr(&newer).contains("upgrade duraflow"),
        "{}",
        stderr(&newer)
    );
    pool.close().await;
}
