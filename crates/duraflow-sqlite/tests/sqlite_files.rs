//! What the SQLite store does with files it cannot use: clear errors, no panic, no damage.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Event, EventKind, Payload, Timestamp};
use duraflow_sqlite::{SqliteOptions, SqliteStore, SCHEMA_VERSION};
use duraflow_store::{
    FetchFilter, InstanceStatus, MessageKind, NewInstance, NewMessage, QueueConfig, Store,
    StoreError, TurnCommit,
};

const T0: Timestamp = Timestamp(1_000_000);

fn new_instance(id: &str, input: &str) -> NewInstance {
    NewInstance {
        id: id.into(),
        name: "wf".into(),
        input: Payload::encode(input).unwrap(),
        parent: None,
        queue: "default".into(),
        created_at: T0,
        start_at: None,
        options: Default::default(),
    }
}

/// The `workflow_started` of workflow "wf" with input "x" at [`T0`], naming `version`.
fn started(version: Option<&str>) -> Event {
    Event {
        at: T0,
        kind: EventKind::WorkflowStarted {
            name: "wf".into(),
            input: Payload::encode("x").unwrap(),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: version.map(str::to_owned),
        },
    }
}

/// A database at `path` as a build of schema `version` left it, open for writing rows by
/// hand, and the stored form of the input "x".
fn database_at_version(path: &std::path::Path, version: i64) -> (rusqlite::Connection, String) {
    duraflow_sqlite::testing::create_at_version(path, version).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    (conn, Payload::encode("x").unwrap().as_json().to_owned())
}

/// Commits one turn, which must be accepted.
async fn commit_one(store: &dyn Store, commit: TurnCommit) {
    store
        .commit_turns(vec![commit])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
}

/// Leases the turns due at `now` (up to 10, for a minute).
async fn due_turns(store: &dyn Store, now: Timestamp) -> Vec<duraflow_store::TurnWork> {
    store
        .fetch_turns(
            &FetchFilter::default(),
            now,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_path_that_cannot_be_created_is_a_clear_error() {
    let err = SqliteStore::open("/proc/duraflow-no-such-dir/x.db")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("/proc/duraflow-no-such-dir/x.db"),
        "{message}"
    );
    assert!(message.contains("cannot open"), "{message}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "the file is untouched"
    );
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("not a duraflow one"), "{err}");
}

#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused_and_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(SqliteStore::open(&path).await.unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: 99,
            supported: SCHEMA_VERSION
        }
    );
    assert!(err.to_string().contains("upgrade duraflow"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_instance(new_instance("a", "x")).await.unwrap();
    }
    assert!(
        !dir.path().join("keep.db-wal").exists(),
        "the WAL was folded back at close"
    );
    let store = SqliteStore::open(&path).await.unwrap();
    let info = store.instance("a").await.unwrap().expect("still there");
    assert_eq!(info.status, InstanceStatus::Pending);
    assert_eq!(info.input, Payload::encode("x").unwrap());
}

#[tokio::test]
async fn a_full_database_fails_the_write_that_does_not_fit_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.db");
    let options = SqliteOptions {
        max_page_count: Some(40),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).await.unwrap();
    let big = "x".repeat(8_000);
    let mut created = 0;
    let err = loop {
        match store
            .create_instance(new_instance(&format!("i{created}"), &big))
            .await
        {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created < 1_000, "the size limit was never reached");
    };
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    assert!(err.to_string().contains("free space"), "{err}");
    assert!(created > 0);
    // Everything written before is intact and readable, and the failed instance is absent.
    for i in 0..created {
        assert!(store.instance(&format!("i{i}")).await.unwrap().is_some());
    }
    assert!(store
        .instance(&format!("i{created}"))
        .await
        .unwrap()
        .is_none());
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let reopened = SqliteStore::open(&path).await.unwrap();
    let stats = reopened.management().unwrap().stats().await.unwrap();
    assert_eq!(stats.messages, created as u64, "one start message each");
}

