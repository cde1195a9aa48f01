//! Leasing, committing and abandoning workflow turns.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use duraflow_core::{Event, EventData, EventDecodeError, Timestamp};
use duraflow_store::{
    codec, holds_lease, InstanceInfo, Journal, JournalCache, LeaseToken, Message, StoreError,
    TurnWork,
};
use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{messages_of, Wake};
use crate::codec::instance_row;
use crate::error::OpResult;
use crate::listen;

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
        "queue",
        "options",
        "attempt",
        "version",
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

/// The statement of [`read_journal`]: `$1` the instance id, `$2` the execution. Its rows come
/// in no particular order (see [`READ_JOURNALS`]).
pub(crate) const READ_JOURNAL: &str = "SELECT position, format, data, encoded, span FROM events
     WHERE instance_id = $1 AND execution = $2";

/// Reads an execution's journal; a row that cannot be decoded is reported with its position.
pub(crate) async fn read_journal(
    conn: &mut PgConnection,
    id: &str,
    execution: u32,
) -> OpResult<Result<Vec<Event>, StoreError>> {
    let mut stream = sqlx::query(READ_JOURNAL)
        .bind(id)
        .bind(execution as i32)
        .fetch(&mut *conn);
    let mut rows = DecodedRows::default();
    while let Some(row) = stream.try_next().await? {
        rows.add(&JournalRow::read(&row, 0)?);
    }
    Ok(rows.journal(id, execution))
}

/// One journal row, its columns (`position, format, data, encoded, span`, which the statements
/// that read journals select last: [`READ_JOURNAL`], [`READ_JOURNALS`] and
/// `instances::JOURNAL_END`) read once, by position, and its stored
/// event borrowed from it. Reading a column by name costs a lookup of the name in every row,
/// and a cold turn on a journal of 10,000 steps reads 10,001 rows (about 420 instructions a
/// column read by name, 6 of them a row, before this).
pub(crate) struct JournalRow<'r> {
    pub(crate) position: i32,
    pub(crate) format: i32,
    pub(crate) span: i32,
    /// `None` when the row holds neither an encoded event nor JSON text.
    pub(crate) data: Option<EventData<'r>>,
}

impl<'r> JournalRow<'r> {
    /// Reads the row's journal columns, the first of which (`position`) is column
    /// `first`: events written since journal format 4 are in `encoded`, those written before
    /// are JSON text in `data`.
    pub(crate) fn read(row: &'r PgRow, first: usize) -> OpResult<Self> {
        let data = match row.try_get::<Option<&[u8]>, _>(first + 3)? {
            Some(bytes) => Some(EventData::Binary(bytes)),
            None => row
                .try_get::<Option<&str>, _>(first + 2)?
                .map(EventData::Json),
        };
        Ok(JournalRow {
            position: row.try_get(first)?,
            format: row.try_get(first + 1)?,
            span: row.try_get(first + 4)?,
            data,
        })
    }
}

/// An execution's journal rows, each decoded as it arrives from the server, in whatever order
/// they come ([`READ_JOURNAL`] and [`READ_JOURNALS`] do not sort them), so that decoding one row
/// overlaps the server's reading and sending of the next; [`DecodedRows::journal`] puts them
/// in position order. (Read whole and then decoded, a journal of 20,002 events took about 1 ms
/// to arrive and 1.4 ms more to decode.)
#[derive(Default)]
struct DecodedRows {
    rows: Vec<DecodedRow>,
}

/// One journal row, decoded.
struct DecodedRow {
    position: i32,
    format: i32,
    span: i32,
    /// The row's events (a row holds a commit's events, see [`codec::journal_row_events`]),
    /// or the position of the first that does not decode and why. `None` for a row at a
    /// negative position, which is reported as misplaced and never decoded.
    events: Option<Result<Vec<Event>, (usize, EventDecodeError)>>,
}

impl DecodedRows {
    /// Decodes `row` as if every row before its position had been read.
    fn add(&mut self, row: &JournalRow<'_>) {
        let events = usize::try_from(row.position).ok().map(|index| {
            let mut events = Vec::new();
            match row.data {
                Some(data) => codec::journal_row_events(
                    index,
                    i64::from(row.position),
                    i64::from(row.format),
                    i64::from(row.span),
                    data,
                    &mut events,
                )
                .map(|()| events),
                None => Err((
                    index,
                    EventDecodeError::Corrupt(
                        "the row holds neither an encoded event nor JSON text".into(),
                    ),
                )),
            }
        });
        self.rows.push(DecodedRow {
            position: row.position,
            format: row.format,
            span: row.span,
            events,
        });
    }

