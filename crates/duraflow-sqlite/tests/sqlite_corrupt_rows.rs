//! Corrupt rows never make the SQLite store panic or hang: event, message, task and instance
//! rows written straight into the file with random bytes, mutated JSON or encoded events
//! (journals hold both: JSON from before the binary encoding, binary after), values of the wrong
//! type and numbers out of range are read back through the store as a clear error naming the
//! row (`CorruptJournal` with the instance, execution and position for journal rows), and
//! nothing else stops working.
//!
//! The case count is proptest's (`PROPTEST_CASES`, 256 by default); run many more with
//! `PROPTEST_CASES=5000 cargo test -p duraflow-sqlite --test sqlite_corrupt_rows`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[path = "../../duraflow-core/tests/common/arb.rs"]
mod arb;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arb::{apply_byte_edits, apply_json_edits, byte_edit, json_edit, ByteEdit, JsonEdit};
use duraflow_core::{
    ActivityOptions, Event, EventData, EventKind, Failure, FailureKind, OpId, ParentLink, Payload,
    Timestamp, JOURNAL_FORMAT_VERSION,
};
use duraflow_sqlite::SqliteStore;
use duraflow_store::{Journal, ListFilter, MessageKind, Store, StoreError};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection};

const T0: Timestamp = Timestamp(1_000_000);
const LEASE: Duration = Duration::from_secs(3600);

/// A store on a fresh file and a connection of our own to write rows behind its back.
struct Fixture {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    conn: Connection,
    next: AtomicUsize,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&path)).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    Fixture {
        rt,
        store,
        conn,
        next: AtomicUsize::new(0),
        _dir: dir,
    }
}

impl Fixture {
    /// Runs a store call; a call that does not finish within a minute is a hang.
    fn call<T>(&self, what: &str, f: impl Future<Output = T>) -> T {
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), f).await })
            .unwrap_or_else(|_| panic!("{what} did not finish: the store hangs"))
    }
}

fn op(s: &str) -> OpId {
    s.parse().unwrap()
}

/// The valid journal every case starts from.
fn journal() -> Vec<Event> {
    let at = |kind| Event { at: T0, kind };
    vec![
        at(EventKind::WorkflowStarted {
            name: "wf".into(),
            input: Payload::encode("in").unwrap(),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: None,
        }),
        at(EventKind::ActivityScheduled {
            op: op("0"),
            name: "a".into(),
            input: Payload::encode(&5).unwrap(),
            options: Box::new(ActivityOptions::default()),
        }),
        at(EventKind::ActivityCompleted {
            op: op("0"),
            output: Payload::encode(&[1, 2]).unwrap(),
        }),
        at(EventKind::TimerCreated {
            op: op("1"),
            fire_at: Timestamp(T0.0 + 5),
        }),
        at(EventKind::EventWaitStarted {
            op: op("2"),
            name: "go".into(),
        }),
    ]
}

/// The events of [`journal`].
const JOURNAL_LEN: usize = 5;

/// The ids of the rows of one case.
struct Rows {
    id: String,
    message: i64,
    task: i64,
}

