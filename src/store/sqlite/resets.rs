//! Password-reset tokens on SQLite, stored by the SHA-256 digest of the token.

use rusqlite::{Connection, OptionalExtension};

use super::audit;
use crate::audit::Action;
use crate::config::Retention;

/// Stores a token (its `digest`) for customer `id`, valid `minutes`, ending the customer's
/// older ones, with the request's audit row, in one transaction; when it expires.
pub fn store(
    conn: &mut Connection,
    digest: &[u8],
    id: i64,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> rusqlite::Result<String> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM reset_token WHERE customer = ?1", [id])?;
    let expires: String = tx.query_row(
        "INSERT INTO reset_token (digest, customer, expires) \
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3)) RETURNING expires",
        rusqlite::params![digest, id, format!("+{minutes} minutes")],
        |row| row.get(0),
    )?;
    audit::record(
        &tx,
        actor,
        Action::PasswordResetRequest,
        Some(id),
        &[],
        "",
        retention,
    )?;
    tx.commit()?;
    Ok(expires)
}

/// The customer a still-valid token (its `digest`) resets, if any.
pub fn holder(conn: &Connection, digest: &[u8]) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT customer FROM reset_token WHERE digest = ?1 \
         AND expires > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        [digest],
        |row| row.get(0),
    )
    .optional()
}

/// Spends a token: sets the password of its customer to `hash` (which ends every token of
/// that customer, by trigger), with its audit row, in one transaction.
pub fn spend(
    conn: &mut Connection,
    digest: &[u8],
    hash: &str,
    actor: &str,
    retention: Retention,
) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(id) = holder(&tx, digest)? else {
        return Ok(None);
    };
    let changed = tx.execute(
        "UPDATE customer SET password_hash = ?2, \
         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE clcleunik = ?1",
        rusqlite::params![id, hash],
    )?;
    if changed != 1 {
        return Ok(None);
    }
    audit::record(
        &tx,
        actor,
        Action::PasswordReset,
        Some(id),
        &["password"],
        "with a reset token",
        retention,
    )?;
    tx.commit()?;
    Ok(Some(id))
}
