//! Leasing, committing and abandoning workflow turns.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use duraflow_core::{Event, EventData, EventDecodeError, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    check_turn, checkpoint_lease, codec, commit_wakes_turns, holds_lease, instance_due_at,
    Committed, DueState, FetchFilter, FoundTurn, Journal, JournalCache, LeaseToken, Message,
    MessageId, MessageKind, NewTask, StoreError, TaskClaim, TaskId, TaskWork, TurnCommit, TurnWork,
    INLINE_JOURNAL,
};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use super::instances::{self, insert_message};
use super::{callbacks, feed, flow, queue_events};
use crate::codec::{from_json, in_row, instance_row, json, INSTANCE_COLUMNS};
use crate::db::Tx;
use crate::error::SqlResult;

/// Reads a leased instance, its commit token and when its pending start is visible (the SQL is
/// built once, not at every lease).
static LEASED_INSTANCE: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {INSTANCE_COLUMNS}, commit_token, start_at FROM instances WHERE id = ?1")
});

/// The id of the start message a lease hands over for an instance whose start is pending (the
/// `start_at` column, migration 0016): a new instance's start is not a row of `messages`, and
/// no row has this id. A commit that consumes it clears the column.
pub(crate) const IMPLICIT_START: MessageId = MessageId(-1);

/// The length of an execution's journal (`?1` the instance, `?2` the execution): one past the
/// last event of its last row with a numeric position, read with one backward seek of the
/// events' key. Every computation of a journal's length (a commit's check, a corrupt journal's
/// length) uses it, so they agree even on a corrupt journal: a span that is not a count of
/// events counts its row as one, and a corrupt position near the largest integer is capped so
/// that the sum stays an integer.
const JOURNAL_LEN: &str = "coalesce((
    SELECT min(events.position, 4611686018427387903)
           + (CASE WHEN typeof(events.span) = 'integer'
                        AND events.span BETWEEN 1 AND 2147483647
                   THEN events.span ELSE 1 END)
      FROM events
     WHERE events.instance_id = ?1 AND events.execution = ?2
       AND typeof(events.position) = 'integer'
     ORDER BY events.position DESC LIMIT 1), 0)";

/// The columns [`row_events`] reads, in order.
const EVENT_COLUMNS: &str = "position, format, data, span";

/// Reads an execution's journal; a row that cannot be decoded, or a position with no row, is
/// reported with its position.
pub(crate) fn read_journal(
    conn: &Connection,
    id: &str,
    execution: u32,
) -> SqlResult<Result<Vec<Event>, StoreError>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {EVENT_COLUMNS} FROM events
              WHERE instance_id = ?1 AND execution = ?2 ORDER BY position"
        )
    });
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut rows = stmt.query(params![id, execution])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        if let Err((position, error)) = row_events(row, events.len(), &mut events) {
            drop(rows);
            return Ok(Err(StoreError::CorruptJournal {
                instance_id: id.to_owned(),
                execution,
                position,
                journal_len: journal_len(conn, id, execution)?,
                error,
            }));
        }
    }
    Ok(Ok(events))
}