/// Writes a valid running instance with its journal, one visible message and one visible task,
/// encoded as the store encodes them.
fn write_valid(conn: &Connection, id: &str) -> Rows {
    let json = |v: &dyn erased::Json| v.json();
    conn.execute(
        "INSERT INTO messages (instance_id, visible_at, kind) VALUES (?1, ?2, ?3)",
        params![
            id,
            T0.0,
            json(&MessageKind::Event {
                name: "go".into(),
                data: Payload::encode(&1).unwrap(),
            })
        ],
    )
    .unwrap();
    let message = conn.last_insert_rowid();
    let parent = ParentLink {
        instance_id: "parent".into(),
        execution: 1,
        op: op("3"),
    };
    conn.execute(
        "INSERT INTO instances (id, name, status, execution, input, output, failure, parent,
                                created_at, updated_at, due_at, due_seq)
         VALUES (?1, 'wf', 'running', 1, '\"in\"', NULL, NULL, ?2, ?3, ?3, ?3, ?4)",
        params![id, json(&parent), T0.0, message],
    )
    .unwrap();
    // The first two events as JSON text, one a row, as builds before the binary encoding
    // wrote them; then rows as this build writes them: one event in the binary encoding, and
    // a commit's two events in one row. A journal of a file written across an upgrade.
    let events = journal();
    let rows: [(usize, usize, u32, Value); 4] = [
        (0, 1, 1, Value::Text(events[0].encode())),
        (1, 1, 1, Value::Text(events[1].encode())),
        (
            2,
            1,
            JOURNAL_FORMAT_VERSION,
            Value::Blob(events[2].encode_binary()),
        ),
        (
            3,
            2,
            JOURNAL_FORMAT_VERSION,
            Value::Blob(Event::encode_binary_run(&events[3..5])),
        ),
    ];
    for (position, span, format, data) in rows {
        conn.execute(
            "INSERT INTO events (instance_id, execution, position, format, data, span)
             VALUES (?1, 1, ?2, ?3, ?4, ?5)",
            params![id, position as i64, format, data, span as i64],
        )
        .unwrap();
    }
    let failure = Failure::new(FailureKind::Application, "first attempt failed").with_attempts(1);
    conn.execute(
        "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                            visible_at, attempt, lease_token, lease_until, last_failure,
                            heartbeat_details)
         VALUES (?1, 1, '0', 'a', '5', ?2, ?3, ?3, 1, 0, NULL, ?4, '{\"done\":3}')",
        params![id, json(&ActivityOptions::default()), T0.0, json(&failure)],
    )
    .unwrap();
    Rows {
        id: id.to_owned(),
        message,
        task: conn.last_insert_rowid(),
    }
}

/// JSON encoding for the rows written by hand.
mod erased {
    pub(crate) trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap()
        }
    }
}

/// Which column of which row a case corrupts.
#[derive(Clone, Debug)]
enum Target {
    /// A column (`position`, `format`, `data`) of the journal row at this position.
    Event(&'static str, usize),
    Message(&'static str),
    Task(&'static str),
    Instance(&'static str),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        // The rows are at positions 0 to 3 (the last holds positions 3 and 4).
        4 => (prop::sample::select(vec!["data", "format", "position", "span"]), 0usize..4)
            .prop_map(|(c, p)| Target::Event(c, p)),
        2 => prop::sample::select(vec!["kind", "visible_at"]).prop_map(Target::Message),
        2 => prop::sample::select(vec![
            "instance_id", "execution", "op", "name", "input", "options", "attempt",
            "scheduled_at", "lease_token", "last_failure", "heartbeat_details",
        ])
        .prop_map(Target::Task),
        2 => prop::sample::select(vec![
            "name", "status", "execution", "input", "output", "failure", "parent", "created_at",
            "updated_at", "commit_token", "start_at",
        ])
        .prop_map(Target::Instance),
    ]
}

/// What a corrupted column gets.
#[derive(Clone, Debug)]
enum Corruption {
    Text(String),
    /// Bytes stored as TEXT, whether or not they are UTF-8.
    TextBytes(Vec<u8>),
    Blob(Vec<u8>),
    Int(i64),
    Real(f64),
    Null,
    /// The column's JSON, structurally changed.
    Json(Vec<JsonEdit>),
    /// The column's text, changed byte by byte.
    Bytes(Vec<ByteEdit>),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    let int = prop_oneof![
        Just(-1i64),
        Just(0),
        Just(2),
        Just(99),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::from(u32::MAX) + 1),
        any::<i64>(),
    ];
    prop_oneof![
        1 => any::<String>().prop_map(Corruption::Text),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Corruption::TextBytes),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Corruption::Blob),
        2 => int.prop_map(Corruption::Int),
        1 => any::<f64>().prop_map(Corruption::Real),
        1 => Just(Corruption::Null),
        3 => prop::collection::vec(json_edit(), 1..4).prop_map(Corruption::Json),
        3 => prop::collection::vec(byte_edit(), 1..4).prop_map(Corruption::Bytes),
    ]
}

