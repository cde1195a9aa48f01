//! Creating instances and sending them messages.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{
    validate_instance_id, CreateOutcome, FetchFilter, InstanceInfo, InstanceStatus, JournalCache,
    MessageKind, NewInstance, NewMessage, StoreError, TurnWork,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::codec::{instance_row, json, status, INSTANCE_COLUMNS};
use crate::db::Tx;
use crate::error::SqlResult;
use crate::ops::turns;

/// An instance by id.
pub(crate) fn get(conn: &Connection, id: &str) -> SqlResult<Option<InstanceInfo>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"));
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(instance_row(row)?)),
        None => Ok(None),
    }
}

/// An instance by id, with its current execution's journal length and the time of its last
/// event: the last row of `(instance_id, execution)` in the events' primary key, one seek.
pub(crate) fn describe(conn: &Connection, id: &str) -> SqlResult<Option<InstanceInfo>> {
    let Some(mut info) = get(conn, id)? else {
        return Ok(None);
    };
    let last: Option<(i64, Option<i64>)> = conn
        .prepare_cached(JOURNAL_END)?
        .query_row(params![id, info.execution], |r| {
            // The last row holds the last event (or several, ending with it). One that cannot
            // be decoded gives no time: reported as corrupt below.
            let position: i64 = r.get(0)?;
            let mut events = Vec::new();
            let decoded = usize::try_from(position)
                .ok()
                .filter(|index| super::turns::row_events(r, *index, &mut events).is_ok());
            let at = decoded.and(events.last()).map(|e| e.at.0);
            let last = position.saturating_add(events.len().max(1) as i64 - 1);
            Ok((last, at))
        })
        .optional()?;
    let (len, at) = duraflow_store::codec::journal_end(id, info.execution, last)?;
    info.journal_len = Some(len);
    info.last_event_at = at;
    Ok(Some(info))
}

/// The last row of an execution's journal, decoded for its last event's position and time
/// (`describe`).
pub(crate) const JOURNAL_END: &str = "SELECT position, format, data, span FROM events
     WHERE instance_id = ?1 AND execution = ?2 ORDER BY position DESC LIMIT 1";

/// An instance's status, if it exists.
pub(crate) fn status_of(conn: &Connection, id: &str) -> SqlResult<Option<InstanceStatus>> {
    let text: Option<String> = conn
        .prepare_cached("SELECT status FROM instances WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    text.map(|t| status(&t, format_args!("column status of instance {id:?}")))
        .transpose()
}

/// Puts a message in an open instance's inbox and moves the instance's due time if the message
/// makes it due sooner. Returns false (writing nothing) for a finished or unknown instance.
pub(crate) fn insert_message(
    conn: &Connection,
    instance_id: &str,
    kind: &MessageKind,
    visible_at: Timestamp,
) -> SqlResult<bool> {
    match post_message(conn, instance_id, kind, visible_at)? {
        Some(message_id) => {
            make_due(conn, instance_id, visible_at, message_id)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Puts a message in an open instance's inbox without moving its due time: the caller either
/// leases the instance's turn in the same transaction or calls [`make_due`]. Returns the
/// message's id, or `None` (writing nothing) for a finished or unknown instance.
pub(crate) fn post_message(
    conn: &Connection,
    instance_id: &str,
    kind: &MessageKind,
    visible_at: Timestamp,
) -> SqlResult<Option<i64>> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO messages (instance_id, visible_at, kind)
             SELECT ?1, ?2, ?3 WHERE EXISTS (
                 SELECT 1 FROM instances WHERE id = ?1 AND status IN ('pending', 'running'))",
        )?
        .execute(params![instance_id, visible_at.0, json(kind)?])?;
    Ok((inserted > 0).then(|| conn.last_insert_rowid()))
}

/// Makes an instance due at `visible_at` (or its `not_before`) for message `message_id`, if
/// that is sooner than it is due now. Only when the due time moves: a turn holding the
/// instance recomputes it at its commit, and earlier work may be due already.
pub(crate) fn make_due(
    conn: &Connection,
    instance_id: &str,
    visible_at: Timestamp,
    message_id: i64,
) -> SqlResult<()> {
    conn.prepare_cached(
        "UPDATE instances SET due_at = max(?2, not_before), due_seq = coalesce(due_seq, 2 * ?3)
         WHERE id = ?1 AND lease_until IS NULL
           AND (due_at IS NULL OR due_at > max(?2, not_before))",
    )?
    .execute(params![instance_id, visible_at.0, message_id])?;
    Ok(())
}

/// Inserts a new instance with its start pending (`start_at`, which a lease hands over as its
/// start message, see [`turns::IMPLICIT_START`]), due at its start; the caller wakes whoever
/// should fetch it. It is not due before its start (`not_before`), whatever it is sent
/// meanwhile.
pub(crate) fn insert(conn: &Connection, new: &NewInstance) -> SqlResult<()> {
    insert_with(conn, new, true)
}

/// [`insert`], but with `due` false the instance is left out of the due indexes: its creator
/// leases its first turn in the same transaction ([`turns::LeaseIf::JustPosted`]) or else
/// makes it due at its start. An instance inserted due and leased at once would write a page
/// of the pending instances' due index for nothing.
fn insert_with(conn: &Connection, new: &NewInstance, due: bool) -> SqlResult<()> {
    validate_instance_id(&new.id)?;
    let due_at = new.due_at();
    let options = (!new.options.is_default())
        .then(|| json(&new.options))
        .transpose()?;
    conn.prepare_cached(
        "INSERT INTO instances (id, name, status, execution, input, parent, created_at, updated_at,
                                due_at, queue, options, priority, concurrency_key, not_before,
                                start_at, due_seq)
         VALUES (?1, ?2, 'pending', 1, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11,
                 2 * coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0) + 1)",
    )?
    .execute(params![
        new.id,
        new.name,
        new.input.as_json(),
        new.parent.as_ref().map(json).transpose()?,
        new.created_at.0,
        due.then_some(due_at.0),
        new.queue,
        options,
        new.options.priority,
        new.options.concurrency_key,
        due_at.0,
    ])?;
    Ok(())
}

