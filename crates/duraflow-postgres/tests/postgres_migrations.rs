//! Schemas written by earlier builds are migrated in place and read as before.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use duraflow_core::{Event, EventKind, Payload, Timestamp};
use duraflow_postgres::testing::{test_store, test_url};
use duraflow_postgres::{PostgresOptions, PostgresStore};
use duraflow_store::{
    FetchFilter, InstanceStatus, ListFilter, NewInstance, RegisteredKind, Registration, Store,
    TurnCommit,
};

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
    commit_turn(store, id, T0, |commit| commit.new_events = vec![event]).await;
}

/// Takes `store`'s schema back to an earlier version with `downgrade` (statements run in the
/// schema), then connects to it again, which migrates it.
async fn back_and_again(store: &PostgresStore, downgrade: &str) -> PostgresStore {
    let schema = store.schema().to_owned();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path = \"{schema}\"; {downgrade} RESET search_path"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let options = PostgresOptions {
        schema,
        max_connections: 2,
        ..PostgresOptions::default()
    };
    PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap()
}

/// Runs a turn of `id` at `now` that consumes its inbox, changed by `change`, and commits it.
async fn commit_turn(
    store: &dyn Store,
    id: &str,
    now: Timestamp,
    change: impl FnOnce(&mut TurnCommit),
) {
    let turns = store
        .fetch_turns(
            &FetchFilter::default(),
            now,
            10,
            Duration::from_secs(60),
            None,
        )
        .await
        .unwrap();
    let work = turns.iter().find(|w| w.instance.id == id).unwrap();
    let mut commit = TurnCommit::consuming(work, now);
    change(&mut commit);
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
    let migrated = back_and_again(
        &store,
        "ALTER TABLE instances DROP COLUMN version;
         ALTER TABLE registrations DROP COLUMN version;
         DELETE FROM _sqlx_migrations WHERE version = 13;",
    )
    .await;
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

/// A schema at version 14, whose index of finished instances was keyed by `updated_at`, is
/// migrated: the instances it finished are listed by the time they finished, in that order,
/// from the new index, and an instance finished afterwards joins them.
#[tokio::test]
async fn a_version_14_schema_lists_finished_instances_as_before() {
    let store = test_store("dfm_v14").await.expect("the test server");
    let schema = store.schema().to_owned();
    // Finished at T0 + 3, + 1 and + 2 seconds; one still running.
    for (id, finish) in [("c", Some(3)), ("a", Some(1)), ("b", Some(2)), ("r", None)] {
        start(&store, id, started(None)).await;
        if let Some(seconds) = finish {
            finish_at(&store, id, Timestamp(T0.0 + seconds * 1_000)).await;
        }
    }
    // Back to version 14.
    let migrated = back_and_again(
        &store,
        "DROP INDEX instances_finished;
         ALTER TABLE instances DROP COLUMN finished_at;
         CREATE INDEX instances_finished ON instances (updated_at, id)
             WHERE status IN ('completed', 'failed', 'cancelled', 'terminated');
         DELETE FROM _sqlx_migrations WHERE version = 15;",
    )
    .await;
    start(&migrated, "d", started(None)).await;
    finish_at(&migrated, "d", Timestamp(T0.0 + 4_000)).await;
    let finished_before = |before: i64| ListFilter {
        statuses: vec![InstanceStatus::Completed],
        updated_before: Some(Timestamp(T0.0 + before)),
        limit: 10,
        ..ListFilter::default()
    };
    let listed = |page: duraflow_store::Page| -> Vec<String> {
        page.instances.into_iter().map(|i| i.id).collect()
    };
    let management = migrated.management().unwrap();
    assert_eq!(
        listed(management.list(finished_before(10_000)).await.unwrap()),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        listed(management.list(finished_before(2_500)).await.unwrap()),
        ["a", "b"]
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

/// Completes the running instance `id` with a turn at `now`.
async fn finish_at(store: &dyn Store, id: &str, now: Timestamp) {
    store
        .send(duraflow_store::NewMessage {
            instance_id: id.into(),
            kind: duraflow_store::MessageKind::Event {
                name: "go".into(),
                data: Payload::encode("x").unwrap(),
            },
            visible_at: now,
        })
        .await
        .unwrap();
    commit_turn(store, id, now, |commit| {
        commit.status = InstanceStatus::Completed;
        commit.output = Some(Payload::encode("done").unwrap());
    })
    .await;
}
