//! Creating instances and sending them messages.
//!
//! **Messages and the instance lock.** Every message insert holds a lock on its instance row
//! (`FOR KEY SHARE` here; a commit's own messages are covered by the `FOR UPDATE` it holds), so
//! that no turn of the instance can miss the message: a fetch skips the row until the message
//! is committed, and a commit (which locks the row `FOR UPDATE` and only then, in a later
//! statement, recomputes the due time from the inbox) waits for it. The due update that follows
//! an insert is written so that, when its statement had to wait for such a commit, it is
//! evaluated again on the row the commit left (`due_at IS NULL OR ...`; PostgreSQL re-checks an
//! `UPDATE`'s `WHERE` and recomputes its `SET` on the newest row version after a wait).

use std::sync::LazyLock;
use std::time::Duration;

use duraflow_store::{
    codec, CreateOutcome, InstanceInfo, InstanceStatus, Journal, LeaseToken, Message, MessageId,
    MessageKind, NewInstance, NewMessage, StoreError, TurnWork,
};
use sqlx::{PgConnection, Row};

use super::{Wake, OPEN};
use crate::codec::{instance_row, INSTANCE_COLUMNS};
use crate::error::OpResult;
use crate::listen;

/// The statement of [`get`]: `$1` the instance id.
pub(crate) static GET: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1",));

/// Several instances by id: `$1` the ids. Every connection of the pool holds it prepared under
/// [`GET_MANY_PREPARED`], for [`get_many_sql`].
pub(crate) static GET_MANY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ANY($1)"));

/// The name [`GET_MANY`] is prepared under.
pub(crate) const GET_MANY_PREPARED: &str = "duraflow_get_instances";

/// [`GET_MANY`] for `ids` as a statement of the simple protocol (the ids as literals): a commit
/// sends it with its `COMMIT`, in the same round trip, to hand the instances it finished to
/// their watchers in this process.
pub(crate) fn get_many_sql(ids: &[String]) -> String {
    format!(
        "EXECUTE {GET_MANY_PREPARED} (ARRAY[{}]::text[])",
        crate::tx::literal_list(ids.iter().map(String::as_str))
    )
}

pub(crate) async fn get(conn: &mut PgConnection, id: &str) -> OpResult<Option<InstanceInfo>> {
    // Only a constant column list is interpolated.
    let row = sqlx::query(GET.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(instance_row).transpose()
}

/// An instance by id, with its current execution's journal length and the time of its last
/// event: the last row of `(instance_id, execution)` in the events' primary key, one seek.
pub(crate) async fn describe(conn: &mut PgConnection, id: &str) -> OpResult<Option<InstanceInfo>> {
    let Some(mut info) = get(conn, id).await? else {
        return Ok(None);
    };
    let last = sqlx::query(JOURNAL_END)
        .bind(id)
        .bind(info.execution as i32)
        .fetch_optional(&mut *conn)
        .await?;
    let last = match last {
        Some(row) => {
            // The last row holds the last event (or several, ending with it). One that cannot
            // be decoded gives no time: reported as corrupt below.
            let row = super::turns::JournalRow::read(&row, 0)?;
            let (position, format, span) = (
                i64::from(row.position),
                i64::from(row.format),
                i64::from(row.span),
            );
            let mut events = Vec::new();
            let decoded = match (row.data, usize::try_from(position)) {
                (Some(data), Ok(index)) => {
                    codec::journal_row_events(index, position, format, span, data, &mut events)
                        .is_ok()
                }
                _ => false,
            };
            let at = events.last().filter(|_| decoded).map(|e| e.at.0);
            Some((position.saturating_add(events.len().max(1) as i64 - 1), at))
        }
        None => None,
    };
    let (len, at) = codec::journal_end(id, info.execution, last)?;
    info.journal_len = Some(len);
    info.last_event_at = at;
    Ok(Some(info))
}

/// The last row of an execution's journal, decoded for its last event's position and time
/// (`describe`).
pub(crate) const JOURNAL_END: &str = "SELECT position, format, data, encoded, span FROM events
      WHERE instance_id = $1 AND execution = $2 ORDER BY position DESC LIMIT 1";

/// The statement of [`status_of`]: `$1` the instance id.
pub(crate) const STATUS_OF: &str = "SELECT status FROM instances WHERE id = $1";

pub(crate) async fn status_of(
    conn: &mut PgConnection,
    id: &str,
) -> OpResult<Option<InstanceStatus>> {
    let row = sqlx::query(STATUS_OF)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok(Some(r.try_get::<String, _>(0)?.parse()?)),
        None => Ok(None),
    }
}

