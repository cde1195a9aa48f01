//! Schemas written by earlier builds are migrated in place and read as before.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use duraflow_core::{Event, EventKind, Payload, Timestamp};
use duraflow_postgres::testing::{test_store, test_url};
use duraflow_postgres::{PostgresOptions, PostgresStore};
use duraflow_store::{FetchFilter, NewInstance, RegisteredKind, Registration, Store, TurnCommit};

const T0: Timestamp = Timestamp(1_000_000);

fn started(version: Option<&str>) -> Event {
    Event {
        at: T0,
        kind: EventKind::WorkflowStarted {
            name: "wf".into(),
            input: Payload::encode("x").unwrap(),
            parent: None,
            headers: Default::default(),
            retry: None,
            version: version.map(str::to_owned),
        },
    }
}

/// Starts instance `id` with `event` as its journal.
async fn start(store: &dyn Store, id: &str, event: Event) {
    store
        .create_instance(NewInstance {
            id: id.into(),
            name: "wf".into(),
            input: Payload::encode("x").unwrap(),
            parent: None,
            queue: "default".into(),
            created_at: T0,
            start_at: None,
            options: Default::default(),
        })
        .await
        .unwrap();
    let turns = store
        .fetch_turns(
            &FetchFilter::default(),
            T0,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let work = turns.iter().find(|w| w.instance.id == id).unwrap();
    let mut commit = TurnCommit::consuming(work, T0);
    commit.new_events = vec![event];
    store
        .commit_turns(vec![commit])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
}

/// A schema at version 12, before workflow versions, is migrated: its instances and
/// registrations read with no version, its journals (whose `workflow_started` has no version) as before, and a new
/// execution's start records its version.
#[tokio::test]
async fn a_version_12_schema_reads_without_versions() {
    let store = test_store("dfm_v12").await.expect("the test server");
    let schema = store.schema().to_owned();
    start(&store, "old", started(None)).await;
    store
        .announce(
            vec![Registration::new(RegisteredKind::Workflow, "default", "wf")],
            T0,
        )
        .await
        .unwrap();
    // Back to version 12: what it wrote is what this build writes, without the column.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE \"{schema}\".instances DROP COLUMN version;
         ALTER TABLE \"{schema}\".registrations DROP COLUMN version;
         DELETE FROM \"{schema}\"._sqlx_migrations WHERE version = 13"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let options = PostgresOptions {
        schema: schema.clone(),
        max_connections: 2,
        ..PostgresOptions::default()
    };
    let migrated = PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap();
    let info = migrated.instance("old").await.unwrap().unwrap();
    assert_eq!(info.version, None);
    assert_eq!(
        migrated.journal("old", None).await.unwrap(),
        vec![started(None)]
    );
    let described = migrated
        .management()
        .unwrap()
        .describe("old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (described.journal_len, described.last_event_at),
        (Some(1), Some(T0))
    );
    let registered = migrated
        .management()
        .unwrap()
        .registrations()
        .await
        .unwrap();
    assert_eq!(registered[0].registration.name, "wf");
    assert_eq!(registered[0].registration.version, None);
    start(&migrated, "new", started(Some("2"))).await;
    let info = migrated.instance("new").await.unwrap().unwrap();
    assert_eq!(info.version.as_deref(), Some("2"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
}
