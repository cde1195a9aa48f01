//! The plans of the store's statements: every hot-path and management statement, planned as
//! the store's sessions plan it, over a populated schema, must read the work tables through
//! index conditions, and through the indexes named for it (listings may walk an index in
//! order; the management counts, which read whole tables, may scan them).
//!
//! The statements are the ones the operations run (their named constants, and the builders of
//! those made per call), not copies. Each is prepared and explained with `EXPLAIN EXECUTE`:
//! the sessions plan generically (`plan_cache_mode = force_generic_plan`, see
//! `crate::connect::connect_options`), so the plan does not depend on the parameters' values,
//! and NULLs stand for them.

use duraflow_core::Timestamp;
use duraflow_store::{InstanceStatus, ListFilter};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::ops::{
    admin, callbacks, commit, feed, fetch, flow, instances, queue_events, registry, sends, tasks,
    turns,
};
use crate::owners;

/// How a statement may read the work tables (instances, events, messages, tasks, callbacks,
/// queue events and their waiters, the feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Every scan of a work table seeks an index (has an index condition): the hot path. Its
    /// sorts are printed, not checked: each sorts a bounded set (the statement's own batch, a
    /// `LIMIT`ed candidate list); a plan that sorted a table's rows instead of reading them in
    /// index order would have moved off the indexes named for it, which fails.
    Seek,
    /// A listing: it may walk an index in its order without a condition, stopping at its
    /// `LIMIT`, but sorts nothing.
    InOrder,
    /// A management count, which reads a table whole (or a large part of it): the one kind of
    /// statement that may scan a work table sequentially, or read an index whole. These run
    /// with sequential scans allowed (`admin::WHOLE_TABLES`), and are explained so.
    Whole,
}

/// The rows each scan of `relation` in `plan` (the output of `EXPLAIN (ANALYZE, FORMAT JSON)`)
/// read, in all its loops, with the scan's kind and index: for tests that bound what a
/// statement reads, which a plan's shape alone does not tell. A bitmap index scan names no
/// relation, only its index: it counts when the index is named after `relation` (as every
/// index of the store's tables is, `<table>_...`), so that the entries it read before a
/// `BitmapAnd` threw most of them away are counted too.
pub(crate) fn rows_read(plan: &Value, relation: &str) -> Vec<(f64, String)> {
    fn reads(node: &Value, relation: &str) -> bool {
        node.get("Relation Name").and_then(Value::as_str) == Some(relation)
            || (node["Node Type"].as_str() == Some("Bitmap Index Scan")
                && node
                    .get("Index Name")
                    .and_then(Value::as_str)
                    .and_then(|index| index.strip_prefix(relation))
                    .is_some_and(|rest| rest.starts_with('_')))
    }
    fn walk(node: &Value, relation: &str, found: &mut Vec<(f64, String)>) {
        if reads(node, relation) {
            let rows = node["Actual Rows"].as_f64().unwrap_or(0.0)
                * node["Actual Loops"].as_f64().unwrap_or(1.0);
            let how = format!(
                "{} {}",
                node["Node Type"].as_str().unwrap_or("?"),
                node.get("Index Name").and_then(Value::as_str).unwrap_or("")
            );
            found.push((rows, how));
        }
        for child in node
            .get("Plans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            walk(child, relation, found);
        }
    }
    let mut found = Vec::new();
    walk(&plan[0]["Plan"], relation, &mut found);
    found
}

/// A statement to plan: its name, its text, how it may read, and the types of its parameters
/// when PostgreSQL cannot tell them from the text.
struct Statement {
    name: String,
    sql: String,
    reads: Reads,
    types: Option<&'static str>,
}

/// The types of the parameters of `commit::write_sql`, as `commit_batch` binds them.
const WRITE_TYPES: &str = "text[], text[], text[], text[], bigint[], int[], text[], bigint[], \
    bool[], text[], int[], int[], text[], int, text[], bigint[], text[], int[], text[], text[], \
    text[], text[], bigint[], bigint[], text[], bigint[], text[], text, bool, text[], bool, \
    bigint[], text[], int[], text[], int[], bigint[], bool[], text[], int, int[], text[]";

/// The types of the parameters of `commit::one_statement_sql`: those of [`WRITE_TYPES`], then
/// each commit's execution and journal base, its direct turn's task and task token, and the
/// instances whose new state it returns.
const ONE_STATEMENT_TYPES: &str = "text[], text[], text[], text[], bigint[], int[], text[], \
    bigint[], bool[], text[], int[], int[], text[], int, text[], bigint[], text[], int[], text[], \
    text[], text[], text[], bigint[], bigint[], text[], bigint[], text[], text, bool, text[], \
    bool, bigint[], text[], int[], text[], int[], bigint[], bool[], text[], int, int[], text[], \
    int[], bigint[], bigint[], bigint[], text[]";

