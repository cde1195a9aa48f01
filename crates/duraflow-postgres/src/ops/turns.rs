//! Leasing, committing and abandoning workflow turns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use duraflow_core::{Event, Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    check_commit, codec, Committed, InstanceInfo, InstanceStatus, Journal, JournalCache,
    LeaseToken, Message, NewInstance, StoreError, StoreResult, TaskId, TaskWork, TurnCommit,
    TurnWork,
};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::instances::{insert_children, not_found};
use super::{messages_of, Wake, OPEN};
use crate::codec::instance_row;
use crate::error::OpResult;
use crate::listen;
use crate::tx::literal;

/// The instance columns a lease returns, of the row named `alias`: those
/// [`crate::codec::instance_row`] reads, its last commit's token and the new lease token.
pub(crate) fn leased_columns(alias: &str) -> String {
    [
        "id",
        "name",
        "status",
        "execution",
        "input",
        "output",
        "failure",
        "parent",
        "created_at",
        "updated_at",
        "commit_token",
        "lease_token",
    ]
    .map(|column| format!("{alias}.{column}"))
    .join(", ")
}

/// What a leased turn comes with besides [`leased_columns`], for the leased rows `l` of a
/// `FROM` clause: its messages, from `inbox` (a query of `id, visible_at, kind` for instance
/// `l.id`), as three arrays in id order (`msg_ids`, `msg_visible`, `msg_kinds`), and whether its
/// journal has events (`has_events`). Appended to the `FROM` item `l` and followed by the
/// select list's use of [`TURN_EXTRA_COLUMNS`].
pub(crate) fn turn_extras(inbox: &str) -> String {
    // One read of the inbox for the three arrays; the events probe stops at the first event
    // (a correlated LIMIT, which the planner cannot turn into a scan of the whole table).
    format!(
        "LEFT JOIN LATERAL (
             SELECT array_agg(u.id ORDER BY u.id) AS msg_ids,
                    array_agg(u.visible_at ORDER BY u.id) AS msg_visible,
                    array_agg(u.kind ORDER BY u.id) AS msg_kinds
               FROM ({inbox}) u
         ) inbox ON true
         LEFT JOIN LATERAL (
             SELECT true AS has_events FROM events e
              WHERE e.instance_id = l.id AND e.execution = l.execution
              LIMIT 1
         ) journal ON true"
    )
}

/// The columns [`turn_extras`] adds.
pub(crate) const TURN_EXTRA_COLUMNS: &str =
    "inbox.msg_ids, inbox.msg_visible, inbox.msg_kinds, coalesce(journal.has_events, false) AS has_events";

fn lease_lost(id: &str) -> StoreError {
    StoreError::LeaseLost {
        what: format!("instance {id:?}"),
    }
}

/// Reads an execution's journal; a row that cannot be decoded is reported with its position.
pub(crate) async fn read_journal(
    conn: &mut PgConnection,
    id: &str,
    execution: u32,
) -> OpResult<Result<Vec<Event>, StoreError>> {
    let rows = sqlx::query(
        "SELECT position, format, data FROM events
         WHERE instance_id = $1 AND execution = $2 ORDER BY position",
    )
    .bind(id)
    .bind(execution as i32)
    .fetch_all(&mut *conn)
    .await?;
    let rows: Vec<&PgRow> = rows.iter().collect();
    decode_journal(&rows, id, execution)
}

/// Decodes an execution's journal rows (`position, format, data`, in position order). A row
/// that does not decode, or a position with no row, is `CorruptJournal` at its position.
fn decode_journal(
    rows: &[&PgRow],
    id: &str,
    execution: u32,
) -> OpResult<Result<Vec<Event>, StoreError>> {
    let mut stored = Vec::with_capacity(rows.len());
    for row in rows {
        let position: i32 = row.try_get("position")?;
        let format: i32 = row.try_get("format")?;
        let data: String = row.try_get("data")?;
        stored.push((i64::from(position), i64::from(format), data));
    }
    let mut events = Vec::with_capacity(stored.len());
    for (index, (position, format, data)) in stored.iter().enumerate() {
        match codec::journal_event(index, *position, *format, data) {
            Ok(event) => events.push(event),
            Err(error) => {
                return Ok(Err(StoreError::CorruptJournal {
                    instance_id: id.to_owned(),
                    execution,
                    position: index,
                    journal_len: codec::journal_len(stored.iter().map(|(p, _, _)| *p)),
                    error,
                }))
            }
        }
    }
    Ok(Ok(events))
}

