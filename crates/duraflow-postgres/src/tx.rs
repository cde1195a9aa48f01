//! Transactions that begin with the statement that locks their rows: `BEGIN` and that
//! statement go to the server as one simple-protocol query, which saves `BEGIN`'s round trip.
//! The simple protocol takes no parameters, so the lock statement carries its values as
//! literals: integers, or strings quoted by [`literal`].

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::conns::{Conn, Conns};
use crate::error::store_error;
use duraflow_store::{StoreError, StoreResult};

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

/// `ids` as a comma-separated list of [`literal`]s, for `ARRAY[..]` or `IN (..)`; an id with a
/// NUL character, which PostgreSQL text cannot hold, names no row and is left out.
pub(crate) fn literal_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<String> = ids
        .into_iter()
        .filter(|id| !id.contains('\0'))
        .map(literal)
        .collect();
    list.join(", ")
}

/// An open transaction on a pooled connection. Committed or rolled back, its connection is
/// kept (see [`crate::conns`]); dropped without either (a cancelled call), its connection is
/// closed rather than returned to the pool, and the server rolls the transaction back.
pub(crate) struct LockedTx<'c> {
    conn: Option<Conn>,
    conns: &'c Conns,
}

impl<'c> LockedTx<'c> {
    /// Takes a connection and runs `BEGIN; {setup} {lock}` as one query (`setup`: statements
    /// ending in `;`, such as `SET LOCAL`); returns the open transaction and the rows of `lock`.
    pub(crate) async fn begin(
        conns: &'c Conns,
        setup: &str,
        lock: &str,
    ) -> StoreResult<(LockedTx<'c>, Vec<PgRow>)> {
        let mut tx = LockedTx {
            conn: Some(conns.acquire().await?),
            conns,
        };
        // The lock statement's values are literals made by `literal` or integers.
        let rows = sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; {setup} {lock}")))
            .fetch_all(tx.conn()?)
            .await
            .map_err(store_error)?;
        Ok((tx, rows))
    }

    /// The connection, for the transaction's statements. It is there until the transaction
    /// ends, which takes the `LockedTx`: the error cannot happen.
    pub(crate) fn conn(&mut self) -> StoreResult<&mut PgConnection> {
        self.conn
            .as_deref_mut()
            .map(|conn| &mut **conn)
            .ok_or_else(|| StoreError::Other("the transaction has ended".into()))
    }

    /// Commits.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        sqlx::raw_sql("COMMIT")
            .execute(self.conn()?)
            .await
            .map_err(store_error)?;
        self.end();
        Ok(())
    }

    /// Runs `read` (a statement of the simple protocol, its values literals) and commits, in
    /// one round trip; returns the rows of `read`, which sees the transaction's own writes. A
    /// failed `read` fails the commit (the server runs no statement after a failed one), so a
    /// commit is never reported failed once it has committed.
    pub(crate) async fn read_and_commit(mut self, read: &str) -> StoreResult<Vec<PgRow>> {
        let rows = sqlx::raw_sql(AssertSqlSafe(format!("{read}; COMMIT")))
            .fetch_all(self.conn()?)
            .await
            .map_err(store_error)?;
        self.end();
        Ok(rows)
    }

    /// Rolls back (or, when the connection fails, leaves it to be closed).
    pub(crate) async fn rollback(mut self) {
        let Ok(conn) = self.conn() else { return };
        if sqlx::raw_sql("ROLLBACK").execute(conn).await.is_ok() {
            self.end();
        }
    }

    /// The transaction has ended and every reply was read: the connection is kept.
    fn end(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.conns.keep(conn);
        }
    }
}

impl Drop for LockedTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
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
