//! Leasing, completing, renewing and releasing activity tasks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use duraflow_core::{ActivityOptions, Failure, Payload, Timestamp};
use duraflow_store::{
    codec, Completed, FetchFilter, JournalCache, LeaseToken, MessageKind, StoreError, StoreResult,
    TaskCompletion, TaskId, TaskRelease, TaskWork,
};
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use super::turns::{
    leased_columns, leased_row, turn_extras, with_journals, Leased, TURN_EXTRA_COLUMNS,
};
use super::{Wake, OPEN};
use crate::codec::counter;
use crate::error::OpResult;
use crate::listen;

fn task_row(row: &PgRow) -> OpResult<TaskWork> {
    let id: i64 = row.try_get("id")?;
    let what = |col| codec::Column::new(col, "task", &id);
    let execution: i32 = row.try_get("execution")?;
    let attempt: i32 = row.try_get("attempt")?;
    Ok(TaskWork {
        id: TaskId(id),
        instance_id: row.try_get("instance_id")?,
        execution: counter(execution, what("execution"))?,
        op: codec::op_id(&row.try_get::<String, _>("op")?, what("op"))?,
        name: row.try_get("name")?,
        input: codec::payload(row.try_get("input")?, what("input"))?,
        options: codec::from_json::<ActivityOptions>(
            &row.try_get::<String, _>("options")?,
            what("options"),
        )?,
        attempt: counter(attempt, what("attempt"))?,
        scheduled_at: Timestamp(row.try_get("scheduled_at")?),
        token: LeaseToken(row.try_get("lease_token")?),
        lease_until: Timestamp(row.try_get::<Option<i64>, _>("lease_until")?.unwrap_or(0)),
        last_failure: codec::opt_from_json::<Failure>(
            row.try_get("last_failure")?,
            what("last_failure"),
        )?,
        heartbeat_details: row
            .try_get::<Option<String>, _>("heartbeat_details")?
            .map(|text| codec::payload(text, what("heartbeat_details")))
            .transpose()?,
    })
}

/// Whether the `queue_configs` row `qc` sets a task concurrency limit.
pub(crate) const TASK_LIMITED: &str = "((qc.config::jsonb ->> 'task_concurrency') IS NOT NULL)";

/// The statement of [`fetch`]: `$1` now, `$2` the most tasks, `$3` the lease's expiry, `$4` the
/// served queues, `$5` the activity names served (NULL: all), `$6` the lease owner.
pub(crate) static FETCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH quiet AS MATERIALIZED ({leases_only}), limited AS (
             SELECT coalesce(array_agg(qc.name ORDER BY qc.name), '{{}}') AS names
               FROM queue_configs qc
              WHERE qc.name = ANY($4::text[]) AND {TASK_LIMITED}
         ), candidates AS (
             SELECT c.id FROM unnest($4::text[]) AS q(name)
             CROSS JOIN LATERAL (
                 -- `visible_at <= $1` written as a row comparison that only
                 -- `tasks_queue_due` can seek (the queue being this one), so that the generic
                 -- plan does not walk the visibility index filtering on the queue.
                 SELECT t.id FROM tasks t
                  WHERE t.queue = q.name AND (t.queue, t.visible_at) <= (q.name, $1)
                    AND ($5::text[] IS NULL OR t.name = ANY($5::text[]))
                  ORDER BY t.visible_at, t.id
                  LIMIT $2
             ) c
              WHERE q.name <> ALL(coalesce((SELECT names FROM limited), '{{}}'::text[]))
         ), ready AS (
             SELECT id, visible_at FROM tasks
              WHERE id = ANY(ARRAY(SELECT id FROM candidates)) AND visible_at <= $1
              ORDER BY visible_at, id
              LIMIT $2
                FOR UPDATE SKIP LOCKED
         ), leased AS (
             UPDATE tasks AS t
                SET attempt = least(t.attempt, 2147483646) + 1, lease_token = nextval('lease_tokens'), lease_until = $3,
                    visible_at = $3, lease_owner = $6
               FROM ready
              WHERE t.id = ready.id
             RETURNING t.id, t.instance_id, t.execution, t.op, t.name, t.input, t.options, t.attempt,
                       t.scheduled_at, t.lease_token, t.lease_until, ready.visible_at AS due_at,
                       t.last_failure, t.heartbeat_details
         )
         SELECT l.*, lim.names AS limited, (SELECT quiet FROM quiet) AS quiet
           FROM limited lim LEFT JOIN leased l ON true",
        leases_only = super::LEASES_ONLY,
    )
});