/// Decodes the journal row (selected with [`EVENT_COLUMNS`]) expected at position `index`
/// (the journal's length so far, when reading it whole), appending its events to `out`: one,
/// or the `span` events a commit appended together. On failure, the position of the first
/// event that cannot be read (the events before it in the row are appended), and why.
pub(crate) fn row_events(
    row: &rusqlite::Row<'_>,
    index: usize,
    out: &mut Vec<Event>,
) -> Result<(), (usize, EventDecodeError)> {
    let corrupt = |e: String| (index, EventDecodeError::Corrupt(e));
    let span = match row.get_ref(3) {
        Ok(ValueRef::Integer(1)) => 1,
        Ok(ValueRef::Integer(n)) if (2..=i64::from(u32::MAX)).contains(&n) => n as usize,
        Ok(other) => {
            return Err(corrupt(format!(
                "the row's span {} is not a count of events",
                describe(other)
            )))
        }
        Err(e) => return Err(corrupt(format!("the row cannot be read: {e}"))),
    };
    if span == 1 {
        out.push(event_row(row, index).map_err(|e| (index, e))?);
        return Ok(());
    }
    let (position, format) = match (row.get_ref(0), row.get_ref(1)) {
        (Ok(ValueRef::Integer(p)), Ok(ValueRef::Integer(f))) => (p, f),
        _ => {
            return Err(corrupt(
                "the row's position or format is not a number".into(),
            ))
        }
    };
    let data = match row.get_ref(2) {
        Ok(ValueRef::Blob(bytes)) => EventData::Binary(bytes),
        Ok(other) => {
            return Err(corrupt(format!(
                "a row of {span} events is stored as {}, not as encoded events",
                describe(other)
            )))
        }
        Err(e) => return Err(corrupt(format!("the row cannot be read: {e}"))),
    };
    codec::journal_row_events(index, position, format, span as i64, data, out)
}

/// Decodes the journal row read at `index` (rows are read in position order), selected as
/// `position, format, data`. SQLite keeps whatever a column was given, so each column's type
/// is checked before its value.
fn event_row(row: &rusqlite::Row<'_>, index: usize) -> Result<Event, EventDecodeError> {
    let corrupt = EventDecodeError::Corrupt;
    let value = |i: usize| {
        row.get_ref(i)
            .map_err(|e| corrupt(format!("the row cannot be read: {e}")))
    };
    let position = match value(0)? {
        ValueRef::Integer(p) => p,
        other => {
            return Err(corrupt(format!(
                "an event is stored at position {}, which is not a journal position",
                describe(other)
            )))
        }
    };
    let format = match value(1)? {
        ValueRef::Integer(f) => f,
        other => {
            return Err(corrupt(format!(
                "format version {} is not a version number",
                describe(other)
            )))
        }
    };
    // New events are blobs in the binary encoding; journals written before it are JSON text.
    let data = match value(2)? {
        ValueRef::Blob(bytes) => EventData::Binary(bytes),
        ValueRef::Text(bytes) => EventData::Json(
            std::str::from_utf8(bytes)
                .map_err(|e| corrupt(format!("the event's text is not UTF-8: {e}")))?,
        ),
        other => {
            return Err(corrupt(format!(
                "the event is stored as {}, neither an encoded event nor JSON text",
                describe(other)
            )))
        }
    };
    codec::journal_event(index, position, format, data)
}

