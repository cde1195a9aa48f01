//! Committing a batch of turns: lock, refuse what cannot be applied, write the rest.

pub(crate) mod one_statement;
pub(crate) mod runs;
mod write_statement;
mod writes;

pub(crate) use write_statement::{one_statement_sql, write_sql, WriteParts};

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use duraflow_core::{Timestamp, JOURNAL_FORMAT_VERSION};
use duraflow_store::{
    callback_token_taken, check_direct_task, check_turn, Committed, FoundTask, FoundTurn,
    InstanceStatus, LeaseToken, NewInstance, StoreError, StoreResult, TaskId, TaskWork, TurnCommit,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};

use self::runs::Runs;
use self::writes::Writes;
use super::instances::insert_children;
use super::Wake;
use super::{callbacks, feed, queue_events};
use crate::error::OpResult;
use crate::listen;
use crate::tx::literal_list;

/// What the lock statement of a commit batch found of an instance.
struct Locked {
    status: InstanceStatus,
    token: i64,
    lease_until: Option<i64>,
    execution: u32,
    /// The journal length of the current execution, for the batch's own instances.
    journal_len: Option<i64>,
    /// Whether it is admitted and a limit applies to it (its queue's or its key's): its
    /// finish makes room for a held-back instance, so it wakes the fetchers.
    holds_room: bool,
    /// The token that names its last commit.
    commit_token: i64,
    /// Whether it has callbacks, or queue-event waiters: a commit that ends or continues its
    /// execution deletes them with statements of their own, which are left out when there is
    /// nothing to delete. Only its own commits add either, and the lock keeps them out.
    has_callbacks: bool,
    has_waiters: bool,
}

/// What [`lock_direct_sql`] found of the task a direct turn delivers.
pub(super) struct DirectTask {
    instance_id: String,
    execution: u32,
    pub(super) op: String,
    token: i64,
    lease_until: Option<i64>,
}

/// The statement that locks and reads the tasks of a batch's direct turns (their `ids`, as
/// integer literals), so that a completion or renewal of one waits for the commit. It follows
/// [`lock_sql`] in the query that begins the transaction: the tasks are locked after the
/// instances, in id order. Its rows are told from the instances' by their `op` column. It
/// executes [`LOCK_DIRECT`], which the connection holds prepared (a direct turn commits one
/// activity's result: planning the lock at every commit cost a tenth of a millisecond).
pub(crate) fn lock_direct_sql(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!(
        "EXECUTE {LOCK_DIRECT_PREPARED} (ARRAY[{}]::bigint[])",
        list.join(", ")
    )
}

/// The statement of [`lock_direct_sql`], as every connection of the store's pool holds it
/// prepared under [`LOCK_DIRECT_PREPARED`]: `$1` the tasks.
pub(crate) const LOCK_DIRECT: &str =
    "SELECT id, instance_id, execution, op, lease_token, lease_until
       FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// The name [`LOCK_DIRECT`] is prepared under.
pub(crate) const LOCK_DIRECT_PREPARED: &str = "duraflow_lock_direct";

/// The tasks of the batch's direct turns, by id, from the rows [`lock_direct_sql`] returned
/// (those with an `op` column).
fn direct_tasks(rows: &[PgRow]) -> OpResult<HashMap<i64, DirectTask>> {
    let mut tasks = HashMap::new();
    for row in rows.iter().filter(|row| row.try_column("op").is_ok()) {
        let execution: i32 = row.try_get("execution")?;
        tasks.insert(
            row.try_get("id")?,
            DirectTask {
                instance_id: row.try_get("instance_id")?,
                execution: u32::try_from(execution).unwrap_or(0),
                op: row.try_get("op")?,
                token: row.try_get("lease_token")?,
                lease_until: row.try_get("lease_until")?,
            },
        );
    }
    Ok(tasks)
}

/// Why a commit cannot be applied, found before writing anything of it.
fn refusal(
    c: &TurnCommit,
    locked: Option<&Locked>,
    direct: &HashMap<i64, DirectTask>,
) -> Option<StoreError> {
    let found = locked.map(|row| FoundTurn {
        lease: row
            .lease_until
            .map(|until| (LeaseToken(row.token), Timestamp(until))),
        execution: row.execution,
        journal_len: row.journal_len.and_then(|n| usize::try_from(n).ok()),
        commit_token: LeaseToken(row.commit_token),
    });
    check_turn(c, found).err().or_else(|| {
        let task = c
            .direct
            .and_then(|d| direct.get(&d.task.0))
            .map(|task| FoundTask {
                instance_id: &task.instance_id,
                execution: task.execution,
                lease: task
                    .lease_until
                    .map(|until| (LeaseToken(task.token), Timestamp(until))),
            });
        check_direct_task(c, task).err()
    })
}