/// Applies a corruption; returns `false` when SQLite refuses the value (a NOT NULL column, a
/// position another row holds).
fn corrupt(conn: &Connection, rows: &Rows, target: &Target, c: &Corruption) -> bool {
    let (table, column, key_sql, key): (&str, &str, &str, Value) = match target {
        Target::Event(column, position) => (
            "events",
            column,
            "instance_id = ?2 AND execution = 1 AND position = ?3",
            Value::Integer(*position as i64),
        ),
        Target::Message(column) => (
            "messages",
            column,
            "id = ?3 AND instance_id = ?2",
            Value::Integer(rows.message),
        ),
        Target::Task(column) => (
            "tasks",
            column,
            "id = ?3 AND instance_id = ?2",
            Value::Integer(rows.task),
        ),
        Target::Instance(column) => ("instances", column, "id = ?2 AND ?3 IS NULL", Value::Null),
    };
    let current: Value = conn
        .query_row(
            &format!("SELECT {column} FROM {table} WHERE ?1 IS NULL AND {key_sql}"),
            params![Value::Null, rows.id, key],
            |r| r.get(0),
        )
        .unwrap();
    let text = match &current {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i.to_string(),
        _ => "null".to_owned(),
    };
    let (value, as_text) = match c {
        Corruption::Text(t) => (Value::Text(t.clone()), false),
        Corruption::TextBytes(b) => (Value::Blob(b.clone()), true),
        Corruption::Blob(b) => (Value::Blob(b.clone()), false),
        Corruption::Int(i) => (Value::Integer(*i), false),
        Corruption::Real(r) => (Value::Real(*r), false),
        Corruption::Null => (Value::Null, false),
        Corruption::Json(edits) => match serde_json::from_str(&text) {
            Ok(doc) => (Value::Text(apply_json_edits(doc, edits).to_string()), false),
            Err(_) => (Value::Text(text), false),
        },
        Corruption::Bytes(edits) => match current {
            // An encoded event, changed byte by byte, stays a blob.
            Value::Blob(bytes) => (Value::Blob(apply_byte_edits(bytes, edits)), false),
            _ => (
                Value::Blob(apply_byte_edits(text.into_bytes(), edits)),
                true,
            ),
        },
    };
    let set = if as_text { "CAST(?1 AS TEXT)" } else { "?1" };
    conn.execute(
        &format!("UPDATE {table} SET {column} = {set} WHERE {key_sql}"),
        params![value, rows.id, key],
    )
    .is_ok()
}

/// The position where the stored journal first departs from a dense, readable journal:
/// positions are read in order and must be 0, 1, 2...
fn first_bad_position(conn: &Connection, id: &str) -> Option<usize> {
    let mut stmt = conn
        .prepare(
            "SELECT position, format, data, span FROM events
             WHERE instance_id = ?1 AND execution = 1 ORDER BY position",
        )
        .unwrap();
    let mut rows = stmt.query([id]).unwrap();
    let mut i = 0;
    while let Some(row) = rows.next().unwrap() {
        let position = row.get_ref(0).unwrap();
        let format = row.get_ref(1).unwrap();
        let data = row.get_ref(2).unwrap();
        let in_place = matches!(position, ValueRef::Integer(p) if p == i as i64);
        let format = match format {
            ValueRef::Integer(f) => u32::try_from(f).ok(),
            _ => None,
        };
        // One event as before, or a run of `span` of them in one blob.
        let span = match row.get_ref(3).unwrap() {
            ValueRef::Integer(n) if (1..=i64::from(u32::MAX)).contains(&n) => n as usize,
            _ => return Some(i),
        };
        let (Some(format), true) = (format, in_place) else {
            return Some(i);
        };
        if span > 1 {
            let ValueRef::Blob(bytes) = data else {
                return Some(i);
            };
            let mut events = Vec::new();
            match Event::decode_binary_run(bytes, span, format, &mut events) {
                Ok(()) => i += span,
                Err((k, _)) => return Some(i + k),
            }
            continue;
        }
        let readable = match data {
            ValueRef::Text(t) => match std::str::from_utf8(t) {
                Ok(t) => Event::decode(t, format).is_ok(),
                _ => false,
            },
            ValueRef::Blob(b) => Event::decode_stored(EventData::Binary(b), format).is_ok(),
            _ => false,
        };
        if !readable {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Checks an error is `Corrupt` and names `name`.
fn corrupt_naming(e: &StoreError, name: &str) -> Result<(), TestCaseError> {
    match e {
        StoreError::Corrupt(message) if message.contains(name) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected corrupt data naming {name}, got {other:?}"
        ))),
    }
}