fn statement(name: &str, sql: &str, reads: Reads) -> Statement {
    Statement {
        name: name.to_owned(),
        sql: sql.to_owned(),
        reads,
        types: None,
    }
}

/// The tables that hold one row per queue configuration, store process, registered name or
/// feed subscriber (or a single row): a few rows at most, which any plan may read whole.
const SMALL_TABLES: [&str; 5] = [
    // One row per queue that has a configuration.
    "queue_configs",
    // One row per live store (process).
    "owners",
    // A single row, the feed's head.
    "feed_head",
    // One row per workflow or activity name and queue that engines serve.
    "registrations",
    // One row per feed subscriber.
    "feed_cursors",
];

/// The indexes of work tables each statement's plan reads (it may read others too): the plans
/// as they are, checked so that a plan that moves off one of them (to a sequential scan, or to
/// a less selective index, which an index condition alone would not reveal) fails and is
/// looked at. A statement with none reads no work table, only [`SMALL_TABLES`], or (a count)
/// whole tables.
const INDEXES: &[(&str, &[&str])] = &[
    (
        "fetch::FETCH",
        &[
            "events_pkey",
            "instances_admitted_due",
            "instances_keyed_pending",
            "instances_pending_due",
            "instances_pkey",
            "messages_by_instance",
        ],
    ),
    ("fetch::REREAD", &["events_pkey", "messages_by_instance"]),
    ("flow::CONFIGURE", &[]),
    ("flow::CONFIG", &[]),
    ("flow::CONFIGS", &[]),
    ("flow::QUEUE_LOCK", &[]),
    ("flow::CANDIDATES", &["instances_pending_due"]),
    ("flow::COUNTS", &["instances_running", "instances_started"]),
    ("flow::KEY_COUNTS", &["instances_running"]),
    (
        "flow::LEASE_ADMITTED",
        &["events_pkey", "instances_pkey", "messages_by_instance"],
    ),
    ("turns::READ_JOURNAL", &["events_pkey"]),
    ("turns::READ_JOURNALS", &["events_pkey"]),
    ("turns::ABANDON_LOCK", &["instances_pkey"]),
    (
        "turns::ABANDON",
        &["instances_pkey", "messages_by_instance"],
    ),
    ("turns::RENEW", &["instances_pkey"]),
    ("runs::MERGE", &["events_pkey"]),
    ("commit::lock_sql", &["events_pkey", "instances_pkey"]),
    (
        "commit::lock_sql (queue events)",
        &["events_pkey", "instances_pkey"],
    ),
    ("commit::LOCK_INSTANCES", &["events_pkey", "instances_pkey"]),
    ("commit::LOCK_DIRECT", &["tasks_pkey"]),
    (
        "commit::WRITE",
        &[
            "instances_pkey",
            "messages_by_instance",
            "messages_pkey",
            "tasks_by_instance",
        ],
    ),
    (
        "commit::WRITE (a direct turn's parts)",
        &[
            "instances_pkey",
            "messages_by_instance",
            "tasks_by_instance",
        ],
    ),
    (
        "commit::one_statement_sql",
        &[
            "instances_pkey",
            "tasks_pkey",
            "messages_pkey",
            "tasks_by_instance",
        ],
    ),
    (
        "commit::one_statement_sql (a direct turn's parts)",
        &["instances_pkey", "tasks_pkey", "tasks_by_instance"],
    ),
    (
        "commit::one_statement_sql (one commit)",
        &[
            "instances_pkey",
            "tasks_pkey",
            "messages_by_instance",
            "tasks_by_instance",
        ],
    ),
    (
        "commit::one_statement_sql (one commit, a direct turn's parts)",
        &["instances_pkey", "tasks_pkey", "tasks_by_instance"],
    ),
    ("callbacks::TAKEN_TOKENS", &["callbacks_pkey"]),
    ("callbacks::APPLY", &["callbacks_by_instance"]),
    ("callbacks::RESOLVE_FIND", &["callbacks_pkey"]),
    ("callbacks::RESOLVE_INSTANCE", &["instances_pkey"]),
    ("callbacks::RESOLVE_CALLBACK", &["callbacks_by_instance"]),
    ("callbacks::RESOLVE_CLOSE", &["callbacks_pkey"]),
    ("queue_events::LOCK", &[]),
    ("queue_events::GET", &["queue_events_pkey"]),
    ("queue_events::EMIT", &[]),
    ("queue_events::TAKE_WAITERS", &["queue_event_waiters_pkey"]),
    (
        "queue_events::DROP_WAITERS",
        &["queue_event_waiters_by_instance"],
    ),
    ("queue_events::REGISTER", &["queue_events_pkey"]),
    ("queue_events::CANCEL", &["queue_event_waiters_by_instance"]),
    ("queue_events::DELIVER", &["instances_pkey"]),
    ("feed::APPEND", &["instances_pkey"]),
    ("feed::READ", &["feed_pkey"]),
    ("feed::CURSOR", &[]),
    ("feed::SAVE_CURSOR", &[]),
    ("instances::GET", &["instances_pkey"]),
    ("instances::GET_MANY", &["instances_pkey"]),
    ("instances::STATUS_OF", &["instances_pkey"]),
    ("instances::JOURNAL_END", &["events_pkey"]),
    ("instances::CREATE_BATCH", &["instances_pkey"]),
    ("instances::CREATE_CLAIMING", &["instances_pkey"]),
    ("instances::SEND", &["instances_pkey"]),
    (
        "sends::SEND_CLAIMING",
        &["events_pkey", "instances_pkey", "messages_by_instance"],
    ),
    ("instances::INSERT_CHILDREN", &[]),
    ("tasks::FETCH", &["tasks_pkey", "tasks_queue_due"]),
    ("tasks::QUEUE_LOCK", &[]),
    (
        "tasks::FETCH_LIMITED",
        &["tasks_by_visibility", "tasks_pkey", "tasks_queue_due"],
    ),
    ("tasks::LOCK_TASKS", &["instances_pkey", "tasks_pkey"]),
    (
        "tasks::COMPLETE",
        &[
            "events_pkey",
            "instances_pkey",
            "messages_by_instance",
            "tasks_pkey",
        ],
    ),
    ("tasks::STILL_THERE", &["tasks_pkey"]),
    ("tasks::RENEW", &["tasks_pkey"]),
    ("tasks::EXISTS", &["tasks_pkey"]),
    ("tasks::RELEASE", &["tasks_pkey"]),
    ("admin::NEXT_DUE", &["instances_due", "tasks_by_visibility"]),
    ("owners::CLAIM", &[]),
    ("owners::GONE", &[]),
    ("owners::UNLOCK", &[]),
    (
        "owners::RELEASE_TURNS",
        &["instances_due", "instances_pkey"],
    ),
    (
        "owners::RELEASE_TASKS",
        &["tasks_by_visibility", "tasks_pkey"],
    ),
    ("owners::RELEASE_OWNER", &[]),
    ("registry::ANNOUNCE", &[]),
    ("registry::LIST", &[]),
    ("admin::DEPTHS_INSTANCES", &[]),
    ("admin::DEPTHS_TASKS", &[]),
    ("admin::STATS_INSTANCES", &[]),
    ("admin::STATS_MESSAGES", &[]),
    ("admin::STATS_TASKS", &[]),
    ("admin::STATS_CALLBACKS", &[]),
    ("admin::PURGE[0]", &["events_pkey"]),
    ("admin::PURGE[1]", &["messages_by_instance"]),
    ("admin::PURGE[2]", &["tasks_by_instance"]),
    ("admin::PURGE[3]", &["callbacks_by_instance"]),
    ("admin::PURGE[4]", &["queue_event_waiters_by_instance"]),
    ("admin::PURGE[5]", &["instances_pkey"]),
    ("admin::list_sql (all)", &["instances_pkey"]),
    ("admin::list_sql (purge_finished)", &["instances_pkey"]),
    ("admin::list_sql (queue, after)", &["instances_pkey"]),
    ("admin::list_sql (finished before)", &["instances_finished"]),
    ("admin::list_sql (created range)", &["instances_by_created"]),
];

