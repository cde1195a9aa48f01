//! The store's operations as SQL, each run inside a transaction by the caller.

pub(crate) mod admin;
pub(crate) mod callbacks;
pub(crate) mod feed;
pub(crate) mod flow;
pub(crate) mod instances;
pub(crate) mod queue_events;
pub(crate) mod registry;
pub(crate) mod tasks;
pub(crate) mod turns;

/// Asserts that SQLite runs `sql` (an events read with `instance_id` and `execution` as its
/// first two parameters) as one search of the events' primary key, with no sort: the same cost
/// however long the journal.
#[cfg(test)]
pub(crate) fn assert_one_seek_of_the_events_key(sql: &str) {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    let mut conn = rusqlite::Connection::open_in_memory().unwrap();
    crate::open::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let plan: Vec<String> = stmt
        .query_map(rusqlite::params!["a", 1], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("SEARCH events USING PRIMARY KEY (instance_id=? AND execution=?)"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
}
