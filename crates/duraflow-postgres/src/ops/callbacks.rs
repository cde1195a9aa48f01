//! Callbacks: opened and closed by turn commits, resolved by external parties by token.
//!
//! Like every write here, a resolution locks the instance row before anything else it writes
//! (a commit batch locks its instance rows first, then writes callbacks), so the two never wait
//! for each other in a cycle.

use std::collections::HashSet;

use duraflow_core::{OpId, Timestamp};
use duraflow_store::{
    callback_outcome, callback_state, CallbackResolution, CallbackState, CallbackStatus,
    CallbackTarget, InstanceStatus, NewMessage, StoreError, StoreResult, TurnCommit,
};
use sqlx::{PgConnection, Row};

use super::{instances, Wake};
use crate::error::OpResult;

/// The statement of [`taken_tokens`]: `$1` the tokens.
pub(crate) const TAKEN_TOKENS: &str = "SELECT token FROM callbacks WHERE token = ANY($1)";

/// The tokens of `commits`' new callbacks that other callbacks already hold.
pub(crate) async fn taken_tokens(
    conn: &mut PgConnection,
    commits: &[TurnCommit],
) -> OpResult<HashSet<String>> {
    let tokens: Vec<&str> = commits
        .iter()
        .flat_map(|c| c.callbacks.iter().map(|cb| cb.token.as_str()))
        .collect();
    if tokens.is_empty() {
        return Ok(HashSet::new());
    }
    let taken: Vec<String> = sqlx::query_scalar(TAKEN_TOKENS)
        .bind(&tokens)
        .fetch_all(&mut *conn)
        .await?;
    Ok(taken.into_iter().collect())
}

/// The callback rows a commit batch writes, one array per column.
#[derive(Default)]
struct Changes {
    tokens: Vec<String>,
    instances: Vec<String>,
    executions: Vec<i32>,
    ops: Vec<String>,
    names: Vec<String>,
    statuses: Vec<&'static str>,
    timeouts: Vec<Option<i64>>,
    created: Vec<i64>,
    closed_instances: Vec<String>,
    closed_executions: Vec<i32>,
    closed_ops: Vec<String>,
    closed_statuses: Vec<&'static str>,
    dropped_instances: Vec<String>,
    dropped_before: Vec<i32>,
}

impl Changes {
    /// Adds commit `c` of an instance that has callbacks stored (`stored`) or none.
    fn add(&mut self, c: &TurnCommit, stored: bool) {
        let execution = c.execution as i32;
        // A finished instance loses every callback, one that continues as new those of the
        // executions before the new one (including the callbacks this commit opens).
        let dropped_before = if c.status.is_terminal() && c.continue_as_new.is_none() {
            Some(i32::MAX)
        } else {
            c.continue_as_new.as_ref().map(|_| execution + 1)
        };
        if let Some(before) = dropped_before {
            // Nothing stored, nothing to drop (what this commit opens is dropped with it).
            if stored {
                self.dropped_instances.push(c.instance_id.clone());
                self.dropped_before.push(before);
            }
            return;
        }
        for cb in &c.callbacks {
            // One statement cannot close a row it inserts: a callback closed by the commit that
            // opens it is inserted closed.
            let status = c
                .closed_callbacks
                .iter()
                .find(|(op, _)| *op == cb.op)
                .map_or(CallbackStatus::Open, |(_, status)| *status);
            self.tokens.push(cb.token.clone());
            self.instances.push(cb.instance_id.clone());
            self.executions.push(cb.execution as i32);
            self.ops.push(cb.op.to_string());
            self.names.push(cb.name.clone());
            self.statuses.push(status.as_str());
            self.timeouts.push(cb.timeout_at.map(|t| t.0));
            self.created.push(cb.created_at.0);
        }
        for (op, status) in &c.closed_callbacks {
            self.closed_instances.push(c.instance_id.clone());
            self.closed_executions.push(execution);
            self.closed_ops.push(op.to_string());
            self.closed_statuses.push(status.as_str());
        }
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.closed_ops.is_empty() && self.dropped_instances.is_empty()
    }
}

/// The statement of [`apply`]: the columns of `Changes`, in order.
pub(crate) const APPLY: &str = "WITH opened AS (
         INSERT INTO callbacks (token, instance_id, execution, op, name, status, timeout_at,
                                created_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[],
                              $6::text[], $7::bigint[], $8::bigint[])
     ), closed AS (
         UPDATE callbacks cb SET status = x.status
           FROM unnest($9::text[], $10::int[], $11::text[], $12::text[])
                AS x(instance_id, execution, op, status)
          WHERE cb.instance_id = x.instance_id AND cb.execution = x.execution
            AND cb.op = x.op AND cb.status = 'open'
     )
     DELETE FROM callbacks cb
      USING unnest($13::text[], $14::int[]) AS d(instance_id, before)
      WHERE cb.instance_id = d.instance_id AND cb.execution < d.before";