/// Writes a case's rows, corrupts one, reads everything back through the store, and removes
/// the rows again whatever the outcome (so that a failing case does not spoil the next).
fn check_case(fx: &Fixture, target: &Target, c: &Corruption) -> Result<(), TestCaseError> {
    let id = format!("case-{}", fx.next.fetch_add(1, Ordering::Relaxed));
    let rows = write_valid(&fx.conn, &id);
    let result = if corrupt(&fx.conn, &rows, target, c) {
        check_reads(fx, &rows, target)
    } else {
        Ok(())
    };
    cleanup(&fx.conn, &rows);
    result
}

fn check_reads(fx: &Fixture, rows: &Rows, target: &Target) -> Result<(), TestCaseError> {
    let id = rows.id.clone();
    let store = &fx.store;
    let quoted = format!("{id:?}");
    let message_name = format!("message {} of instance {quoted}", rows.message);
    let task_name = format!("task {}", rows.task);

    let instance = fx.call("instance", store.instance(&id));
    let journal = fx.call("journal", store.journal(&id, Some(1)));
    let list = fx.call(
        "list",
        store.management().unwrap().list(ListFilter::default()),
    );
    let turns = fx.call(
        "fetch_turns",
        store.fetch_turns(&duraflow_store::FetchFilter::default(), T0, 10, LEASE, None),
    );
    let tasks = fx.call(
        "fetch_tasks",
        store.fetch_tasks(&duraflow_store::FetchFilter::default(), T0, 10, LEASE),
    );

    match target {
        Target::Event(..) => {
            prop_assert!(instance.is_ok() && list.is_ok() && tasks.is_ok());
            let expected = first_bad_position(&fx.conn, &id);
            let check = |journal: &Result<Vec<Event>, StoreError>| -> Result<(), TestCaseError> {
                match (journal, expected) {
                    (Ok(events), None) => prop_assert_eq!(events.len(), JOURNAL_LEN),
                    (
                        Err(StoreError::CorruptJournal {
                            instance_id,
                            execution,
                            position,
                            ..
                        }),
                        Some(bad),
                    ) => {
                        prop_assert_eq!((instance_id.as_str(), *execution), (id.as_str(), 1));
                        prop_assert_eq!(*position, bad);
                    }
                    (other, expected) => prop_assert!(
                        false,
                        "journal {:?} where position {:?} is the first bad one",
                        other,
                        expected
                    ),
                }
                Ok(())
            };
            check(&journal)?;
            let work = turns.map_err(|e| TestCaseError::fail(format!("fetch_turns: {e}")))?;
            let w = work.into_iter().find(|w| w.instance.id == id);
            let w = w.ok_or_else(|| TestCaseError::fail("the instance was not fetched"))?;
            // A lease reads a journal it can tell is short; one it cannot (its last position is
            // what was damaged) is left for the caller to read, as the engine then does.
            let fetched = match w.journal {
                Ok(Journal::Unread) => fx.call("journal", store.journal(&id, Some(1))),
                other => other.map(|j| j.events().unwrap().to_vec()),
            };
            check(&fetched)?;
        }
        Target::Message(_) => {
            prop_assert!(instance.is_ok() && journal.is_ok() && list.is_ok() && tasks.is_ok());
            if let Err(e) = &turns {
                corrupt_naming(e, &message_name)?;
            }
        }
        Target::Task(_) => {
            prop_assert!(instance.is_ok() && journal.is_ok() && list.is_ok() && turns.is_ok());
            if let Err(e) = &tasks {
                corrupt_naming(e, &task_name)?;
            }
        }
        Target::Instance(_) => {
            prop_assert!(tasks.is_ok());
            if let Err(e) = &instance {
                corrupt_naming(e, &quoted)?;
            }
            if let Err(e) = &list {
                corrupt_naming(e, &quoted)?;
            }
            if let Err(e) = &turns {
                corrupt_naming(e, &quoted)?;
            }
            match &journal {
                Ok(_) => {}
                // A changed execution number points at an execution that is not there.
                Err(StoreError::NotFound(m)) => prop_assert!(m.contains("execution"), "{}", m),
                Err(e) => corrupt_naming(e, &quoted)?,
            }
        }
    }
    Ok(())
}

