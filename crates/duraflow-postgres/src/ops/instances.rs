//! Creating instances and sending them messages.

use duraflow_core::Timestamp;
use duraflow_store::{
    codec, validate_instance_id, CreateOutcome, InstanceInfo, InstanceStatus, MessageKind,
    NewInstance, NewMessage, StoreError,
};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::Wake;
use crate::codec::{instance_row, INSTANCE_COLUMNS};
use crate::error::OpResult;

pub(crate) fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("instance {id:?}"))
}

pub(crate) async fn get(conn: &mut PgConnection, id: &str) -> OpResult<Option<InstanceInfo>> {
    // Only a constant column list is interpolated.
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(instance_row).transpose()
}

pub(crate) async fn status_of(
    conn: &mut PgConnection,
    id: &str,
) -> OpResult<Option<InstanceStatus>> {
    let row = sqlx::query("SELECT status FROM instances WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(r.try_get::<String, _>(0)?.parse()?)),
        None => Ok(None),
    }
}

/// Inserts a message for an open (pending or running) instance and brings the instance's due
/// time forward when the message is its earliest work (a turn holding the instance keeps it
/// due at its lease's expiry; its commit recomputes it). Returns `false`, inserting nothing,
/// when the instance is unknown or finished. One statement.
///
/// The message's transaction always holds a lock on the instance row, so that no turn of the
/// instance can miss the message: a fetch skips the row until the message is committed, and a
/// commit (which locks the row `FOR UPDATE` and then recomputes the due time from the inbox)
/// waits for it. The due update is written so that, when it had to wait for such a commit, it
/// is evaluated again on the row the commit left (`due_at IS NULL` then).
pub(crate) async fn insert_message(
    conn: &mut PgConnection,
    instance_id: &str,
    kind: &MessageKind,
    visible_at: Timestamp,
) -> OpResult<bool> {
    let inserted: i64 = sqlx::query_scalar(
        "WITH inst AS (
             SELECT id FROM instances WHERE id = $1 AND status IN ('pending', 'running')
                FOR KEY SHARE
         ), ins AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT $1, $2, $3 FROM inst
             RETURNING id
         ), due AS (
             UPDATE instances SET
                 due_at = CASE WHEN lease_until IS NOT NULL THEN lease_until
                               ELSE greatest($2, not_before) END,
                 due_seq = coalesce(due_seq, (SELECT id FROM ins))
              WHERE id = $1 AND EXISTS (SELECT 1 FROM ins)
                AND status IN ('pending', 'running')
                AND (due_at IS NULL OR due_at > greatest($2, not_before))
         )
         SELECT count(*) FROM ins",
    )
    .bind(instance_id)
    .bind(visible_at.0)
    .bind(codec::to_json(kind)?)
    .fetch_one(&mut *conn)
    .await?;
    Ok(inserted == 1)
}

/// Inserts a new instance with its start message, unless the id is taken. Returns whether it
/// was inserted.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    new: &NewInstance,
    wake: &mut Wake,
) -> OpResult<bool> {
    validate_instance_id(&new.id)?;
    let inserted = sqlx::query(
        "INSERT INTO instances (id, name, status, execution, input, parent, created_at, updated_at)
         VALUES ($1, $2, 'pending', 1, $3, $4, $5, $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&new.id)
    .bind(&new.name)
    .bind(new.input.as_json())
    .bind(new.parent.as_ref().map(codec::to_json).transpose()?)
    .bind(new.created_at.0)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        insert_message(
            conn,
            &new.id,
            &MessageKind::Start { execution: 1 },
            new.created_at,
        )
        .await?;
        wake.turns = true;
    }
    Ok(inserted)
}

pub(crate) async fn create(
    conn: &mut PgConnection,
    new: &NewInstance,
    wake: &mut Wake,
) -> OpResult<CreateOutcome> {
    if insert(conn, new, wake).await? {
        return Ok(CreateOutcome::Created);
    }
    match get(conn, &new.id).await? {
        Some(existing) => Ok(CreateOutcome::Existing(Box::new(existing))),
        None => Err(StoreError::Unavailable(format!(
            "instance {:?} was being created and purged concurrently; try again",
            new.id
        ))
        .into()),
    }
}

pub(crate) async fn send(
    conn: &mut PgConnection,
    message: &NewMessage,
    wake: &mut Wake,
) -> OpResult<()> {
    let id = &message.instance_id;
    match status_of(conn, id).await? {
        None => Err(not_found(id).into()),
        Some(s) if s.is_terminal() => Err(StoreError::InstanceFinished {
            id: id.clone(),
            status: s.to_string(),
        }
        .into()),
        Some(_) => {
            insert_message(conn, id, &message.kind, message.visible_at).await?;
            wake.turns = true;
            Ok(())
        }
    }
}
