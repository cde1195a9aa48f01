//! The store's operations as SQL.
//!
//! Every statement is a network round trip, so each operation uses as few as its guarantees
//! allow: an operation that needs one statement runs it on its own (PostgreSQL commits it
//! atomically), and a batch runs one statement per step for all of its items (arrays bound as
//! parameters and `unnest`ed), not one per item. Wakeups are announced by `pg_notify` inside the
//! statements that write, not by statements of their own.
//!
//! **Locking.** A write that must see an instance's inbox as it is (a commit recomputing when
//! the instance is next due, a completion reading the messages of the turn it claims) locks the
//! instance rows in one statement first, sorted by id, and reads in a later statement: in
//! `READ COMMITTED` each statement reads a snapshot taken when it starts, so a statement that
//! had to wait for a lock still reads what was there before it waited, while the next one sees
//! everything committed before the lock was granted. The one exception, a commit batch in one
//! statement (`commit::one_statement`), reads the inboxes through a function that takes a
//! snapshot of its own after the statement's locks. Every transaction that locks several
//! instance rows takes them in one sorted statement, before any task row, so two batches never
//! wait for each other in a cycle.
//!
//! **Lease owners.** Every statement that grants a lease (fetches, admissions, claims of turns
//! and of new tasks, a claimed creation) or extends one (renewals, a checkpoint keeping its
//! turn) also writes `lease_owner`: the owner id of the store running it (`None`, written as
//! NULL, while the store holds no owner lock), so that the other stores can release the lease
//! at once when that store's lock session ends (see `crate::owners`). A lease is thus owned by
//! whoever last granted or extended it.
//!
//! **Refusals without savepoints.** Whatever can refuse an item of a batch (a lost lease, a
//! journal that moved, an invalid child id) is checked before anything of it is written, and a
//! refused item writes nothing, so the others go on in the same transaction. A statement that
//! fails after writing fails the whole transaction.

pub(crate) mod admin;
pub(crate) mod callbacks;
pub(crate) mod claim;
pub(crate) mod commit;
pub(crate) mod feed;
pub(crate) mod fetch;
pub(crate) mod flow;
pub(crate) mod instances;
pub(crate) mod queue_events;
pub(crate) mod registry;
pub(crate) mod sends;
pub(crate) mod tasks;
pub(crate) mod turns;

use duraflow_core::Timestamp;
use duraflow_store::{codec, Message, MessageId, MessageKind};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::OpResult;

/// Whom to wake once the transaction has committed.
pub(crate) use duraflow_store::Wake;

/// The inbox statuses of instances that take messages.
pub(crate) const OPEN: &str = "('pending', 'running')";

/// The body of a CTE (its one column `quiet`) that lets the transaction of the statement
/// reading it commit without waiting for its log flush: `synchronous_commit` is `off` until the
/// transaction ends, which for a statement that commits by itself is its own commit. For the
/// statements that write only leases, as SQLite's writer does not sync a write that only takes
/// leases and as the admissions here commit: a lease need not survive a crash of the server
/// (it is lost with the work it covered, whose commit it fences), and the next durable commit
/// flushes it anyway. A statement must read the CTE for it to run.
pub(crate) const LEASES_ONLY: &str =
    "SELECT set_config('synchronous_commit', 'off', true) AS quiet";

/// Reads the messages a row carries as three arrays (`msg_ids`, `msg_visible`, `msg_kinds`, in
/// id order; NULL when there are none), addressed to `instance_id`.
pub(crate) fn messages_of(row: &PgRow, instance_id: &str) -> OpResult<Vec<Message>> {
    let ids: Option<Vec<i64>> = row.try_get("msg_ids")?;
    let visible: Option<Vec<i64>> = row.try_get("msg_visible")?;
    let kinds: Option<Vec<String>> = row.try_get("msg_kinds")?;
    let (ids, visible, kinds) = (
        ids.unwrap_or_default(),
        visible.unwrap_or_default(),
        kinds.unwrap_or_default(),
    );
    let mut out = Vec::with_capacity(ids.len());
    for ((id, visible_at), kind) in ids.into_iter().zip(visible).zip(kinds) {
        out.push(Message {
            id: MessageId(id),
            instance_id: instance_id.to_owned(),
            kind: codec::from_json::<MessageKind>(
                &kind,
                &format!("message {id} of instance {instance_id:?}"),
            )?,
            visible_at: Timestamp(visible_at),
        });
    }
    Ok(out)
}
