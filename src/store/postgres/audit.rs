//! The audit trail on PostgreSQL: one row per write, recorded in the write's transaction,
//! and what `retention` no longer keeps pruned on the way (audit rows, and the changes
//! feed's deletions), as `store/sqlite/audit.rs` does.

use super::conn::Conn;
use super::get;
use crate::audit::{Action, Entry, Kind};
use crate::config::Retention;
use crate::store::Result;

/// Drops the audit rows and tombstones older than `retention` keeps; tokens from before the
/// dropped tombstones get 410 from then on.
///
/// Call it at the start of a write's transaction, before its other writes: when there are
/// tombstones to drop it locks `change_log`, and taking that lock before any customer row,
/// as every customer write does, keeps two writers from waiting on each other.
pub fn prune(conn: &mut Conn, retention: Retention) -> Result<()> {
    let audit_days = i32::try_from(retention.audit_days).unwrap_or(i32::MAX);
    let changes_days = i32::try_from(retention.changes_days).unwrap_or(i32::MAX);
    // One statement, one round trip. The counter row is locked only when a tombstone goes.
    conn.exec(
        "WITH old_audit AS (
             DELETE FROM audit WHERE at < clientele_utc_ms(-make_interval(days => $1))
         ), old_tombstones AS (
             DELETE FROM tombstone
             WHERE deleted_at < clientele_utc_ms(-make_interval(days => $2))
             RETURNING seq
         )
         UPDATE change_log SET pruned_through = old.seq
         FROM (SELECT max(seq) AS seq FROM old_tombstones) old
         WHERE change_log.id = 1 AND old.seq > change_log.pruned_through",
        &[&audit_days, &changes_days],
    )?;
    Ok(())
}

/// Records one write (names only, never a value); call it inside the write's transaction,
/// after [`prune`].
pub fn record(
    conn: &mut Conn,
    actor: &str,
    action: Action,
    customer: Option<i64>,
    fields: &[&str],
    detail: &str,
) -> Result<()> {
    conn.exec(
        "INSERT INTO audit (actor, action, customer, fields, detail) VALUES ($1, $2, $3, $4, $5)",
        &[
            &actor,
            &action.as_str(),
            &customer,
            &fields.join(", "),
            &detail,
        ],
    )?;
    Ok(())
}

/// The newest `limit` rows of `kind`, oldest first, of one customer and/or since a date or
/// time.
pub fn list(
    conn: &mut Conn,
    kind: Kind,
    customer: Option<i64>,
    since: Option<&str>,
    limit: usize,
) -> Result<Vec<Entry>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(
        "SELECT at, actor, action, customer, fields, detail FROM (
             SELECT * FROM audit
             WHERE ($1::bigint IS NULL OR customer = $1) AND ($2::text IS NULL OR at >= $2)
               AND (action = 'login') = $4
             ORDER BY id DESC LIMIT $3
         ) newest ORDER BY id",
        &[&customer, &since, &limit, &kind.logins()],
    )?;
    rows.iter()
        .map(|row| {
            Ok(Entry {
                at: get(row, 0)?,
                actor: get(row, 1)?,
                action: get(row, 2)?,
                customer: get(row, 3)?,
                fields: get(row, 4)?,
                detail: get(row, 5)?,
            })
        })
        .collect()
}