/// A stored value, described for an error message.
fn describe(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => format!("{r} (a real number)"),
        ValueRef::Text(t) => format!("{:?} (a text)", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

/// The number of events in an execution's journal (positions are dense from 0): one past the
/// last event of the last row, whatever the rows hold ([`JOURNAL_LEN`]).
fn journal_len(conn: &Connection, id: &str, execution: u32) -> SqlResult<usize> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {JOURNAL_LEN}"));
    let len: i64 = conn
        .prepare_cached(&SQL)?
        .query_row(params![id, execution], |r| r.get(0))?;
    Ok(usize::try_from(len).unwrap_or(0))
}

/// The position and span of an execution's last row: one backward seek of the events' key.
const LAST_POSITION: &str = "SELECT position, span FROM events
     WHERE instance_id = ?1 AND execution = ?2 ORDER BY position DESC LIMIT 1";

/// The journal a lease hands over. Leases run on the writer, and every write waits while it
/// reads: a journal of up to [`INLINE_JOURNAL`] events is read here, a longer one (or one whose
/// last position is not a number) is left for the caller to read on a reader connection
/// ([`Journal::Unread`]). Reading and decoding 20,002 events held the writer for 15 ms.
fn leased_journal(
    conn: &Connection,
    id: &str,
    execution: u32,
) -> SqlResult<Result<Journal, StoreError>> {
    let last: Option<i64> = conn
        .prepare_cached(LAST_POSITION)?
        .query_row(params![id, execution], |r| {
            match (r.get_ref(0)?, r.get_ref(1)?) {
                (ValueRef::Integer(p), ValueRef::Integer(span)) if span >= 1 => {
                    Ok(Some(p.saturating_add(span - 1)))
                }
                _ => Ok(None),
            }
        })
        .optional()?
        .unwrap_or(Some(-1));
    match last.and_then(|p| usize::try_from(p.saturating_add(1)).ok()) {
        Some(0) => Ok(Ok(Journal::Events(Vec::new()))),
        Some(len) if len <= INLINE_JOURNAL => {
            Ok(read_journal(conn, id, execution)?.map(Journal::Events))
        }
        _ => Ok(Ok(Journal::Unread)),
    }
}

fn visible_messages(conn: &Connection, id: &str, now: Timestamp) -> SqlResult<Vec<Message>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, visible_at, kind FROM messages
         WHERE instance_id = ?1 AND visible_at <= ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![id, now.0])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let msg_id: i64 = row.get(0)?;
        let what = || format!("message {msg_id} of instance {id:?}");
        let (visible_at, kind): (i64, String) = in_row(what, || Ok((row.get(1)?, row.get(2)?)))?;
        out.push(Message {
            id: MessageId(msg_id),
            instance_id: id.to_owned(),
            kind: from_json::<MessageKind>(
                &kind,
                format_args!("message {msg_id} of instance {id:?}"),
            )?,
            visible_at: Timestamp(visible_at),
        });
    }
    Ok(out)
}

pub(crate) fn fetch(
    conn: &Connection,
    tx: &mut Tx<'_>,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> SqlResult<Vec<TurnWork>> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    let due = flow::due_ids(conn, filter, now, max)?;
    let mut work = Vec::with_capacity(due.len());
    for d in due {
        work.extend(lease_turn(conn, tx, &d.id, d.counted, now, lease, cache)?);
    }
    Ok(work)
}

