//! Leasing, completing, renewing and releasing activity tasks.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use duraflow_core::{ActivityOptions, Failure, Payload, Timestamp};
use duraflow_store::{
    check_direct_task, holds_lease, Completed, FetchFilter, FoundTask, JournalCache, LeaseToken,
    MessageKind, PostedResults, StoreError, StoreResult, TaskCompletion, TaskId, TaskRelease,
    TaskWork, TurnCommit,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::instances::{insert_message, make_due, post_message};
use super::turns;
use crate::codec::{filter_params, from_json, in_row, json, op_id, opt_json, payload};
use crate::db::Tx;
use crate::error::SqlResult;

const TASK_COLUMNS: &str = "id, instance_id, execution, op, name, input, options, attempt, \
                            scheduled_at, lease_token, lease_until, last_failure, \
                            heartbeat_details";

/// A task by id (the SQL is built once).
static TASK_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"));

fn task_row(row: &Row<'_>) -> SqlResult<TaskWork> {
    let id: i64 = in_row(|| "the id of a task row".to_owned(), || Ok(row.get(0)?))?;
    in_row(|| format!("task {id}"), || task_columns(row, id))
}

fn task_columns(row: &Row<'_>, id: i64) -> SqlResult<TaskWork> {
    let what = |col| duraflow_store::codec::Column::new(col, "task", &id);
    Ok(TaskWork {
        id: TaskId(id),
        instance_id: row.get(1)?,
        execution: row.get(2)?,
        op: op_id(&row.get::<_, String>(3)?, what("op"))?,
        name: row.get(4)?,
        input: payload(row.get(5)?, what("input"))?,
        options: from_json::<ActivityOptions>(&row.get::<_, String>(6)?, what("options"))?,
        attempt: row.get(7)?,
        scheduled_at: Timestamp(row.get(8)?),
        token: LeaseToken(row.get(9)?),
        lease_until: Timestamp(row.get::<_, Option<i64>>(10)?.unwrap_or(0)),
        last_failure: opt_json::<Failure>(row.get(11)?, what("last_failure"))?,
        heartbeat_details: row
            .get::<_, Option<String>>(12)?
            .map(|text| payload(text, what("heartbeat_details")))
            .transpose()?,
    })
}

pub(crate) fn fetch(
    conn: &Connection,
    tx: &mut Tx<'_>,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
    lease: Duration,
) -> SqlResult<Vec<TaskWork>> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    let (queues, names) = filter_params(filter)?;
    // A leased task's `visible_at` is its lease's expiry, so every task visible now is free
    // (or its lease has run out). Each queue in order from its index (stopping at `max`),
    // merged.
    let limits = super::flow::task_limits(conn)?;
    let mut due: Vec<(i64, i64)> = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT visible_at, id FROM tasks INDEXED BY tasks_queue_due
         WHERE queue = ?2 AND visible_at <= ?1
           AND (?3 IS NULL OR name IN (SELECT value FROM json_each(?3)))
         ORDER BY visible_at, id",
    )?;
    // No `LIMIT ?`: SQLite plans with a LIMIT's bound value, so a statement whose limit
    // changes is prepared again at every run; the rows come in index order, and stepping
    // stops at `take`.
    for queue in queues {
        // A queue with a task limit leases no more than its free slots; the writer runs one
        // transaction at a time, so the count and the leases are atomic.
        let take = match limits.get(queue) {
            Some(&limit) => super::flow::task_quota(conn, queue, limit, now)?.min(max),
            None => max,
        };
        if take == 0 {
            continue;
        }
        let mut rows = stmt.query(params![now.0, queue, names])?;
        let mut taken = 0;
        while taken < take {
            let Some(row) = rows.next()? else { break };
            due.push((row.get(0)?, row.get(1)?));
            taken += 1;
        }
    }
    drop(stmt);
    due.sort_unstable();
    due.truncate(max);
    let ids: Vec<i64> = due.into_iter().map(|(_, id)| id).collect();
    let until = now.plus(lease);
    let mut out = Vec::with_capacity(ids.len());
    // Separate statements rather than `RETURNING`, which SQLite buffers in a temporary table
    // each time.
    for id in ids {
        let token = tx.token()?;
        conn.prepare_cached(
            "UPDATE tasks SET attempt = min(attempt, 4294967294) + 1, lease_token = ?3, lease_until = ?2,
                              visible_at = ?2
             WHERE id = ?1",
        )?
        .execute(params![id, until.0, token])?;
        let mut stmt = conn.prepare_cached(&TASK_BY_ID)?;
        let mut rows = stmt.query([id])?;
        if let Some(row) = rows.next()? {
            out.push(task_row(row)?);
        }
    }
    Ok(out)
}