/// Every statement of the hot path and of management.
fn statements() -> Vec<Statement> {
    use Reads::{InOrder, Seek, Whole};
    let mut all = vec![
        // Turns.
        statement("fetch::FETCH", &fetch::FETCH, Seek),
        statement("fetch::REREAD", &fetch::REREAD, Seek),
        statement("flow::CONFIGURE", &flow::CONFIGURE, Seek),
        statement("flow::CONFIG", flow::CONFIG, Seek),
        statement("flow::CONFIGS", flow::CONFIGS, Seek),
        statement("flow::QUEUE_LOCK", flow::QUEUE_LOCK, Seek),
        statement("flow::CANDIDATES", flow::CANDIDATES, Seek),
        statement("flow::COUNTS", flow::COUNTS, Seek),
        statement("flow::KEY_COUNTS", flow::KEY_COUNTS, Seek),
        statement("flow::LEASE_ADMITTED", &flow::LEASE_ADMITTED, Seek),
        statement("turns::READ_JOURNAL", turns::READ_JOURNAL, Seek),
        statement("turns::READ_JOURNALS", turns::READ_JOURNALS, Seek),
        statement("turns::ABANDON_LOCK", turns::ABANDON_LOCK, Seek),
        statement("turns::ABANDON", &turns::ABANDON, Seek),
        statement("turns::RENEW", turns::RENEW, Seek),
        statement("runs::MERGE", commit::runs::MERGE, Seek),
        statement(
            "commit::lock_sql",
            &commit::lock_sql(vec!["i-000010", "i-000020", "i-000030"], &[]),
            Seek,
        ),
        statement(
            "commit::lock_sql (queue events)",
            &commit::lock_sql(vec!["i-000010", "i-000020"], &[7, 11]),
            Seek,
        ),
        statement("commit::LOCK_INSTANCES", &commit::LOCK_INSTANCES, Seek),
        statement("commit::LOCK_DIRECT", commit::LOCK_DIRECT, Seek),
        statement(
            "commit::WRITE",
            commit::write_sql(commit::WriteParts::ALL),
            Seek,
        ),
        Statement {
            // The parts left out leave their parameters unused; they are bound all the same.
            types: Some(WRITE_TYPES),
            ..statement(
                "commit::WRITE (a direct turn's parts)",
                commit::write_sql(commit::WriteParts {
                    events: true,
                    cancelled: true,
                    tasks: true,
                    ..commit::WriteParts::default()
                }),
                Seek,
            )
        },
        statement("callbacks::TAKEN_TOKENS", callbacks::TAKEN_TOKENS, Seek),
        statement("callbacks::APPLY", callbacks::APPLY, Seek),
        statement("callbacks::RESOLVE_FIND", callbacks::RESOLVE_FIND, Seek),
        statement(
            "callbacks::RESOLVE_INSTANCE",
            callbacks::RESOLVE_INSTANCE,
            Seek,
        ),
        statement(
            "callbacks::RESOLVE_CALLBACK",
            callbacks::RESOLVE_CALLBACK,
            Seek,
        ),
        statement("callbacks::RESOLVE_CLOSE", callbacks::RESOLVE_CLOSE, Seek),
        statement("queue_events::LOCK", queue_events::LOCK, Seek),
        statement("queue_events::GET", queue_events::GET, Seek),
        statement("queue_events::EMIT", queue_events::EMIT, Seek),
        statement(
            "queue_events::TAKE_WAITERS",
            queue_events::TAKE_WAITERS,
            Seek,
        ),
        statement(
            "queue_events::DROP_WAITERS",
            queue_events::DROP_WAITERS,
            Seek,
        ),
        statement("queue_events::REGISTER", queue_events::REGISTER, Seek),
        statement("queue_events::CANCEL", queue_events::CANCEL, Seek),
        statement("queue_events::DELIVER", &queue_events::DELIVER, Seek),
        statement("feed::APPEND", feed::APPEND, Seek),
        statement("feed::READ", feed::READ, InOrder),
        statement("feed::CURSOR", feed::CURSOR, Seek),
        statement("feed::SAVE_CURSOR", feed::SAVE_CURSOR, Seek),
        // Instances and messages.
        statement("instances::GET", &instances::GET, Seek),
        statement("instances::GET_MANY", &instances::GET_MANY, Seek),
        statement("instances::STATUS_OF", instances::STATUS_OF, Seek),
        statement("instances::JOURNAL_END", instances::JOURNAL_END, Seek),
        statement("instances::CREATE_BATCH", &instances::CREATE_BATCH, Seek),
        statement(
            "instances::CREATE_CLAIMING",
            &instances::CREATE_CLAIMING,
            Seek,
        ),
        statement("instances::SEND", &instances::SEND, Seek),
        statement("sends::SEND_CLAIMING", &sends::SEND_CLAIMING, Seek),
        statement(
            "instances::INSERT_CHILDREN",
            instances::INSERT_CHILDREN,
            Seek,
        ),
        // Tasks.
        statement("tasks::FETCH", &tasks::FETCH, Seek),
        statement("tasks::QUEUE_LOCK", tasks::QUEUE_LOCK, Seek),
        statement("tasks::FETCH_LIMITED", &tasks::FETCH_LIMITED, Seek),
        statement("tasks::LOCK_TASKS", tasks::LOCK_TASKS, Seek),
        statement("tasks::COMPLETE", &tasks::COMPLETE, Seek),
        statement("tasks::STILL_THERE", tasks::STILL_THERE, Seek),
        statement("tasks::RENEW", tasks::RENEW, Seek),
        statement("tasks::EXISTS", tasks::EXISTS, Seek),
        statement("tasks::RELEASE", &tasks::RELEASE, Seek),
        // Timers.
        statement("admin::NEXT_DUE", admin::NEXT_DUE, Seek),
        // Lease owners.
        statement("owners::CLAIM", &owners::CLAIM, Seek),
        statement("owners::GONE", &owners::GONE, Seek),
        statement("owners::UNLOCK", &owners::UNLOCK, Seek),
        statement("owners::RELEASE_TURNS", owners::RELEASE_TURNS, Seek),
        statement("owners::RELEASE_TASKS", owners::RELEASE_TASKS, Seek),
        statement("owners::RELEASE_OWNER", &owners::RELEASE_OWNER, Seek),
        // Registry.
        statement("registry::ANNOUNCE", registry::ANNOUNCE, Seek),
        statement("registry::LIST", registry::LIST, Seek),
        // Management.
        statement("admin::DEPTHS_INSTANCES", admin::DEPTHS_INSTANCES, Whole),
        statement("admin::DEPTHS_TASKS", admin::DEPTHS_TASKS, Whole),
        statement("admin::STATS_INSTANCES", admin::STATS_INSTANCES, Whole),
        statement("admin::STATS_MESSAGES", admin::STATS_MESSAGES, Whole),
        statement("admin::STATS_TASKS", admin::STATS_TASKS, Whole),
        statement("admin::STATS_CALLBACKS", admin::STATS_CALLBACKS, Whole),
    ];
    for (i, sql) in admin::PURGE.iter().enumerate() {
        all.push(statement(&format!("admin::PURGE[{i}]"), sql, Seek));
    }
    // A commit of one statement, of a batch and of a lone commit, with every part and with a
    // direct turn's.
    let direct = commit::WriteParts {
        events: true,
        cancelled: true,
        tasks: true,
        ..commit::WriteParts::default()
    };
    for (single, lone) in [(false, ""), (true, "one commit")] {
        for (parts, which) in [
            (commit::WriteParts::ALL, ""),
            (direct, "a direct turn's parts"),
        ] {
            let label = [lone, which]
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let name = if label.is_empty() {
                "commit::one_statement_sql".to_owned()
            } else {
                format!("commit::one_statement_sql ({label})")
            };
            all.push(Statement {
                types: Some(ONE_STATEMENT_TYPES),
                ..statement(&name, commit::one_statement_sql(parts, single), Seek)
            });
        }
    }
    // The listings a journal read, an instance read and a purge make (every combination of
    // filters is checked by `every_listing_is_read_in_id_order_from_an_index` too).
    let finished = ListFilter {
        statuses: InstanceStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect(),
        limit: 100,
        ..ListFilter::default()
    };
    let by_queue = ListFilter {
        queue: Some("q-1".into()),
        after: Some("i-000100".into()),
        ..ListFilter::default()
    };
    let finished_before = ListFilter {
        updated_before: Some(Timestamp(1_000_000)),
        after: Some("1000/i-000100".into()),
        ..finished.clone()
    };
    let created_range = ListFilter {
        created_from: Some(Timestamp(0)),
        created_before: Some(Timestamp(1_000_000)),
        ..ListFilter::default()
    };
    for (name, filter) in [
        ("admin::list_sql (all)", ListFilter::default()),
        ("admin::list_sql (purge_finished)", finished),
        ("admin::list_sql (queue, after)", by_queue),
        ("admin::list_sql (finished before)", finished_before),
        ("admin::list_sql (created range)", created_range),
    ] {
        all.push(Statement {
            // Every parameter is bound whether the text uses it or not.
            types: Some("text[], text, text, bigint, text, bigint, bigint, bigint, bigint, bigint"),
            ..statement(name, &admin::list_sql(&filter), InOrder)
        });
    }
    all
}