/// The columns of [`lock_statement`] and [`lock_instances`]: the lease state of an instance and
/// the length of its current execution's journal.
pub(super) const LOCKED_COLUMNS: &str = "i.id, i.status, i.lease_token, i.lease_until, i.execution,
    i.commit_token,
    coalesce((SELECT e.position::bigint + CASE WHEN e.span >= 1 THEN e.span ELSE 1 END
                FROM events e WHERE e.instance_id = i.id AND e.execution = i.execution
               ORDER BY e.position DESC LIMIT 1), 0) AS journal_len,
    (i.started_at IS NOT NULL
     AND (i.concurrency_key IS NOT NULL
          OR EXISTS (SELECT 1 FROM queue_configs qc
                      WHERE qc.name = i.queue AND qc.limits_queue))) AS holds_room,
    EXISTS (SELECT 1 FROM callbacks cb WHERE cb.instance_id = i.id) AS has_callbacks,
    EXISTS (SELECT 1 FROM queue_event_waiters w WHERE w.instance_id = i.id) AS has_waiters";

/// The name under which every connection of the store's pool holds [`LOCK_INSTANCES`]
/// prepared (`connect::pool` runs [`PREPARE_LOCK_INSTANCES`] when it opens one), so that the
/// query that begins a commit runs it with `EXECUTE`: it still rides with `BEGIN` in one round
/// trip, and it is no longer planned at every commit, as a statement with literal ids was (a
/// quarter of a millisecond of the server's time per commit).
const LOCK_INSTANCES_PREPARED: &str = "duraflow_lock_instances";

/// Prepares the lock statements that begin transactions on a new connection: [`LOCK_INSTANCES`]
/// as [`LOCK_INSTANCES_PREPARED`], [`LOCK_DIRECT`] as [`LOCK_DIRECT_PREPARED`] and the
/// completions' `tasks::LOCK_TASKS`; and `instances::GET_MANY`, which a commit that finishes
/// watched instances sends with its `COMMIT`.
pub(crate) static PREPARE_LOCK_INSTANCES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "PREPARE {LOCK_INSTANCES_PREPARED} (text[]) AS {}; \
         PREPARE {LOCK_DIRECT_PREPARED} (bigint[]) AS {LOCK_DIRECT}; \
         PREPARE {} (bigint[]) AS {}; \
         PREPARE {} (text[]) AS {};",
        LOCK_INSTANCES.as_str(),
        super::tasks::LOCK_TASKS_PREPARED,
        super::tasks::LOCK_TASKS,
        super::instances::GET_MANY_PREPARED,
        super::instances::GET_MANY.as_str(),
    )
});

/// The statement that begins a commit batch (step 1 of [`commit_batch`]): it locks every
/// instance row the batch writes to (the batch's own instances, the addressees of its
/// messages, its children) `FOR UPDATE`, sorted by id, and reads their lease state; a batch
/// that emits or awaits queue-wide events takes their advisory locks first. Its ids are
/// literals (see [`crate::tx`]); an id with a NUL character names no instance and is left out.
pub(crate) fn lock_statement(commits: &[TurnCommit]) -> String {
    let mut ids: Vec<&str> = Vec::new();
    for c in commits {
        ids.push(&c.instance_id);
        ids.extend(c.messages.iter().map(|m| m.instance_id.as_str()));
        ids.extend(c.new_instances.iter().map(|n| n.id.as_str()));
    }
    let keys = queue_events::batch_keys(commits);
    let instances = if keys.is_empty() {
        lock_prepared(ids)
    } else {
        lock_sql(ids, &keys)
    };
    let mut tasks: Vec<i64> = commits
        .iter()
        .filter_map(|c| c.direct.map(|d| d.task.0))
        .collect();
    if tasks.is_empty() {
        return instances;
    }
    tasks.sort_unstable();
    tasks.dedup();
    format!("{instances}; {}", lock_direct_sql(&tasks))
}