/// Leases visible tasks, skipping rows another transaction is leasing: one statement, which
/// commits by itself without waiting for its log flush (it writes only leases, see
/// [`super::LEASES_ONLY`]), for the served queues without a task limit; it also names the served
/// queues that have one, whose tasks [`fetch_limited`] then leases within their limits. The
/// candidates are read queue by queue (a `LATERAL` scan of each served queue's part of
/// `tasks_queue_due`, at most `max` each), then locked by id in visibility order: a fetch
/// reads no other queue's tasks however many are visible (with a filter on `queue = ANY(..)`,
/// the visibility order of every queue was walked: 67 ms for 10 tasks behind 400,000 of
/// another queue, 0.4–0.8 ms now). The ids go to the lock as an array, so that the generic
/// plan seeks them by primary key (a join with the candidates was planned as a scan of every
/// visible task).
pub(crate) async fn fetch(
    conn: &mut PgConnection,
    filter: &FetchFilter,
    now: Timestamp,
    max: usize,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Vec<TaskWork>> {
    if filter.is_empty() {
        return Ok(Vec::new());
    }
    // The final `LEFT JOIN` returns one row (of NULL task columns) when nothing was leased,
    // so the limited queues are always read.
    let rows = sqlx::query(FETCH.as_str())
        .bind(now.0)
        .bind(max as i64)
        .bind(now.plus(lease).0)
        .bind(&filter.queues)
        .bind(&filter.names)
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
    let mut out: Vec<(i64, TaskWork)> = Vec::with_capacity(rows.len());
    let mut limited: Vec<String> = Vec::new();
    for row in &rows {
        limited = row.try_get("limited")?;
        if row.try_get::<Option<i64>, _>("id")?.is_some() {
            out.push((row.try_get("due_at")?, task_row(row)?));
        }
    }
    if !limited.is_empty() && out.len() < max {
        out.extend(
            fetch_limited(conn, filter, &limited, now, max - out.len(), lease, owner).await?,
        );
    }
    out.sort_by_key(|(visible_at, t)| (*visible_at, t.id));
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// The lock [`fetch_limited`] takes per queue: `$1` the queue.
pub(crate) const QUEUE_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/tasks/' || $1))";

/// The statement of [`fetch_limited`] for one queue: `$1` now, `$2` the most tasks, `$3` the
/// lease's expiry, `$4` the queue, `$5` the activity names served (NULL: all), `$6` the lease
/// owner.
pub(crate) static FETCH_LIMITED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH quota AS (
             SELECT greatest(0, least($2::bigint,
                        (SELECT (qc.config::jsonb ->> 'task_concurrency')::bigint
                           FROM queue_configs qc WHERE qc.name = $4 AND {TASK_LIMITED})
                        - (SELECT count(*) FROM tasks r
                            WHERE r.queue = $4 AND r.visible_at > $1
                              AND r.lease_until > $1))) AS n
         ), ready AS (
             SELECT id, visible_at FROM tasks
              WHERE queue = $4 AND visible_at <= $1
                AND ($5::text[] IS NULL OR name = ANY($5::text[]))
              ORDER BY visible_at, id
              LIMIT (SELECT n FROM quota)
                FOR UPDATE SKIP LOCKED
         )
         UPDATE tasks AS t
            SET attempt = least(t.attempt, 2147483646) + 1, lease_token = nextval('lease_tokens'), lease_until = $3,
                visible_at = $3, lease_owner = $6
           FROM ready
          WHERE t.id = ready.id
         RETURNING t.id, t.instance_id, t.execution, t.op, t.name, t.input, t.options, t.attempt,
                   t.scheduled_at, t.lease_token, t.lease_until, ready.visible_at AS due_at,
                   t.last_failure, t.heartbeat_details",
    )
});

