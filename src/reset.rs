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
use sha2::{Digest, Sha256};

use crate::auth::Secret;
use crate::config::Retention;
use crate::store::{self, Backend};

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
    conn: &mut dyn Backend,
    id: i64,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> store::Result<Issued> {
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
    conn: &mut dyn Backend,
    id: i64,
    token: &Secret,
    minutes: u32,
    actor: &str,
    retention: Retention,
) -> store::Result<String> {
    conn.store_reset(&digest(token.expose()), id, minutes, actor, retention)
}

/// The customer a still-valid `token` resets, if any.
pub fn holder(conn: &mut dyn Backend, token: &Secret) -> store::Result<Option<i64>> {
    if !token.expose().starts_with(PREFIX) {
        return Ok(None);
    }
    conn.reset_holder(&digest(token.expose()))
}

/// Sets the password `token` resets to `hash`, if the token is still valid, and ends every
/// reset token of that customer, with its audit row, in one transaction: of two requests
/// spending one token at once, one succeeds. The customer's id, or `None` for a token that
/// cannot be used (wrong, used, expired, or its customer deleted).
pub fn spend(
    conn: &mut dyn Backend,
    token: &Secret,
    hash: &str,
    actor: &str,
    retention: Retention,
) -> store::Result<Option<i64>> {
    if !token.expose().starts_with(PREFIX) {
        return Ok(None);
    }
    conn.spend_reset(&digest(token.expose()), hash, actor, retention)
}