/// The JSON of a first execution's start message.
pub(crate) fn start_message() -> OpResult<String> {
    Ok(codec::to_json(&MessageKind::start(1))?)
}

/// The common part of [`CREATE_BATCH`] and [`INSERT_CHILDREN`]: the instances of the
/// `unnest`ed columns (`$1`..`$5` the ids, names, inputs, parents and creation times; the
/// queues, due times, options, priorities, concurrency keys, claimed leases' expiries and their
/// owners at the parameters `$columns` names) inserted with their start messages (`$6`),
/// skipping ids that are taken; `created` holds the new ones. A row with a claimed lease's
/// expiry (`claim_until`) whose first turn needs no admission (no concurrency key, no limit on
/// its queue) is inserted with its first turn leased until then to its `claim_owner`, as a
/// fetch would lease it (`claimed`); its start is visible from the instance's start
/// (`not_before`) all the same, so a claim that lapses leaves it as it was.
macro_rules! create_instances_cte {
    ($columns:literal) => {
        concat!(
            "WITH new AS MATERIALIZED (
                 SELECT n.*, nextval('messages_id_seq') AS start,
                        (n.claim_until IS NOT NULL AND n.concurrency_key IS NULL
                         AND NOT EXISTS (SELECT 1 FROM queue_configs qc
                                          WHERE qc.name = n.queue AND qc.limits_queue)) AS claims
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], ",
            $columns,
            ")
                        WITH ORDINALITY AS n(id, name, input, parent, created_at, queue, due_at,
                                             options, priority, concurrency_key, claim_until,
                                             claim_owner, ord)
                  ORDER BY n.ord
             ), created AS (
                 INSERT INTO instances (id, name, status, execution, input, parent, created_at,
                                        updated_at, due_at, due_seq, queue, options, priority,
                                        concurrency_key, not_before, lease_token, lease_until,
                                        lease_owner, started_at)
                 SELECT id, name, 'pending', 1, input, parent, created_at, created_at,
                        CASE WHEN claims THEN claim_until ELSE due_at END, start, queue, options,
                        priority, concurrency_key, due_at,
                        CASE WHEN claims THEN nextval('lease_tokens') ELSE 0 END,
                        CASE WHEN claims THEN claim_until END,
                        CASE WHEN claims THEN claim_owner END,
                        CASE WHEN claims THEN created_at END
                   FROM new ORDER BY id
                 ON CONFLICT (id) DO NOTHING
                 RETURNING id, due_seq, not_before AS start_at, lease_token,
                           lease_until IS NOT NULL AS claimed
             ), started AS (
                 INSERT INTO messages (id, instance_id, visible_at, kind)
                 SELECT due_seq, id, start_at, $6 FROM created
             )"
        )
    };
}