/// Leases up to `max` visible tasks of `queues` (sorted, each with a task limit), within their
/// limits, in a transaction of its own that takes a transaction-level advisory lock per queue
/// (on the schema and `tasks/` and the queue's name) before it counts the queue's live leases
/// and leases. Under `READ COMMITTED` the statement after the lock reads a snapshot that holds
/// every lease an earlier holder committed (it held the lock until its commit), and nothing
/// else leases tasks of such a queue (the one-statement fetch leaves them out and claims never
/// take them), so the count is exact or (a completion committed meanwhile) high, never low.
/// The candidates are locked `FOR UPDATE SKIP LOCKED`: a fetcher waiting for the lock holds no
/// lock the holder needs. Fetches of queues without a task limit never take these locks.
async fn fetch_limited(
    conn: &mut PgConnection,
    filter: &FetchFilter,
    queues: &[String],
    now: Timestamp,
    max: usize,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Vec<(i64, TaskWork)>> {
    let mut tx = conn.begin().await?;
    // Only leases are written, which need not be durable; not waiting for the WAL flush keeps
    // the queue's lock short.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let mut out: Vec<(i64, TaskWork)> = Vec::new();
    for queue in queues {
        if out.len() >= max {
            break;
        }
        sqlx::query(QUEUE_LOCK)
            .bind(queue)
            .execute(&mut *tx)
            .await?;
        // The limit is read again under the lock; a queue whose limit was removed meanwhile
        // leases up to `max` (`least` ignores NULL).
        let rows = sqlx::query(FETCH_LIMITED.as_str())
            .bind(now.0)
            .bind((max - out.len()) as i64)
            .bind(now.plus(lease).0)
            .bind(queue)
            .bind(&filter.names)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await?;
        for row in &rows {
            out.push((row.try_get("due_at")?, task_row(row)?));
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// What a completion batch's claims of turns go by: the completer's filter (only the turns of
/// instances that pass it are claimed) and the journals it holds.
#[derive(Clone, Copy)]
pub(crate) struct Claims<'a> {
    pub(crate) filter: &'a FetchFilter,
    pub(crate) cache: Option<&'a Arc<dyn JournalCache>>,
    /// The lease owner the claimed turns carry.
    pub(crate) owner: Option<i32>,
}

/// The statement that begins a completion batch (step 1 of [`complete_batch`]): it reads the
/// tasks' operations and locks their instances' rows (`FOR NO KEY UPDATE`, sorted by id): the
/// results' inboxes, and the turns to claim. It executes [`LOCK_TASKS`], which the connection
/// holds prepared, on the task ids as integer literals.
pub(crate) fn lock_statement(completions: &[TaskCompletion]) -> String {
    let ids: Vec<String> = completions.iter().map(|c| c.id.0.to_string()).collect();
    format!(
        "EXECUTE {LOCK_TASKS_PREPARED} (ARRAY[{}]::bigint[])",
        ids.join(", ")
    )
}

/// The statement of [`lock_statement`], as every connection of the store's pool holds it
/// prepared under [`LOCK_TASKS_PREPARED`] (see `ops::commit::PREPARE_LOCK_INSTANCES`): `$1`
/// the tasks.
pub(crate) const LOCK_TASKS: &str = "SELECT t.id, t.execution, t.op, t.lease_token
       FROM tasks t JOIN instances i ON i.id = t.instance_id
      WHERE t.id = ANY($1)
      ORDER BY i.id
        FOR NO KEY UPDATE OF i";

/// The name [`LOCK_TASKS`] is prepared under.
pub(crate) const LOCK_TASKS_PREPARED: &str = "duraflow_lock_tasks";

/// The statement of [`complete_batch`]'s step 2: `$1`..`$4` the tasks, lease tokens, results
/// and claimed leases' expiries, `$5` now, `$6` the channel, `$7` the completer's queues, `$8`
/// its workflow names (NULL: all), `$9` the lease owner.
pub(crate) static COMPLETE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH c AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
                 WITH ORDINALITY AS c(id, token, kind, claim_until, ord)
         ), gone AS (
             DELETE FROM tasks t USING c
              WHERE t.id = c.id AND t.lease_token = c.token AND t.lease_until > $5
             RETURNING t.id, t.instance_id, t.queue
         ), freed AS (
             SELECT pg_notify($6, '{tasks}')
              WHERE EXISTS (SELECT 1 FROM gone g JOIN queue_configs qc ON qc.name = g.queue
                             WHERE {task_limited})
         ), posted AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT g.instance_id, $5, c.kind
               FROM gone g JOIN c ON c.id = g.id
               JOIN instances i ON i.id = g.instance_id AND i.status IN {OPEN}
              ORDER BY c.ord
             RETURNING id, instance_id, visible_at, kind
         ), claims AS (
             SELECT DISTINCT ON (g.instance_id) g.instance_id, c.ord, c.claim_until
               FROM gone g JOIN c ON c.id = g.id
              WHERE c.claim_until IS NOT NULL
              ORDER BY g.instance_id, c.ord
         ), plan AS (
             SELECT i.id, p.first, k.ord AS claim_ord, k.claim_until, x.due, {moves},
                    (k.claim_until IS NOT NULL AND x.due <= $5 AND {claimable}) AS claims
               FROM (SELECT instance_id, min(id) AS first FROM posted
                      GROUP BY instance_id) p
               JOIN instances i ON i.id = p.instance_id
               LEFT JOIN claims k ON k.instance_id = p.instance_id
               {due}
         ), t AS (
             {claim_or_move}
             RETURNING i.*, pl.claims, pl.claim_ord
         ), announced AS (
             SELECT pg_notify($6, '{turns}')
              WHERE EXISTS (SELECT 1 FROM t WHERE NOT t.claims)
         ), turn AS (
             SELECT {leased}, l.claim_ord, {TURN_EXTRA_COLUMNS}
               FROM t AS l {extras}
              WHERE l.claims
         )
         SELECT c.id AS task_id, g.id IS NOT NULL AS completed,
                (SELECT count(*) FROM announced) AS announced,
                (SELECT count(*) FROM freed) AS freed,
                EXISTS (SELECT 1 FROM plan WHERE NOT plan.claims) AS wake_turns,
                turn.*
           FROM c LEFT JOIN gone g ON g.id = c.id
           LEFT JOIN turn ON turn.claim_ord = c.ord
          ORDER BY c.ord",
        turns = listen::TURNS,
        tasks = listen::TASKS,
        task_limited = TASK_LIMITED,
        claimable = super::claim::claimable("$7", "$8"),
        moves = super::claim::moves("$5"),
        due = super::claim::due("$5"),
        claim_or_move = super::claim::claim_or_move("$5", "$9"),
        leased = leased_columns("l"),
        extras = turn_extras(&super::claim::claimed_inbox("$5")),
    )
});