/// The task's lease state: `(instance_id, execution, op, token, lease_until)`.
type LeaseRow = (String, u32, String, i64, Option<i64>);

fn lease_row(conn: &Connection, id: TaskId) -> SqlResult<LeaseRow> {
    conn.prepare_cached(
        "SELECT instance_id, execution, op, lease_token, lease_until FROM tasks WHERE id = ?1",
    )?
    .query_row([id.0], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .optional()?
    .ok_or_else(|| StoreError::task_not_found(id).into())
}

/// Whether `token` holds the task's lease (live at `now` if given).
fn holds(row: &LeaseRow, token: LeaseToken, now: Option<Timestamp>) -> bool {
    let lease = row.4.map(|until| (LeaseToken(row.3), Timestamp(until)));
    holds_lease(lease, token, now)
}

/// Completes a batch of tasks, then grants the claims: one per instance, once every result is
/// in the inbox. A completion whose lease is gone is refused without writing anything, so the
/// others go on; any other failure fails the whole write.
pub(crate) fn complete_batch(
    conn: &Connection,
    filter: &FetchFilter,
    now: Timestamp,
    completions: &[TaskCompletion],
    cache: Option<&Arc<dyn JournalCache>>,
    tx: &mut Tx<'_>,
) -> SqlResult<Vec<StoreResult<Completed>>> {
    /// A turn to claim: for the completion at `index`, of `instance`, whose result is message
    /// `message` (posted without moving the instance's due time).
    struct Claim {
        index: usize,
        instance: String,
        lease: Duration,
        message: i64,
    }
    let mut claims: Vec<Claim> = Vec::new();
    // Instances that got a result, so a turn to run.
    let mut posted = PostedResults::default();
    let mut results = Vec::with_capacity(completions.len());
    for (index, c) in completions.iter().enumerate() {
        let (instance, result) = match take(conn, now, c, tx)? {
            Ok(taken) => taken,
            Err(refused) => {
                results.push(Err(refused));
                continue;
            }
        };
        // The first result of an instance whose turn the caller claims is posted without
        // making the instance due: the claim leases it below, or makes it due if it cannot.
        let claim = c
            .claim_turn
            .filter(|_| !claims.iter().any(|claim| claim.instance == instance));
        match claim {
            Some(lease) => {
                if let Some(message) = post_message(conn, &instance, &result, now)? {
                    posted.posted(instance.clone());
                    claims.push(Claim {
                        index,
                        instance,
                        lease,
                        message,
                    });
                }
            }
            None => {
                if insert_message(conn, &instance, &result, now)? {
                    posted.posted(instance);
                }
            }
        }
        results.push(Ok(Completed::default()));
    }
    for claim in claims {
        let turn = if super::flow::claimable(conn, tx, &claim.instance, Some(filter))? {
            turns::lease_turn_when(
                conn,
                tx,
                &claim.instance,
                false,
                now,
                claim.lease,
                cache,
                turns::LeaseIf::JustPosted,
            )?
        } else {
            None
        };
        match turn {
            Some(turn) => {
                posted.claimed(&claim.instance);
                if let Some(Ok(completed)) = results.get_mut(claim.index) {
                    completed.turn = Some(turn);
                }
            }
            None => make_due(conn, &claim.instance, now, claim.message)?,
        }
    }
    // The turns claimed here need nobody else: wake the dispatchers only for the rest.
    posted.wake(&mut tx.wake);
    Ok(results)
}

/// Takes a completed task: deletes it and returns its instance and the result message to post
/// there, or why the completion is refused (then nothing was written).
fn take(
    conn: &Connection,
    now: Timestamp,
    c: &TaskCompletion,
    tx: &mut Tx<'_>,
) -> SqlResult<StoreResult<(String, MessageKind)>> {
    let row: Option<(String, u32, String, i64, Option<i64>, String)> = conn
        .prepare_cached(
            "SELECT instance_id, execution, op, lease_token, lease_until, queue
               FROM tasks WHERE id = ?1",
        )?
        .query_row([c.id.0], |r| r.try_into())
        .optional()?;
    let Some((instance_id, execution, op, token, lease_until, queue)) = row else {
        return Ok(Err(StoreError::task_not_found(c.id)));
    };
    let lease = lease_until.map(|until| (LeaseToken(token), Timestamp(until)));
    if !holds_lease(lease, c.token, Some(now)) {
        return Ok(Err(StoreError::task_lease_lost(c.id)));
    }
    delete(conn, tx, c.id, &queue)?;
    let kind = MessageKind::ActivityResult {
        execution,
        op: op_id(&op, format_args!("column op of task {}", c.id.0))?,
        result: c.result.clone(),
    };
    Ok(Ok((instance_id, kind)))
}

/// Deletes a task that was run to its end (a completion, a direct turn) of `queue`.
pub(crate) fn delete(conn: &Connection, tx: &mut Tx<'_>, id: TaskId, queue: &str) -> SqlResult<()> {
    conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
        .execute([id.0])?;
    // A slot under the queue's task limit is free: wake the fetchers holding tasks back.
    if super::flow::task_limit(conn, tx, queue)?.is_some() {
        tx.wake.tasks = true;
    }
    Ok(())
}

/// Checks the task of direct turn `c` (see `check_direct_task`), writing nothing; returns the
/// task's queue.
pub(crate) fn check_direct(conn: &Connection, c: &TurnCommit, id: TaskId) -> SqlResult<String> {
    let row: Option<(String, u32, i64, Option<i64>, String)> = conn
        .prepare_cached(
            "SELECT instance_id, execution, lease_token, lease_until, queue
               FROM tasks WHERE id = ?1",
        )?
        .query_row([id.0], |r| r.try_into())
        .optional()?;
    let found = row
        .as_ref()
        .map(|(instance_id, execution, token, until, _)| FoundTask {
            instance_id,
            execution: *execution,
            lease: until.map(|until| (LeaseToken(*token), Timestamp(until))),
        });
    check_direct_task(c, found)?;
    Ok(row.map(|row| row.4).unwrap_or_default())
}

pub(crate) fn renew(
    conn: &Connection,
    id: TaskId,
    token: LeaseToken,
    now: Timestamp,
    lease: Duration,
    details: Option<&Payload>,
) -> SqlResult<Timestamp> {
    let row = lease_row(conn, id)?;
    if !holds(&row, token, Some(now)) {
        return Err(StoreError::task_lease_lost(id).into());
    }
    let until = now.plus(lease);
    conn.prepare_cached(
        "UPDATE tasks SET lease_until = ?2, visible_at = ?2,
                          heartbeat_details = coalesce(?3, heartbeat_details)
         WHERE id = ?1",
    )?
    .execute(params![id.0, until.0, details.map(Payload::as_json)])?;
    Ok(until)
}

pub(crate) fn release(
    conn: &Connection,
    id: TaskId,
    token: LeaseToken,
    release: &TaskRelease,
    tx: &mut Tx<'_>,
) -> SqlResult<()> {
    let row = lease_row(conn, id)?;
    if !holds(&row, token, None) {
        return Err(StoreError::task_lease_lost(id).into());
    }
    match release {
        TaskRelease::Retry {
            visible_at,
            failure,
        } => {
            conn.prepare_cached(
                "UPDATE tasks SET lease_until = NULL, visible_at = ?2, last_failure = ?3
                 WHERE id = ?1",
            )?
            .execute(params![id.0, visible_at.0, json(failure)?])?;
        }
        TaskRelease::HandBack => {
            conn.prepare_cached(
                "UPDATE tasks SET lease_until = NULL, visible_at = scheduled_at,
                                  attempt = max(attempt - 1, 0)
                 WHERE id = ?1",
            )?
            .execute([id.0])?;
        }
    }
    tx.wake.tasks = true;
    Ok(())
}