/// A turn as its lease returned it, before its journal is read.
pub(crate) struct Leased {
    instance: InstanceInfo,
    commit_token: i64,
    token: LeaseToken,
    messages: Vec<Message>,
    has_events: bool,
}

/// Reads a row with [`leased_columns`] and [`TURN_EXTRA_COLUMNS`].
pub(crate) fn leased_row(row: &PgRow) -> OpResult<Leased> {
    let instance = instance_row(row)?;
    let messages = messages_of(row, &instance.id)?;
    Ok(Leased {
        commit_token: row.try_get("commit_token")?,
        token: LeaseToken(row.try_get("lease_token")?),
        has_events: row.try_get("has_events")?,
        messages,
        instance,
    })
}

/// Gives leased turns their journals: empty ones without reading, those the caller's cache
/// holds as its own last commit left them not at all ([`Journal::Cached`]), and the rest in one
/// query.
pub(crate) async fn with_journals(
    conn: &mut PgConnection,
    leased: Vec<Leased>,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<Vec<TurnWork>> {
    let mut unread = Vec::new();
    let mut turns = Vec::with_capacity(leased.len());
    for l in leased {
        let journal = if !l.has_events {
            Some(Ok(Journal::Events(Vec::new())))
        } else if cache.is_some_and(|c| {
            c.holds(
                &l.instance.id,
                l.instance.execution,
                LeaseToken(l.commit_token),
            )
        }) {
            Some(Ok(Journal::Cached))
        } else {
            unread.push((l.instance.id.clone(), l.instance.execution));
            None
        };
        turns.push((l, journal));
    }
    let mut journals = read_journals(conn, &unread).await?;
    Ok(turns
        .into_iter()
        .map(|(l, journal)| {
            let journal = journal.unwrap_or_else(|| {
                journals
                    .remove(&l.instance.id)
                    .unwrap_or_else(|| Ok(Vec::new()))
                    .map(Journal::Events)
            });
            TurnWork {
                instance: l.instance,
                journal,
                messages: l.messages,
                token: l.token,
            }
        })
        .collect())
}

/// Reads the journals of several executions (instance id, execution) in one query.
async fn read_journals(
    conn: &mut PgConnection,
    wanted: &[(String, u32)],
) -> OpResult<HashMap<String, Result<Vec<Event>, StoreError>>> {
    let mut out = HashMap::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&str> = wanted.iter().map(|(id, _)| id.as_str()).collect();
    let executions: Vec<i32> = wanted.iter().map(|(_, e)| *e as i32).collect();
    let rows = sqlx::query(
        "SELECT e.instance_id, e.position, e.format, e.data
           FROM unnest($1::text[], $2::int[]) AS k(id, execution)
           JOIN events e ON e.instance_id = k.id AND e.execution = k.execution
          ORDER BY e.instance_id, e.position",
    )
    .bind(&ids)
    .bind(&executions)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_instance: HashMap<String, Vec<&PgRow>> = HashMap::new();
    for row in &rows {
        by_instance
            .entry(row.try_get("instance_id")?)
            .or_default()
            .push(row);
    }
    for (id, execution) in wanted {
        let rows = by_instance.remove(id).unwrap_or_default();
        out.insert(id.clone(), decode_journal(&rows, id, *execution)?);
    }
    Ok(out)
}

/// Leases ready instances, those whose work is due, in due order, with their visible messages:
/// one statement, which commits by itself. `FOR UPDATE SKIP LOCKED` locks the instance rows
/// themselves, so concurrent fetches skip them instead of leasing them twice. The messages are
/// read from the statement's snapshot: one sent while the statement ran waits for the next turn
/// (the turn's commit recomputes the due time from the inbox). An instance that a commit
/// changed after the snapshot (its `commit_token` in the snapshot is not the leased row's) has
/// its inbox read again, see [`reread_moved`].
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    now: Timestamp,
    max: usize,
    lease: Duration,
    cache: Option<&Arc<dyn JournalCache>>,
) -> OpResult<Vec<TurnWork>> {
    let until = now.plus(lease);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "WITH ready AS (
             SELECT id, due_at, due_seq FROM instances
              WHERE due_at <= $1
              ORDER BY due_at, due_seq
              LIMIT $2
                FOR UPDATE SKIP LOCKED
         ), leased AS (
             UPDATE instances AS t
                SET lease_token = nextval('lease_tokens'), lease_until = $3, due_at = $3
               FROM ready
              WHERE t.id = ready.id
             RETURNING {leased}, ready.due_at AS was_due, ready.due_seq AS was_seq
         )
         SELECT l.*, {TURN_EXTRA_COLUMNS},
                (SELECT s.commit_token FROM instances s WHERE s.id = l.id) AS seen_commit_token
           FROM leased l {extras}
          ORDER BY l.was_due, l.was_seq",
        leased = leased_columns("t"),
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $1"
        ),
    )))
    .bind(now.0)
    .bind(max as i64)
    .bind(until.0)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(rows.len());
    let mut moved = Vec::new();
    for row in &rows {
        let l = leased_row(row)?;
        let seen: Option<i64> = row.try_get("seen_commit_token")?;
        if seen != Some(l.commit_token) {
            moved.push(leased.len());
        }
        leased.push(l);
    }
    reread_moved(conn, now, &mut leased, &moved).await?;
    with_journals(conn, leased, cache).await
}