/// Leases the turn of instance `id` if its work is due at `now`, with its visible messages and
/// its journal (unless `cache` holds it as the last commit left it). `counted` says whether a
/// limit admits it, if this lease admits it (see [`flow::Due`]).
pub(crate) fn lease_turn(
    conn: &Connection,
    tx: &mut Tx<'_>,
    id: &str,
    counted: bool,
    now: Timestamp,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> SqlResult<Option<TurnWork>> {
    lease_turn_when(conn, tx, id, counted, now, lease, cache, LeaseIf::Due)
}

/// What makes a turn leasable.
#[derive(Clone, Copy)]
pub(crate) enum LeaseIf {
    /// The instance is due now (`due_at`).
    Due,
    /// The instance is open, not leased and not held back by a backoff: the caller has just
    /// put a visible message in its inbox without moving its due time, so the lease moves
    /// the instance's due entry once rather than twice.
    JustPosted,
}

/// Leases instance `id`'s turn for `lease` if `when` holds (see [`lease_turn`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lease_turn_when(
    conn: &Connection,
    tx: &mut Tx<'_>,
    id: &str,
    counted: bool,
    now: Timestamp,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
    when: LeaseIf,
) -> SqlResult<Option<TurnWork>> {
    let token = tx.token()?;
    let until = now.plus(lease);
    // Separate statements rather than `RETURNING`, which SQLite buffers in a temporary table
    // each time.
    let sql = match when {
        LeaseIf::Due => {
            "UPDATE instances SET lease_token = ?2, lease_until = ?3, due_at = ?3,
                    flow_counted = CASE WHEN started_at IS NULL THEN ?5 ELSE flow_counted END,
                    started_at = coalesce(started_at, ?4)
             WHERE id = ?1 AND due_at <= ?4"
        }
        LeaseIf::JustPosted => {
            "UPDATE instances SET lease_token = ?2, lease_until = ?3, due_at = ?3,
                    flow_counted = CASE WHEN started_at IS NULL THEN ?5 ELSE flow_counted END,
                    started_at = coalesce(started_at, ?4)
             WHERE id = ?1 AND status IN ('pending', 'running')
               AND (lease_until IS NULL OR lease_until <= ?4) AND not_before <= ?4"
        }
    };
    let leased = conn
        .prepare_cached(sql)?
        .execute(params![id, token, until.0, now.0, counted])?;
    if leased == 0 {
        return Ok(None);
    }
    let Some((instance, lease_columns)) = conn
        .prepare_cached(&LEASED_INSTANCE)?
        .query_row([id], |row| {
            Ok((
                instance_row(row),
                in_row(
                    || format!("instance {id:?}"),
                    || Ok((row.get::<_, i64>(14)?, row.get::<_, Option<i64>>(15)?)),
                ),
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let instance = instance?;
    let (commit_token, start_at) = lease_columns?;
    let mut messages = Vec::new();
    if let Some(at) = start_at.filter(|at| *at <= now.0) {
        messages.push(Message {
            id: IMPLICIT_START,
            instance_id: id.to_owned(),
            kind: MessageKind::start(instance.execution),
            visible_at: Timestamp(at),
        });
    }
    messages.extend(visible_messages(conn, id, now)?);
    let warm = cache.is_some_and(|c| c.holds(id, instance.execution, LeaseToken(commit_token)));
    let journal = if warm {
        Ok(Journal::Cached)
    } else {
        leased_journal(conn, id, instance.execution)?
    };
    Ok(Some(TurnWork {
        instance,
        journal,
        messages,
        token: LeaseToken(token),
    }))
}

pub(crate) fn commit(conn: &Connection, c: &TurnCommit, tx: &mut Tx<'_>) -> SqlResult<Committed> {
    let id = &c.instance_id;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT lease_token, lease_until, execution, not_before,
                    {journal_len}, commit_token, start_at, due_seq, status
               FROM instances WHERE id = ?1",
            journal_len = JOURNAL_LEN.replace("?2", "instances.execution"),
        )
    });
    type Row = (
        i64,
        Option<i64>,
        u32,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        String,
    );
    let row: Option<Row> = conn
        .prepare_cached(&SQL)?
        .query_row([id], |r| r.try_into())
        .optional()?;
    let Some((
        token,
        lease_until,
        execution,
        not_before,
        journal_len,
        commit_token,
        start_at,
        due_seq,
        was,
    )) = row
    else {
        return Err(StoreError::instance_not_found(id).into());
    };
    let found = FoundTurn {
        lease: lease_until.map(|until| (LeaseToken(token), Timestamp(until))),
        execution,
        journal_len: usize::try_from(journal_len).ok(),
        commit_token: LeaseToken(commit_token),
    };
    check_turn(c, Some(found))?;
    let direct_task = match c.direct {
        Some(direct) => Some((
            direct.task,
            super::tasks::check_direct(conn, c, direct.task)?,
        )),
        None => None,
    };
    callbacks::check_new(conn, c)?;

    // A direct turn's task: its result is in the new events.
    if let Some((task, queue)) = direct_task {
        super::tasks::delete(conn, tx, task, &queue)?;
    }

    insert_events(conn, id, execution, c.journal_base, &c.new_events)?;
    {
        let mut delete =
            conn.prepare_cached("DELETE FROM messages WHERE id = ?1 AND instance_id = ?2")?;
        for m in c.consumed.iter().filter(|m| **m != IMPLICIT_START) {
            delete.execute(params![m.0, id])?;
        }
    }
    for child in &c.new_instances {
        if instances::status_of(conn, &child.id)?.is_none() {
            instances::insert(conn, child)?;
            tx.wake.turns = true;
        }
    }
    let mut committed = Committed::default();
    // A claim takes the first tasks in order, and stops at one of a queue with a task limit:
    // that one is left to a fetch, which enforces the limit.
    let mut claiming = c.claim_tasks.is_some();
    for (i, task) in c.tasks.iter().enumerate() {
        if claiming
            && c.claim_tasks.is_some_and(|claim| i < claim.max)
            && super::flow::task_limit(conn, tx, task.options.queue_name())?.is_some()
        {
            claiming = false;
        }
        let claim = c.claim_tasks.filter(|claim| claiming && i < claim.max);
        match insert_task(conn, tx, task, claim, c.now)? {
            Some(claimed) => committed.tasks.push(claimed),
            None => tx.wake.tasks = true,
        }
    }
    for m in &c.messages {
        if insert_message(conn, &m.instance_id, &m.kind, m.visible_at)? {
            tx.wake.turns = true;
        }
    }
    callbacks::apply(conn, c)?;
    queue_events::apply(conn, c, tx)?;
    feed::append(conn, c, tx)?;
    if !c.cancelled_tasks.is_empty() {
        if flow::holds_task_slot(conn, id)? {
            tx.wake.tasks = true;
        }
        let mut cancel = conn.prepare_cached(
            "DELETE FROM tasks WHERE instance_id = ?1 AND execution = ?2 AND op = ?3",
        )?;
        for op in &c.cancelled_tasks {
            cancel.execute(params![id, execution, op.to_string()])?;
        }
    }

    let (new_execution, input) = match &c.continue_as_new {
        Some(input) => (execution + 1, Some(input.as_json().to_owned())),
        None => (execution, None),
    };
    // A new execution runs attempt 1, unless it is a retry; it is not due before its start
    // (for a retry, the end of its backoff).
    let attempt = c.new_attempt();
    let not_before = c.next_execution_at().map_or(not_before, |at| at.0);
    let status = c.final_status();
    if c.continue_as_new.is_some() {
        tx.wake.instance_changed(id);
    }
    if status.is_terminal() {
        if flow::frees_room(conn, tx, id)? {
            tx.wake.turns = true;
        }
        conn.prepare_cached("DELETE FROM messages WHERE instance_id = ?1")?
            .execute([id])?;
        if flow::holds_task_slot(conn, id)? {
            tx.wake.tasks = true;
        }
        conn.prepare_cached("DELETE FROM tasks WHERE instance_id = ?1")?
            .execute([id])?;
        callbacks::drop_before(conn, id, None)?;
        queue_events::drop_waiters(conn, id, None)?;
        committed.tasks.clear();
        tx.wake.instance_changed(id);
    } else if c.continue_as_new.is_some() {
        callbacks::drop_before(conn, id, Some(new_execution))?;
        queue_events::drop_waiters(conn, id, Some(new_execution))?;
    }
    // A commit that begins its execution records the version its `workflow_started` names.
    let started_version = c.started_version();
    let (earliest, oldest): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(visible_at), min(id) FROM messages WHERE instance_id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    // A start still pending is work due when it is visible, first in send order among the
    // instance's work (see migration 0016 for `due_seq`); it ends when a commit consumes it,
    // or with its execution.
    let start_at = start_at.filter(|_| {
        !c.consumed.contains(&IMPLICIT_START)
            && !status.is_terminal()
            && c.continue_as_new.is_none()
    });
    let oldest = oldest.map(|id| 2 * id);
    let (earliest, oldest) = match start_at {
        Some(at) => (Some(earliest.map_or(at, |e| e.min(at))), due_seq.or(oldest)),
        None => (earliest, oldest),
    };
    // A checkpoint keeps the lease (a direct turn's takes it) and is due when it runs out; a
    // commit that ends its turn is due again when the earliest message left becomes visible
    // (see `instance_due_at`).
    let lease_until = checkpoint_lease(c);
    let due_at = instance_due_at(&DueState {
        finished: status.is_terminal(),
        lease_until,
        earliest_message: earliest.map(Timestamp),
        not_before: Some(Timestamp(not_before)),
        redo: false,
    });
    // A checkpoint's journal is named by a token never issued to a lease: no cache holds it as
    // it is now.
    let commit_token = match lease_until {
        Some(_) => tx.token()?,
        None => c.token.0,
    };
    // SQLite rewrites the entry of every index on a column the statement sets, changed or
    // not: a commit that leaves the status as it was (most of a running instance's) does not
    // set it, and spares `instances_by_status` a page.
    static UPDATE: LazyLock<[String; 2]> = LazyLock::new(|| {
        [("status = ?2, ", ""), ("", " AND status = ?2")].map(|(set, unchanged)| {
            format!(
                "UPDATE instances SET {set}output = ?3, failure = ?4, updated_at = ?5,
                        execution = ?6, input = coalesce(?7, input), lease_until = ?12,
                        lease_token = iif(?12 IS NULL, lease_token, ?16),
                        commit_token = ?8, not_before = ?9, due_at = ?10, due_seq = ?11,
                        attempt = coalesce(?13, attempt), version = iif(?14, ?15, version),
                        start_at = ?17
                 WHERE id = ?1{unchanged}"
            )
        })
    });
    conn.prepare_cached(&UPDATE[usize::from(was == status.as_str())])?
        .execute(params![
            id,
            status.as_str(),
            c.output.as_ref().map(|p| p.as_json().to_owned()),
            c.failure.as_ref().map(json).transpose()?,
            c.now.0,
            new_execution,
            input,
            commit_token,
            if status.is_terminal() { 0 } else { not_before },
            due_at.map(|at| at.0),
            oldest,
            lease_until.map(|until| until.0),
            attempt,
            started_version.is_some(),
            started_version.flatten(),
            c.token.0,
            start_at,
        ])?;
    if commit_wakes_turns(lease_until, due_at) {
        tx.wake.turns = true;
    }
    Ok(committed)
}

/// Appends `events` to the journal from position `base`: one row holding them all (see
/// [`row_events`]).
fn insert_events(
    conn: &Connection,
    id: &str,
    execution: u32,
    base: usize,
    events: &[Event],
) -> SqlResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO events (instance_id, execution, position, format, data, span)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        execution,
        base as i64,
        JOURNAL_FORMAT_VERSION,
        codec::journal_row_data(events),
        events.len() as i64
    ])?;
    Ok(())
}