/// Which of the refused tasks of [`complete_batch`] are still there: `$1` their ids.
pub(crate) const STILL_THERE: &str = "SELECT id FROM tasks WHERE id = ANY($1)";

/// Completes a batch of tasks inside the caller's transaction, in one statement whatever its
/// size (two when a claimed turn's journal must be read), after [`lock_statement`], which began
/// the transaction (its rows are `locked`):
///
/// 1. the lock statement read the tasks' instances and operations and locked the instance rows;
/// 2. one statement deletes each task whose lease the completion still holds (the lease check
///    is the `DELETE`'s condition, so a completion that lost its lease writes nothing), posts
///    the results to the open instances in order, brings their due times forward, and grants
///    the claims: once per instance, to its first completion asking, when the instance is free
///    and due once every result is in. The claimed turns' messages are read in the same
///    statement, from a snapshot taken after step 1's locks, so no commit of these instances
///    can have consumed any of them since. It announces a turn (`NOTIFY`) where it brought an
///    instance's due time forward without claiming its turn; it wakes this process's
///    dispatcher (`wake_turns`) for every instance whose turn it did not claim, also one
///    already due: a fetch of this process that ran while step 1's locks were held skipped
///    that instance (`SKIP LOCKED`) and found nothing else due, so its dispatcher slept until
///    its next poll (a fan-out of 10,000 took a second longer in 7 of 50 runs). A `NOTIFY`
///    for those too cost batched starts 7% of their throughput (each notifying commit takes
///    the server's notification lock); another process's fetch that skipped the instance finds
///    it at its next poll.
///
/// Returns each completion's result, in order; the outer error means the transaction failed
/// and must be rolled back.
pub(crate) async fn complete_batch(
    conn: &mut PgConnection,
    claims: Claims<'_>,
    now: Timestamp,
    completions: &[TaskCompletion],
    locked: &[PgRow],
    channel: &str,
    wake: &mut Wake,
) -> OpResult<Vec<StoreResult<Completed>>> {
    let Claims {
        filter,
        cache,
        owner,
    } = claims;
    // 1. What each result says.
    let mut found: HashMap<i64, (i32, String)> = HashMap::with_capacity(locked.len());
    let mut holders: HashMap<i64, i64> = HashMap::with_capacity(locked.len());
    for row in locked {
        let id: i64 = row.try_get("id")?;
        found.insert(id, (row.try_get("execution")?, row.try_get("op")?));
        holders.insert(id, row.try_get("lease_token")?);
    }

    // A task completes once, so one completion of each task is sent: the one that holds its
    // lease (an attempt that outlived its lease and the attempt that took the task over may
    // finish in the same batch, in either order), else the first. The others are refused.
    let mut chosen: HashMap<TaskId, usize> = HashMap::with_capacity(completions.len());
    for (i, c) in completions.iter().enumerate() {
        let holds = holders.get(&c.id.0) == Some(&c.token.0);
        match chosen.get(&c.id) {
            Some(&j) if holds && holders.get(&c.id.0) != Some(&completions[j].token.0) => {
                chosen.insert(c.id, i);
            }
            Some(_) => {}
            None => {
                chosen.insert(c.id, i);
            }
        }
    }
    let firsts: Vec<bool> = completions
        .iter()
        .enumerate()
        .map(|(i, c)| chosen.get(&c.id) == Some(&i))
        .collect();

    // 2. Delete, post, claim.
    let mut task_ids = Vec::with_capacity(completions.len());
    let mut tokens = Vec::with_capacity(completions.len());
    let mut kinds = Vec::with_capacity(completions.len());
    let mut claim_until = Vec::with_capacity(completions.len());
    let mut sent = Vec::with_capacity(completions.len());
    for (c, first) in completions.iter().zip(&firsts) {
        let Some((execution, op)) = found.get(&c.id.0).filter(|_| *first) else {
            continue;
        };
        let kind = MessageKind::ActivityResult {
            execution: u32::try_from(*execution).unwrap_or(0),
            op: codec::op_id(op, format_args!("column op of task {}", c.id.0))?,
            result: c.result.clone(),
        };
        task_ids.push(c.id.0);
        tokens.push(c.token.0);
        kinds.push(codec::to_json(&kind)?);
        claim_until.push(c.claim_turn.map(|lease| now.plus(lease).0));
        sent.push(c.id);
    }
    let mut done: HashMap<TaskId, (bool, Option<Leased>)> = HashMap::with_capacity(sent.len());
    if !sent.is_empty() {
        let rows = sqlx::query(COMPLETE.as_str())
            .bind(&task_ids)
            .bind(&tokens)
            .bind(&kinds)
            .bind(&claim_until)
            .bind(now.0)
            .bind(channel)
            .bind(&filter.queues)
            .bind(&filter.names)
            .bind(owner)
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            let id = TaskId(row.try_get("task_id")?);
            let completed: bool = row.try_get("completed")?;
            wake.turns |= row.try_get::<bool, _>("wake_turns")?;
            wake.tasks |= row.try_get::<i64, _>("freed")? > 0;
            let turn = match row.try_get::<Option<String>, _>("id")? {
                Some(_) => Some(leased_row(row)?),
                None => None,
            };
            done.insert(id, (completed, turn));
        }
    }

    // The tasks whose lease was not held: gone since step 1, or leased to another attempt.
    let refused: Vec<i64> = done
        .iter()
        .filter(|(_, (completed, _))| !completed)
        .map(|(id, _)| id.0)
        .collect();
    let still_there: HashSet<i64> = if refused.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar(STILL_THERE)
            .bind(&refused)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
    };

    // The claimed turns' journals.
    let mut claimed: Vec<(usize, Leased)> = Vec::new();
    let mut results: Vec<StoreResult<Completed>> = Vec::with_capacity(completions.len());
    for (i, (c, first)) in completions.iter().zip(&firsts).enumerate() {
        let outcome = if *first { done.remove(&c.id) } else { None };
        results.push(match outcome {
            Some((true, turn)) => {
                if let Some(turn) = turn {
                    claimed.push((i, turn));
                }
                Ok(Completed::default())
            }
            Some((false, _)) if still_there.contains(&c.id.0) => {
                Err(StoreError::task_lease_lost(c.id))
            }
            _ => Err(StoreError::task_not_found(c.id)),
        });
    }
    if !claimed.is_empty() {
        let (at, leased): (Vec<usize>, Vec<Leased>) = claimed.into_iter().unzip();
        let turns = with_journals(conn, leased, cache).await?;
        for (i, turn) in at.into_iter().zip(turns) {
            if let Some(Ok(completed)) = results.get_mut(i) {
                completed.turn = Some(turn);
            }
        }
    }
    Ok(results)
}

