//! The registry: what engines announce they serve (see `duraflow_store::registry`).

use duraflow_core::Timestamp;
use duraflow_store::{Registered, RegisteredKind, Registration, StoreError};
use sqlx::{PgConnection, Row};

use crate::error::OpResult;

/// The statement of [`announce`]: `$1`..`$3` the kinds, queues and names, `$4` now.
pub(crate) const ANNOUNCE: &str = "INSERT INTO registrations (kind, queue, name, last_seen)
     SELECT kind, queue, name, $4 FROM unnest($1::text[], $2::text[], $3::text[])
         AS r(kind, queue, name)
     ON CONFLICT (kind, queue, name) DO UPDATE
        SET last_seen = GREATEST(registrations.last_seen, excluded.last_seen)";

/// Records `registrations` as seen at `now` in one statement, keeping a later time already
/// there.
pub(crate) async fn announce(
    conn: &mut PgConnection,
    registrations: &[Registration],
    now: Timestamp,
) -> OpResult<()> {
    // One row per registration: ON CONFLICT may not touch a row twice in one statement.
    let mut unique: Vec<&Registration> = registrations.iter().collect();
    unique.sort();
    unique.dedup();
    let kinds: Vec<&str> = unique.iter().map(|r| r.kind.as_str()).collect();
    let queues: Vec<&str> = unique.iter().map(|r| r.queue.as_str()).collect();
    let names: Vec<&str> = unique.iter().map(|r| r.name.as_str()).collect();
    sqlx::query(ANNOUNCE)
        .bind(&kinds)
        .bind(&queues)
        .bind(&names)
        .bind(now.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The statement of [`list`].
pub(crate) const LIST: &str = "SELECT kind, queue, name, last_seen FROM registrations
      ORDER BY kind = 'activity', queue COLLATE \"C\", name COLLATE \"C\"";

/// Every registration, workflows first, then by queue and name.
pub(crate) async fn list(conn: &mut PgConnection) -> OpResult<Vec<Registered>> {
    let rows = sqlx::query(LIST).fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get(0)?;
        let kind = RegisteredKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("registration of unknown kind {kind:?}")))?;
        out.push(Registered {
            registration: Registration::new(
                kind,
                row.try_get::<String, _>(1)?,
                row.try_get::<String, _>(2)?,
            ),
            last_seen: Timestamp(row.try_get(3)?),
        });
    }
    Ok(out)
}
