//! Password-reset tokens on PostgreSQL, stored by the SHA-256 digest of the token
//! (`store/sqlite/resets.rs` on SQLite).

use super::conn::{Begin, Conn};
use super::{audit, get, retrying, sessions};
use crate::audit::Action;
use crate::config::Retention;
use crate::store::Result;

/// The advisory locks that serialise the reset requests of one customer, so that of two made
/// at once on two nodes only the later token is left ("Clr1").
const RESET_LOCKS: i32 = 0x436C_7231;

/// Stores a token (its `digest`) for customer `id`, valid `minutes`, ending the customer's
/// older ones, with the request's audit row, in one transaction; when it expires.
pub fn store(
    conn: &mut Conn,
    digest: &[u8],
    id: i64,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> Result<String> {
    let minutes = i32::try_from(minutes).unwrap_or(i32::MAX);
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::Write)?;
        audit::prune(&mut tx, retention)?;
        tx.one(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&RESET_LOCKS, &sessions::lock_key(id)],
        )?;
        tx.exec("DELETE FROM reset_token WHERE customer = $1", &[&id])?;
        let expires: String = get(
            &tx.one(
                "INSERT INTO reset_token (digest, customer, expires) \
                 VALUES ($1, $2, clientele_utc_s(make_interval(mins => $3))) RETURNING expires",
                &[&digest, &id, &minutes],
            )?,
            0,
        )?;
        audit::record(
            &mut tx,
            actor,
            Action::PasswordResetRequest,
            Some(id),
            &[],
            "",
        )?;
        tx.commit()?;
        Ok(expires)
    })
}

/// The customer a still-valid token resets, if any.
pub fn holder(conn: &mut Conn, digest: &[u8]) -> Result<Option<i64>> {
    conn.opt(
        "SELECT customer FROM reset_token WHERE digest = $1 AND expires > clientele_utc_s()",
        &[&digest],
    )?
    .map(|row| get(&row, 0))
    .transpose()
}

/// Spends a token: sets the password it resets to `hash` and ends every reset token of that
/// customer (a trigger does, on the password change), with its audit row, in one
/// transaction. The token's row is deleted first, which locks it: of several requests
/// spending one token at once, on any nodes, exactly one finds it. The customer, or `None`
/// for a token that cannot be used (wrong, used, expired, or its customer deleted).
pub fn spend(
    conn: &mut Conn,
    digest: &[u8],
    hash: &str,
    actor: &str,
    retention: Retention,
) -> Result<Option<i64>> {
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::Write)?;
        audit::prune(&mut tx, retention)?;
        let Some(row) = tx.opt(
            "DELETE FROM reset_token WHERE digest = $1 AND expires > clientele_utc_s() \
             RETURNING customer",
            &[&digest],
        )?
        else {
            return Ok(None);
        };
        let id: i64 = get(&row, 0)?;
        let changed = tx.exec(
            "UPDATE customer SET password_hash = $2, updated_at = clientele_utc_ms() \
             WHERE clcleunik = $1",
            &[&id, &hash],
        )?;
        if changed != 1 {
            // Rolled back: nothing was spent.
            return Ok(None);
        }
        audit::record(
            &mut tx,
            actor,
            Action::PasswordReset,
            Some(id),
            &["password"],
            "with a reset token",
        )?;
        tx.commit()?;
        Ok(Some(id))
    })
}