/// What the plan of a statement does that its [`Reads`] does not allow, or nothing.
#[derive(Debug, Default)]
struct Findings {
    /// Sequential scans of tables outside [`SMALL_TABLES`].
    seq_scans: Vec<String>,
    /// Index scans of work tables without an index condition (a whole index read).
    unconditioned: Vec<String>,
    /// Sort nodes, with their keys.
    sorts: Vec<String>,
    /// The indexes the plan reads, sorted and distinct.
    indexes: Vec<String>,
    /// Gather nodes: a plan run by parallel workers.
    gathers: Vec<String>,
}

fn walk(node: &Value, found: &mut Findings) {
    let kind = node["Node Type"].as_str().unwrap_or("");
    let relation = node["Relation Name"].as_str().unwrap_or("");
    let index = node["Index Name"].as_str().unwrap_or("");
    let small = SMALL_TABLES.contains(&relation);
    if !index.is_empty() && !found.indexes.iter().any(|i| i == index) {
        found.indexes.push(index.to_owned());
        found.indexes.sort();
    }
    match kind {
        "Seq Scan" if !small => found.seq_scans.push(relation.to_owned()),
        "Index Scan" | "Index Only Scan" | "Bitmap Index Scan"
            if node.get("Index Cond").is_none() =>
        {
            // A bitmap index scan names the index only; its table is the heap scan above.
            let table_small = SMALL_TABLES.iter().any(|t| index.starts_with(t));
            if !small && !table_small {
                found
                    .unconditioned
                    .push(format!("{kind} using {index} on {relation}"));
            }
        }
        "Sort" | "Incremental Sort" => found.sorts.push(node["Sort Key"].to_string()),
        "Gather" | "Gather Merge" => found.gathers.push(kind.to_owned()),
        _ => {}
    }
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            walk(child, found);
        }
    }
}