/// Creates an instance unless its id is taken. With `claim`, its first turn is leased to the
/// creator for that long, and nobody else is woken for it; otherwise the dispatchers are.
pub(crate) fn create(
    conn: &Connection,
    new: &NewInstance,
    claim: Option<Duration>,
    tx: &mut Tx<'_>,
) -> SqlResult<(CreateOutcome, Option<TurnWork>)> {
    if let Some(existing) = get(conn, &new.id)? {
        return Ok((CreateOutcome::Existing(Box::new(existing)), None));
    }
    // A delayed start is not due yet: nothing to claim.
    let claim = claim.filter(|_| new.due_at() <= new.created_at);
    insert_with(conn, new, claim.is_none())?;
    let turn = match claim {
        // A first turn that needs an admission is left to a fetch.
        Some(_) if !super::flow::claimable(conn, tx, &new.id, None)? => None,
        Some(lease) => turns::lease_turn_when(
            conn,
            tx,
            &new.id,
            false,
            new.created_at,
            lease,
            None,
            turns::LeaseIf::JustPosted,
        )?,
        None => None,
    };
    if turn.is_none() {
        if claim.is_some() {
            conn.prepare_cached("UPDATE instances SET due_at = not_before WHERE id = ?1")?
                .execute([&new.id])?;
        }
        tx.wake.turns = true;
    }
    Ok((CreateOutcome::Created, turn))
}

/// Puts `message` in its open instance's inbox and makes the instance due for it (see
/// [`post_to_open`] for the errors), waking whoever fetches turns.
pub(crate) fn send(conn: &Connection, message: &NewMessage, tx: &mut Tx<'_>) -> SqlResult<()> {
    let id = &message.instance_id;
    let message_id = post_to_open(conn, message)?;
    make_due(conn, id, message.visible_at, message_id)?;
    tx.wake.turns = true;
    Ok(())
}

/// Puts `message` in its instance's inbox, as [`post_message`] does, and returns its id; fails
/// with `NotFound` for an unknown instance and `InstanceFinished` for a finished one, which
/// take no message. The insert checks that the instance is open: only a refused message reads
/// the instance's status, for the error.
fn post_to_open(conn: &Connection, message: &NewMessage) -> SqlResult<i64> {
    let id = &message.instance_id;
    if let Some(message_id) = post_message(conn, id, &message.kind, message.visible_at)? {
        return Ok(message_id);
    }
    Err(match status_of(conn, id)? {
        None => StoreError::instance_not_found(id),
        Some(status) if status.is_terminal() => StoreError::InstanceFinished {
            id: id.to_owned(),
            status: status.to_string(),
        },
        // The insert and this read share the writer's transaction: an open instance cannot
        // have refused it.
        Some(status) => StoreError::Other(format!(
            "the SQLite store did not post a message for instance {id:?}, which is {status}; \
             nothing was written: send it again, and report this as a bug"
        )),
    }
    .into())
}

/// Sends `message` as [`send`] does and, when it is visible at `now` and its instance's turn
/// is free at once for a caller serving `filter` (see `Store::send_claiming`), leases that
/// turn to the caller for `lease` in the same transaction; nobody else is woken for it.
pub(crate) fn send_claiming(
    conn: &Connection,
    tx: &mut Tx<'_>,
    message: &NewMessage,
    claim: &Claim<'_>,
) -> SqlResult<Option<TurnWork>> {
    let id = &message.instance_id;
    if message.visible_at > claim.now {
        return send(conn, message, tx).map(|()| None);
    }
    let message_id = post_to_open(conn, message)?;
    let turn = if super::flow::claimable(conn, tx, id, Some(claim.filter))? {
        turns::lease_turn_when(
            conn,
            tx,
            id,
            false,
            claim.now,
            claim.lease,
            claim.cache,
            turns::LeaseIf::JustPosted,
        )?
    } else {
        None
    };
    if turn.is_none() {
        make_due(conn, id, message.visible_at, message_id)?;
        tx.wake.turns = true;
    }
    Ok(turn)
}

/// Who may claim the turn of a sent message, and how (see [`send_claiming`]).
pub(crate) struct Claim<'a> {
    /// What the caller serves.
    pub(crate) filter: &'a FetchFilter,
    /// When the turn is leased.
    pub(crate) now: Timestamp,
    /// For how long.
    pub(crate) lease: Duration,
    /// The journals the caller holds.
    pub(crate) cache: Option<&'a Arc<dyn JournalCache>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `describe` finds an execution's last event with one seek of the events' primary key,
    /// whatever the journal's length: no scan and no sort.
    #[test]
    fn the_journal_end_is_one_seek_of_the_events_key() {
        crate::ops::assert_one_seek_of_the_events_key(JOURNAL_END);
    }
}