/// Writes a journal of two events for instance `id` through the store.
async fn journal_of_two(store: &Arc<dyn Store>, id: &str) {
    store.create_instance(new_instance(id, "x")).await.unwrap();
    let work = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            T0,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let work = work.into_iter().find(|w| w.instance.id == id).unwrap();
    let events = vec![
        started(None),
        Event {
            at: T0,
            kind: EventKind::EventWaitStarted {
                op: "0".parse().unwrap(),
                name: "go".into(),
            },
        },
    ];
    store
        .commit_turns(vec![TurnCommit {
            journal_base: 0,
            new_events: events,
            ..TurnCommit::consuming(&work, T0)
        }])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
}

#[tokio::test]
async fn a_corrupt_journal_row_names_the_instance_and_event_and_blocks_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        journal_of_two(&store, "bad").await;
        journal_of_two(&store, "good").await;
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        // The commit wrote both events in one row at position 0: cutting its end damages
        // the second event, at position 1.
        let cut = conn
            .execute(
                "UPDATE events SET data = substr(data, 1, length(data) - 2)
                  WHERE instance_id = 'bad' AND position = 0 AND span = 2",
                [],
            )
            .unwrap();
        assert_eq!(cut, 1);
        conn.execute(
            "UPDATE events SET format = 99 WHERE instance_id = 'good' AND position = 7",
            [],
        )
        .unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let err = store.journal("bad", None).await.unwrap_err();
    match &err {
        StoreError::CorruptJournal {
            instance_id,
            execution,
            position,
            journal_len,
            ..
        } => {
            assert_eq!(
                (instance_id.as_str(), *execution, *position, *journal_len),
                ("bad", 1, 1, 2)
            );
        }
        other => panic!("expected a corrupt journal error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("\"bad\"") && message.contains("position 1"),
        "{message}"
    );
    assert_eq!(store.journal("good", None).await.unwrap().len(), 2);

    // Both instances get an event: the fetch hands back the error for one and the journal of
    // the other.
    for id in ["bad", "good"] {
        store
            .send(NewMessage {
                instance_id: id.into(),
                kind: MessageKind::Event {
                    name: "go".into(),
                    data: Payload::null(),
                },
                visible_at: T0,
            })
            .await
            .unwrap();
    }
    let work = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            T0,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    assert_eq!(work.len(), 2);
    for w in work {
        match w.instance.id.as_str() {
            "bad" => assert!(matches!(w.journal, Err(StoreError::CorruptJournal { .. }))),
            _ => assert_eq!(w.journal.unwrap().events().map(<[Event]>::len), Some(2)),
        }
    }
}

#[tokio::test]
async fn an_event_written_in_a_newer_format_is_refused_with_an_upgrade_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("format.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        journal_of_two(&store, "a").await;
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE events SET format = 99 WHERE position = 0", [])
            .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let err = store.journal("a", None).await.unwrap_err();
    assert!(err.to_string().contains("upgrade duraflow"), "{err}");
}

/// A database written by schema version 1 is upgraded in place, and the work it holds is due
/// exactly as before: visible messages now, delayed ones later, leased instances and tasks when
/// their leases expire.
#[tokio::test]
async fn a_version_1_database_is_upgraded_with_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let event = |name: &str| {
        serde_json::to_string(&MessageKind::Event {
            name: name.into(),
            data: Payload::encode(name).unwrap(),
        })
        .unwrap()
    };
    {
        let (conn, input) = database_at_version(&path, 1);
        for (id, lease_until) in [
            ("now", None),
            ("later", None),
            ("leased", Some(T0.0 + 30_000)),
        ] {
            conn.execute(
                "INSERT INTO instances (id, name, status, execution, input, created_at,
                                        updated_at, lease_token, lease_until)
                 VALUES (?1, 'wf', 'running', 1, ?2, ?3, ?3, 7, ?4)",
                rusqlite::params![id, input, T0.0, lease_until],
            )
            .unwrap();
        }
        for (id, visible_at) in [("now", T0.0), ("later", T0.0 + 60_000), ("leased", T0.0)] {
            conn.execute(
                "INSERT INTO messages (instance_id, visible_at, kind) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, visible_at, event(id)],
            )
            .unwrap();
        }
        for (op, lease_until) in [("0", Some(T0.0 + 10_000)), ("1", None)] {
            conn.execute(
                "INSERT INTO tasks (instance_id, execution, op, name, input, options,
                                    scheduled_at, visible_at, attempt, lease_token, lease_until)
                 VALUES ('now', 1, ?1, 'act', '1', '{}', ?2, ?2, 1, 8, ?3)",
                rusqlite::params![op, T0.0, lease_until],
            )
            .unwrap();
        }
    }

    let store = SqliteStore::open(&path).await.unwrap();
    let due = store.next_due(T0).await.unwrap();
    assert_eq!(
        due.turn,
        Some(Timestamp(T0.0 + 30_000)),
        "the lease's expiry"
    );
    assert_eq!(
        due.task,
        Some(Timestamp(T0.0 + 10_000)),
        "the task lease's expiry"
    );
    let turns = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            T0,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = turns.iter().map(|w| w.instance.id.as_str()).collect();
    assert_eq!(ids, ["now"]);
    let tasks = store
        .fetch_tasks(
            &duraflow_store::FetchFilter::default(),
            T0,
            10,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].op.to_string(), "1");
    let later = store
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            Timestamp(T0.0 + 60_000),
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let mut ids: Vec<&str> = later.iter().map(|w| w.instance.id.as_str()).collect();
    ids.sort();
    // "now" again too: the lease of the first fetch ran out at the same moment.
    assert_eq!(ids, ["later", "leased", "now"]);
}

