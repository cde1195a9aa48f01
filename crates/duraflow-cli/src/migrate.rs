//! `migrate`: bring a store's schema to this build's version, or only check it.

use duraflow::env::SchemaVersion;
use serde_json::json;

use crate::connect;
use crate::error::CliError;
use crate::output;

/// `migrate [--check]`. Without `--check`, creates the schema or applies the migrations it
/// lacks (opening the store does that, under the store's own lock against concurrent
/// migrations) and reports the versions. With `--check`, changes nothing and fails (exit 1)
/// unless the schema is at this build's version. JSON: `{"found": n or null, "supported": n,
/// "current": bool}` (and `"migrated_from"` without `--check`).
pub(crate) async fn migrate(db: Option<&str>, check: bool, json: bool) -> Result<(), CliError> {
    let (database, from) = connect::database(db)?;
    let version = database
        .schema_version()
        .await
        .map_err(|e| connect::open_error(e, from))?;
    if version.is_newer() {
        return Err(CliError::operational(format!(
            "the store ({from}) is at schema version {}, newer than this duraflow's {}: \
             upgrade duraflow",
            version.found.unwrap_or_default(),
            version.supported
        )));
    }
    if check {
        report(json, &version, None)?;
        return match version.found {
            _ if version.is_current() => Ok(()),
            None => Err(CliError::operational(format!(
                "the store ({from}) has no duraflow schema; `duraflow migrate` creates it"
            ))),
            Some(found) => Err(CliError::operational(format!(
                "the store ({from}) is at schema version {found} of {}; `duraflow migrate` \
                 applies the {} missing migration(s)",
                version.supported,
                version.supported - found
            ))),
        };
    }
    if !version.is_current() {
        if !json {
            output::message(&match version.found {
                None => format!(
                    "creating the duraflow schema (version {})",
                    version.supported
                ),
                Some(found) => {
                    format!("applying migrations {} to {}", found + 1, version.supported)
                }
            });
        }
        database
            .open()
            .await
            .map_err(|e| connect::open_error(e, from))?;
    }
    let after = database
        .schema_version()
        .await
        .map_err(|e| connect::open_error(e, from))?;
    report(json, &after, Some(version.found))
}

/// Prints the schema's version: a JSON object, or a message.
fn report(
    json: bool,
    version: &SchemaVersion,
    migrated_from: Option<Option<i64>>,
) -> Result<(), CliError> {
    if json {
        let mut value = json!({
            "found": version.found,
            "supported": version.supported,
            "current": version.is_current(),
        });
        if let Some(from) = migrated_from {
            value["migrated_from"] = json!(from);
        }
        return output::json(&value);
    }
    let found = version
        .found
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    output::message(&format!(
        "schema version {found} (this duraflow: {}){}",
        version.supported,
        if version.is_current() {
            ", up to date"
        } else {
            ""
        }
    ));
    Ok(())
}
