//! The commits of a running instance are heap-only ("HOT") updates of its row: PostgreSQL
//! writes the new version beside the old one on the same page and adds no entry to any of the
//! table's indexes, as long as no column named by an index (in its keys, its expressions or its
//! condition) changes. `instances` has a dozen indexes, so an update that is not heap-only
//! costs a dozen index insertions, and their log records (migration 0015).
//!
//! A commit that delivers an activity's result and runs the next turn (a direct turn) changes
//! only the columns below on an instance that keeps running; this checks that no index names
//! one of them. (`status`, `due_at` and `due_seq` are indexed on purpose: the fetches and
//! listings read them, and they change when an instance starts, finishes, or waits for a
//! fetch.)

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use crate::testing::test_store;

/// The columns of `instances` that a direct turn of a running instance changes.
const CHANGED_BY_EVERY_COMMIT: [&str; 7] = [
    "updated_at",
    "commit_token",
    "lease_token",
    "lease_until",
    "lease_owner",
    "not_before",
    "attempt",
];

/// No index of `instances` names a column that every commit changes.
#[tokio::test]
async fn no_index_names_a_column_every_commit_changes() {
    let store = test_store("dft_hot").await.unwrap();
    let mut conn = store.pool().acquire().await.unwrap();
    // Each index's columns, keys and condition alike, as PostgreSQL records them.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT ic.relname::text, a.attname::text
           FROM pg_index x
           JOIN pg_class ic ON ic.oid = x.indexrelid
           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum > 0
          WHERE x.indrelid = 'instances'::regclass
            AND (a.attnum = ANY (x.indkey::int2[])
                 OR pg_get_expr(x.indpred, x.indrelid) ~ ('\\m' || a.attname || '\\M')
                 OR pg_get_expr(x.indexprs, x.indrelid) ~ ('\\m' || a.attname || '\\M'))",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let indexes: std::collections::HashSet<&str> = rows.iter().map(|(i, _)| i.as_str()).collect();
    assert!(indexes.len() >= 10, "the indexes were read: {indexes:?}");
    let blocking: Vec<String> = rows
        .iter()
        .filter(|(_, column)| CHANGED_BY_EVERY_COMMIT.contains(&column.as_str()))
        .map(|(index, column)| format!("{index} names {column}"))
        .collect();
    assert!(
        blocking.is_empty(),
        "every commit of a running instance would add an entry to each index: {blocking:?}"
    );
    // The columns of conditions are found, not only the keys: `instances_running` names
    // `status` only in its condition.
    assert!(
        rows.iter()
            .any(|(i, c)| i == "instances_running" && c == "status"),
        "a condition's column is found: {rows:?}"
    );
}
