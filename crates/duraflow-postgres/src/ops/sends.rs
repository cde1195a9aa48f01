//! A send that claims: the message is posted and, when its instance's turn is free at once for
//! the sender, that turn is leased to the sender in the same transaction (`Store::send_claiming`).
//!
//! The transaction begins with the commit's lock statement, which locks the instance row and
//! reads its status; [`SEND_CLAIMING`] then runs on a snapshot taken after that lock, so no
//! commit of the instance can have consumed a message the claimed turn is handed (as for the
//! claims of task completions, see `tasks::complete_batch`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{
    codec, FetchFilter, InstanceStatus, JournalCache, NewMessage, StoreError, TurnWork,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::turns::{leased_columns, leased_row, turn_extras, with_journals, TURN_EXTRA_COLUMNS};
use super::Wake;
use crate::error::OpResult;
use crate::listen;

/// The statement of [`send_claiming`]: `$1` the instance, `$2` when the message is visible,
/// `$3` the message, `$4` now, `$5` the sender's queues, `$6` its workflow names (NULL: all),
/// `$7` the claimed lease's expiry, `$8` the lease owner, `$9` the channel. It posts the
/// message, brings the instance's due time forward as a send does, or leases its turn when
/// the message is visible and the turn is free at once (as a completion's claim does), and
/// returns the claimed turn's row (`NULL`s when there is none).
pub(crate) static SEND_CLAIMING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH posted AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT i.id, $2, $3 FROM instances i WHERE i.id = $1 AND i.status IN {open}
             RETURNING id, instance_id, visible_at, kind
         ), plan AS (
             SELECT i.id, p.id AS first, x.due,
                    (i.due_at IS NULL OR i.due_at > greatest($2, i.not_before)) AS moves,
                    ($2 <= $4 AND x.due <= $4
                     AND i.queue = ANY($5::text[])
                     AND ($6::text[] IS NULL OR i.name = ANY($6::text[]))
                     AND {admission_free}) AS claims
               FROM posted p
               JOIN instances i ON i.id = p.instance_id
              CROSS JOIN LATERAL (
                    SELECT CASE WHEN i.due_at IS NULL OR i.due_at > greatest($2, i.not_before)
                                THEN coalesce(i.lease_until, greatest($2, i.not_before))
                                ELSE i.due_at END AS due
              ) x
         ), t AS (
             UPDATE instances i
                SET due_seq = coalesce(i.due_seq, pl.first),
                    due_at = CASE WHEN pl.claims THEN $7 ELSE pl.due END,
                    lease_token = CASE WHEN pl.claims THEN nextval('lease_tokens')
                                       ELSE i.lease_token END,
                    lease_until = CASE WHEN pl.claims THEN $7 ELSE i.lease_until END,
                    lease_owner = CASE WHEN pl.claims THEN $8 ELSE i.lease_owner END,
                    started_at = CASE WHEN pl.claims THEN coalesce(i.started_at, $4)
                                      ELSE i.started_at END
               FROM plan pl
              WHERE i.id = pl.id AND (pl.moves OR pl.claims)
             RETURNING i.*, pl.claims
         ), announced AS (
             SELECT pg_notify($9, '{turns}')
              WHERE EXISTS (SELECT 1 FROM plan WHERE NOT plan.claims)
         ), turn AS (
             SELECT {leased}, {TURN_EXTRA_COLUMNS}
               FROM t AS l {extras}
              WHERE l.claims
         )
         SELECT (SELECT count(*) FROM posted) AS posted,
                (SELECT count(*) FROM announced) AS announced,
                EXISTS (SELECT 1 FROM plan WHERE NOT plan.claims) AS wake_turns,
                turn.*
           FROM (SELECT 1) AS one LEFT JOIN turn ON true",
        open = super::OPEN,
        turns = listen::TURNS,
        admission_free = super::flow::ADMISSION_FREE,
        leased = leased_columns("l"),
        extras = turn_extras(
            "SELECT m.id, m.visible_at, m.kind FROM messages m
              WHERE m.instance_id = l.id AND m.visible_at <= $4
             UNION ALL
             SELECT p.id, p.visible_at, p.kind FROM posted p WHERE p.instance_id = l.id"
        ),
    )
});

/// Who may claim the turn of a sent message, and how (see [`send_claiming`]).
pub(crate) struct Claim<'a> {
    /// What the sender serves.
    pub(crate) filter: &'a FetchFilter,
    /// When the turn is leased.
    pub(crate) now: Timestamp,
    /// For how long.
    pub(crate) lease: Duration,
    /// The lease owner the store registered, if any.
    pub(crate) owner: Option<i32>,
    /// The journals the sender holds.
    pub(crate) cache: Option<&'a Arc<dyn JournalCache>>,
}

/// Posts `message` and claims its instance's turn when it is free at once, inside the caller's
/// transaction, which began with the lock statement of the instance (its rows are `locked`).
/// Refuses an unknown or finished instance as a send does, having written nothing. Returns the
/// claimed turn, if any; the outer error means the transaction must be rolled back.
pub(crate) async fn send_claiming(
    conn: &mut PgConnection,
    message: &NewMessage,
    locked: &[PgRow],
    claim: &Claim<'_>,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<Option<TurnWork>> {
    let id = &message.instance_id;
    let status: InstanceStatus = match locked.first() {
        Some(row) => row.try_get::<String, _>("status")?.parse()?,
        None => return Err(StoreError::instance_not_found(id).into()),
    };
    if status.is_terminal() {
        return Err(StoreError::InstanceFinished {
            id: id.clone(),
            status: status.to_string(),
        }
        .into());
    }
    let row = sqlx::query(SEND_CLAIMING.as_str())
        .bind(id)
        .bind(message.visible_at.0)
        .bind(codec::to_json(&message.kind)?)
        .bind(claim.now.0)
        .bind(&claim.filter.queues)
        .bind(&claim.filter.names)
        .bind(claim.now.plus(claim.lease).0)
        .bind(claim.owner)
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<i64, _>("posted")? != 1 {
        return Err(StoreError::Other(format!(
            "a message for the locked, open instance {id:?} was not posted"
        ))
        .into());
    }
    wake.turns |= row.try_get::<bool, _>("wake_turns")?;
    let leased = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => leased_row(&row)?,
        None => return Ok(None),
    };
    Ok(with_journals(conn, vec![leased], claim.cache).await?.pop())
}
