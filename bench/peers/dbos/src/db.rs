//! The system database of a run: a fresh PostgreSQL database per (workload, run), created on the
//! server of `--pg-url` and dropped afterwards, and the server's durability settings.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::report::Figures;
use crate::Result;

/// A database made for one run.
pub(crate) struct RunDatabase {
    /// The URL the peer was given (its database is used to create and drop this one).
    admin_url: String,
    /// The new database's name.
    name: String,
    /// The URL of the new database, for DBOS.
    pub(crate) url: String,
    /// What the server says about durability, for the results.
    server: Vec<(&'static str, String)>,
}

impl RunDatabase {
    /// Creates a database with a name no other run has (`dbos_peer_<pid>_<time>`), and reads
    /// the server's durability settings.
    pub(crate) async fn create(admin_url: &str) -> Result<RunDatabase> {
        let mut conn = PgConnection::connect(admin_url)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL at {admin_url}: {e}"))?;
        let server: (String, String, String, String) = sqlx::query_as(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'),
                    current_setting('fsync'), current_setting('wal_sync_method')",
        )
        .fetch_one(&mut conn)
        .await?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("dbos_peer_{}_{nanos}", std::process::id());
        // The name is made of letters, digits and underscores only, so quoting it is enough.
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create the database {name}: {e}"))?;
        let _ = conn.close().await;
        let url = with_database(admin_url, &name)?;
        Ok(RunDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
            server: vec![
                ("pg_server_version", server.0),
                ("pg_synchronous_commit", server.1),
                ("pg_fsync", server.2),
                ("pg_wal_sync_method", server.3),
            ],
        })
    }

    /// The database and the server's settings, for the results.
    pub(crate) fn settings(&self) -> Figures {
        let mut s = Figures::new();
        s.insert("store_backend".into(), "dbos-postgres".into());
        s.insert("system_database".into(), "a fresh database per run".into());
        for (key, value) in &self.server {
            s.insert((*key).into(), value.clone().into());
        }
        s
    }

    /// How many step outcomes named `step` DBOS recorded in `schema`'s `operation_outputs`
    /// (read after the timed part, to check the steps were checkpointed).
    pub(crate) async fn recorded_steps(&self, schema: &str, step: &str) -> Result<u64> {
        let mut conn = PgConnection::connect(&self.url).await?;
        let schema = schema.replace('"', "\"\"");
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".operation_outputs WHERE function_name = $1"
        )))
        .bind(step)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("counting DBOS's recorded steps: {e}"))?;
        let _ = conn.close().await;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Drops the database, closing whatever connections are still on it.
    pub(crate) async fn drop_database(self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let dropped = tokio::time::timeout(
            Duration::from_secs(30),
            sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn),
        )
        .await;
        let _ = conn.close().await;
        match dropped {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot drop the database {}: {e}", self.name).into()),
            Err(_) => Err(format!("dropping the database {} took over 30 s", self.name).into()),
        }
    }
}

/// `url` with its database (the path) replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| format!("{url} is not a postgres:// URL"))?;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p@host/db?sslmode=disable",
                "postgres://u:p@host/x?sslmode=disable",
            ),
            ("postgresql://host:5432", "postgresql://host:5432/x"),
            (
                "postgres://host?application_name=a",
                "postgres://host/x?application_name=a",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "x").unwrap(), expected, "{url}");
        }
        assert!(with_database("host/db", "x").is_err());
    }
}
