//! One-time password-reset tokens: made by `POST /CUSTOMER/PASSWORD/RESET/`, spent once by
//! `POST /CUSTOMER/PASSWORD/` with `resetToken`.
//!
//! A token is 256 random bits, so it is looked up by its SHA-256 digest (the only thing
//! stored): the database file holds nothing that resets a password, and a lookup by digest
//! tells a guesser nothing about any token. A newer reset of the same customer ends the older
//! tokens; spending one, or any other change of the password (by any program: a trigger
//! does it), ends them all.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::audit::{self, Action};
use crate::auth::Secret;
use crate::config::Retention;

/// What every reset token starts with: no API key (`clt_`) or other token has it.
pub const PREFIX: &str = "clr_";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token just made, to hand to the shop (or to email), and when it stops working.
pub struct Issued {
    pub token: Secret,
    /// RFC 3339, UTC.
    pub expires: String,
}

/// Makes a token for customer `id`, valid `minutes`, ending the customer's older ones, and
/// records the request in the audit trail (never the token), in one transaction.
pub fn issue(
    conn: &mut Connection,
    id: i64,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> rusqlite::Result<Issued> {
    let token = new_token();
    let expires = store(conn, id, &token, minutes, actor, retention)?;
    Ok(Issued { token, expires })
}

/// A fresh token, not stored yet (see [`store`]): an emailed one is stored only once the
/// message is sent, so that a failed send changes nothing.
pub fn new_token() -> Secret {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Stores `token` for customer `id`, valid `minutes`, ending the customer's older ones, with
/// the request's audit row (never the token), in one transaction; when it expires.
pub fn store(
    conn: &mut Connection,
    id: i64,
    token: &Secret,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> rusqlite::Result<String> {
    let token = token.expose();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("DELETE FROM reset_token WHERE customer = ?1", [id])?;
    let expires: String = tx.query_row(
        "INSERT INTO reset_token (digest, customer, expires) \
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3)) RETURNING expires",
        rusqlite::params![digest(token).as_slice(), id, format!("+{minutes} minutes")],
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

/// The customer a still-valid `token` resets, if any.
pub fn holder(conn: &Connection, token: &Secret) -> rusqlite::Result<Option<i64>> {
    if !token.expose().starts_with(PREFIX) {
        return Ok(None);
    }
    conn.query_row(
        "SELECT customer FROM reset_token WHERE digest = ?1 \
         AND expires > strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
        [digest(token.expose()).as_slice()],
        |row| row.get(0),
    )
    .optional()
}

/// Sets the password `token` resets to `hash`, if the token is still valid, and ends every
/// reset token of that customer, with its audit row, in one transaction: of two requests
/// spending one token at once, one succeeds. The customer's id, or `None` for a token that
/// cannot be used (wrong, used, expired, or its customer deleted).
pub fn spend(
    conn: &mut Connection,
    token: &Secret,
    hash: &str,
    actor: &str,
    retention: Retention,
) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(id) = holder(&tx, token)? else {
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
    // (The password change itself ended every token of the customer: a trigger does it.)
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
