//! The registry: what engines announce they serve (see `duraflow_store::registry`).

use duraflow_core::Timestamp;
use duraflow_store::{Registered, Registration};
use sqlx::{PgConnection, Row};

use crate::error::OpResult;

/// The statement of [`announce`]: `$1`..`$3` the kinds, queues and names, `$4` now, `$5` the
/// versions.
pub(crate) const ANNOUNCE: &str =
    "INSERT INTO registrations (kind, queue, name, last_seen, version)
     SELECT kind, queue, name, $4, version
       FROM unnest($1::text[], $2::text[], $3::text[], $5::text[])
         AS r(kind, queue, name, version)
     ON CONFLICT (kind, queue, name) DO UPDATE
        SET last_seen = GREATEST(registrations.last_seen, excluded.last_seen),
            version = CASE WHEN excluded.last_seen >= registrations.last_seen
                           THEN excluded.version ELSE registrations.version END";

/// Records `registrations` as seen at `now` in one statement, keeping a later time (and its
/// version) already there.
pub(crate) async fn announce(
    conn: &mut PgConnection,
    registrations: &[Registration],
    now: Timestamp,
) -> OpResult<()> {
    // One row per registration: ON CONFLICT may not touch a row twice in one statement.
    let mut unique: Vec<&Registration> = registrations.iter().collect();
    unique.sort();
    unique.dedup_by(|a, b| (a.kind, &a.queue, &a.name) == (b.kind, &b.queue, &b.name));
    let kinds: Vec<&str> = unique.iter().map(|r| r.kind.as_str()).collect();
    let queues: Vec<&str> = unique.iter().map(|r| r.queue.as_str()).collect();
    let names: Vec<&str> = unique.iter().map(|r| r.name.as_str()).collect();
    let versions: Vec<Option<&str>> = unique.iter().map(|r| r.version.as_deref()).collect();
    sqlx::query(ANNOUNCE)
        .bind(&kinds)
        .bind(&queues)
        .bind(&names)
        .bind(now.0)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The statement of [`list`].
pub(crate) const LIST: &str = "SELECT kind, queue, name, last_seen, version FROM registrations
      ORDER BY kind = 'activity', queue COLLATE \"C\", name COLLATE \"C\"";

/// Every registration, workflows first, then by queue and name.
pub(crate) async fn list(conn: &mut PgConnection) -> OpResult<Vec<Registered>> {
    let rows = sqlx::query(LIST).fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get(0)?;
        let kind = duraflow_store::codec::registered_kind(&kind)?;
        out.push(Registered {
            registration: Registration::new(
                kind,
                row.try_get::<String, _>(1)?,
                row.try_get::<String, _>(2)?,
            )
            .with_version(row.try_get(4)?),
            last_seen: Timestamp(row.try_get(3)?),
        });
    }
    Ok(out)
}