/// The statement of [`renew`]: `$1` the task, `$2` the lease token, `$3` now, `$4` the new
/// expiry, `$5` the heartbeat details (NULL keeps them), `$6` the lease owner.
pub(crate) const RENEW: &str =
    "UPDATE tasks SET lease_until = $4, visible_at = $4, lease_owner = $6,
                      heartbeat_details = coalesce($5, heartbeat_details)
      WHERE id = $1 AND lease_token = $2 AND lease_until > $3";

/// Extends a task's lease: one statement, whose condition is the lease check; only when it
/// fails, a query tells a task that is gone from one leased to another attempt.
pub(crate) async fn renew(
    conn: &mut PgConnection,
    id: TaskId,
    token: LeaseToken,
    now: Timestamp,
    lease: Duration,
    details: Option<&Payload>,
    owner: Option<i32>,
) -> OpResult<Timestamp> {
    let until = now.plus(lease);
    let renewed = sqlx::query(RENEW)
        .bind(id.0)
        .bind(token.0)
        .bind(now.0)
        .bind(until.0)
        .bind(details.map(Payload::as_json))
        .bind(owner)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if renewed == 1 {
        Ok(until)
    } else {
        Err(refused(conn, id).await?.into())
    }
}

/// The statement of [`refused`]: `$1` the task.
pub(crate) const EXISTS: &str = "SELECT id FROM tasks WHERE id = $1";