/// The statement of [`create_batch`]: `$1`..`$6` as `create_instances_cte!` says, `$7` the
/// channel, `$8`..`$14` the queues, due times, options, priorities, concurrency keys, claimed
/// leases' expiries and their owners. It announces the new work that was not claimed.
pub(crate) static CREATE_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        concat!(
            create_instances_cte!(
                "$8::text[], $9::bigint[], $10::text[], $11::int[], $12::text[], $13::bigint[],
                 $14::integer[]"
            ),
            ", announced AS (
                 SELECT pg_notify($7, '{turns}')
                  WHERE EXISTS (SELECT 1 FROM created WHERE NOT claimed)
             )
             SELECT c.id AS created_id, c.claimed, c.lease_token AS claimed_token,
                    c.due_seq AS start_id, (SELECT count(*) FROM announced) AS announced,
                    existing.*
               FROM new
               LEFT JOIN created c ON c.id = new.id
               LEFT JOIN LATERAL (
                    SELECT {columns} FROM instances i WHERE i.id = new.id
               ) existing ON c.id IS NULL
              ORDER BY new.ord"
        ),
        turns = listen::TURNS,
        columns = INSTANCE_COLUMNS,
    )
});

/// Creates instances with their start messages (their first work, due at once), skipping ids
/// that are taken, in one statement, which announces the new work it does not claim; returns
/// each one's outcome in order, the existing instance for a taken id, and the first turn
/// leased to the caller where `claims` asked for a lease (for how long, and to which lease
/// owner) and the turn needs no admission (a delayed start is never claimed). The caller has
/// validated the ids and removed duplicates.
pub(crate) async fn create_batch(
    conn: &mut PgConnection,
    new: &[NewInstance],
    claims: &[Option<FirstTurnClaim>],
    channel: &str,
    wake: &mut Wake,
) -> OpResult<Vec<(CreateOutcome, Option<TurnWork>)>> {
    let mut ids = Vec::with_capacity(new.len());
    let mut names = Vec::with_capacity(new.len());
    let mut inputs = Vec::with_capacity(new.len());
    let mut parents = Vec::with_capacity(new.len());
    let mut created_at = Vec::with_capacity(new.len());
    let mut queues = Vec::with_capacity(new.len());
    let mut claim_until = Vec::with_capacity(new.len());
    let mut claim_owner = Vec::with_capacity(new.len());
    let mut columns = OptionColumns::with_capacity(new.len());
    for (i, n) in new.iter().enumerate() {
        queues.push(n.queue.as_str());
        ids.push(n.id.as_str());
        names.push(n.name.as_str());
        inputs.push(n.input.as_json());
        parents.push(n.parent.as_ref().map(codec::to_json).transpose()?);
        created_at.push(n.created_at.0);
        let claim = claims
            .get(i)
            .copied()
            .flatten()
            .filter(|_| n.due_at() <= n.created_at);
        claim_until.push(claim.map(|c| n.created_at.plus(c.lease).0));
        claim_owner.push(claim.and_then(|c| c.owner));
        columns.push(n)?;
    }
    // The start messages' ids are drawn first, in the callers' order, so each instance row is
    // inserted with its due time and tie-breaker at once. Rows are inserted in id order, as
    // every batch takes its locks, so two batches inserting the same new ids never wait for
    // each other in a cycle. Taken ids are read from the statement's snapshot; an id
    // taken by a transaction that committed while this one ran is read again below.
    let rows = sqlx::query(CREATE_BATCH.as_str())
        .bind(&ids)
        .bind(&names)
        .bind(&inputs)
        .bind(&parents)
        .bind(&created_at)
        .bind(start_message()?)
        .bind(channel)
        .bind(&queues)
        .bind(&columns.due_at)
        .bind(&columns.options)
        .bind(&columns.priority)
        .bind(&columns.concurrency_key)
        .bind(&claim_until)
        .bind(&claim_owner)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(new.len());
    for (row, n) in rows.iter().zip(new) {
        if row.try_get::<Option<String>, _>("created_id")?.is_none() {
            out.push((existing(conn, row, &n.id).await?, None));
            continue;
        }
        if row.try_get::<Option<bool>, _>("claimed")? == Some(true) {
            let turn = first_turn(n, row.try_get("start_id")?, row.try_get("claimed_token")?);
            out.push((CreateOutcome::Created, Some(turn)));
        } else {
            wake.turns = true;
            out.push((CreateOutcome::Created, None));
        }
    }
    if out.len() != new.len() {
        return Err(StoreError::Other(format!(
            "creating {} instances answered {} rows",
            new.len(),
            out.len()
        ))
        .into());
    }
    Ok(out)
}

