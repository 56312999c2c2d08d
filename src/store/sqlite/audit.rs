//! The audit trail on SQLite.

use rusqlite::Connection;

use crate::audit::{Action, Entry, Kind};
use crate::config::Retention;

/// Records one write; call it inside the write's transaction, so both commit or neither.
/// Prunes what `retention` no longer keeps on the way: audit rows, and the changes feed's
/// deletions.
pub fn record(
    conn: &Connection,
    actor: &str,
    action: Action,
    customer: Option<i64>,
    fields: &[&str],
    detail: &str,
    retention: Retention,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (actor, action, customer, fields, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        actor,
        action.as_str(),
        customer,
        fields.join(", "),
        detail
    ])?;
    conn.prepare_cached("DELETE FROM audit WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)")?
        .execute([format!("-{} days", retention.audit_days)])?;
    super::customers::prune_tombstones(conn, retention.changes_days)?;
    Ok(())
}

/// The newest `limit` rows of `kind` (writes, or login attempts), oldest first, of one
/// customer and/or since a date or time (`2026-11-01`, or an ISO time), for `clientele audit`.
pub fn list(
    conn: &Connection,
    kind: Kind,
    customer: Option<i64>,
    since: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Entry>> {
    let mut statement = conn.prepare(
        "SELECT at, actor, action, customer, fields, detail FROM (
             SELECT * FROM audit
             WHERE (?1 IS NULL OR customer = ?1) AND (?2 IS NULL OR at >= ?2)
               AND (action = 'login') = ?4
             ORDER BY id DESC LIMIT ?3
         ) ORDER BY id",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let params = rusqlite::params![customer, since, limit, kind.logins()];
    let rows = statement.query_map(params, |row| {
        Ok(Entry {
            at: row.get(0)?,
            actor: row.get(1)?,
            action: row.get(2)?,
            customer: row.get(3)?,
            fields: row.get(4)?,
            detail: row.get(5)?,
        })
    })?;
    rows.collect()
}