/// Writes the callbacks of a batch's accepted commits, in one statement (none when there is
/// nothing to write): opens the new ones, closes the open ones the turns settled, and deletes
/// those of finished instances and of executions that continued as new.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    accepted: &[&TurnCommit],
    has_callbacks: impl Fn(&str) -> bool,
) -> OpResult<()> {
    let mut w = Changes::default();
    for c in accepted {
        w.add(c, has_callbacks(&c.instance_id));
    }
    if w.is_empty() {
        return Ok(());
    }
    sqlx::query(APPLY)
        .bind(&w.tokens)
        .bind(&w.instances)
        .bind(&w.executions)
        .bind(&w.ops)
        .bind(&w.names)
        .bind(&w.statuses)
        .bind(&w.timeouts)
        .bind(&w.created)
        .bind(&w.closed_instances)
        .bind(&w.closed_executions)
        .bind(&w.closed_ops)
        .bind(&w.closed_statuses)
        .bind(&w.dropped_instances)
        .bind(&w.dropped_before)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The first statement of [`resolve`]: `$1` the token.
pub(crate) const RESOLVE_FIND: &str = "SELECT instance_id FROM callbacks WHERE token = $1";

/// The second statement of [`resolve`]: `$1` the instance id.
pub(crate) const RESOLVE_INSTANCE: &str =
    "SELECT status, execution FROM instances WHERE id = $1 FOR KEY SHARE";

/// The third statement of [`resolve`]: `$1` the token, `$2` the instance id.
pub(crate) const RESOLVE_CALLBACK: &str =
    "SELECT execution, op, name, status, timeout_at FROM callbacks
      WHERE token = $1 AND instance_id = $2 FOR UPDATE";

/// The statement of [`resolve`] that closes the callback: `$1` the token, `$2` its status.
pub(crate) const RESOLVE_CLOSE: &str = "UPDATE callbacks SET status = $2 WHERE token = $1";

/// Resolves the callback with `token` inside the caller's transaction (see
/// `Store::resolve_callback`). A refusal is the inner error, so that closing a callback that
/// timed out is committed while the refusal is returned.
pub(crate) async fn resolve(
    conn: &mut PgConnection,
    now: Timestamp,
    token: &str,
    resolution: CallbackResolution,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<StoreResult<CallbackTarget>> {
    let not_found = || Ok(Err(StoreError::CallbackNotFound));
    let instance_id: Option<String> = sqlx::query_scalar(RESOLVE_FIND)
        .bind(token)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(instance_id) = instance_id else {
        return not_found();
    };
    // The instance row first (see the module documentation), then the callback's.
    let instance = sqlx::query(RESOLVE_INSTANCE)
        .bind(&instance_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(instance) = instance else {
        return not_found();
    };
    let status: String = instance.try_get("status")?;
    let current: i32 = instance.try_get("execution")?;
    let row = sqlx::query(RESOLVE_CALLBACK)
        .bind(token)
        .bind(&instance_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return not_found();
    };
    let execution: i32 = row.try_get("execution")?;
    let name: String = row.try_get("name")?;
    let corrupt = |e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!(
            "callback {name:?} of instance {instance_id:?}: {e}"
        ))
    };
    let op: OpId = row
        .try_get::<String, _>("op")?
        .parse()
        .map_err(|e| corrupt(&e))?;
    let cb_status: CallbackStatus = row
        .try_get::<String, _>("status")?
        .parse()
        .map_err(|e| corrupt(&e))?;
    let timeout_at: Option<i64> = row.try_get("timeout_at")?;
    let finished = status
        .parse::<InstanceStatus>()
        .map_err(|e| corrupt(&e))?
        .is_terminal();
    let live = !finished && current == execution;
    let execution = u32::try_from(execution).unwrap_or(0);
    let (new_status, message) =
        match callback_state(live, cb_status, timeout_at.map(Timestamp), now) {
            CallbackState::Open => {
                let (status, message) = callback_outcome(execution, op.clone(), resolution);
                (status, Ok(message))
            }
            CallbackState::TimedOut(refused) => (CallbackStatus::TimedOut, Err(refused)),
            CallbackState::Refused(refused) => return Ok(Err(refused)),
        };
    if new_status != CallbackStatus::Open {
        sqlx::query(RESOLVE_CLOSE)
            .bind(token)
            .bind(new_status.as_str())
            .execute(&mut *conn)
            .await?;
    }
    let kind = match message {
        Ok(kind) => kind,
        Err(refused) => return Ok(Err(refused)),
    };
    let message = NewMessage {
        instance_id: instance_id.clone(),
        kind,
        visible_at: now,
    };
    instances::send(conn, &message, channel, wake).await?;
    Ok(Ok(CallbackTarget {
        instance_id,
        execution,
        op,
        name,
    }))
}
