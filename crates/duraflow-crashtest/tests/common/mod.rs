//! Shared by the PostgreSQL crash tests: the test server, schemas that are dropped at the end,
//! worker processes that are killed if a test fails, and the checks on the results; `poison`
//! holds the poison-activity tests' supervisor and checks (SQLite and PostgreSQL), `steps` the
//! steps crash test (SQLite and PostgreSQL).

pub(crate) mod poison;
pub(crate) mod steps;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use duraflow::{PostgresOptions, PostgresStore};
use duraflow_crashtest::{
    runs_by_activity, LogLine, ACTIVITIES, ACTIVITY_CONCURRENCY_VAR, SCHEMA_VAR,
};
use duraflow_postgres::testing;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgPool};

/// How long any one wait in these tests may take before it fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// A number from the environment, or `default`.
pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `done` every few milliseconds until it holds; fails with `what` after [`DEADLINE`].
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The test server: a runtime for the async calls and a small pool whose connections report
/// `application_name` `duraflow-crashtest` (so they never match the workers' `duraflow-worker%`).
pub(crate) struct Pg {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) pool: PgPool,
    pub(crate) url: String,
}

impl Pg {
    /// Connects to the test server, failing with a clear message when it cannot be reached.
    pub(crate) fn connect() -> Pg {
        let url = testing::test_url();
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
        let options: PgConnectOptions = url.parse().unwrap_or_else(|e| {
            panic!(
                "{} = {url:?} is not a PostgreSQL URL: {e}",
                testing::URL_VAR
            )
        });
        let options = options.application_name("duraflow-crashtest");
        // One connection first: a pool would only report that it timed out.
        let reached = rt.block_on(async {
            let conn = sqlx::PgConnection::connect_with(&options).await?;
            conn.close().await
        });
        if let Err(e) = reached {
            panic!(
                "cannot reach the PostgreSQL test server at {url}: {e}. Start one with \
                 scripts/postgres (or run scripts/test), or point {} at a server",
                testing::URL_VAR
            );
        }
        let pool = rt
            .block_on(
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options),
            )
            .expect("the test server's pool opens");
        Pg { rt, pool, url }
    }

    /// A fresh schema name, dropped (with everything in it) when the guard is dropped.
    pub(crate) fn fresh_schema(&self, prefix: &str) -> SchemaGuard<'_> {
        SchemaGuard {
            pg: self,
            name: testing::unique_schema(prefix),
        }
    }

    /// One `BIGINT` from a query.
    pub(crate) fn query_i64(&self, sql: &'static str) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Terminates every backend of the worker processes working in `schema` (not those of
    /// other tests); returns how many were terminated.
    pub(crate) fn terminate_worker_connections(&self, schema: &str) -> usize {
        let prefix = duraflow_crashtest::application_name_prefix(schema) + "%";
        let terminated: Vec<bool> = self
            .rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                )
                .bind(prefix)
                .fetch_all(&self.pool),
            )
            .expect("pg_terminate_backend");
        terminated.into_iter().filter(|t| *t).count()
    }

    /// Opens the store in `schema` for checking results.
    pub(crate) fn store(&self, url: &str, schema: &str) -> PostgresStore {
        let options = PostgresOptions {
            schema: schema.to_owned(),
            max_connections: 2,
            application_name: "duraflow-crashtest-check".into(),
            ..PostgresOptions::default()
        };
        self.rt
            .block_on(PostgresStore::connect_with(url, options))
            .expect("the store opens for checking")
    }
}

/// A schema that is dropped with `DROP SCHEMA ... CASCADE` at the end of the test, also when it
/// fails.
pub(crate) struct SchemaGuard<'a> {
    pg: &'a Pg,
    pub(crate) name: String,
}

impl Drop for SchemaGuard<'_> {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        if let Err(e) = self
            .pg
            .rt
            .block_on(sqlx::query(AssertSqlSafe(sql)).execute(&self.pg.pool))
        {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

/// Worker processes; any still running when this is dropped (a test failed) are killed.
#[derive(Default)]
pub(crate) struct Workers {
    children: Vec<(u32, Child)>,
}

/// How to start a worker.
pub(crate) struct WorkerSpec<'a> {
    /// `sqlite:<path>` or a `postgres://` URL.
    pub(crate) store: &'a str,
    /// The PostgreSQL schema.
    pub(crate) schema: &'a str,
    /// The side-effect log.
    pub(crate) log: &'a Path,
    /// Workflows to start and finish.
    pub(crate) workflows: usize,
    /// Activities run at once.
    pub(crate) activity_concurrency: usize,
}

impl Workers {
    /// Takes charge of a worker started elsewhere (killed if still running when dropped).
    pub(crate) fn adopt(generation: u32, child: Child) -> Workers {
        Workers {
            children: vec![(generation, child)],
        }
    }

    /// Starts worker `generation`.
    pub(crate) fn spawn(&mut self, spec: &WorkerSpec<'_>, generation: u32) {
        let child = Command::new(env!("CARGO_BIN_EXE_crash-worker"))
            .arg(spec.store)
            .arg(spec.log)
            .arg(generation.to_string())
            .arg(spec.workflows.to_string())
            .env(SCHEMA_VAR, spec.schema)
            .env(
                ACTIVITY_CONCURRENCY_VAR,
                spec.activity_concurrency.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the crash worker starts");
        self.children.push((generation, child));
    }

    fn child(&mut self, generation: u32) -> &mut Child {
        self.children
            .iter_mut()
            .find(|(g, _)| *g == generation)
            .map(|(_, c)| c)
            .expect("a worker of that generation")
    }

    /// Whether worker `generation` is still running.
    pub(crate) fn running(&mut self, generation: u32) -> bool {
        self.child(generation)
            .try_wait()
            .expect("the worker can be polled")
            .is_none()
    }

    /// Kills worker `generation` with SIGKILL and reaps it.
    pub(crate) fn kill(&mut self, generation: u32) {
        let child = self.child(generation);
        child.kill().expect("SIGKILL the worker");
        child.wait().expect("the killed worker is reaped");
    }

    /// Waits (with a deadline) for worker `generation` to exit.
    pub(crate) fn wait(&mut self, generation: u32) -> ExitStatus {
        let child = self.child(generation);
        let mut status = None;
        wait_until(&format!("worker {generation} to finish"), || {
            status = child.try_wait().expect("the worker can be polled");
            status.is_some()
        });
        status.expect("exited")
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Checks the store: every workflow completed with the right output, and each activity's result
/// is in its journal exactly once.
pub(crate) fn check_journals(pg: &Pg, store: &PostgresStore, workflows: usize) {
    if let Err(e) = pg
        .rt
        .block_on(duraflow_crashtest::verify_completed(store, workflows))
    {
        panic!("{e}");
    }
}

/// Checks that every activity ran at least once and returns the executions of each.
pub(crate) fn check_every_activity_ran(
    lines: &[LogLine],
    workflows: usize,
) -> BTreeMap<(String, String), Vec<u32>> {
    let runs = runs_by_activity(lines);
    assert_eq!(
        runs.len(),
        workflows * ACTIVITIES as usize,
        "every activity ran at least once"
    );
    runs
}
