//! duroxide's SQLite provider on a fresh file, and what durability its connections really have.
//!
//! The provider opens a pool of connections and configures each one as it connects (in 0.1.32:
//! `journal_mode = WAL`, `synchronous = WAL`, `wal_autocheckpoint = 10000`,
//! `cache_size = -64000`, `busy_timeout = 60000`, `foreign_keys = ON`). `WAL` is not one of
//! SQLite's synchronous levels; SQLite falls back to NORMAL for a name it does not know. Rather
//! than trust a reading of the source, the peer asks every connection of the pool for its
//! PRAGMAs and reports what they say.

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use duroxide::providers::sqlite::SqliteProvider;
use serde_json::{Map, Value};
use sqlx::pool::PoolConnection;
use sqlx::Sqlite;

use crate::Result;

/// The SQLite durability of the peer's runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Synchronous {
    /// What duroxide's provider sets (NORMAL in 0.1.32): the store is `duroxide-sqlite`.
    Duroxide,
    /// `synchronous = FULL` on every pool connection, set by the peer after the provider opened
    /// them: the store is `duroxide-sqlite-full`.
    Full,
}

impl Synchronous {
    /// The store name in results.
    pub(crate) fn store_name(self) -> &'static str {
        match self {
            Synchronous::Duroxide => "duroxide-sqlite",
            Synchronous::Full => "duroxide-sqlite-full",
        }
    }
}

/// SQLite's name for a `PRAGMA synchronous` value.
fn synchronous_name(level: i64) -> String {
    match level {
        0 => "off".into(),
        1 => "normal".into(),
        2 => "full".into(),
        3 => "extra".into(),
        other => format!("unknown ({other})"),
    }
}

/// A provider on a SQLite file in a new temporary directory, removed when this is dropped.
pub(crate) struct PeerStore {
    /// The provider (shared with the runtime and the client).
    pub(crate) provider: Arc<SqliteProvider>,
    path: PathBuf,
    mode: Synchronous,
    /// Removed when dropped; declared last so the provider is dropped first.
    _dir: tempfile::TempDir,
}

impl PeerStore {
    /// Creates the file and opens duroxide's provider on it; with [`Synchronous::Full`], sets
    /// `synchronous = FULL` on every connection of its pool.
    pub(crate) async fn create(mode: Synchronous) -> Result<PeerStore> {
        let dir = tempfile::Builder::new()
            .prefix("duroxide-peer-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for the SQLite file: {e}"))?;
        let path = dir.path().join("duroxide.db");
        // The provider's pool does not create missing files.
        std::fs::File::create(&path)
            .map_err(|e| format!("cannot create the SQLite file {}: {e}", path.display()))?;
        let url = format!("sqlite:{}", path.display());
        let provider = SqliteProvider::new(&url, None)
            .await
            .map_err(|e| format!("duroxide's SQLite provider cannot open {url}: {e}"))?;
        let store = PeerStore {
            provider: Arc::new(provider),
            path,
            mode,
            _dir: dir,
        };
        if mode == Synchronous::Full {
            let mut connections = store.every_connection().await?;
            for conn in &mut connections {
                sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut **conn)
                    .await
                    .map_err(|e| format!("cannot set synchronous = FULL: {e}"))?;
            }
        }
        Ok(store)
    }

    /// Every connection the pool may hold, acquired at once (which opens the missing ones).
    async fn every_connection(&self) -> Result<Vec<PoolConnection<Sqlite>>> {
        let pool = self.provider.get_pool();
        let max = pool.options().get_max_connections();
        let mut connections = Vec::with_capacity(max as usize);
        for _ in 0..max {
            let conn = pool
                .acquire()
                .await
                .map_err(|e| format!("cannot get a connection from duroxide's pool: {e}"))?;
            connections.push(conn);
        }
        Ok(connections)
    }

    /// The `synchronous` level of every pool connection, e.g. `["normal", "normal", ...]`.
    async fn synchronous_levels(&self) -> Result<Vec<String>> {
        let mut levels = Vec::new();
        for conn in &mut self.every_connection().await? {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .map_err(|e| format!("cannot read PRAGMA synchronous: {e}"))?;
            levels.push(synchronous_name(level));
        }
        Ok(levels)
    }

    /// The store's durability and configuration as its connections report them, read before
    /// the run.
    pub(crate) async fn settings(&self) -> Result<Map<String, Value>> {
        let pool = self.provider.get_pool();
        let levels = self.synchronous_levels().await?;
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| format!("cannot get a connection from duroxide's pool: {e}"))?;
        let journal_mode: String = pragma(&mut conn, "journal_mode").await?;
        let busy_timeout: i64 = pragma(&mut conn, "busy_timeout").await?;
        let wal_autocheckpoint: i64 = pragma(&mut conn, "wal_autocheckpoint").await?;
        let cache_size: i64 = pragma(&mut conn, "cache_size").await?;
        let mut s = Map::new();
        s.insert("store_backend".into(), "duroxide-sqlite".into());
        s.insert("journal_mode".into(), journal_mode.to_lowercase().into());
        s.insert(
            "synchronous".into(),
            levels.first().cloned().unwrap_or_default().into(),
        );
        s.insert(
            "synchronous_set_by".into(),
            match self.mode {
                Synchronous::Duroxide => {
                    "duroxide's provider (it runs `PRAGMA synchronous = WAL`, which SQLite does \
                     not know and reads as NORMAL)"
                }
                Synchronous::Full => {
                    "the peer, on every pool connection after the provider opened them \
                     (duroxide has no option for it)"
                }
            }
            .into(),
        );
        s.insert(
            "synchronous_per_connection_before".into(),
            levels.join(",").into(),
        );
        s.insert(
            "pool_max_connections".into(),
            pool.options().get_max_connections().into(),
        );
        s.insert("busy_timeout_ms".into(), busy_timeout.into());
        s.insert("wal_autocheckpoint_pages".into(), wal_autocheckpoint.into());
        s.insert("cache_size".into(), cache_size.into());
        s.insert(
            "sqlite_dir".into(),
            self.path
                .parent()
                .and_then(|p| p.parent())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .into(),
        );
        Ok(s)
    }

    /// Reads the pool connections' `synchronous` again after the run (adding
    /// `synchronous_per_connection_after` to `settings`); under [`Synchronous::Full`], fails if
    /// any connection is not FULL any more (the pool opened a new one during the run).
    pub(crate) async fn check_after(&self, settings: &mut Map<String, Value>) -> Result<()> {
        let levels = self.synchronous_levels().await?;
        settings.insert(
            "synchronous_per_connection_after".into(),
            levels.join(",").into(),
        );
        if self.mode == Synchronous::Full && levels.iter().any(|l| l != "full") {
            return Err(format!(
                "a connection of duroxide's pool was not at synchronous = FULL after the run \
                 ({}): the pool opened a new connection during it, so the run was not all FULL",
                levels.join(",")
            )
            .into());
        }
        Ok(())
    }
}

/// The value of `PRAGMA name` on `conn`.
async fn pragma<T>(conn: &mut PoolConnection<Sqlite>, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite> + Send + Unpin,
{
    let sql = format!("PRAGMA {name}");
    let value = sqlx::query_scalar(&sql)
        .fetch_one(&mut **conn)
        .await
        .map_err(|e| format!("cannot read PRAGMA {name}: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_names() {
        assert_eq!(synchronous_name(1), "normal");
        assert_eq!(synchronous_name(2), "full");
        assert_eq!(synchronous_name(9), "unknown (9)");
    }
}