/// Inserts a task: for any worker to fetch, or leased to the committer (its first attempt
/// counted) when `claim` is given.
fn insert_task(
    conn: &Connection,
    tx: &mut Tx<'_>,
    task: &NewTask,
    claim: Option<TaskClaim>,
    now: Timestamp,
) -> SqlResult<Option<TaskWork>> {
    let lease = match claim {
        Some(claim) => Some((tx.token()?, now.plus(claim.lease))),
        None => None,
    };
    let id = tx.task_id(conn)?;
    conn.prepare_cached(
        "INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                            visible_at, attempt, lease_token, lease_until, queue, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, ?7),
                 CASE WHEN ?8 IS NULL THEN 0 ELSE 1 END, coalesce(?9, 0), ?8, ?10, ?11)",
    )?
    .execute(params![
        task.instance_id,
        task.execution,
        task.op.to_string(),
        task.name,
        task.input.as_json(),
        json(&task.options)?,
        task.scheduled_at.0,
        lease.map(|(_, until)| until.0),
        lease.map(|(token, _)| token),
        task.options.queue_name(),
        id,
    ])?;
    Ok(lease.map(|(token, until)| TaskWork::claimed(task, TaskId(id), LeaseToken(token), until)))
}

pub(crate) fn abandon(
    conn: &Connection,
    id: &str,
    token: LeaseToken,
    retry_at: Timestamp,
    tx: &mut Tx<'_>,
) -> SqlResult<()> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT lease_token, lease_until FROM instances WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((current, lease_until)) = row else {
        return Err(StoreError::instance_not_found(id).into());
    };
    let lease = lease_until.map(|until| (LeaseToken(current), Timestamp(until)));
    if !holds_lease(lease, token, None) {
        return Err(StoreError::instance_lease_lost(id).into());
    }
    conn.prepare_cached(
        "UPDATE instances SET lease_until = NULL, not_before = ?2,
                due_at = coalesce((SELECT max(min(m.visible_at), ?2) FROM messages m
                                    WHERE m.instance_id = ?1), ?2)
         WHERE id = ?1",
    )?
    .execute(params![id, retry_at.0])?;
    tx.wake.turns = true;
    Ok(())
}