/// Reads the inbox (and whether the journal has events) again for the leased turns at
/// `moved`: those whose instance another engine committed to after the lease statement's
/// snapshot was taken.
///
/// The statement reads the inbox from its snapshot, but `FOR UPDATE SKIP LOCKED` locks, and
/// leases, the newest version of a row that a commit changed after that snapshot (it re-checks
/// the row rather than skipping it). The journal is read later, so without this the turn would
/// get the commit's journal with the inbox from before it, and deliver again the messages that
/// commit consumed (an event journaled twice; found by the fault search). The lease is held
/// now, so no other commit can land on these instances before this read.
async fn reread_moved(
    conn: &mut PgConnection,
    now: Timestamp,
    leased: &mut [Leased],
    moved: &[usize],
) -> OpResult<()> {
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = moved
        .iter()
        .map(|&i| leased[i].instance.id.as_str())
        .collect();
    let executions: Vec<i32> = moved
        .iter()
        .map(|&i| leased[i].instance.execution as i32)
        .collect();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT l.id, {TURN_EXTRA_COLUMNS}
           FROM unnest($1::text[], $2::int[]) AS l(id, execution) {extras}",
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $3"
        ),
    )))
    .bind(&ids)
    .bind(&executions)
    .bind(now.0)
    .fetch_all(&mut *conn)
    .await?;
    for row in &rows {
        let id: String = row.try_get("id")?;
        if let Some(&i) = moved.iter().find(|&&i| leased[i].instance.id == id) {
            leased[i].messages = messages_of(row, &id)?;
            leased[i].has_events = row.try_get("has_events")?;
        }
    }
    Ok(())
}

/// What the lock statement of a commit batch found of an instance.
struct Locked {
    status: InstanceStatus,
    token: i64,
    lease_until: Option<i64>,
    execution: u32,
    /// The journal length of the current execution, for the batch's own instances.
    journal_len: Option<i64>,
}

