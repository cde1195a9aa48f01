//! The registry: what engines announce they serve (see `duraflow_store::registry`).

use duraflow_core::Timestamp;
use duraflow_store::{Registered, Registration};
use rusqlite::{params, Connection};

use crate::error::SqlResult;

/// Records `registrations` as seen at `now`, keeping a later time (and its version) already
/// there.
pub(crate) fn announce(
    conn: &Connection,
    registrations: &[Registration],
    now: Timestamp,
) -> SqlResult<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO registrations (kind, queue, name, last_seen, version)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, queue, name) DO UPDATE
            SET last_seen = max(last_seen, excluded.last_seen),
                version = iif(excluded.last_seen >= last_seen, excluded.version, version)",
    )?;
    for r in registrations {
        upsert.execute(params![r.kind.as_str(), r.queue, r.name, now.0, r.version])?;
    }
    Ok(())
}

/// Every registration, workflows first, then by queue and name.
pub(crate) fn list(conn: &Connection) -> SqlResult<Vec<Registered>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, queue, name, last_seen, version FROM registrations
          ORDER BY kind = 'activity', queue, name",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let kind = duraflow_store::codec::registered_kind(&kind)?;
        out.push(Registered {
            registration: Registration::new(
                kind,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            )
            .with_version(row.get(4)?),
            last_seen: Timestamp(row.get(3)?),
        });
    }
    Ok(out)
}
