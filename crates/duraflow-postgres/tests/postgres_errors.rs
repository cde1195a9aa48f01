//! What the PostgreSQL store says when it cannot be used: clear errors, no panic.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use duraflow_postgres::testing::{test_store, test_url, unique_schema};
use duraflow_postgres::{schema_version, PostgresOptions, PostgresStore};
use duraflow_store::StoreError;

/// The test server's URL with another database, user or port.
fn with(part: &str, value: &str) -> String {
    let url = test_url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let (host, _) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    match part {
        "database" => format!("{scheme}://{auth}@{hostport}/{value}"),
        "user" => format!("{scheme}://{value}@{hostport}/{db}"),
        "port" => format!("{scheme}://{auth}@{host}:{value}/{db}"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let err = PostgresStore::connect("postgres//not a url")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("postgres://user:password@host:port/database"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable() {
    // Port 9 (discard) has nothing listening here.
    let err = PostgresStore::connect(&with("port", "9"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string().contains("check that the server is running"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_user_is_refused_with_a_hint() {
    let err = PostgresStore::connect(&with("user", "no_such_duraflow_user"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no_such_duraflow_user"), "{message}");
    assert!(message.contains("check the user"), "{message}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let err = PostgresStore::connect(&with("database", "no_such_duraflow_db"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no_such_duraflow_db"), "{message}");
    assert!(message.contains("create the database"), "{message}");
}

#[tokio::test]
async fn a_bad_schema_name_is_refused_before_connecting() {
    let options = PostgresOptions {
        schema: "Robert'); DROP TABLE students;--".into(),
        ..PostgresOptions::default()
    };
    let err = PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("lowercase letters"), "{err}");
}

#[tokio::test]
async fn a_schema_migrated_by_a_newer_build_is_refused() {
    let store = test_store("dft_newer").await.expect("the test server");
    let schema = store.schema().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\"._sqlx_migrations
             (version, description, success, checksum, execution_time)
         VALUES (999, 'from the future', true, '\\x00'::bytea, 0)"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let options = PostgresOptions {
        schema: schema.clone(),
        ..PostgresOptions::default()
    };
    let err = PostgresStore::connect_with(&test_url(), options)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: 999,
            supported: schema_version()
        }
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn processes_starting_at_once_migrate_one_schema_without_racing() {
    let schema = unique_schema("dft_race");
    let connects = (0..6).map(|_| {
        let options = PostgresOptions {
            schema: schema.clone(),
            max_connections: 2,
            ..PostgresOptions::default()
        };
        tokio::spawn(async move { PostgresStore::connect_with(&test_url(), options).await })
    });
    let stores: Vec<_> = futures_join(connects).await;
    for s in &stores {
        assert!(s.is_ok(), "{:?}", s.as_ref().err());
    }
    let store = stores.into_iter().next().unwrap().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn futures_join<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let handles: Vec<_> = handles.collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