/// `ids` as [`lock_statement`] locks them: sorted, distinct, without the ids with a NUL
/// character (which name no instance).
fn lock_ids(mut ids: Vec<&str>) -> Vec<&str> {
    ids.retain(|id| !id.contains('\0'));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The text of [`lock_statement`] for the instances `ids` when the batch takes no queue
/// events' locks: [`LOCK_INSTANCES`], prepared on the connection, executed on them.
fn lock_prepared(ids: Vec<&str>) -> String {
    format!(
        "EXECUTE {LOCK_INSTANCES_PREPARED} (ARRAY[{}]::text[])",
        literal_list(lock_ids(ids))
    )
}

/// The text of [`lock_statement`] for the instances `ids` and the queue events' advisory lock
/// `keys` (sorted and distinct).
pub(crate) fn lock_sql(ids: Vec<&str>, keys: &[i64]) -> String {
    let ids = lock_ids(ids);
    let wanted = if ids.is_empty() {
        "false".to_owned()
    } else {
        format!("i.id IN ({})", literal_list(ids))
    };
    // The advisory locks of the batch's queue events come first (see `queue_events`): the
    // materialized CTE is evaluated, in key order, before the first row is locked.
    if keys.is_empty() {
        return format!(
            "SELECT {LOCKED_COLUMNS} FROM instances i WHERE {wanted} ORDER BY i.id FOR UPDATE"
        );
    }
    let keys: Vec<String> = keys.iter().map(i64::to_string).collect();
    format!(
        "WITH keys AS MATERIALIZED (
             SELECT pg_advisory_xact_lock(k) FROM unnest(ARRAY[{}]::bigint[]) AS k ORDER BY k
         )
         SELECT {LOCKED_COLUMNS} FROM instances i
          WHERE (SELECT count(*) FROM keys) >= 0 AND ({wanted})
          ORDER BY i.id FOR UPDATE",
        keys.join(", ")
    )
}

/// Reads the rows of [`lock_statement`] or [`lock_instances`].
fn locked_rows<'r>(rows: impl IntoIterator<Item = &'r PgRow>) -> OpResult<HashMap<String, Locked>> {
    let mut locked = HashMap::new();
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
                holds_room: row.try_get("holds_room")?,
                commit_token: row.try_get("commit_token")?,
                has_callbacks: row.try_get("has_callbacks")?,
                has_waiters: row.try_get("has_waiters")?,
            },
        );
    }
    Ok(locked)
}

/// The statement of [`lock_instances`]: `$1` the instance ids.
pub(crate) static LOCK_INSTANCES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LOCKED_COLUMNS} FROM instances i WHERE i.id = ANY($1) ORDER BY i.id FOR UPDATE",
    )
});