/// Why a lease check on a task failed: the task is gone, or another attempt holds it.
async fn refused(conn: &mut PgConnection, id: TaskId) -> OpResult<StoreError> {
    let exists: Option<i64> = sqlx::query_scalar(EXISTS)
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match exists {
        Some(_) => StoreError::task_lease_lost(id),
        None => StoreError::task_not_found(id),
    })
}

/// The statement of [`release`]: `$1` the task, `$2` the lease token, `$3` when it is visible
/// again (NULL: a hand-back), `$4` the failure, `$5` the channel.
pub(crate) static RELEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH released AS (
             UPDATE tasks SET lease_until = NULL,
                    visible_at = coalesce($3, scheduled_at),
                    last_failure = CASE WHEN $3 IS NULL THEN last_failure ELSE $4 END,
                    attempt = CASE WHEN $3 IS NULL THEN greatest(attempt - 1, 0)
                                   ELSE attempt END
              WHERE id = $1 AND lease_token = $2 AND lease_until IS NOT NULL
             RETURNING id
         ), announced AS (
             SELECT pg_notify($5, '{tasks}') FROM released
         )
         SELECT count(*) FROM announced",
        tasks = listen::TASKS,
    )
});

/// Gives a task back: one statement, whose condition is the lease check, and which announces
/// the task.
pub(crate) async fn release(
    conn: &mut PgConnection,
    id: TaskId,
    token: LeaseToken,
    release: &TaskRelease,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    // Retry: visible at `$3` with the failure; hand-back: visible at once, attempt not counted.
    let (visible_at, failure) = match release {
        TaskRelease::Retry {
            visible_at,
            failure,
        } => (Some(visible_at.0), Some(codec::to_json(failure)?)),
        TaskRelease::HandBack => (None, None),
    };
    let released: i64 = sqlx::query_scalar(RELEASE.as_str())
        .bind(id.0)
        .bind(token.0)
        .bind(visible_at)
        .bind(failure)
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?;
    if released == 1 {
        wake.tasks = true;
        Ok(())
    } else {
        Err(refused(conn, id).await?.into())
    }
}
