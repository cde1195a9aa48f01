//! A PostgreSQL database of its own for a test.

use duraflow::crates::postgres::testing::{test_url, unique_schema};

/// A new database on the test server, dropped (with its connections) when this is dropped,
/// a failed test's included.
pub struct Database {
    server: String,
    name: String,
}

impl Database {
    /// Creates it; it and the URL to reach it.
    pub async fn create() -> (Database, String) {
        let server = test_url();
        let admin = sqlx::PgPool::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("no PostgreSQL for the tests ({e}); run scripts/test"));
        let name = unique_schema("cli");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let (base, _db) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        (Database { server, name }, url)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: this may run while a test's runtime unwinds.
        let dropped = std::thread::spawn(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let admin = sqlx::PgPool::connect(&server).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await?;
                    admin.close().await;
                    Ok(())
                })
            },
        )
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
