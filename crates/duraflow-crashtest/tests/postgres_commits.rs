//! How many PostgreSQL transactions a workflow costs: one worker process runs N workflows of 4
//! activities each, and `xact_commit` of `pg_stat_database` is read before and after. The
//! figure is printed for the record; only a loose sanity bound is asserted.
//!
//! The counter is per database and other tests share the server's databases, so the run uses a
//! database of its own (created from `template0` and dropped at the end). It counts every
//! committed transaction, read-only ones included: the worker's fetches and polls and its
//! client's status reads as well as the writes. Backends flush their counts when they exit, so
//! each reading waits until the database has no connections. A worker with no workflows is run
//! first to measure the fixed cost of starting and stopping a worker. The transaction ids
//! assigned meanwhile are printed too: one per transaction that wrote and one per savepoint
//! that wrote (group commits give each turn or task completion a savepoint). They are counted
//! server-wide, so they are an upper bound when other sessions write at the same time.
//!
//! `DURAFLOW_PG_COMMIT_WORKFLOWS` (default 300) sets N.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

#[allow(dead_code, reason = "each test file uses part of the helpers")]
mod common;

use common::{env_number, wait_until, Pg, WorkerSpec, Workers};
use duraflow_crashtest::{ACTIVITIES, DEFAULT_ACTIVITY_CONCURRENCY};
use duraflow_postgres::testing;
use sqlx::AssertSqlSafe;

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database of the test's own, dropped at the end (also when the test fails).
struct DatabaseGuard<'a> {
    pg: &'a Pg,
    name: String,
}

impl DatabaseGuard<'_> {
    fn create<'a>(pg: &'a Pg, prefix: &str) -> DatabaseGuard<'a> {
        let name = testing::unique_schema(prefix);
        let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE template0");
        pg.rt
            .block_on(sqlx::query(AssertSqlSafe(sql)).execute(&pg.pool))
            .expect("CREATE DATABASE");
        DatabaseGuard { pg, name }
    }

    /// Waits until nothing is connected to the database, so every backend has flushed its
    /// statistics, then reads its committed transaction count and the next transaction id of
    /// the whole server.
    fn counters(&self) -> (i64, i64) {
        wait_until("the database's connections to close", || {
            self.pg
                .rt
                .block_on(
                    sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    )
                    .bind(&self.name)
                    .fetch_one(&self.pg.pool),
                )
                .expect("pg_stat_activity")
                == 0
        });
        self.pg
            .rt
            .block_on(
                sqlx::query_as::<_, (i64, i64)>(
                    "SELECT xact_commit,
                            pg_snapshot_xmax(pg_current_snapshot())::text::bigint
                       FROM pg_stat_database WHERE datname = $1",
                )
                .bind(&self.name)
                .fetch_one(&self.pg.pool),
            )
            .expect("pg_stat_database")
    }
}

impl Drop for DatabaseGuard<'_> {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = self
            .pg
            .rt
            .block_on(sqlx::query(AssertSqlSafe(sql)).execute(&self.pg.pool))
        {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

#[test]
fn commits_per_workflow() {
    let workflows = env_number("DURAFLOW_PG_COMMIT_WORKFLOWS", 300).max(1);
    let pg = Pg::connect();
    let db = DatabaseGuard::create(&pg, "duraflow_commits");
    let url = with_database(&pg.url, &db.name);
    let schema = testing::unique_schema("crash_commits");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("effects.log");

    // Create and migrate the schema first, so that is not counted.
    let store = pg.store(&url, &schema);
    let pool = store.pool().clone();
    drop(store);
    pg.rt.block_on(pool.close());

    let mut workers = Workers::default();
    let mut run = |generation: u32, workflows: usize| {
        let (commits_before, xid_before) = db.counters();
        let spec = WorkerSpec {
            store: &url,
            schema: &schema,
            log: &log,
            workflows,
            activity_concurrency: DEFAULT_ACTIVITY_CONCURRENCY,
        };
        workers.spawn(&spec, generation);
        let status = workers.wait(generation);
        assert!(status.success(), "worker {generation} failed: {status}");
        let (commits_after, xid_after) = db.counters();
        (commits_after - commits_before, xid_after - xid_before)
    };
    // The fixed cost: a worker that starts, finds nothing to do and stops.
    let (idle, _) = run(0, 0);
    let (commits, xids) = run(1, workflows);
    let per_workflow = commits as f64 / workflows as f64;
    let net = (commits - idle) as f64 / workflows as f64;
    println!(
        "postgres commits: {workflows} workflows of {ACTIVITIES} activities, one worker: \
         {commits} commits, {per_workflow:.2} commits/workflow ({net:.2} without the {idle} \
         commits of starting and stopping a worker); transaction ids assigned (one per \
         writing transaction and one per writing savepoint, server-wide): {xids}, \
         {:.2}/workflow",
        xids as f64 / workflows as f64
    );
    assert!(
        commits >= workflows as i64,
        "each start commits at least once: {commits} commits for {workflows} workflows"
    );
    assert!(
        per_workflow < 100.0,
        "{per_workflow:.1} commits per workflow is far more than expected"
    );
}