/// Extends a turn's lease to `now + lease` (see `Store::renew_turn`).
pub(crate) fn renew(
    conn: &Connection,
    id: &str,
    token: LeaseToken,
    now: Timestamp,
    lease: Duration,
) -> SqlResult<Timestamp> {
    let until = now.plus(lease);
    let renewed = conn
        .prepare_cached(
            "UPDATE instances SET lease_until = ?4, due_at = ?4
             WHERE id = ?1 AND lease_token = ?2 AND lease_until > ?3",
        )?
        .execute(params![id, token.0, now.0, until.0])?;
    if renewed == 1 {
        return Ok(until);
    }
    match instances::status_of(conn, id)? {
        Some(_) => Err(StoreError::instance_lease_lost(id).into()),
        None => Err(StoreError::instance_not_found(id).into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::path::Path;

    use duraflow_core::{EventKind, OpId, Payload};

    use super::*;

    fn with_events(conn: &Connection, id: &str, len: usize) {
        for position in 0..len {
            let event = Event {
                at: Timestamp(0),
                kind: EventKind::StepCompleted {
                    op: OpId::new(None, u32::try_from(position).unwrap()),
                    output: Payload::null(),
                },
            };
            conn.execute(
                "INSERT INTO events (instance_id, execution, position, format, data)
                 VALUES (?1, 1, ?2, ?3, ?4)",
                params![
                    id,
                    i64::try_from(position).unwrap(),
                    JOURNAL_FORMAT_VERSION,
                    codec::journal_row_data(std::slice::from_ref(&event))
                ],
            )
            .unwrap();
        }
    }

    /// A lease reads a journal of up to `INLINE_JOURNAL` events and leaves a longer one, or
    /// one it cannot tell the length of, for a reader connection.
    #[test]
    fn a_lease_reads_short_journals_and_leaves_long_ones() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::open::migrate(&mut conn, Path::new(":memory:")).unwrap();
        let read = |id: &str| leased_journal(&conn, id, 1).unwrap().unwrap();
        assert_eq!(read("none"), Journal::Events(Vec::new()));
        with_events(&conn, "short", INLINE_JOURNAL);
        let Journal::Events(events) = read("short") else {
            panic!("a short journal is read");
        };
        assert_eq!(events.len(), INLINE_JOURNAL);
        with_events(&conn, "long", INLINE_JOURNAL + 1);
        assert_eq!(read("long"), Journal::Unread);
        with_events(&conn, "odd", 3);
        conn.execute(
            "UPDATE events SET position = 'x' WHERE instance_id = 'odd' AND position = 2",
            [],
        )
        .unwrap();
        assert_eq!(
            read("odd"),
            Journal::Unread,
            "the reader reports what is wrong"
        );
    }

    /// Telling a journal's length is one seek of the events' primary key, however long.
    #[test]
    fn the_last_position_is_one_seek_of_the_events_key() {
        crate::ops::assert_one_seek_of_the_events_key(LAST_POSITION);
        crate::ops::assert_one_seek_of_the_events_key(&format!("SELECT {JOURNAL_LEN}"));
    }
}