/// A database written by schema version 9, whose flow-control indexes held every admitted
/// instance, is upgraded to indexes that hold only what limits count, and its limits go on
/// counting the instances that were running: a full queue and a full key stay full.
#[tokio::test]
async fn a_version_9_database_keeps_counting_what_runs_under_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.db");
    {
        let (conn, _) = database_at_version(&path, 9);
        conn.execute(
            "INSERT INTO queue_configs (name, config) VALUES ('one', ?1)",
            [serde_json::to_string(&QueueConfig::new("one").concurrency(1)).unwrap()],
        )
        .unwrap();
        let input = Payload::encode("x").unwrap().as_json().to_owned();
        for (id, queue, key) in [("a", "one", None), ("k1", "default", Some("k"))] {
            conn.execute(
                "INSERT INTO instances (id, name, status, execution, input, created_at,
                                        updated_at, queue, concurrency_key, started_at)
                 VALUES (?1, 'wf', 'running', 1, ?2, ?3, ?3, ?4, ?5, ?3)",
                rusqlite::params![id, input, T0.0, queue, key],
            )
            .unwrap();
        }
    }

    let store = SqliteStore::open(&path).await.unwrap();
    for (id, queue, key) in [("b", "one", None), ("k2", "default", Some("k"))] {
        let mut new = NewInstance {
            queue: queue.into(),
            ..new_instance(id, "y")
        };
        new.options.concurrency_key = key.map(str::to_owned);
        store.create_instance(new).await.unwrap();
    }
    let turns = store
        .fetch_turns(
            &FetchFilter::queues(["default", "one"]),
            Timestamp(T0.0 + 1_000),
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = turns.iter().map(|w| w.instance.id.as_str()).collect();
    assert!(
        ids.is_empty(),
        "queue one and key k are full with the instances running before the upgrade; \
         admitted {ids:?}"
    );
}

/// Stores sharing a file, and a store opened again, never issue the same lease token: each
/// opening reserves an epoch of its own.
#[tokio::test]
async fn stores_sharing_a_file_never_share_a_lease_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteStore::open(&path).await.unwrap();
    let b = SqliteStore::open(&path).await.unwrap();
    for i in 0..4 {
        a.create_instance(new_instance(&format!("i{i}"), "x"))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(60);
    let mut tokens = Vec::new();
    for store in [&a, &b, &a, &b] {
        let work = store
            .fetch_turns(&duraflow_store::FetchFilter::default(), T0, 1, lease, None)
            .await
            .unwrap();
        assert_eq!(work.len(), 1);
        tokens.push(work[0].token);
    }
    drop(a);
    let reopened = SqliteStore::open(&path).await.unwrap();
    reopened
        .create_instance(new_instance("later", "x"))
        .await
        .unwrap();
    let work = reopened
        .fetch_turns(&duraflow_store::FetchFilter::default(), T0, 1, lease, None)
        .await
        .unwrap();
    tokens.push(work[0].token);
    let mut distinct = tokens.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), tokens.len(), "{tokens:?}");
}

