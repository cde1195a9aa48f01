//! A send that claims: the message is posted and, when its instance's turn is free at once for
//! the sender, that turn is leased to the sender in the same statement (`Store::send_claiming`),
//! which commits by itself: one round trip, as a plain send.
//!
//! **The snapshot and the lock.** The statement reads the inbox from its snapshot, taken when it
//! starts, and locks the instance row (`FOR UPDATE`, which waits for a transaction holding the
//! row and then reads the row as that transaction left it). A commit of the instance that ends
//! between the two has consumed messages the snapshot still holds, so a turn claimed on that
//! snapshot would deliver them again. Every commit that consumes messages holds a lease and
//! changes the instance's `commit_token` (to the lease's token; a checkpoint, which keeps the
//! lease, to a new one); so the turn is claimed only when the locked row has the commit token
//! the snapshot saw (and the snapshot saw no live lease). Nothing then committed in between but
//! sends (their messages wait for the next turn) and direct turns, which consume no message
//! (`races::a_commit_during_a_claiming_send_delivers_nothing_twice` and its checkpoint case).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use duraflow_core::Timestamp;
use duraflow_store::{
    codec, FetchFilter, InstanceStatus, JournalCache, NewMessage, StoreError, TurnWork,
};
use sqlx::{PgConnection, Row};

use super::turns::{leased_columns, leased_row, turn_extras, with_journals, TURN_EXTRA_COLUMNS};
use super::Wake;
use crate::error::OpResult;
use crate::listen;

/// The statement of [`send_claiming`]: `$1` the instance, `$2` when the message is visible,
/// `$3` the message, `$4` now, `$5` the sender's queues, `$6` its workflow names (NULL: all),
/// `$7` the claimed lease's expiry, `$8` the lease owner, `$9` the channel. It locks the
/// instance row, posts the message to an open instance, brings the instance's due time forward
/// as a send does, or leases its turn when the message is visible and the turn is free at once
/// (as a completion's claim does, and see the module's doc), and returns the instance's status
/// and the claimed turn's row (`NULL`s when there is none).
pub(crate) static SEND_CLAIMING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH inst AS MATERIALIZED (
             SELECT i.* FROM instances i WHERE i.id = $1 FOR UPDATE
         ), seen AS MATERIALIZED (
             SELECT s.commit_token, s.lease_until FROM instances s WHERE s.id = $1
         ), posted AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT i.id, $2, $3 FROM inst i WHERE i.status IN {open}
             RETURNING id, instance_id, visible_at, kind
         ), plan AS (
             SELECT i.id, p.id AS first, x.due, $7::bigint AS claim_until, {moves},
                    ($2 <= $4 AND x.due <= $4
                     AND i.commit_token = s.commit_token
                     AND (s.lease_until IS NULL OR s.lease_until <= $4)
                     AND {claimable}) AS claims
               FROM posted p
               JOIN inst i ON i.id = p.instance_id
              CROSS JOIN seen s
              {due}
         ), t AS (
             {claim_or_move}
             RETURNING i.*, pl.claims
         ), announced AS (
             SELECT pg_notify($9, '{turns}')
              WHERE EXISTS (SELECT 1 FROM plan WHERE NOT plan.claims)
         ), turn AS (
             SELECT {leased}, {TURN_EXTRA_COLUMNS}
               FROM t AS l {extras}
              WHERE l.claims
         )
         SELECT (SELECT status FROM inst) AS instance_status,
                (SELECT count(*) FROM posted) AS posted,
                (SELECT count(*) FROM announced) AS announced,
                EXISTS (SELECT 1 FROM plan WHERE NOT plan.claims) AS wake_turns,
                turn.*
           FROM (SELECT 1) AS one LEFT JOIN turn ON true",
        open = super::OPEN,
        turns = listen::TURNS,
        claimable = super::claim::claimable("$5", "$6"),
        moves = super::claim::moves("$2"),
        due = super::claim::due("$2"),
        claim_or_move = super::claim::claim_or_move("$4", "$8"),
        leased = leased_columns("l"),
        extras = turn_extras(&super::claim::claimed_inbox("$4")),
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

/// Posts `message` and claims its instance's turn when it is free at once, in one statement that
/// commits by itself (see the module's doc). Refuses an unknown or finished instance as a send
/// does, having written nothing. Returns the claimed turn, if any.
pub(crate) async fn send_claiming(
    conn: &mut PgConnection,
    message: &NewMessage,
    claim: &Claim<'_>,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<Option<TurnWork>> {
    let id = &message.instance_id;
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
        let status: Option<InstanceStatus> = row
            .try_get::<Option<String>, _>("instance_status")?
            .map(|s| s.parse())
            .transpose()?;
        return Err(match status {
            None => StoreError::instance_not_found(id),
            Some(status) if status.is_terminal() => StoreError::InstanceFinished {
                id: id.clone(),
                status: status.to_string(),
            },
            Some(status) => StoreError::Other(format!(
                "a message for instance {id:?}, which is {status}, was not posted"
            )),
        }
        .into());
    }
    wake.turns |= row.try_get::<bool, _>("wake_turns")?;
    let leased = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => leased_row(&row)?,
        None => return Ok(None),
    };
    // The lease is committed: the journal cannot change while it lasts.
    Ok(with_journals(conn, vec![leased], claim.cache).await?.pop())
}