/// Prepares `sql` (with parameters of `types`, when given), explains its generic plan (NULL for
/// every parameter) and deallocates it; with sequential scans allowed for a [`Reads::Whole`]
/// statement, as the store runs it.
async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    types: Option<&str>,
    reads: Reads,
) -> Result<Value, sqlx::Error> {
    let whole = reads == Reads::Whole;
    if whole {
        sqlx::query("BEGIN").execute(&mut *conn).await?;
        sqlx::query(admin::WHOLE_TABLES).execute(&mut *conn).await?;
    }
    let plan = explain_here(conn, sql, types).await;
    if whole {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    plan
}

async fn explain_here(
    conn: &mut PgConnection,
    sql: &str,
    types: Option<&str>,
) -> Result<Value, sqlx::Error> {
    let types = types.map(|t| format!("({t})")).unwrap_or_default();
    sqlx::query(AssertSqlSafe(format!("PREPARE planned {types} AS {sql}")))
        .execute(&mut *conn)
        .await?;
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(parameter_types)::text FROM pg_prepared_statements
          WHERE name = 'planned'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let nulls: Vec<String> = types.iter().map(|t| format!("NULL::{t}")).collect();
    let execute = if nulls.is_empty() {
        "EXPLAIN (FORMAT JSON) EXECUTE planned".to_owned()
    } else {
        format!(
            "EXPLAIN (FORMAT JSON) EXECUTE planned ({})",
            nulls.join(", ")
        )
    };
    let plan: Result<Value, sqlx::Error> = sqlx::query_scalar(AssertSqlSafe(execute))
        .fetch_one(&mut *conn)
        .await;
    sqlx::query("DEALLOCATE planned")
        .execute(&mut *conn)
        .await?;
    plan
}

/// Fills the store's schema with a population in which a sequential scan of any work table
/// would cost far more than an index seek: 20,000 instances over nine queues and every status
/// (some pending and held for an admission, some leased, most finished), 60,000 journal events,
/// 12,000 messages, 10,000 tasks (some leased, some delayed), callbacks, queue events and
/// waiters, feed records; then `ANALYZE`.
async fn populate(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let script = r#"
        INSERT INTO queue_configs (name, config, limits_queue) VALUES
            ('q-1', '{"name":"q-1","concurrency":5}', true),
            ('q-2', '{"name":"q-2","task_concurrency":3}', false);
        INSERT INTO owners (id, started_at, backend_pid) VALUES (1001, 0, 1), (1002, 0, 2);
        INSERT INTO registrations (kind, queue, name, last_seen)
        SELECT k, 'q-' || (n % 8), 'wf-' || n, 1000
          FROM generate_series(1, 20) n, unnest(ARRAY['workflow', 'activity']) k;
        INSERT INTO instances (id, name, status, execution, input, created_at, updated_at,
                               lease_token, lease_until, due_at, due_seq, queue, priority,
                               concurrency_key, started_at, lease_owner)
        SELECT 'i-' || lpad(n::text, 6, '0'), 'wf-' || (n % 20), s.status, 1, '{}', n, n,
               n, CASE WHEN s.status = 'running' AND n % 3 = 0 THEN 1000000 + n END,
               CASE WHEN s.status IN ('pending', 'running') THEN 1000 + n END,
               CASE WHEN s.status IN ('pending', 'running') THEN n END,
               CASE WHEN n % 9 = 0 THEN 'default' ELSE 'q-' || (n % 8) END, n % 3,
               CASE WHEN n % 20 = 0 THEN 'key-' || (n % 7) END,
               CASE WHEN s.status <> 'pending' OR n % 2 = 0 THEN n END,
               CASE WHEN s.status = 'running' THEN 1001 + n % 2 END
          FROM generate_series(1, 20000) n
          CROSS JOIN LATERAL (SELECT CASE WHEN n % 20 < 6 THEN 'pending'
                                          WHEN n % 20 < 8 THEN 'running'
                                          WHEN n % 20 < 19 THEN 'completed'
                                          ELSE 'failed' END AS status) s;
        INSERT INTO events (instance_id, execution, position, format, data)
        SELECT 'i-' || lpad(n::text, 6, '0'), 1, p, 1, '{}'
          FROM generate_series(1, 20000) n, generate_series(0, 2) p;
        INSERT INTO messages (instance_id, visible_at, kind)
        SELECT id, due_at, '{}' FROM instances WHERE status IN ('pending', 'running');
        INSERT INTO messages (instance_id, visible_at, kind)
        SELECT id, due_at + 500, '{}' FROM instances
         WHERE status IN ('pending', 'running') AND due_seq % 2 = 0;
        INSERT INTO tasks (instance_id, execution, op, name, input, options, scheduled_at,
                           visible_at, attempt, lease_token, lease_until, queue, lease_owner)
        SELECT 'i-' || lpad((n * 2)::text, 6, '0'), 1, 'op-' || n, 'act-' || (n % 10), '{}',
               '{}', n, 1000 + n, n % 3, n,
               CASE WHEN n % 4 = 0 THEN 2000000 END, 'q-' || (n % 8),
               CASE WHEN n % 4 = 0 THEN 1001 END
          FROM generate_series(1, 10000) n;
        INSERT INTO callbacks (token, instance_id, execution, op, name, status, timeout_at,
                               created_at)
        SELECT 'tok-' || n, 'i-' || lpad((n * 5)::text, 6, '0'), 1, 'op-' || n, 'cb',
               CASE WHEN n % 3 = 0 THEN 'completed' ELSE 'open' END, NULL, n
          FROM generate_series(1, 4000) n;
        INSERT INTO queue_events (queue, name, data, emitted_at)
        SELECT 'q-' || (n % 8), 'ev-' || n, '{}', n FROM generate_series(1, 2000) n;
        INSERT INTO queue_event_waiters (queue, name, instance_id, execution, op)
        SELECT 'q-' || (n % 8), 'wait-' || n, 'i-' || lpad((n * 7)::text, 6, '0'), 1, 'op-' || n
          FROM generate_series(1, 2000) n;
        INSERT INTO feed (position, instance_id, topic, payload, at)
        SELECT n, 'i-' || lpad((n % 20000 + 1)::text, 6, '0'), 'topic-' || (n % 5), '{}', n
          FROM generate_series(1, 20000) n;
        UPDATE feed_head SET position = 20000;
        INSERT INTO feed_cursors (subscriber, position) VALUES ('s-1', 100), ('s-2', 19000);
        ANALYZE queue_configs, owners, registrations, instances, events, messages, tasks,
                callbacks, queue_events, queue_event_waiters, feed, feed_head, feed_cursors;
    "#;
    sqlx::raw_sql(script).execute(&mut *conn).await?;
    Ok(())
}

/// Plans every statement and returns what each does that it should not, one line each.
async fn check_all(conn: &mut PgConnection) -> Vec<String> {
    let mut failures = Vec::new();
    for s in statements() {
        let plan = match explain(conn, &s.sql, s.types, s.reads).await {
            Ok(plan) => plan,
            Err(e) => {
                failures.push(format!("{}: cannot be planned: {e}", s.name));
                continue;
            }
        };
        let mut found = Findings::default();
        walk(&plan[0]["Plan"], &mut found);
        let mut wrong = Vec::new();
        if s.reads != Reads::Whole && !found.seq_scans.is_empty() {
            wrong.push(format!("sequential scans of {:?}", found.seq_scans));
        }
        if s.reads == Reads::Seek && !found.unconditioned.is_empty() {
            wrong.push(format!("whole-index reads: {:?}", found.unconditioned));
        }
        match INDEXES.iter().find(|(name, _)| *name == s.name) {
            None => wrong.push("no entry in INDEXES".to_owned()),
            Some((_, wanted)) => {
                let missing: Vec<&str> = wanted
                    .iter()
                    .copied()
                    .filter(|w| !found.indexes.iter().any(|i| i == w))
                    .collect();
                if !missing.is_empty() {
                    wrong.push(format!("reads none of {missing:?}"));
                }
            }
        }
        if s.reads == Reads::InOrder && !found.sorts.is_empty() {
            wrong.push(format!("sorts: {:?}", found.sorts));
        }
        if !found.gathers.is_empty() {
            wrong.push(format!("parallel workers: {:?}", found.gathers));
        }
        println!(
            "{}: {:?}; indexes: {:?}; sequential scans: {:?}; whole-index reads: {:?}; sorts: {:?}",
            s.name, s.reads, found.indexes, found.seq_scans, found.unconditioned, found.sorts
        );
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n{}\n{}",
                s.name,
                wrong.join("; "),
                s.sql,
                serde_json::to_string_pretty(&plan).unwrap_or_default()
            ));
        }
    }
    failures
}