/// The statement of [`create_claiming`]: `$1` the id, `$2` name, `$3` input, `$4` parent, `$5`
/// the creation time, `$6` the lease's expiry, `$7` the start message, `$8` queue, `$9` options,
/// `$10` priority, `$11` concurrency key, `$12` the lease owner. It creates nothing when the
/// queue has a limit of its own (its `limited` column says so): such a first turn needs an
/// admission, which a fetch gives.
pub(crate) static CREATE_CLAIMING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH limited AS MATERIALIZED (
             SELECT coalesce((SELECT limits_queue FROM queue_configs WHERE name = $8), false)
                        AS limited
         ), new AS MATERIALIZED (
             SELECT nextval('messages_id_seq') AS start, nextval('lease_tokens') AS token
               FROM limited WHERE NOT limited
         ), created AS (
             INSERT INTO instances (id, name, status, execution, input, parent, created_at,
                                    updated_at, due_at, due_seq, lease_token, lease_until, queue,
                                    options, priority, concurrency_key, started_at, lease_owner,
                                    not_before)
             SELECT $1, $2, 'pending', 1, $3, $4, $5, $5, $6, start, token, $6, $8, $9, $10, $11,
                    $5, $12, $5
               FROM new
             ON CONFLICT (id) DO NOTHING
             RETURNING id, due_seq, lease_token
         ), started AS (
             INSERT INTO messages (id, instance_id, visible_at, kind)
             SELECT due_seq, id, $5, $7 FROM created
         )
         SELECT l.limited, c.id AS created_id, c.due_seq AS start_id,
                c.lease_token AS token, existing.*
           FROM limited l
           LEFT JOIN created c ON true
           LEFT JOIN LATERAL (
                SELECT {INSTANCE_COLUMNS} FROM instances i WHERE i.id = $1
           ) existing ON c.id IS NULL AND NOT l.limited",
    )
});

/// Creates one instance with its start message and leases its first turn to the caller for
/// `lease`, in one statement that announces nothing (the caller runs the turn); returns the
/// turn, or the existing instance for a taken id. The caller has validated the id. Returns
/// `None`, having written nothing, when the instance's queue has a limit of its own: its first
/// turn needs an admission, so it is to be created the usual way and left to a fetch.
pub(crate) async fn create_claiming(
    conn: &mut PgConnection,
    new: &NewInstance,
    lease: Duration,
    owner: Option<i32>,
) -> OpResult<Option<(CreateOutcome, Option<TurnWork>)>> {
    let until = new.created_at.plus(lease);
    let parent = new.parent.as_ref().map(codec::to_json).transpose()?;
    let row = sqlx::query(CREATE_CLAIMING.as_str())
        .bind(&new.id)
        .bind(&new.name)
        .bind(new.input.as_json())
        .bind(&parent)
        .bind(new.created_at.0)
        .bind(until.0)
        .bind(start_message()?)
        .bind(&new.queue)
        .bind(options_json(new)?)
        .bind(new.options.priority)
        .bind(&new.options.concurrency_key)
        .bind(owner)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<bool, _>("limited")? {
        return Ok(None);
    }
    if row.try_get::<Option<String>, _>("created_id")?.is_some() {
        let turn = first_turn(new, row.try_get("start_id")?, row.try_get("token")?);
        return Ok(Some((CreateOutcome::Created, Some(turn))));
    }
    Ok(Some((existing(conn, &row, &new.id).await?, None)))
}

/// A creation's claim of its new instance's first turn (see [`create_batch`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FirstTurnClaim {
    /// How long the lease lasts, from the creation.
    pub(crate) lease: Duration,
    /// The lease owner the store registered, if any.
    pub(crate) owner: Option<i32>,
}

