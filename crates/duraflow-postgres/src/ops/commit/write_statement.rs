//! The write statement of a commit batch (step 4 of [`super::commit_batch`]), built from the
//! parts a batch has rows for; and the same statement as a whole commit of one statement
//! ([`super::one_statement`]), which locks and checks its rows first.

use std::sync::LazyLock;

use super::super::OPEN;
use super::LOCKED_COLUMNS;
use crate::codec::INSTANCE_COLUMNS;
use crate::listen;

/// Which parts of [`commit_batch`]'s step 4 a batch has rows for. The statement is built with
/// only those parts: every part of a statement opens its table and the table's indexes when
/// it starts, rows or no rows, and that opening was most of the statement's time (a direct
/// turn writes events, one task and its instance, and has no use for the parts that consume,
/// send or drop messages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteParts {
    /// Journal events to append.
    pub(crate) events: bool,
    /// Inbox messages consumed.
    pub(crate) consumed: bool,
    /// An execution that ends (its inbox and tasks are dropped).
    pub(crate) finished: bool,
    /// Activities' tasks cancelled.
    pub(crate) cancelled: bool,
    /// New tasks.
    pub(crate) tasks: bool,
    /// Messages sent.
    pub(crate) sent: bool,
}

impl WriteParts {
    /// Every part: the statement as it is when each kind of write has rows.
    pub(crate) const ALL: WriteParts = WriteParts {
        events: true,
        consumed: true,
        finished: true,
        cancelled: true,
        tasks: true,
        sent: true,
    };

    /// The parts as one number, [`write_sql`]'s index.
    fn index(self) -> usize {
        [
            self.events,
            self.consumed,
            self.finished,
            self.cancelled,
            self.tasks,
            self.sent,
        ]
        .iter()
        .enumerate()
        .map(|(bit, on)| usize::from(*on) << bit)
        .sum()
    }

    /// Every combination of parts, each once.
    pub(crate) fn every() -> impl Iterator<Item = WriteParts> {
        (0..=WriteParts::ALL.index()).map(WriteParts::of_index)
    }

    /// The parts of number `index` (see [`WriteParts::index`]).
    fn of_index(index: usize) -> WriteParts {
        let on = |bit: usize| index & (1 << bit) != 0;
        WriteParts {
            events: on(0),
            consumed: on(1),
            finished: on(2),
            cancelled: on(3),
            tasks: on(4),
            sent: on(5),
        }
    }
}

/// How a write statement commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// Step 4 of [`super::commit_batch`], in a transaction whose first statement locked and
    /// read the rows, and which Rust checked.
    InTransaction,
    /// A whole commit in one statement ([`super::one_statement`]): it locks the instance rows
    /// and the direct turns' tasks, checks them, and writes only if every commit passes.
    OneStatement,
    /// [`Form::OneStatement`] for a batch of exactly one commit: each of the commit's columns
    /// is read as its array's first element rather than by `unnest`, and its rows are found by
    /// equality, so the statement's plan has no function scans, sorts, bitmap scans or
    /// aggregates for them: PostgreSQL builds a plan's state anew at every execution, and for
    /// a lone commit that building cost about as much as its writes (BENCHMARKS.md,
    /// "PostgreSQL: a lone commit's statement").
    Single,
}

impl Form {
    /// Every form, in the order of [`WRITES`].
    const ALL: [Form; 3] = [Form::InTransaction, Form::OneStatement, Form::Single];

    /// Whether the statement locks and checks its rows itself.
    fn checks(self) -> bool {
        self != Form::InTransaction
    }
}

/// The write statement for each form and combination of [`WriteParts`], built once;
/// [`write_sql`] and [`one_statement_sql`] pick one.
static WRITES: LazyLock<Vec<String>> = LazyLock::new(|| {
    Form::ALL
        .into_iter()
        .flat_map(|form| WriteParts::every().map(move |parts| build_write(parts, form)))
        .collect()
});

/// The statement of [`super::commit_batch`]'s step 4 with the parts `parts`.
pub(crate) fn write_sql(parts: WriteParts) -> &'static str {
    WRITES[parts.index()].as_str()
}

/// The statement of a commit of one statement with the parts `parts`, in the form
/// [`Form::Single`] when the batch has one commit (`single`).
pub(crate) fn one_statement_sql(parts: WriteParts, single: bool) -> &'static str {
    let form = if single { 2 } else { 1 };
    WRITES[form * (WriteParts::ALL.index() + 1) + parts.index()].as_str()
}

