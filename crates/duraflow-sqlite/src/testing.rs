//! Databases for tests: a file at an older schema version, as an earlier build left it, to test
//! what opening it with this build does.

use std::path::Path;

use duraflow_store::{StoreError, StoreResult};

/// Creates a duraflow database at `path` (or brings an older one) up to schema `version`
/// only, applying the migrations up to it exactly as an earlier build did; the file is left
/// closed. A version past [`crate::SCHEMA_VERSION`] is refused.
pub fn create_at_version(path: &Path, version: i64) -> StoreResult<()> {
    if !(0..=crate::SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::Invalid(format!(
            "schema version {version} does not exist: this build knows versions 0 to {}",
            crate::SCHEMA_VERSION
        )));
    }
    let mut conn = rusqlite::Connection::open(path)
        .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
    crate::open::migrate_to(&mut conn, path, version)
}