/// The first turn of the new instance `new`, leased to its creator under `token` at its
/// creation: its start message (`start`, its id) and an empty journal.
fn first_turn(new: &NewInstance, start: i64, token: i64) -> TurnWork {
    let instance = InstanceInfo {
        id: new.id.clone(),
        name: new.name.clone(),
        status: InstanceStatus::Pending,
        execution: 1,
        input: new.input.clone(),
        output: None,
        failure: None,
        parent: new.parent.clone(),
        queue: new.queue.clone(),
        options: new.options.clone(),
        attempt: 1,
        created_at: new.created_at,
        updated_at: new.created_at,
        version: None,
        journal_len: None,
        last_event_at: None,
    };
    TurnWork {
        instance,
        journal: Ok(Journal::Events(Vec::new())),
        messages: vec![Message {
            id: MessageId(start),
            instance_id: new.id.clone(),
            kind: MessageKind::start(1),
            visible_at: new.created_at,
        }],
        token: LeaseToken(token),
    }
}

/// The outcome for an id a create statement found taken: the instance in the statement's row
/// (its `existing.*` columns), or read again when a transaction that committed while the
/// statement ran took the id.
async fn existing(
    conn: &mut PgConnection,
    row: &sqlx::postgres::PgRow,
    id: &str,
) -> OpResult<CreateOutcome> {
    let existing = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => Some(instance_row(row)?),
        None => get(conn, id).await?,
    };
    match existing {
        Some(existing) => Ok(CreateOutcome::Existing(Box::new(existing))),
        None => Err(StoreError::Unavailable(format!(
            "instance {id:?} was being created and purged concurrently; try again"
        ))
        .into()),
    }
}

/// The statement of [`send`]: `$1` the addressee, `$2` when the message is visible, `$3` the
/// message, `$4` the channel.
pub(crate) static SEND: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH inst AS (
             SELECT id, status FROM instances WHERE id = $1 FOR KEY SHARE
         ), ins AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT $1, $2, $3 FROM inst WHERE status IN {OPEN}
             RETURNING id
         ), due AS (
             UPDATE instances SET
                 due_at = CASE WHEN lease_until IS NOT NULL THEN lease_until
                               ELSE greatest($2, not_before) END,
                 due_seq = coalesce(due_seq, (SELECT id FROM ins))
              WHERE id = $1 AND EXISTS (SELECT 1 FROM ins)
                AND status IN {OPEN}
                AND (due_at IS NULL OR due_at > greatest($2, not_before))
         ), announced AS (
             SELECT pg_notify($4, '{turns}') FROM ins
         )
         SELECT (SELECT status FROM inst) AS status, (SELECT count(*) FROM announced) AS sent",
        turns = listen::TURNS,
    )
});

/// Puts a message in an open instance's inbox, bringing the instance's due time forward when
/// the message is its earliest work (a turn holding the instance keeps it due at its lease's
/// expiry; its commit recomputes it). One statement, holding the instance row `FOR KEY SHARE`
/// (see the module documentation), which announces the message.
pub(crate) async fn send(
    conn: &mut PgConnection,
    message: &NewMessage,
    channel: &str,
    wake: &mut Wake,
) -> OpResult<()> {
    let id = &message.instance_id;
    let row = sqlx::query(SEND.as_str())
        .bind(id)
        .bind(message.visible_at.0)
        .bind(codec::to_json(&message.kind)?)
        .bind(channel)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<i64, _>("sent")? == 1 {
        wake.turns = true;
        return Ok(());
    }
    match row.try_get::<Option<String>, _>("status")? {
        None => Err(StoreError::instance_not_found(id).into()),
        Some(status) => Err(StoreError::InstanceFinished {
            id: id.clone(),
            status,
        }
        .into()),
    }
}