/// The checks of a commit of one statement, for one commit `v` of the batch, its instance's
/// row `l` as the lock found it and its direct turn's task `d`: those of
/// `duraflow_store::check_turn` and `check_direct_task` that depend on the rows, and that the
/// instance has no callbacks, queue-event waiters or room under a limit (whose clean-up and
/// wakeups the batch path alone handles). A NULL anywhere fails it.
const ONE_STATEMENT_CHECK: &str = "coalesce(
             l.id IS NOT NULL
             AND l.execution = v.execution
             AND l.journal_len = v.base
             AND NOT l.has_callbacks AND NOT l.has_waiters AND NOT l.holds_room
             AND CASE WHEN v.task IS NULL
                      THEN l.lease_until IS NOT NULL AND l.lease_token = v.token
                           AND l.lease_until > v.now
                      ELSE (l.lease_until IS NULL OR l.lease_until <= v.now)
                           AND l.commit_token = v.token
                           AND d.id IS NOT NULL AND d.instance_id = v.id
                           AND d.execution = v.execution
                           AND d.lease_until IS NOT NULL AND d.lease_token = v.task_token
                           AND d.lease_until > v.now
                 END, false)";

/// The columns of the statement's `c`, one row per commit: each column's parameter, element
/// type and name.
const COMMIT_COLUMNS: [(u32, &str, &str); 14] = [
    (1, "text", "id"),
    (2, "text", "status"),
    (3, "text", "output"),
    (4, "text", "failure"),
    (5, "bigint", "now"),
    (6, "int", "execution"),
    (7, "text", "input"),
    (8, "bigint", "token"),
    (9, "bool", "finished"),
    (32, "bigint", "keep_until"),
    (36, "int", "attempt"),
    (37, "bigint", "not_before"),
    (38, "bool", "starts"),
    (39, "text", "version"),
];

/// The columns a commit of one statement checks (`v` in [`ONE_STATEMENT_CHECK`]), as in
/// [`COMMIT_COLUMNS`].
const CHECKED_COLUMNS: [(u32, &str, &str); 7] = [
    (1, "text", "id"),
    (8, "bigint", "token"),
    (5, "bigint", "now"),
    (43, "int", "execution"),
    (44, "bigint", "base"),
    (45, "bigint", "task"),
    (46, "bigint", "task_token"),
];

/// A lone commit's value of the array parameter `$n` of element type `ty`: its first element.
fn first(n: u32, ty: &str) -> String {
    format!("(${n}::{ty}[])[1]")
}