/// The sources whose statements [`statements`] lists, by the module path it names them with.
const SOURCES: [(&str, &str); 13] = [
    ("admin", include_str!("ops/admin.rs")),
    ("callbacks", include_str!("ops/callbacks.rs")),
    ("commit", include_str!("ops/commit/mod.rs")),
    ("feed", include_str!("ops/feed.rs")),
    ("fetch", include_str!("ops/fetch.rs")),
    ("flow", include_str!("ops/flow.rs")),
    ("instances", include_str!("ops/instances.rs")),
    ("owners", include_str!("owners.rs")),
    ("queue_events", include_str!("ops/queue_events.rs")),
    ("registry", include_str!("ops/registry.rs")),
    ("runs", include_str!("ops/commit/runs.rs")),
    ("tasks", include_str!("ops/tasks.rs")),
    ("turns", include_str!("ops/turns.rs")),
];

/// The named constants of those sources that are not statements: fragments of statements, a
/// setting, an interval, the preparation of listed statements and a name they are prepared under.
const NOT_STATEMENTS: [&str; 11] = [
    "admin::WHOLE_TABLES",
    "instances::GET_MANY_PREPARED",
    "commit::PREPARE_LOCK_INSTANCES",
    "commit::LOCK_DIRECT_PREPARED",
    "tasks::LOCK_TASKS_PREPARED",
    "flow::ADMISSIONS_WAITING",
    "flow::ADMISSION_FREE",
    "tasks::TASK_LIMITED",
    "turns::TURN_EXTRA_COLUMNS",
    "owners::SWEEP_EVERY",
    "runs::RUN_EVENTS",
];