/// The statement of [`insert_children`]: the columns of [`CREATE_BATCH`] without the channel
/// (`$7`..`$11` are its `$8`..`$12`) and without claims (a child's first turn is fetched).
pub(crate) const INSERT_CHILDREN: &str = concat!(
    create_instances_cte!(
        "$7::text[], $8::bigint[], $9::text[], $10::int[], $11::text[], '{}'::bigint[],
         '{}'::integer[]"
    ),
    " SELECT id FROM created"
);

/// Inserts child instances with their start messages, skipping ids that are taken, in one
/// statement (rows in id order, as in [`create_batch`]); returns the ids it inserted. The caller has validated the ids and removed
/// duplicates.
pub(crate) async fn insert_children(
    conn: &mut PgConnection,
    children: &[&NewInstance],
) -> OpResult<Vec<String>> {
    let mut ids = Vec::with_capacity(children.len());
    let mut names = Vec::with_capacity(children.len());
    let mut inputs = Vec::with_capacity(children.len());
    let mut parents = Vec::with_capacity(children.len());
    let mut created_at = Vec::with_capacity(children.len());
    let mut queues = Vec::with_capacity(children.len());
    let mut columns = OptionColumns::with_capacity(children.len());
    for child in children {
        queues.push(child.queue.as_str());
        ids.push(child.id.as_str());
        names.push(child.name.as_str());
        inputs.push(child.input.as_json());
        parents.push(child.parent.as_ref().map(codec::to_json).transpose()?);
        created_at.push(child.created_at.0);
        columns.push(child)?;
    }
    let created: Vec<String> = sqlx::query_scalar(INSERT_CHILDREN)
        .bind(&ids)
        .bind(&names)
        .bind(&inputs)
        .bind(&parents)
        .bind(&created_at)
        .bind(start_message()?)
        .bind(&queues)
        .bind(&columns.due_at)
        .bind(&columns.options)
        .bind(&columns.priority)
        .bind(&columns.concurrency_key)
        .fetch_all(&mut *conn)
        .await?;
    Ok(created)
}

/// The stored JSON of an instance's options: `None` when every option has its default.
fn options_json(new: &NewInstance) -> OpResult<Option<String>> {
    Ok((!new.options.is_default())
        .then(|| codec::to_json(&new.options))
        .transpose()?)
}

/// The columns of instances to insert that come from their options, one array per column.
struct OptionColumns<'a> {
    due_at: Vec<i64>,
    options: Vec<Option<String>>,
    priority: Vec<i32>,
    concurrency_key: Vec<Option<&'a str>>,
}

impl<'a> OptionColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        OptionColumns {
            due_at: Vec::with_capacity(n),
            options: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            concurrency_key: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, new: &'a NewInstance) -> OpResult<()> {
        self.due_at.push(new.due_at().0);
        self.options.push(options_json(new)?);
        self.priority.push(new.options.priority);
        self.concurrency_key
            .push(new.options.concurrency_key.as_deref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::JOURNAL_END;

    /// `describe` finds an execution's last event by reading the events' primary key
    /// backwards from `(instance_id, execution)`: no sequential scan, no sort, planned
    /// generically as the store's sessions plan.
    #[tokio::test]
    async fn the_journal_end_is_one_seek_of_the_events_key() {
        let store = crate::testing::test_store("journal_end").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        sqlx::query(
            "INSERT INTO events (instance_id, execution, position, format, data)
             SELECT 'i-' || i, 1, p, 2, '{\"at\":' || p || '}'
               FROM generate_series(1, 200) i, generate_series(0, 19) p",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE events")
            .execute(&mut *conn)
            .await
            .unwrap();
        let prepare = format!("PREPARE journal_end (text, int) AS {JOURNAL_END}");
        sqlx::query(sqlx::AssertSqlSafe(prepare))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE journal_end ('i-7', 1)")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("Index Scan Backward using events_pkey")
                && !plan.contains("Seq Scan")
                && !plan.contains("Sort"),
            "{plan}"
        );
    }
}