/// `columns` as one row of scalars, each its array parameter's first element
/// (`($1::text[])[1] AS id, ..`).
fn first_elements(columns: &[(u32, &str, &str)]) -> String {
    columns
        .iter()
        .map(|(n, ty, name)| format!("{} AS {name}", first(*n, ty)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `columns` as the rows of their arrays (`unnest($1::text[], ..) AS alias(id, ..)`).
fn unnested(columns: &[(u32, &str, &str)], alias: &str) -> String {
    let arrays: Vec<String> = columns
        .iter()
        .map(|(n, ty, _)| format!("${n}::{ty}[]"))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(_, _, name)| *name).collect();
    format!(
        "unnest({}) AS {alias}({})",
        arrays.join(", "),
        names.join(", ")
    )
}

/// Builds the statement of [`commit_batch`]'s step 4 with the parts `parts`; its parameters
/// are the columns of [`Writes`], bound in the order of the `unnest`s, with `$14` the journal
/// format, `$28` the channel, `$29`..`$31` the wakeups asked for, `$38` and `$39` whether each
/// commit starts its execution and the version it records, `$40` the lease owner, `$41`
/// how many events each journal row holds and `$42` each task's queue. The
/// parameters of the parts left out are bound all the same (and typed by the binding).
///
/// The form [`Form::OneStatement`] has five parameters more: `$43` each commit's execution,
/// `$44` its journal base, `$45` and `$46` its direct turn's task and that task's lease token
/// (NULL for a commit that is not a direct turn), and `$47` the instances whose new state the
/// statement returns. It begins by locking the instance rows (sorted by id) and then the
/// tasks, checks each commit ([`ONE_STATEMENT_CHECK`]), and every part writes only if all
/// passed (`verdict`), so a refused batch writes nothing. The inboxes from which due times are
/// computed are read by `instance_inboxes`, with a snapshot taken after the locks were granted
/// (migration 0020), once for the batch; the statement's own snapshot predates the locks.
fn build_write(parts: WriteParts, form: Form) -> String {
    let task_limited = crate::ops::tasks::TASK_LIMITED;
    let one = form.checks();
    let single = form == Form::Single;
    // The condition every write of the statement is under.
    let (where_ok, and_ok) = if one {
        (
            " WHERE (SELECT ok FROM verdict)",
            " AND (SELECT ok FROM verdict)",
        )
    } else {
        ("", "")
    };
    let mut ctes: Vec<String> = Vec::new();
    if single {
        let check = ONE_STATEMENT_CHECK;
        let (id, task) = (first(1, "text"), first(45, "bigint"));
        let v = first_elements(&CHECKED_COLUMNS);
        ctes.push(format!(
            "locked AS MATERIALIZED (
             SELECT {LOCKED_COLUMNS} FROM instances i WHERE i.id = {id} FOR UPDATE
         ), direct_locked AS MATERIALIZED (
             SELECT t.id, t.instance_id, t.execution, t.op, t.lease_token, t.lease_until
               FROM tasks t
              WHERE t.id = {task} AND EXISTS (SELECT 1 FROM locked)
                FOR UPDATE
         ), verdict AS MATERIALIZED (
             SELECT {check} AS ok
               FROM (SELECT {v}) AS v
               LEFT JOIN locked l ON true
               LEFT JOIN direct_locked d ON true
         ), inboxes AS MATERIALIZED (
             SELECT * FROM instance_inboxes($1::text[]) WHERE (SELECT ok FROM verdict)
         )"
        ));
    } else if one {
        let v = unnested(&CHECKED_COLUMNS, "v");
        ctes.push(format!(
            "locked AS MATERIALIZED (
             SELECT {LOCKED_COLUMNS} FROM instances i
              WHERE i.id = ANY($1::text[]) ORDER BY i.id FOR UPDATE
         ), direct_locked AS MATERIALIZED (
             SELECT t.id, t.instance_id, t.execution, t.op, t.lease_token, t.lease_until
               FROM tasks t
              WHERE t.id = ANY($45::bigint[]) AND (SELECT count(*) FROM locked) >= 0
              ORDER BY t.id FOR UPDATE
         ), verdict AS MATERIALIZED (
             SELECT count(l.id) = cardinality($1::text[])
                    AND coalesce(bool_and({ONE_STATEMENT_CHECK}), false) AS ok
               FROM {v}
               LEFT JOIN locked l ON l.id = v.id
               LEFT JOIN direct_locked d ON d.id = v.task
              WHERE (SELECT count(*) FROM direct_locked) >= 0
         ), inboxes AS MATERIALIZED (
             SELECT * FROM instance_inboxes($1::text[]) WHERE (SELECT ok FROM verdict)
         )"
        ));
    }
    ctes.push(if single {
        format!(
            "c AS (SELECT {}{where_ok})",
            first_elements(&COMMIT_COLUMNS)
        )
    } else {
        format!(
            "c AS (SELECT * FROM {}{where_ok})",
            unnested(&COMMIT_COLUMNS, "c")
        )
    });
    if parts.events && single {
        // A commit's events are one journal row; `$14` is the journal format.
        let row = format!(
            "{}, {}, {}, $14, {}, {}",
            first(10, "text"),
            first(11, "int"),
            first(12, "int"),
            first(13, "bytea"),
            first(41, "int")
        );
        ctes.push(format!(
            "events_added AS (
             INSERT INTO events (instance_id, execution, position, format, encoded, span)
             SELECT {row}{where_ok}
         )"
        ));
    } else if parts.events {
        ctes.push(format!(
            "events_added AS (
             INSERT INTO events (instance_id, execution, position, format, encoded, span)
             SELECT e.instance_id, e.execution, e.position, $14, e.encoded, e.span
               FROM unnest($10::text[], $11::int[], $12::int[], $13::bytea[], $41::int[])
                    AS e(instance_id, execution, position, encoded, span){where_ok}
         )"
        ));
    }
    if parts.consumed && single {
        // Every message a lone commit consumes is its own instance's.
        ctes.push(format!(
            "consumed AS (
             DELETE FROM messages m
              WHERE m.id = ANY($16::bigint[]) AND m.instance_id = {id}{and_ok}
             RETURNING m.id
         )",
            id = first(1, "text")
        ));
    } else if parts.consumed {
        ctes.push(format!(
            "consumed AS (
             DELETE FROM messages m
              USING unnest($15::text[], $16::bigint[]) AS x(instance_id, id)
              WHERE m.id = x.id AND m.instance_id = x.instance_id{and_ok}
             RETURNING m.id
         )"
        ));
    }
    if parts.finished {
        ctes.push(
            "inbox_dropped AS (
             DELETE FROM messages m USING c WHERE c.finished AND m.instance_id = c.id
         )"
            .to_owned(),
        );
    }
    // The tasks whose deletion may free a slot of a queue with a task limit.
    let mut gone: Vec<&str> = Vec::new();
    if parts.cancelled {
        // A direct turn's task goes as a cancelled one does (its result is in the new events):
        // the batch path names it in the arrays, a commit of one statement by the lock's row.
        let cancelled = if one {
            "(SELECT x.* FROM unnest($33::text[], $34::int[], $35::text[]) AS x
               WHERE (SELECT ok FROM verdict)
              UNION ALL
              SELECT d.instance_id, d.execution, d.op
                FROM direct_locked d JOIN c ON c.id = d.instance_id AND NOT c.finished)"
        } else {
            "unnest($33::text[], $34::int[], $35::text[])"
        };
        ctes.push(format!(
            "tasks_cancelled AS (
             DELETE FROM tasks t
              USING {cancelled} AS x(instance_id, execution, op)
              WHERE t.instance_id = x.instance_id AND t.execution = x.execution
                AND t.op = x.op
             RETURNING t.queue, t.lease_until
         )"
        ));
        gone.push("SELECT * FROM tasks_cancelled");
    }
    if parts.finished {
        ctes.push(
            "tasks_dropped AS (
             DELETE FROM tasks t USING c WHERE c.finished AND t.instance_id = c.id
             RETURNING t.queue, t.lease_until
         )"
            .to_owned(),
        );
        gone.push("SELECT * FROM tasks_dropped");
    }
    ctes.push(if gone.is_empty() {
        "slots_freed AS (SELECT false AS freed)".to_owned()
    } else {
        format!(
            "slots_freed AS (
             SELECT EXISTS (
                 SELECT 1 FROM ({gone}) d
                   JOIN queue_configs qc ON qc.name = d.queue
                  WHERE d.lease_until IS NOT NULL AND {task_limited}) AS freed
         )",
            gone = gone.join(" UNION ALL ")
        )
    });
    if parts.tasks {
        ctes.push(format!(
            "new_tasks AS MATERIALIZED (
             SELECT nextval('tasks_id_seq') AS id,
                    CASE WHEN v.until IS NULL THEN 0 ELSE nextval('lease_tokens') END AS token,
                    v.*
               FROM (
                 -- A claim takes a commit's first tasks in order and stops at one of a queue
                 -- with a task limit: that one and those after it are left to a fetch.
                 SELECT u.instance_id, u.execution, u.op, u.name, u.input, u.options,
                        u.scheduled_at, u.queue,
                        CASE WHEN bool_or(l.limited) OVER (PARTITION BY u.instance_id
                                                           ORDER BY u.ord)
                             THEN NULL ELSE u.until END AS until,
                        u.ord
                   FROM unnest($17::text[], $18::int[], $19::text[], $20::text[], $21::text[],
                               $22::text[], $23::bigint[], $24::bigint[], $42::text[])
                        WITH ORDINALITY AS u(instance_id, execution, op, name, input, options,
                                             scheduled_at, until, queue, ord)
                  CROSS JOIN LATERAL (
                        SELECT u.until IS NOT NULL AND EXISTS (
                            SELECT 1 FROM queue_configs qc
                             WHERE qc.name = u.queue
                               AND {task_limited}) AS limited
                  ) l{where_ok}
                  ORDER BY u.ord
               ) v
         ), tasks_added AS (
             INSERT INTO tasks (id, instance_id, execution, op, name, input, options,
                                scheduled_at, visible_at, attempt, lease_token, lease_until,
                                queue, lease_owner)
             SELECT id, instance_id, execution, op, name, input, options, scheduled_at,
                    coalesce(until, scheduled_at), CASE WHEN until IS NULL THEN 0 ELSE 1 END,
                    token, until, queue,
                    CASE WHEN until IS NULL THEN NULL ELSE $40::integer END
               FROM new_tasks
         )"
        ));
    }
    if parts.sent {
        ctes.push(format!(
            "sent AS (
             INSERT INTO messages (instance_id, visible_at, kind)
             SELECT m.instance_id, m.visible_at, m.kind
               FROM unnest($25::text[], $26::bigint[], $27::text[])
                    WITH ORDINALITY AS m(instance_id, visible_at, kind, ord){where_ok}
              ORDER BY m.ord
             RETURNING id, instance_id, visible_at
         ), woken AS (
             UPDATE instances i
                SET due_at = CASE WHEN i.lease_until IS NOT NULL THEN i.lease_until
                                  ELSE greatest(s.visible_at, i.not_before) END,
                    due_seq = coalesce(i.due_seq, s.first)
               FROM (SELECT instance_id, min(visible_at) AS visible_at, min(id) AS first
                       FROM sent WHERE instance_id <> ALL($1::text[])
                      GROUP BY instance_id) s
              WHERE i.id = s.instance_id AND i.status IN {OPEN}
                AND (i.due_at IS NULL OR i.due_at > greatest(s.visible_at, i.not_before))
             RETURNING i.id
         )"
        ));
    }
    let not_consumed = if parts.consumed {
        "AND m.id NOT IN (SELECT id FROM consumed)"
    } else {
        ""
    };
    let sent_inbox = if parts.sent {
        "UNION ALL
                            SELECT s.visible_at, s.id FROM sent s WHERE s.instance_id = c.id"
    } else {
        ""
    };
    // A commit of one statement reads the inbox with a snapshot taken after its locks.
    let inbox = if one {
        "inboxes m WHERE m.instance_id = c.id AND NOT c.finished"
    } else {
        "messages m WHERE m.instance_id = c.id AND NOT c.finished"
    };
    // A commit of one statement returns the new state of the instances asked for (`$47`).
    let returned = if one {
        INSTANCE_COLUMNS
            .split(',')
            .map(str::trim)
            .filter(|column| *column != "id")
            .map(|column| format!(", i.{column}"))
            .collect::<String>()
    } else {
        String::new()
    };
    ctes.push(format!(
        "committed AS (
             UPDATE instances i
                SET status = c.status, output = c.output, failure = c.failure,
                    updated_at = c.now, execution = c.execution,
                    input = coalesce(c.input, i.input), lease_until = c.keep_until,
                    lease_token = CASE WHEN c.keep_until IS NULL THEN i.lease_token
                                       ELSE c.token END,
                    lease_owner = CASE WHEN c.keep_until IS NULL THEN i.lease_owner
                                       ELSE $40::integer END,
                    commit_token = CASE WHEN c.keep_until IS NULL THEN c.token
                                        ELSE nextval('lease_tokens') END,
                    not_before = CASE WHEN c.finished THEN 0
                                      ELSE coalesce(c.not_before, i.not_before) END,
                    attempt = coalesce(c.attempt, i.attempt),
                    version = CASE WHEN c.starts THEN c.version ELSE i.version END,
                    due_at = CASE WHEN c.keep_until IS NOT NULL THEN c.keep_until
                                  WHEN c.finished OR inbox.visible_at IS NULL THEN NULL
                                  ELSE greatest(inbox.visible_at,
                                                coalesce(c.not_before, i.not_before)) END,
                    due_seq = CASE WHEN c.finished THEN NULL ELSE inbox.first END
               FROM c CROSS JOIN LATERAL (
                        SELECT min(u.visible_at) AS visible_at, min(u.id) AS first FROM (
                            SELECT m.visible_at, m.id FROM {inbox}
                               {not_consumed}
                            {sent_inbox}
                        ) u
                    ) inbox
              WHERE i.id = c.id
             RETURNING i.id, i.due_at, i.lease_until{returned}
         )"
    ));
    let woken = if parts.sent {
        "EXISTS (SELECT 1 FROM woken) OR "
    } else {
        ""
    };
    // A message sent to another instance wakes this process's dispatcher whether or not it
    // moved that instance's due time: one already due may have been passed over by a fetch
    // while this commit held its row (fetches skip locked rows), and no other write would wake
    // it. Announcing it to every process as well cost throughput (see `tasks::complete_batch`).
    let sent_elsewhere = if parts.sent {
        " OR EXISTS (SELECT 1 FROM sent s WHERE s.instance_id <> ALL($1::text[]))"
    } else {
        ""
    };
    ctes.push(format!(
        "due AS (
             SELECT {woken}EXISTS (SELECT 1 FROM committed
                                WHERE due_at IS NOT NULL AND lease_until IS NULL) AS turns
         )"
    ));
    let new_unleased = if parts.tasks {
        " OR EXISTS (SELECT 1 FROM new_tasks WHERE until IS NULL)"
    } else {
        ""
    };
    ctes.push(format!(
        "wake_tasks AS (
             SELECT ($29 OR (SELECT freed FROM slots_freed){new_unleased}){and_ok} AS tasks
         ), announced AS (
             SELECT pg_notify($28, w.payload)
               FROM (VALUES ('{turns}', (SELECT turns FROM due) OR $31),
                            ('{tasks}', (SELECT tasks FROM wake_tasks))) AS w(payload, wanted)
              WHERE w.wanted{and_ok}
             UNION ALL
             SELECT pg_notify($28, changed) FROM unnest($30::text[]) AS changed{where_ok}
         )",
        turns = listen::TURNS,
        tasks = listen::TASKS,
    ));
    let new_tasks = if parts.tasks {
        "(SELECT array_agg(id ORDER BY ord) FROM new_tasks) AS task_ids,
                (SELECT array_agg(token ORDER BY ord) FROM new_tasks) AS task_tokens,
                (SELECT array_agg(until ORDER BY ord) FROM new_tasks) AS task_until,"
    } else {
        "NULL::bigint[] AS task_ids, NULL::bigint[] AS task_tokens,
                NULL::bigint[] AS task_until,"
    };
    // A commit of one statement says whether it wrote, and returns a row for each instance
    // asked for (with the summary on each; one row without an instance when none is). It
    // commits by itself, so the batch path's check that every instance row was updated is
    // made here, where failing it rolls the statement back (`commit_failed`, migration 0020).
    let (ok, returned_rows) = if one {
        (
            ",\n                (SELECT ok FROM verdict) AS ok,
                CASE WHEN (SELECT ok FROM verdict)
                          AND (SELECT count(*) FROM committed) <> cardinality($1::text[])
                     THEN commit_failed(format(
                         'a commit of one statement updated %s of its %s instances',
                         (SELECT count(*) FROM committed), cardinality($1::text[])))
                     ELSE true END AS whole",
            format!(
                ", h.*
           FROM (SELECT 1) AS one
           LEFT JOIN (SELECT {INSTANCE_COLUMNS} FROM committed
                       WHERE id = ANY($47::text[])) AS h ON true"
            ),
        )
    } else {
        ("", String::new())
    };
    format!(
        "WITH {ctes}
         SELECT {new_tasks}
                (SELECT tasks FROM wake_tasks) AS wake_tasks,
                (SELECT count(*) FROM committed) AS committed,
                (SELECT turns FROM due){sent_elsewhere} AS wake_turns,
                (SELECT count(*) FROM announced) AS announced{ok}{returned_rows}",
        ctes = ctes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::{write_sql, WriteParts};

    /// Each combination of parts picks the statement built for it: the statement has the part's
    /// CTE exactly when the part is asked for.
    #[test]
    fn each_combination_picks_its_own_statement() {
        let mut seen = 0;
        for parts in WriteParts::every() {
            seen += 1;
            assert_eq!(WriteParts::of_index(parts.index()), parts);
            let sql = write_sql(parts);
            for (on, cte) in [
                (parts.events, "events_added AS"),
                (parts.consumed, "consumed AS"),
                (parts.finished, "tasks_dropped AS"),
                (parts.cancelled, "tasks_cancelled AS"),
                (parts.tasks, "new_tasks AS"),
                (parts.sent, "sent AS"),
            ] {
                assert_eq!(sql.contains(cte), on, "{parts:?}: {cte}");
            }
            assert!(sql.contains("committed AS"), "{parts:?}");
        }
        assert_eq!(seen, 64);
        assert_eq!(
            write_sql(WriteParts::default()),
            write_sql(WriteParts::every().next().unwrap())
        );
    }
}