/// A store opening the file does not take over the leases of another store that is still
/// open (its owner file is locked): the other keeps its turn and commits it.
#[tokio::test]
async fn the_leases_of_a_store_still_open_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let a = SqliteStore::open(&path).await.unwrap();
    a.create_instance(new_instance("held", "x")).await.unwrap();
    let lease = Duration::from_secs(60);
    let work = a
        .fetch_turns(&duraflow_store::FetchFilter::default(), T0, 10, lease, None)
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    // Opening b sweeps for openings that are gone: a is not one of them.
    let b = SqliteStore::open(&path).await.unwrap();
    assert!(b
        .fetch_turns(&duraflow_store::FetchFilter::default(), T0, 10, lease, None)
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .fetch_turns(
            &duraflow_store::FetchFilter::default(),
            Timestamp(T0.0 + 1),
            10,
            lease,
            None
        )
        .await
        .unwrap()
        .is_empty());
    let commit = TurnCommit {
        journal_base: 0,
        ..TurnCommit::consuming(&work[0], Timestamp(T0.0 + 2))
    };
    let results = a.commit_turns(vec![commit]).await.unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

/// A database written by schema version 12, before workflow versions, is upgraded: its
/// instances and registrations read with no version, its journals (whose `workflow_started` has no version) read
/// as before, and `describe` reads their length; a new execution start records its version.
#[tokio::test]
async fn a_version_12_database_reads_without_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v12.db");
    {
        let (conn, input) = database_at_version(&path, 12);
        conn.execute(
            "INSERT INTO instances (id, name, status, execution, input, created_at, updated_at,
                                    started_at)
             VALUES ('old', 'wf', 'running', 1, ?1, ?2, ?2, ?2)",
            rusqlite::params![input, T0.0],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO registrations (kind, queue, name, last_seen)
             VALUES ('workflow', 'default', 'wf', ?1)",
            [T0.0],
        )
        .unwrap();
        let data = started(None).encode();
        assert!(!data.contains("version"), "{data}");
        conn.execute(
            "INSERT INTO events (instance_id, execution, position, format, data)
             VALUES ('old', 1, 0, 2, ?1)",
            [data],
        )
        .unwrap();
    }

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let info = store.instance("old").await.unwrap().unwrap();
    assert_eq!(info.version, None);
    let registered = store.management().unwrap().registrations().await.unwrap();
    assert_eq!(registered[0].registration.name, "wf");
    assert_eq!(registered[0].registration.version, None);
    assert_eq!(
        store.journal("old", None).await.unwrap(),
        vec![started(None)]
    );
    let described = store
        .management()
        .unwrap()
        .describe("old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (described.journal_len, described.last_event_at),
        (Some(1), Some(T0))
    );

    store
        .create_instance(new_instance("new", "y"))
        .await
        .unwrap();
    let turns = due_turns(&*store, T0).await;
    let work = turns.iter().find(|w| w.instance.id == "new").unwrap();
    let mut commit = TurnCommit::consuming(work, T0);
    commit.new_events = vec![started(Some("2"))];
    commit_one(&*store, commit).await;
    let info = store.instance("new").await.unwrap().unwrap();
    assert_eq!(info.version.as_deref(), Some("2"));
}

