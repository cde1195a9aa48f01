//! The `duraflow` binary run as a process against a SQLite file that an engine in this test
//! fills with real runs (and keeps running, so that what the CLI sends is acted on).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{exits, json, run, stderr, stdout, Fixture};
use duraflow::prelude::*;
use duraflow::ClientError;
use serde_json::Value;

/// The fixture's runs on a SQLite file in a temporary directory.
async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let db = format!("sqlite:{}", path.display());
    Fixture::start(store, db, Box::new(dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_runs_with_their_statuses() {
    let f = sqlite().await;
    let listed = json(&f.cli(&["list", "--json"]).await);
    let statuses: Vec<(String, String)> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("child-1", "completed"),
        ("done-1", "completed"),
        ("fail-1", "failed"),
        ("parent-1", "completed"),
        ("wait-1", "running"),
        ("wait-2", "running"),
        ("wait-3", "running"),
    ]
    .iter()
    .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(statuses, expected);
    assert_eq!(listed["next"], Value::Null);

    // Filters and paging.
    let failed = json(&f.cli(&["list", "--status", "failed", "--json"]).await);
    assert_eq!(failed["instances"].as_array().unwrap().len(), 1);
    assert_eq!(failed["instances"][0]["id"], "fail-1");
    let ended = json(
        &f.cli(&[
            "list", "--status", "failed", "--status", "running", "--json",
        ])
        .await,
    );
    assert_eq!(ended["instances"].as_array().unwrap().len(), 4);
    let named = json(
        &f.cli(&["list", "--name", "waits", "--limit", "2", "--json"])
            .await,
    );
    assert_eq!(named["instances"].as_array().unwrap().len(), 2);
    let next = named["next"].as_str().unwrap().to_owned();
    let rest = json(
        &f.cli(&["list", "--name", "waits", "--after", &next, "--json"])
            .await,
    );
    assert_eq!(rest["instances"][0]["id"], "wait-3");

    // The table, for a person.
    let table = f.cli(&["list"]).await;
    exits(&table, 0);
    let text = stdout(&table);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text
        .lines()
        .any(|l| l.starts_with("fail-1") && l.contains("failed")));

    // A status that does not exist is a usage error.
    let bad = f.cli(&["list", "--status", "asleep"]).await;
    exits(&bad, 2);
    assert!(stderr(&bad).contains("completed"), "{}", stderr(&bad));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_gives_the_output_or_the_failure() {
    let f = sqlite().await;
    let done = f.cli(&["show", "done-1"]).await;
    exits(&done, 0);
    let text = stdout(&done);
    assert!(text.contains("status:"), "{text}");
    assert!(text.contains("completed"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("output:") && l.trim_end().ends_with("42")),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("input:") && l.contains("41")));

    // The version its engine registered, and the journal's length and last event time.
    let journal = f.client.history("done-1", None).await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("version:") && l.trim_end().ends_with(" 2")),
        "{text}"
    );
    let events = format!(" {} events", journal.len());
    assert!(
        text.lines()
            .any(|l| l.starts_with("journal:") && l.ends_with(&events)),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("last event:")), "{text}");

    let done = json(&f.cli(&["show", "done-1", "--json"]).await);
    assert_eq!(done["output"], 42);
    assert_eq!(done["name"], "completes");
    assert_eq!(done["queue"], "default");
    assert_eq!(done["version"], "2");
    assert_eq!(done["journal_len"], journal.len());
    assert_eq!(
        done["last_event_at"],
        journal.last().unwrap().at.as_millis()
    );
    let failed = json(&f.cli(&["show", "fail-1", "--json"]).await);
    assert_eq!(
        failed["version"],
        serde_json::Value::Null,
        "registered without"
    );

    assert_eq!(done["children"], serde_json::json!([]));

    let failed = f.cli(&["show", "fail-1"]).await;
    exits(&failed, 0);
    assert!(
        stdout(&failed).contains("card declined"),
        "{}",
        stdout(&failed)
    );

    // Children, from the journal.
    let parent = f.cli(&["show", "parent-1"]).await;
    exits(&parent, 0);
    assert!(
        stdout(&parent)
            .lines()
            .any(|l| l.starts_with("child:") && l.contains("child-1 (completes)")),
        "{}",
        stdout(&parent)
    );
    let parent = json(&f.cli(&["show", "parent-1", "--json"]).await);
    assert_eq!(parent["children"][0]["id"], "child-1");
    assert_eq!(parent["output"], 2);
    let child = f.cli(&["show", "child-1"]).await;
    assert!(
        stdout(&child)
            .lines()
            .any(|l| l.starts_with("parent:") && l.contains("parent-1")),
        "{}",
        stdout(&child)
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_the_journal_in_order() {
    let f = sqlite().await;
    let events = json(&f.cli(&["history", "done-1", "--json"]).await);
    let events = events.as_array().unwrap();
    let journal = f.client.history("done-1", None).await.unwrap();
    assert_eq!(events.len(), journal.len());
    for (i, (event, stored)) in events.iter().zip(&journal).enumerate() {
        assert_eq!(event["index"], i);
        assert_eq!(event["at"], stored.at.as_millis());
        assert!(
            event["event"].get(stored.kind.type_name()).is_some(),
            "event {i} is {}: {event}",
            stored.kind.type_name()
        );
    }
    assert!(events[0]["event"].get("workflow_started").is_some());
    assert!(events
        .last()
        .unwrap()
        .get("event")
        .unwrap()
        .get("workflow_completed")
        .is_some());

    let timeline = f.cli(&["history", "wait-1"]).await;
    exits(&timeline, 0);
    let text = stdout(&timeline);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with('#') && lines[0].contains("SINCE START"),
        "{text}"
    );
    assert!(lines[1].starts_with("0 ") && lines[1].contains("workflow_started"));
    assert!(lines[1].contains("+0.000s"), "{text}");
    assert!(
        text.contains("event_wait_started") && text.contains("\"go\""),
        "{text}"
    );

    // The first execution, asked for by number.
    let first = json(
        &f.cli(&["history", "done-1", "--execution", "1", "--json"])
            .await,
    );
    assert_eq!(first.as_array().unwrap().len(), journal.len());
    let none = f.cli(&["history", "done-1", "--execution", "2"]).await;
    exits(&none, 3);
    assert!(
        stderr(&none).contains("has no execution 2: it has executions 1 to 1"),
        "{}",
        stderr(&none)
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_wakes_the_waiting_workflow() {
    let f = sqlite().await;
    let raised = f
        .cli(&["raise", "wait-1", "go", "--data", "\"carol\""])
        .await;
    exits(&raised, 0);
    assert!(stdout(&raised).is_empty(), "messages go to stderr");
    assert!(stderr(&raised).contains("raised"), "{}", stderr(&raised));
    let info = f.status_becomes("wait-1", InstanceStatus::Completed).await;
    assert_eq!(info.output.unwrap().as_json(), "\"got carol\"");

    // Raising on a finished instance says so.
    let late = f
        .cli(&["raise", "wait-1", "go", "--data", "\"dave\""])
        .await;
    exits(&late, 1);
    assert!(stderr(&late).contains("finished"), "{}", stderr(&late));

    // Bad JSON is a usage error that says what to pass.
    let bad = f
        .cli(&["raise", "wait-2", "go", "--data", "{not json"])
        .await;
    exits(&bad, 2);
    assert!(
        stderr(&bad).contains("--data is not valid JSON"),
        "{}",
        stderr(&bad)
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_terminate_end_waiting_workflows() {
    let f = sqlite().await;
    let cancelled = json(
        &f.cli(&["cancel", "wait-2", "--reason", "customer asked", "--json"])
            .await,
    );
    assert_eq!(cancelled["cancel_requested"], true);
    let info = f.status_becomes("wait-2", InstanceStatus::Cancelled).await;
    assert!(info.failure.unwrap().message.contains("customer asked"));

    let terminated = f.cli(&["terminate", "wait-3"]).await;
    exits(&terminated, 0);
    f.status_becomes("wait-3", InstanceStatus::Terminated).await;

    // The one left waiting is untouched.
    assert_eq!(
        f.client.status("wait-1").await.unwrap().status,
        InstanceStatus::Running
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_needs_confirmation() {
    let f = sqlite().await;
    // stdin is not a terminal: refused without --yes, and nothing is removed.
    let refused = f.cli(&["purge", "done-1"]).await;
    assert_ne!(refused.status.code(), Some(0));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    f.client.status("done-1").await.unwrap();

    // A running instance is refused whatever the flags.
    let running = f.cli(&["purge", "wait-1", "--yes"]).await;
    exits(&running, 1);
    assert!(stderr(&running).contains("cancel"), "{}", stderr(&running));

    let purged = f.cli(&["purge", "done-1", "--yes"]).await;
    exits(&purged, 0);
    assert!(matches!(
        f.client.status("done-1").await,
        Err(ClientError::NotFound(_))
    ));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_filter_deletes_only_the_finished_instances_it_selects() {
    let f = sqlite().await;
    let count = |status| {
        let client = f.client.clone();
        async move {
            client
                .count_by_status()
                .await
                .unwrap()
                .into_iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| n)
        }
    };
    let completed = count(InstanceStatus::Completed).await;
    assert!(
        completed >= 2,
        "done-1 and parent-1 (and its child) completed"
    );

    // Running instances cannot be selected; without --yes off a terminal nothing happens.
    let running = f.cli(&["purge", "--status", "running", "--yes"]).await;
    exits(&running, 2);
    assert!(
        stderr(&running).contains("cancel or terminate"),
        "{}",
        stderr(&running)
    );
    let unconfirmed = f.cli(&["purge", "--status", "completed"]).await;
    exits(&unconfirmed, 2);
    assert!(
        stderr(&unconfirmed).contains("--yes"),
        "{}",
        stderr(&unconfirmed)
    );
    assert_eq!(count(InstanceStatus::Completed).await, completed);

    // Nothing finished before 2000.
    let none = f
        .cli(&[
            "purge",
            "--finished-before",
            "2000-01-01T00:00:00Z",
            "--yes",
            "--json",
        ])
        .await;
    assert_eq!(json(&none)["purged"], 0);

    let done = f
        .cli(&["purge", "--status", "completed", "--yes", "--json"])
        .await;
    assert_eq!(json(&done)["purged"], completed);
    assert_eq!(count(InstanceStatus::Completed).await, 0);
    assert!(matches!(
        f.client.status("done-1").await,
        Err(ClientError::NotFound(_))
    ));
    // The failed and the running instances are untouched.
    assert_eq!(
        f.client.status("fail-1").await.unwrap().status,
        InstanceStatus::Failed
    );
    f.client.status("wait-1").await.unwrap();

    // An age: everything of workflow "fails" that finished before now.
    let failed = f
        .cli(&[
            "purge",
            "--name",
            "fails",
            "--finished-before",
            "0s",
            "--yes",
        ])
        .await;
    exits(&failed, 0);
    assert!(stderr(&failed).contains("purged 1"), "{}", stderr(&failed));
    assert!(matches!(
        f.client.status("fail-1").await,
        Err(ClientError::NotFound(_))
    ));
    assert_eq!(count(InstanceStatus::Running).await, 3);
    f.shutdown().await;
}

#[tokio::test]
async fn migrate_creates_the_schema_and_check_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let db = format!("sqlite:{}", path.display());
    let cli = |args: &[&str]| {
        let mut all = vec!["--db".to_owned(), db.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(all, None)
    };

    let missing = cli(&["migrate", "--check", "--json"]).await;
    exits(&missing, 1);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&missing)).unwrap()["found"],
        Value::Null
    );
    assert!(
        stderr(&missing).contains("duraflow migrate"),
        "{}",
        stderr(&missing)
    );
    assert!(!path.exists(), "--check creates nothing");

    let created = cli(&["migrate", "--json"]).await;
    exits(&created, 0);
    let created = json(&created);
    assert_eq!(created["found"], duraflow::crates::sqlite::SCHEMA_VERSION);
    assert_eq!(created["migrated_from"], Value::Null);
    assert_eq!(created["current"], true);

    let checked = cli(&["migrate", "--check"]).await;
    exits(&checked, 0);
    assert!(
        stderr(&checked).contains("up to date"),
        "{}",
        stderr(&checked)
    );
    // The new database serves the other verbs.
    exits(&cli(&["stats"]).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_id_exits_3() {
    let f = sqlite().await;
    for args in [
        vec!["show", "nope"],
        vec!["history", "nope"],
        vec!["raise", "nope", "go"],
        vec!["cancel", "nope"],
        vec!["terminate", "nope"],
        vec!["purge", "nope", "--yes"],
    ] {
        let output = f.cli(&args).await;
        exits(&output, 3);
        assert!(stderr(&output).contains("\"nope\""), "{}", stderr(&output));
        assert!(stdout(&output).is_empty());
    }
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_by_status() {
    let f = sqlite().await;
    let counts = json(&f.cli(&["stats", "--json"]).await);
    assert_eq!(counts["running"], 3);
    assert_eq!(counts["completed"], 3);
    assert_eq!(counts["failed"], 1);
    assert_eq!(counts["cancelled"], 0);
    let table = f.cli(&["stats"]).await;
    exits(&table, 0);
    assert!(stdout(&table)
        .lines()
        .any(|l| l.starts_with("running") && l.ends_with('3')));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_comes_from_db_or_the_environment() {
    // Neither: a usage error naming both.
    let none = run(vec!["list".into()], None).await;
    exits(&none, 2);
    let message = stderr(&none);
    assert!(
        message.contains("DURAFLOW_DATABASE_URL") && message.contains("--db"),
        "{message}"
    );

    let f = sqlite().await;
    // The environment alone.
    let from_env = run(vec!["stats".into(), "--json".into()], Some(f.db.clone())).await;
    assert_eq!(json(&from_env)["completed"], 3);

    // A malformed URL is a usage error; a missing SQLite file is not created.
    let malformed = run(vec!["--db".into(), "mysql://x".into(), "list".into()], None).await;
    exits(&malformed, 2);
    assert!(
        stderr(&malformed).contains("--db"),
        "{}",
        stderr(&malformed)
    );
    let missing = PathBuf::from(f.db.strip_prefix("sqlite:").unwrap()).with_file_name("missing.db");
    let absent = run(
        vec![
            "--db".into(),
            format!("sqlite:{}", missing.display()),
            "list".into(),
        ],
        None,
    )
    .await;
    exits(&absent, 1);
    assert!(
        stderr(&absent).contains("no SQLite database"),
        "{}",
        stderr(&absent)
    );
    assert!(!missing.exists());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_documents_the_exit_codes() {
    let help = run(vec!["--help".into()], None).await;
    exits(&help, 0);
    let text = stdout(&help);
    assert!(
        text.contains("Exit codes:") && text.contains("3  not found"),
        "{text}"
    );
    let unknown = run(vec!["frobnicate".into()], None).await;
    exits(&unknown, 2);
}

/// Runs `duraflow --db <db> args..` on a pseudo-terminal (util-linux `script`), typing
/// `answer`; `None` when `script` is not installed.
async fn on_terminal(db: &str, args: &[&str], answer: &str) -> Option<Output> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = vec![
        quote(env!("CARGO_BIN_EXE_duraflow")),
        "--db".into(),
        quote(db),
    ];
    line.extend(args.iter().map(|a| quote(a)));
    let line = line.join(" ");
    let answer = answer.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env_remove("DURAFLOW_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        stdin.write_all(answer.as_bytes()).ok()?;
        drop(stdin);
        child.wait_with_output().ok()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_asks_on_a_terminal() {
    let f = sqlite().await;
    let Some(declined) = on_terminal(&f.db, &["purge", "done-1"], "n\n").await else {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    };
    // `script` prints the terminal's output, stderr included, on its stdout.
    let screen = stdout(&declined);
    assert!(screen.contains("purge instance \"done-1\""), "{screen}");
    exits(&declined, 1);
    assert!(screen.contains("not purged"), "{screen}");
    f.client.status("done-1").await.unwrap();

    let confirmed = on_terminal(&f.db, &["purge", "done-1"], "y\n")
        .await
        .unwrap();
    exits(&confirmed, 0);
    assert!(matches!(
        f.client.status("done-1").await,
        Err(ClientError::NotFound(_))
    ));
    f.shutdown().await;
}