/// Why a commit cannot be applied, found before writing anything of it.
fn refusal(c: &TurnCommit, locked: Option<&Locked>) -> Option<StoreError> {
    let id = &c.instance_id;
    let Some(row) = locked else {
        return Some(not_found(id));
    };
    if row.token != c.token.0 || row.lease_until.is_none_or(|until| until <= c.now.0) {
        return Some(lease_lost(id));
    }
    if c.execution != row.execution {
        return Some(StoreError::Invalid(format!(
            "a turn of instance {id:?} commits to execution {} but the current execution is {}",
            c.execution, row.execution
        )));
    }
    if row.journal_len.and_then(|n| usize::try_from(n).ok()) != Some(c.journal_base) {
        return Some(lease_lost(id));
    }
    check_commit(c).err()
}

/// The status a commit leaves its instance in.
fn final_status(c: &TurnCommit) -> InstanceStatus {
    if c.continue_as_new.is_some() {
        InstanceStatus::Running
    } else {
        c.status
    }
}

/// The columns of [`lock_statement`] and [`lock_instances`]: the lease state of an instance and
/// the length of its current execution's journal.
const LOCKED_COLUMNS: &str = "i.id, i.status, i.lease_token, i.lease_until, i.execution,
    (SELECT coalesce(max(e.position) + 1, 0)::bigint FROM events e
      WHERE e.instance_id = i.id AND e.execution = i.execution) AS journal_len";

/// The statement that begins a commit batch (step 1 of [`commit_batch`]): it locks every
/// instance row the batch writes to (the batch's own instances, the addressees of its
/// messages, its children) `FOR UPDATE`, sorted by id, and reads their lease state. Its ids are
/// literals (see [`crate::tx`]); an id with a NUL character names no instance and is left out.
pub(crate) fn lock_statement(commits: &[TurnCommit]) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for c in commits {
        ids.push(&c.instance_id);
        ids.extend(c.messages.iter().map(|m| m.instance_id.as_str()));
        ids.extend(c.new_instances.iter().map(|n| n.id.as_str()));
    }
    ids.retain(|id| !id.contains('\0'));
    ids.sort_unstable();
    ids.dedup();
    let wanted = if ids.is_empty() {
        "false".to_owned()
    } else {
        let list: Vec<String> = ids.iter().map(|id| literal(id)).collect();
        format!("i.id IN ({})", list.join(", "))
    };
    format!("SELECT {LOCKED_COLUMNS} FROM instances i WHERE {wanted} ORDER BY i.id FOR UPDATE")
}

/// Reads the rows of [`lock_statement`] or [`lock_instances`].
fn locked_rows(rows: &[PgRow]) -> OpResult<HashMap<String, Locked>> {
    let mut locked = HashMap::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("status")?;
        let execution: i32 = row.try_get("execution")?;
        locked.insert(
            row.try_get("id")?,
            Locked {
                status: status.parse()?,
                token: row.try_get("lease_token")?,
                lease_until: row.try_get("lease_until")?,
                execution: u32::try_from(execution).unwrap_or(0),
                journal_len: row.try_get("journal_len")?,
            },
        );
    }
    Ok(locked)
}

/// Locks the instance rows with the given ids `FOR UPDATE`, sorted by id, and reads their
/// lease state, inside the caller's transaction.
async fn lock_instances(
    conn: &mut PgConnection,
    ids: &[&str],
) -> OpResult<HashMap<String, Locked>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {LOCKED_COLUMNS} FROM instances i WHERE i.id = ANY($1) ORDER BY i.id FOR UPDATE"
    )))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    locked_rows(&rows)
}