/// Locks the instance rows with the given ids `FOR UPDATE`, sorted by id, and reads their
/// lease state, inside the caller's transaction.
async fn lock_instances(
    conn: &mut PgConnection,
    ids: &[&str],
) -> OpResult<HashMap<String, Locked>> {
    let rows = sqlx::query(LOCK_INSTANCES.as_str())
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
///    instance row, and step 1 waited for it);
/// 5. one merges the rows of the journals that reached past a multiple of
///    [`runs::RUN_EVENTS`] since their last long row ([`runs`]).
///
/// Returns each commit's result, in order; the outer error means the transaction failed and
/// must be rolled back.
pub(crate) async fn commit_batch(
    conn: &mut PgConnection,
    commits: &[TurnCommit],
    locked: &[PgRow],
    channel: &str,
    owner: Option<i32>,
    wake: &mut Wake,
) -> OpResult<Vec<StoreResult<Committed>>> {
    let direct = direct_tasks(locked)?;
    let mut locked = locked_rows(locked.iter().filter(|row| row.try_column("op").is_err()))?;

    // 2. Refuse what cannot be applied. An instance commits once per batch: its first
    // accepted commit ends the lease the others hold.
    let mut results: Vec<StoreResult<Committed>> = Vec::with_capacity(commits.len());
    let mut accepted: Vec<&TurnCommit> = Vec::new();
    let mut committing: HashMap<&str, InstanceStatus> = HashMap::new();
    let taken = callbacks::taken_tokens(conn, commits).await?;

    let mut opened: HashSet<&str> = HashSet::new();
    for c in commits {
        let refused = if committing.contains_key(c.instance_id.as_str()) {
            Some(StoreError::instance_lease_lost(&c.instance_id))
        } else {
            refusal(c, locked.get(&c.instance_id), &direct).or_else(|| {
                c.callbacks
                    .iter()
                    .find(|cb| taken.contains(&cb.token) || opened.contains(cb.token.as_str()))
                    .map(|cb| callback_token_taken(&c.instance_id, cb))
            })
        };
        match refused {
            Some(e) => results.push(Err(e)),
            None => {
                opened.extend(c.callbacks.iter().map(|cb| cb.token.as_str()));
                committing.insert(&c.instance_id, c.final_status());
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
                        holds_room: false,
                        commit_token: 0,
                        has_callbacks: false,
                        has_waiters: false,
                    },
                );
            }
        }
    }

    // A finish that makes room under a limit wakes every fetcher (the statement below
    // notifies when `wake.turns` is set).
    wake.turns |= accepted.iter().any(|c| {
        c.final_status().is_terminal() && locked.get(&c.instance_id).is_some_and(|l| l.holds_room)
    });

    // 4. Everything else, in one statement.
    let mut w = Writes::default();
    let mut runs = Runs::default();
    for c in &accepted {
        let task = c.direct.and_then(|d| direct.get(&d.task.0));
        w.add(c, &committing, &locked, task)?;
        runs.add(c);
    }
    let row = bind_writes(write_sql(w.parts()), &w, channel, wake.turns, owner)
        .fetch_one(&mut *conn)
        .await?;
    // 5. The journals that reached past a multiple of `runs::RUN_EVENTS` have their rows since
    // their last long one merged into one.
    runs.merge(conn).await?;
    let has = |id: &str, what: fn(&Locked) -> bool| locked.get(id).is_some_and(what);
    callbacks::apply(conn, &accepted, |id| has(id, |l| l.has_callbacks)).await?;
    queue_events::apply(
        conn,
        &accepted,
        |id| has(id, |l| l.has_waiters),
        channel,
        wake,
    )
    .await?;
    // Last, so the feed's head row is held for as short a time as can be.
    feed::append(conn, &accepted, wake).await?;
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
    wake.tasks |= row.try_get::<bool, _>("wake_tasks")?;

    claimed_tasks(&row, &accepted, &mut results)?;
    Ok(results)
}

/// The write statement `sql` (either form, see [`write_statement`]) with the parameters the
/// two forms share bound: the columns of `w`, the `channel` to announce on, whether to wake the
/// turn fetchers whatever the batch writes (`turns`), and the lease `owner`.
fn bind_writes<'q>(
    sql: &'static str,
    w: &'q Writes,
    channel: &'q str,
    turns: bool,
    owner: Option<i32>,
) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql)
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
        .bind(listen::instance_payloads(&w.wake.instances))
        .bind(turns)
        .bind(&w.keep_until)
        .bind(&w.cancel_instances)
        .bind(&w.cancel_executions)
        .bind(&w.cancel_ops)
        .bind(&w.attempts)
        .bind(&w.not_befores)
        .bind(&w.starts)
        .bind(&w.versions)
        .bind(owner)
        .bind(&w.event_spans)
        .bind(&w.task_queues)
}

/// Adds to `results` (one per commit of the batch, the refused ones `Err`) the tasks that the
/// write statement's `row` says were claimed for the accepted commits, in the order they were
/// added.
fn claimed_tasks(
    row: &PgRow,
    accepted: &[&TurnCommit],
    results: &mut [StoreResult<Committed>],
) -> OpResult<()> {
    // The claimed tasks, in the order they were added.
    let ids: Vec<i64> = row
        .try_get::<Option<Vec<i64>>, _>("task_ids")?
        .unwrap_or_default();
    let tokens: Vec<i64> = row
        .try_get::<Option<Vec<i64>>, _>("task_tokens")?
        .unwrap_or_default();
    // Each task's lease as the statement granted it (a claim refused for a task limit is
    // NULL).
    let until: Vec<Option<i64>> = row
        .try_get::<Option<Vec<Option<i64>>>, _>("task_until")?
        .unwrap_or_default();
    let mut added = ids.into_iter().zip(tokens).zip(until);
    let mut next = accepted.iter();
    for result in results.iter_mut() {
        let Ok(committed) = result else { continue };
        let Some(c) = next.next() else { break };
        if c.final_status().is_terminal() {
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
                    Timestamp(until),
                ));
            }
        }
    }
    Ok(())
}