    /// The journal in position order. The first position in that order with no row, or whose
    /// row does not decode, is `CorruptJournal` at that position, as when the rows are read in
    /// order.
    fn journal(mut self, id: &str, execution: u32) -> Result<Vec<Event>, StoreError> {
        self.rows.sort_unstable_by_key(|row| row.position);
        let count = self
            .rows
            .iter()
            .map(|row| {
                row.events
                    .as_ref()
                    .map_or(0, |e| e.as_ref().map_or(0, Vec::len))
            })
            .sum();
        let mut events = Vec::with_capacity(count);
        let mut failed = None;
        for row in &mut self.rows {
            let at = events.len();
            let decoded = match (usize::try_from(row.position) == Ok(at), row.events.take()) {
                (true, Some(decoded)) => decoded,
                // A row at another position than the next one is a gap or a duplicate,
                // described as the in-order check describes it.
                _ => Err((
                    at,
                    codec::journal_row(at, i64::from(row.position), i64::from(row.format))
                        .err()
                        .unwrap_or_else(|| {
                            EventDecodeError::Corrupt(format!("no row holds position {at}"))
                        }),
                )),
            };
            match decoded {
                Ok(mut decoded) => events.append(&mut decoded),
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        match failed {
            None => Ok(events),
            Some((position, error)) => Err(StoreError::CorruptJournal {
                instance_id: id.to_owned(),
                execution,
                position,
                journal_len: codec::journal_len(
                    self.rows
                        .iter()
                        .map(|r| (i64::from(r.position), i64::from(r.span))),
                ),
                error,
            }),
        }
    }
}

/// A turn as its lease returned it, before its journal is read.
pub(crate) struct Leased {
    pub(super) instance: InstanceInfo,
    pub(super) commit_token: i64,
    pub(super) token: LeaseToken,
    pub(super) messages: Vec<Message>,
    pub(super) has_events: bool,
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

/// The statement of [`read_journals`]: `$1` the instance ids, `$2` their executions. Its rows
/// come in no particular order: [`read_journals`] puts each journal in position order. With an
/// `ORDER BY` the server sorted them: the generic plan, which expects a journal of a dozen
/// events, reads them as a bitmap (out of order), and the sort took 12 ms of a 30 ms read of a
/// journal of 20,002 events.
pub(crate) const READ_JOURNALS: &str =
    "SELECT e.instance_id, e.position, e.format, e.data, e.encoded, e.span
       FROM unnest($1::text[], $2::int[]) AS k(id, execution)
       JOIN events e ON e.instance_id = k.id AND e.execution = k.execution";

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
    let mut by_instance: HashMap<&str, DecodedRows> = wanted
        .iter()
        .map(|(id, _)| (id.as_str(), DecodedRows::default()))
        .collect();
    let mut stream = sqlx::query(READ_JOURNALS)
        .bind(&ids)
        .bind(&executions)
        .fetch(&mut *conn);
    while let Some(row) = stream.try_next().await? {
        let id: &str = row.try_get(0)?;
        if let Some(rows) = by_instance.get_mut(id) {
            rows.add(&JournalRow::read(&row, 1)?);
        }
    }
    drop(stream);
    for (id, execution) in wanted {
        let rows = by_instance.remove(id.as_str()).unwrap_or_default();
        out.insert(id.clone(), rows.journal(id, *execution));
    }
    Ok(out)
}

/// The first statement of [`abandon`]: `$1` the instance id.
pub(crate) const ABANDON_LOCK: &str =
    "SELECT lease_token, lease_until FROM instances WHERE id = $1 FOR UPDATE";

/// The second statement of [`abandon`]: `$1` the instance id, `$2` the retry time, `$3` the
/// channel.
pub(crate) static ABANDON: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH released AS (
             UPDATE instances SET lease_until = NULL, not_before = $2,
                    due_at = (SELECT greatest(coalesce(min(m.visible_at), $2), $2)
                                FROM messages m WHERE m.instance_id = $1)
              WHERE id = $1
             RETURNING due_at
         )
         SELECT pg_notify($3, '{turns}') FROM released WHERE due_at IS NOT NULL",
        turns = listen::TURNS,
    )
});