/// Commits a batch of turns inside the caller's transaction, in few statements whatever its
/// size:
///
/// 1. [`lock_statement`], which began the transaction (its rows are `locked`), locked every
///    instance row the batch writes to and read their lease state;
/// 2. the commits that cannot be applied (lost lease, moved journal, wrong execution, invalid
///    child id) are refused here, having written nothing;
/// 3. one statement inserts the children of the rest, when there are any;
/// 4. one writes everything else: events, consumed and finished inboxes, tasks (with the
///    claimed ones leased), messages (bringing their addressees' due times forward), and each
///    instance's new state, with its due time recomputed from its inbox as this statement
///    leaves it (its snapshot is taken after the locks of step 1, so no message sent to these
///    instances by another transaction can be missing from it: such a sender holds the
///    instance row, and step 1 waited for it).
///
/// Returns each commit's result, in order; the outer error means the transaction failed and
/// must be rolled back.
pub(crate) async fn commit_batch(
    conn: &mut PgConnection,
    commits: &[TurnCommit],
    locked: &[PgRow],
    channel: &str,
    wake: &mut Wake,
) -> OpResult<Vec<StoreResult<Committed>>> {
    let mut locked = locked_rows(locked)?;

    // 2. Refuse what cannot be applied. An instance commits once per batch: its first
    // accepted commit ends the lease the others hold.
    let mut results: Vec<StoreResult<Committed>> = Vec::with_capacity(commits.len());
    let mut accepted: Vec<&TurnCommit> = Vec::new();
    let mut committing: HashMap<&str, InstanceStatus> = HashMap::new();
    for c in commits {
        let refused = if committing.contains_key(c.instance_id.as_str()) {
            Some(lease_lost(&c.instance_id))
        } else {
            refusal(c, locked.get(&c.instance_id))
        };
        match refused {
            Some(e) => results.push(Err(e)),
            None => {
                committing.insert(&c.instance_id, final_status(c));
                accepted.push(c);
                results.push(Ok(Committed::default()));
            }
        }
    }
    if accepted.is_empty() {
        return Ok(results);
    }

    // 3. Children: the first of each id is created; a taken id is left as it is.
    let mut children: Vec<&NewInstance> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for c in &accepted {
        for child in &c.new_instances {
            if !locked.contains_key(&child.id) && seen.insert(&child.id) {
                children.push(child);
            }
        }
    }
    if !children.is_empty() {
        let created = insert_children(conn, &children).await?;
        wake.turns |= !created.is_empty();
        let created: HashSet<String> = created.into_iter().collect();
        // An id taken by a transaction that committed after step 1: lock and read it now.
        let raced: Vec<&str> = children
            .iter()
            .map(|c| c.id.as_str())
            .filter(|id| !created.contains(*id))
            .collect();
        if !raced.is_empty() {
            locked.extend(lock_instances(conn, &raced).await?);
        }
        for child in children {
            if created.contains(&child.id) {
                locked.insert(
                    child.id.clone(),
                    Locked {
                        status: InstanceStatus::Pending,
                        token: 0,
                        lease_until: None,
                        execution: 1,
                        journal_len: None,
                    },
                );
            }
        }
    }

    // 4. Everything else, in one statement.
    let mut w = Writes::default();
    for c in &accepted {
        w.add(c, &committing, &locked)?;
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "WITH c AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                  $6::int[], $7::text[], $8::bigint[], $9::bool[])
                 AS c(id, status, output, failure, now, execution, input, token, finished)
         ), events_added AS (
             INSERT INTO events (instance_id, execution, position, format, data)
             SELECT e.instance_id, e.execution, e.position, $14, e.data
               FROM unnest($10::text[], $11::int[], $12::int[], $13::text[])
                    AS e(instance_id, execution, position, data)
         ), consumed AS (
             DELETE FROM messages m
              USING unnest($15::text[], $16::bigint[]) AS x(instance_id, id)
              WHERE m.id = x.id AND m.instance_id = x.instance_id
             RETURNING m.id
         ), inbox_dropped AS (
             DELETE FROM messages m USING c WHERE c.finished AND m.instance_id = c.id
         ), tasks_dropped AS (
             DELETE FROM tasks t USING c WHERE c.finished AND t.instance_id = c.id
         ), new_tasks AS MATERIALIZED (
             SELECT nextval('tasks_id_seq') AS id,
                    CASE WHEN u.until IS NULL THEN 0 ELSE nextval('lease_tokens') END AS token,
                    u.*
               FROM unnest($17::text[], $18::int[], $19::text[], $20::text[], $21::text[],
                           $22::text[], $23::bigint[], $24::bigint[])
                    WITH ORDINALITY AS u(instance_id, execution, op, name, input, options,
                                         scheduled_at, until, ord)
         ), tasks_added AS (
             INSERT INTO tasks (id, instance_id, execution, op, name, input, options,
                                scheduled_at, visible_at, attempt, lease_token, lease_until)
             SELECT id, instance_id, execution, op, name, input, options, scheduled_at,
                    coalesce(until, scheduled_at), CASE WHEN until IS NULL THEN 0 ELSE 1 END,
                    token, until
               FROM new_tasks
         ), sent AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT m.instance_id, m.visible_at, m.kind
               FROM unnest($25::text[], $26::bigint[], $27::text[])
                    WITH ORDINALITY AS m(instance_id, visible_at, kind, ord)
              ORDER BY m.ord
             RETURNING id, instance_id, visible_at
         ), woken AS (
             UPDATE instances i
                SET due_at = CASE WHEN i.lease_until IS NOT NULL THEN i.lease_until
                                  ELSE greatest(s.visible_at, i.not_before) END,
                    due_seq = coalesce(i.due_seq, s.first)
               FROM (SELECT instance_id, min(visible_at) AS visible_at, min(id) AS first
                       FROM sent WHERE instance_id <> ALL($1::text[])
                      GROUP BY instance_id) s
              WHERE i.id = s.instance_id AND i.status IN {OPEN}
                AND (i.due_at IS NULL OR i.due_at > greatest(s.visible_at, i.not_before))
             RETURNING i.id
         ), committed AS (
             UPDATE instances i
                SET status = c.status, output = c.output, failure = c.failure,
                    updated_at = c.now, execution = c.execution,
                    input = coalesce(c.input, i.input), lease_until = NULL,
                    commit_token = c.token,
                    not_before = CASE WHEN c.finished THEN 0 ELSE i.not_before END,
                    due_at = CASE WHEN c.finished OR inbox.visible_at IS NULL THEN NULL
                                  ELSE greatest(inbox.visible_at, i.not_before) END,
                    due_seq = CASE WHEN c.finished THEN NULL ELSE inbox.first END
               FROM c CROSS JOIN LATERAL (
                        SELECT min(u.visible_at) AS visible_at, min(u.id) AS first FROM (
                            SELECT m.visible_at, m.id FROM messages m
                             WHERE m.instance_id = c.id AND NOT c.finished
                               AND m.id NOT IN (SELECT id FROM consumed)
                            UNION ALL
                            SELECT s.visible_at, s.id FROM sent s WHERE s.instance_id = c.id
                        ) u
                    ) inbox
              WHERE i.id = c.id
             RETURNING i.id, i.due_at
         ), due AS (
             SELECT EXISTS (SELECT 1 FROM woken)
                    OR EXISTS (SELECT 1 FROM committed WHERE due_at IS NOT NULL) AS turns
         ), announced AS (
             SELECT pg_notify($28, w.payload)
               FROM (VALUES ('{turns}', (SELECT turns FROM due) OR $31),
                            ('{tasks}', $29), ('{instances}', $30)) AS w(payload, wanted)
              WHERE w.wanted
         )
         SELECT (SELECT array_agg(id ORDER BY ord) FROM new_tasks) AS task_ids,
                (SELECT array_agg(token ORDER BY ord) FROM new_tasks) AS task_tokens,
                (SELECT count(*) FROM committed) AS committed,
                (SELECT turns FROM due) AS wake_turns,
                (SELECT count(*) FROM announced) AS announced",
        turns = listen::TURNS,
        tasks = listen::TASKS,
        instances = listen::INSTANCES,
    )))
    .bind(&w.ids)
    .bind(&w.statuses)
    .bind(&w.outputs)
    .bind(&w.failures)
    .bind(&w.nows)
    .bind(&w.executions)
    .bind(&w.inputs)
    .bind(&w.tokens)
    .bind(&w.finished)
    .bind(&w.event_instances)
    .bind(&w.event_executions)
    .bind(&w.event_positions)
    .bind(&w.event_data)
    .bind(JOURNAL_FORMAT_VERSION as i32)
    .bind(&w.consumed_instances)
    .bind(&w.consumed_ids)
    .bind(&w.task_instances)
    .bind(&w.task_executions)
    .bind(&w.task_ops)
    .bind(&w.task_names)
    .bind(&w.task_inputs)
    .bind(&w.task_options)
    .bind(&w.task_scheduled)
    .bind(&w.task_until)
    .bind(&w.message_instances)
    .bind(&w.message_visible)
    .bind(&w.message_kinds)
    .bind(channel)
    .bind(w.wake.tasks)
    .bind(w.wake.instances)
    .bind(wake.turns)
    .fetch_one(&mut *conn)
    .await?;
    let n: i64 = row.try_get("committed")?;
    if usize::try_from(n).ok() != Some(accepted.len()) {
        return Err(StoreError::Other(format!(
            "a commit batch updated {n} of its {} instances",
            accepted.len()
        ))
        .into());
    }
    wake.merge(w.wake);
    wake.turns |= row.try_get::<bool, _>("wake_turns")?;

    // The claimed tasks, in the order they were added.
    let ids: Vec<i64> = row
        .try_get::<Option<Vec<i64>>, _>("task_ids")?
        .unwrap_or_default();
    let tokens: Vec<i64> = row
        .try_get::<Option<Vec<i64>>, _>("task_tokens")?
        .unwrap_or_default();
    let mut added = ids.into_iter().zip(tokens).zip(&w.task_until);
    let mut next = accepted.iter();
    for result in &mut results {
        let Ok(committed) = result else { continue };
        let Some(c) = next.next() else { break };
        if final_status(c).is_terminal() {
            continue;
        }
        for task in &c.tasks {
            let Some(((id, token), until)) = added.next() else {
                break;
            };
            if let Some(until) = until {
                committed.tasks.push(TaskWork::claimed(
                    task,
                    TaskId(id),
                    LeaseToken(token),
                    Timestamp(*until),
                ));
            }
        }
    }
    Ok(results)
}