/// What escapes [`statements`]: a `pub(crate)` constant of the sources that it does not list,
/// or a call that runs SQL written in place (outside tests) rather than a named statement.
fn unlisted() -> Vec<String> {
    let listed: Vec<String> = statements().into_iter().map(|s| s.name).collect();
    let mut out = Vec::new();
    for (module, source) in SOURCES {
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for line in code.lines() {
            let item = ["pub(crate) const ", "pub(crate) static "]
                .iter()
                .find_map(|p| line.strip_prefix(p));
            if let Some(item) = item {
                let name: String = item.chars().take_while(|c| *c != ':').collect();
                let full = format!("{module}::{name}");
                let known = listed.iter().any(|l| *l == full || l.starts_with(&full))
                    || NOT_STATEMENTS.contains(&full.as_str());
                if !known {
                    out.push(format!("{full} is not listed in plans::statements"));
                }
            }
        }
        for (i, _) in code.match_indices("sqlx::query") {
            let call = &code[i..];
            let arg = call[call.find('(').unwrap_or(0) + 1..].trim_start();
            let in_place = arg.starts_with('"') || arg.starts_with("AssertSqlSafe(format!");
            // Settings of the transaction, which are not planned.
            if in_place && !arg.starts_with("\"SET LOCAL ") {
                let line = code[..i].lines().count();
                out.push(format!("{module}, line {line}: SQL written in place"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::{check_all, explain_here, populate, unlisted, ONE_STATEMENT_TYPES, WRITE_TYPES};
    use crate::ops::commit::{one_statement_sql, write_sql, WriteParts};

    /// Every statement of the sources is listed for the plan test, and none is written in
    /// place: a new statement is a named constant that the test plans, or this fails.
    #[test]
    fn every_statement_is_listed() {
        let unlisted = unlisted();
        assert!(unlisted.is_empty(), "{}", unlisted.join("\n"));
    }

    /// Every hot-path and management statement, planned as the store's sessions plan it over
    /// a populated schema, reads the work tables through index conditions (or as its
    /// [`super::Reads`] allows): an operation whose statement stops being served by an index
    /// (a dropped index, a rewritten condition that no index matches, a collation that differs
    /// from an index's) fails here rather than slowing down as the tables grow.
    #[tokio::test]
    async fn every_statement_is_served_by_an_index() {
        let store = crate::testing::test_store("plans").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        populate(&mut conn).await.unwrap();
        let failures = check_all(&mut conn).await;
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }

    /// The commit's write statement is built from the parts a batch has rows for: each of
    /// its 64 combinations, in each form (a step of the batch path, a commit of one
    /// statement, one of a lone commit), is one PostgreSQL accepts (the conformance suite runs the combinations its
    /// cases make; this covers the rest).
    #[tokio::test]
    async fn every_combination_of_the_write_statement_plans() {
        let store = crate::testing::test_store("write_parts").await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let mut planned = std::collections::HashSet::new();
        for parts in WriteParts::every() {
            let sql = write_sql(parts);
            if let Err(e) = explain_here(&mut conn, sql, Some(WRITE_TYPES)).await {
                panic!("the write statement with {parts:?} cannot be planned: {e}");
            }
            planned.insert(sql);
            for single in [false, true] {
                let one = one_statement_sql(parts, single);
                if let Err(e) = explain_here(&mut conn, one, Some(ONE_STATEMENT_TYPES)).await {
                    panic!(
                        "the one-statement commit with {parts:?} (single: {single}) cannot be \
                         planned: {e}"
                    );
                }
                planned.insert(one);
            }
        }
        assert_eq!(
            planned.len(),
            192,
            "each combination has a statement of its own"
        );
    }
}