/// Gives up a turn's lease: its messages are due again at `retry_at` (and the turn is, even
/// with an empty inbox, which a checkpoint can leave). The row is locked first
/// and the due time computed in a later statement, which sees every message sent until then.
pub(crate) async fn abandon(
    conn: &mut PgConnection,
    id: &str,
    token: LeaseToken,
    retry_at: Timestamp,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(ABANDON_LOCK)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((current, lease_until)) = row else {
        return Err(StoreError::instance_not_found(id).into());
    };
    let lease = lease_until.map(|until| (LeaseToken(current), Timestamp(until)));
    if !holds_lease(lease, token, None) {
        return Err(StoreError::instance_lease_lost(id).into());
    }
    sqlx::query(ABANDON.as_str())
        .bind(id)
        .bind(retry_at.0)
        .bind(channel)
        .execute(&mut *conn)
        .await?;
    wake.turns = true;
    Ok(())
}

/// The statement of [`renew`]: `$1` the instance id, `$2` the lease token, `$3` now, `$4` the
/// new expiry, `$5` the lease owner.
pub(crate) const RENEW: &str = "WITH renewed AS (
         UPDATE instances SET lease_until = $4, due_at = $4, lease_owner = $5
          WHERE id = $1 AND lease_token = $2 AND lease_until > $3
         RETURNING id
     )
     SELECT EXISTS (SELECT 1 FROM renewed) FROM instances WHERE id = $1";

/// Extends a turn's lease to `now + lease`, in one statement (see `Store::renew_turn`).
pub(crate) async fn renew(
    conn: &mut PgConnection,
    id: &str,
    token: LeaseToken,
    now: Timestamp,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Timestamp> {
    let until = now.plus(lease);
    let row: Option<(bool,)> = sqlx::query_as(RENEW)
        .bind(id)
        .bind(token.0)
        .bind(now.0)
        .bind(until.0)
        .bind(owner)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some((true,)) => Ok(until),
        Some((false,)) => Err(StoreError::instance_lease_lost(id).into()),
        None => Err(StoreError::instance_not_found(id).into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use duraflow_core::{Event, EventKind, Timestamp};
    use sqlx::Row;

    use super::{read_journal, read_journals};
    use crate::testing::test_store;

    /// A journal comes back in position order whatever order the server reads its rows in:
    /// here its rows are stored out of position order and read as a bitmap, which returns
    /// them in the order they are stored (the generic plans of the journal statements read
    /// journals so; they leave the order to `in_position_order`).
    #[tokio::test]
    async fn journals_read_in_position_order_from_rows_stored_out_of_it() {
        let store = test_store("dft_journal_order").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let event = |n: i64| {
            serde_json::to_string(&Event {
                at: Timestamp(n),
                kind: EventKind::EventWaitStarted {
                    op: duraflow_core::OpId::new(None, u32::try_from(n).unwrap()),
                    name: format!("e{n}"),
                },
            })
            .unwrap()
        };
        // Stored 2, 0, 1.
        for position in [2_i64, 0, 1] {
            sqlx::query("INSERT INTO events VALUES ('j', 1, $1, 1, $2)")
                .bind(i32::try_from(position).unwrap())
                .bind(event(position))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        sqlx::raw_sql("SET enable_indexscan = off; SET enable_indexonlyscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        let stored: Vec<i32> =
            sqlx::query("SELECT position FROM events WHERE instance_id = 'j' AND execution = 1")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get("position"))
                .collect();
        assert_eq!(stored, [2, 0, 1], "the server reads them as stored");

        let at = |events: Vec<Event>| events.iter().map(|e| e.at.0).collect::<Vec<_>>();
        let one = read_journal(&mut conn, "j", 1).await.unwrap().unwrap();
        assert_eq!(at(one), [0, 1, 2]);
        let mut many = read_journals(&mut conn, &[("j".to_owned(), 1)])
            .await
            .unwrap();
        assert_eq!(at(many.remove("j").unwrap().unwrap()), [0, 1, 2]);
    }
}