/// The columns of a commit batch's write statement, one array each.
#[derive(Default)]
struct Writes {
    ids: Vec<String>,
    statuses: Vec<&'static str>,
    outputs: Vec<Option<String>>,
    failures: Vec<Option<String>>,
    nows: Vec<i64>,
    executions: Vec<i32>,
    inputs: Vec<Option<String>>,
    tokens: Vec<i64>,
    finished: Vec<bool>,
    event_instances: Vec<String>,
    event_executions: Vec<i32>,
    event_positions: Vec<i32>,
    event_data: Vec<String>,
    consumed_instances: Vec<String>,
    consumed_ids: Vec<i64>,
    task_instances: Vec<String>,
    task_executions: Vec<i32>,
    task_ops: Vec<String>,
    task_names: Vec<String>,
    task_inputs: Vec<String>,
    task_options: Vec<String>,
    task_scheduled: Vec<i64>,
    task_until: Vec<Option<i64>>,
    message_instances: Vec<String>,
    message_visible: Vec<i64>,
    message_kinds: Vec<String>,
    /// Unclaimed tasks were added; an instance finished or continued as new.
    wake: Wake,
}

impl Writes {
    /// Adds an accepted commit. `committing` holds the final status of every instance the batch
    /// commits; `locked`, the status of every other instance it writes to.
    fn add(
        &mut self,
        c: &TurnCommit,
        committing: &HashMap<&str, InstanceStatus>,
        locked: &HashMap<String, Locked>,
    ) -> OpResult<()> {
        let id = &c.instance_id;
        let status = final_status(c);
        let finished = status.is_terminal();
        let execution = c.execution as i32;
        self.ids.push(id.clone());
        self.statuses.push(status.as_str());
        self.outputs
            .push(c.output.as_ref().map(|p| p.as_json().to_owned()));
        self.failures
            .push(c.failure.as_ref().map(codec::to_json).transpose()?);
        self.nows.push(c.now.0);
        match &c.continue_as_new {
            Some(input) => {
                self.executions.push(execution + 1);
                self.inputs.push(Some(input.as_json().to_owned()));
                self.wake.instances = true;
            }
            None => {
                self.executions.push(execution);
                self.inputs.push(None);
            }
        }
        self.tokens.push(c.token.0);
        self.finished.push(finished);
        self.wake.instances |= finished;

        for (i, event) in c.new_events.iter().enumerate() {
            self.event_instances.push(id.clone());
            self.event_executions.push(execution);
            self.event_positions.push((c.journal_base + i) as i32);
            self.event_data.push(event.encode());
        }
        if finished {
            // The inbox and tasks go; nothing is added to them.
            return self.add_messages(c, committing, locked);
        }
        for m in &c.consumed {
            self.consumed_instances.push(id.clone());
            self.consumed_ids.push(m.0);
        }
        for (i, task) in c.tasks.iter().enumerate() {
            let claim = c.claim_tasks.filter(|claim| i < claim.max);
            let until = claim.map(|claim| c.now.plus(claim.lease).0);
            self.wake.tasks |= until.is_none();
            self.task_instances.push(task.instance_id.clone());
            self.task_executions.push(task.execution as i32);
            self.task_ops.push(task.op.to_string());
            self.task_names.push(task.name.clone());
            self.task_inputs.push(task.input.as_json().to_owned());
            self.task_options.push(codec::to_json(&task.options)?);
            self.task_scheduled.push(task.scheduled_at.0);
            self.task_until.push(until);
        }
        self.add_messages(c, committing, locked)
    }

