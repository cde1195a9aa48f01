//! Transactions that begin with the statement that locks their rows: `BEGIN` and that
//! statement go to the server as one simple-protocol query, which saves `BEGIN`'s round trip.
//! The simple protocol takes no parameters, so the lock statement carries its values as
//! literals: integers, or strings quoted by [`literal`].

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres};

use crate::error::store_error;
use duraflow_store::StoreResult;

/// A string as a SQL literal. An escape string (`E'...'`), whose meaning does not depend on
/// `standard_conforming_strings`: backslashes and quotes are doubled. The caller keeps strings
/// with NUL characters out (PostgreSQL text cannot hold them, and the protocol ends a query at
/// the first one).
pub(crate) fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An open transaction on a pooled connection. Dropped without [`LockedTx::commit`] or
/// [`LockedTx::rollback`] (a cancelled call), its connection is closed rather than returned to
/// the pool, and the server rolls the transaction back.
pub(crate) struct LockedTx {
    conn: PoolConnection<Postgres>,
    open: bool,
}

impl LockedTx {
    /// Takes a connection and runs `BEGIN; {setup} {lock}` as one query (`setup`: statements
    /// ending in `;`, such as `SET LOCAL`); returns the open transaction and the rows of `lock`.
    pub(crate) async fn begin(
        pool: &PgPool,
        setup: &str,
        lock: &str,
    ) -> StoreResult<(LockedTx, Vec<PgRow>)> {
        let conn = pool.acquire().await.map_err(store_error)?;
        let mut tx = LockedTx { conn, open: true };
        // The lock statement's values are literals made by `literal` or integers.
        let rows = sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; {setup} {lock}")))
            .fetch_all(&mut *tx.conn)
            .await
            .map_err(store_error)?;
        Ok((tx, rows))
    }

    /// The connection, for the transaction's statements.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Commits.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        sqlx::raw_sql("COMMIT")
            .execute(&mut *self.conn)
            .await
            .map_err(store_error)?;
        self.open = false;
        Ok(())
    }

    /// Rolls back (or, when the connection fails, leaves it to be closed).
    pub(crate) async fn rollback(mut self) {
        if sqlx::raw_sql("ROLLBACK")
            .execute(&mut *self.conn)
            .await
            .is_ok()
        {
            self.open = false;
        }
    }
}

impl Drop for LockedTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::literal;
    use crate::testing::test_store;

    /// Quotes, backslashes and the rest come back as they were, however the server reads
    /// plain strings.
    #[tokio::test]
    async fn literals_read_back_as_the_strings() {
        let store = test_store("dft_literal").await.unwrap();
        let nasty = [
            "plain",
            "it's",
            "''",
            "back\\slash",
            "\\'; DROP TABLE instances; --",
            "E'x'",
            "$$dollar$$",
            "ünïcödé ✓",
            "",
        ];
        for conforming in ["on", "off"] {
            let mut conn = store.pool().acquire().await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SET standard_conforming_strings = {conforming}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            for s in nasty {
                let rows =
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SELECT {} AS s", literal(s))))
                        .fetch_all(&mut *conn)
                        .await
                        .unwrap();
                let back: String = sqlx::Row::try_get(&rows[0], "s").unwrap();
                assert_eq!(back, s, "standard_conforming_strings = {conforming}");
            }
            sqlx::raw_sql("RESET standard_conforming_strings")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}