/// A database written by schema version 15, where every start was a message, is upgraded to
/// starts kept on the instance row: an instance created before keeps its start message, one
/// created after has its start handed over by the lease, and instances due at the same time are
/// still leased in the order their oldest work was sent.
#[tokio::test]
async fn a_version_15_database_keeps_its_start_messages_and_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v15.db");
    {
        let (conn, input) = database_at_version(&path, 15);
        let event = serde_json::to_string(&MessageKind::Event {
            name: "e".into(),
            data: Payload::encode(&1).unwrap(),
        })
        .unwrap();
        let start = serde_json::to_string(&MessageKind::start(1)).unwrap();
        // "ev" runs and was sent an event (message 5); "old" waits for its start (message 7).
        for (id, status, message, kind) in
            [("ev", "running", 5, event), ("old", "pending", 7, start)]
        {
            conn.execute(
                "INSERT INTO instances (id, name, status, execution, input, created_at,
                                        updated_at, started_at, due_at, due_seq, not_before)
                 VALUES (?1, 'wf', ?2, 1, ?3, ?4, ?4, ?4, ?4, ?5, ?4)",
                rusqlite::params![id, status, input, T0.0, message],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO messages (id, instance_id, visible_at, kind) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![message, id, T0.0, kind],
            )
            .unwrap();
        }
    }

    let store = SqliteStore::open(&path).await.unwrap();
    store
        .create_instance(new_instance("new", "y"))
        .await
        .unwrap();
    let stats = store.management().unwrap().stats().await.unwrap();
    assert_eq!(stats.messages, 3, "two messages and a pending start");
    let turns = due_turns(&store, T0).await;
    let ids: Vec<&str> = turns.iter().map(|w| w.instance.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ev", "old", "new"],
        "in the order their oldest work was sent"
    );
    let old = &turns[1];
    assert_eq!(old.messages.len(), 1);
    assert_eq!(old.messages[0].id.0, 7);
    assert_eq!(old.messages[0].kind, MessageKind::start(1));
    let new = &turns[2];
    assert_eq!(new.messages.len(), 1);
    assert_eq!(new.messages[0].kind, MessageKind::start(1));
    assert_eq!(new.messages[0].visible_at, T0);

    for work in &turns[1..] {
        let mut commit = TurnCommit::consuming(work, T0);
        commit.new_events = vec![started(None)];
        commit_one(&store, commit).await;
    }
    let stats = store.management().unwrap().stats().await.unwrap();
    assert_eq!(
        stats.messages, 1,
        "both starts consumed; the event is leased, not consumed"
    );
    let again = due_turns(&store, Timestamp(T0.0 + 120_000)).await;
    let ids: Vec<&str> = again.iter().map(|w| w.instance.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ev"],
        "its lease ran out; the started ones have nothing to do"
    );
}

/// Task ids are never given twice: a writer reserves them a block at a time in
/// `sqlite_sequence` (so that a task's insert does not rewrite it), two openings of one file
/// reserve different blocks, an id stays unused once its task is gone, and an insert that lets
/// SQLite pick the id (as builds before did) gets one past every block reserved.
#[tokio::test]
async fn task_ids_are_never_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let schedule = |store: Arc<dyn Store>, n: usize| async move {
        let id = format!("i{n}");
        store.create_instance(new_instance(&id, "x")).await.unwrap();
        let turns = due_turns(&*store, T0).await;
        let work = turns.iter().find(|w| w.instance.id == id).unwrap();
        let mut commit = TurnCommit::consuming(work, T0);
        commit.new_events = vec![started(None)];
        commit.tasks = vec![duraflow_store::NewTask {
            instance_id: id.clone(),
            execution: 1,
            op: duraflow_core::OpId::new(None, 0),
            name: "act".into(),
            input: Payload::encode(&n).unwrap(),
            options: Default::default(),
            scheduled_at: T0,
        }];
        commit_one(&*store, commit).await;
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    let ids = |conn: &rusqlite::Connection| -> Vec<i64> {
        conn.prepare("SELECT id FROM tasks ORDER BY instance_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    for n in 0..4 {
        schedule(if n % 2 == 0 { a.clone() } else { b.clone() }, n).await;
    }
    let first = ids(&conn);
    assert_eq!(first.len(), 4);
    let mut distinct = first.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "two openings gave the same id: {first:?}"
    );
    assert!(first[0] < first[2] && first[1] < first[3], "{first:?}");

    conn.execute("DELETE FROM tasks", []).unwrap();
    schedule(a.clone(), 4).await;
    // Past every id this opening gave, whatever another opening's block holds.
    let after = ids(&conn)[0];
    assert!(
        !first.contains(&after) && after > first[0].max(first[2]),
        "{after} after {first:?}"
    );
    conn.execute(
        "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                            visible_at)
         VALUES ('i0', 1, '9', 'act', '1', '{}', ?1, ?1)",
        [T0.0],
    )
    .unwrap();
    let picked = conn.last_insert_rowid();
    schedule(b.clone(), 5).await;
    let reserved = first.iter().chain([&after]).copied().max().unwrap();
    assert!(
        picked > reserved,
        "SQLite picked {picked} below a reserved id"
    );
}