/// Deletes a case's rows (by row id too: a corrupted row may no longer name its instance).
fn cleanup(conn: &Connection, rows: &Rows) {
    let id = &rows.id;
    conn.execute("DELETE FROM events WHERE instance_id = ?1", [id])
        .unwrap();
    conn.execute(
        "DELETE FROM tasks WHERE instance_id = ?1 OR id = ?2",
        params![id, rows.task],
    )
    .unwrap();
    conn.execute(
        "DELETE FROM messages WHERE instance_id = ?1 OR id = ?2",
        params![id, rows.message],
    )
    .unwrap();
    conn.execute("DELETE FROM instances WHERE id = ?1", [id])
        .unwrap();
}

#[test]
fn corrupt_rows_read_back_as_clear_errors_naming_the_row() {
    let fx = fixture();
    let mut runner = TestRunner::default();
    runner
        .run(&(target(), corruption()), |(target, c)| {
            check_case(&fx, &target, &c)
        })
        .unwrap();
}

/// Rows that used to read back as unclear errors (found reading the row decoders and by the
/// property), kept as they were.
#[test]
fn found_cases_are_clear_errors() {
    let fx = fixture();
    let cases = [
        // A journal row whose data is a blob, whose text is not UTF-8, or whose format is
        // negative was a generic SQLite conversion error naming no instance or position.
        (Target::Event("data", 2), Corruption::Blob(vec![1, 2, 3])),
        (
            Target::Event("data", 1),
            Corruption::TextBytes(vec![0xff, b'{']),
        ),
        (Target::Event("format", 3), Corruption::Int(-1)),
        (Target::Event("format", 0), Corruption::Text("one".into())),
        // A missing position made every commit look like a lost lease.
        (Target::Event("position", 1), Corruption::Int(7)),
        (Target::Event("position", 0), Corruption::Int(-3)),
        // One past the highest position overflowed to a real number, failing the read.
        (Target::Event("position", 3), Corruption::Int(i64::MAX)),
        // A negative execution, a status no build writes, a name stored as a blob.
        (Target::Task("execution"), Corruption::Int(-1)),
        (
            Target::Instance("status"),
            Corruption::Text("paused".into()),
        ),
        (Target::Instance("execution"), Corruption::Int(i64::MAX)),
        (Target::Instance("name"), Corruption::Blob(vec![0])),
        (Target::Message("visible_at"), Corruption::Real(0.5)),
    ];
    for (target, c) in cases {
        check_case(&fx, &target, &c).unwrap_or_else(|e| panic!("{target:?} {c:?}: {e}"));
    }
}

/// A task at the highest attempt count a task can report is still fetched (the count stops
/// there) instead of failing every fetch of tasks with a value out of range.
#[test]
fn a_task_at_the_highest_attempt_count_is_still_fetched() {
    let fx = fixture();
    let rows = write_valid(&fx.conn, "attempts");
    fx.conn
        .execute(
            "UPDATE tasks SET attempt = ?1 WHERE id = ?2",
            params![i64::from(u32::MAX), rows.task],
        )
        .unwrap();
    let tasks = fx
        .call(
            "fetch_tasks",
            fx.store
                .fetch_tasks(&duraflow_store::FetchFilter::default(), T0, 10, LEASE),
        )
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].attempt, u32::MAX);
    cleanup(&fx.conn, &rows);
}