    /// Adds a commit's messages to open instances; those to unknown or finished instances (or
    /// to instances this batch finishes) are dropped.
    fn add_messages(
        &mut self,
        c: &TurnCommit,
        committing: &HashMap<&str, InstanceStatus>,
        locked: &HashMap<String, Locked>,
    ) -> OpResult<()> {
        for m in &c.messages {
            let to = m.instance_id.as_str();
            let open = match committing.get(to) {
                Some(status) => !status.is_terminal(),
                None => locked.get(to).is_some_and(|l| !l.status.is_terminal()),
            };
            if open {
                self.message_instances.push(m.instance_id.clone());
                self.message_visible.push(m.visible_at.0);
                self.message_kinds.push(codec::to_json(&m.kind)?);
            }
        }
        Ok(())
    }
}

/// Gives up a turn's lease: its messages are due again at `retry_at`. The row is locked first
/// and the due time computed in a later statement, which sees every message sent until then.
pub(crate) async fn abandon(
    conn: &mut PgConnection,
    id: &str,
    token: LeaseToken,
    retry_at: Timestamp,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT lease_token, lease_until FROM instances WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((current, lease_until)) = row else {
        return Err(not_found(id).into());
    };
    if current != token.0 || lease_until.is_none() {
        return Err(lease_lost(id).into());
    }
    sqlx::query(AssertSqlSafe(format!(
        "WITH released AS (
             UPDATE instances SET lease_until = NULL, not_before = $2,
                    due_at = (SELECT CASE WHEN min(m.visible_at) IS NULL THEN NULL
                                          ELSE greatest(min(m.visible_at), $2) END
                                FROM messages m WHERE m.instance_id = $1)
              WHERE id = $1
             RETURNING due_at
         )
         SELECT pg_notify($3, '{turns}') FROM released WHERE due_at IS NOT NULL",
        turns = listen::TURNS,
    )))
    .bind(id)
    .bind(retry_at.0)
    .bind(channel)
    .execute(&mut *conn)
    .await?;
    wake.turns = true;
    Ok(())
}
