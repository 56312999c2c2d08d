//! Customer sessions: what a successful LOGIN hands out so that a browser holding a *public*
//! API key can act for that one customer and nobody else.
//!
//! A token is 256 random bits behind the prefix [`PREFIX`], which no API key has (keys start
//! `clt_`), so a `Bearer` value says by itself whether it is a session or a key. Only its
//! SHA-256 digest is stored (table `session`): the database file never holds a token, and
//! a token cannot be guessed, so a fast digest is enough. Sessions end when they expire, on
//! `POST /CUSTOMER/LOGOUT/` (that one), and, by trigger, when the customer's password changes
//! or the customer is deleted (all of theirs), whichever process makes the change.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rocket::request::Request;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Secret;
use crate::store::{self, Backend};

/// What every session token starts with. API keys start `clt_`.
pub const PREFIX: &str = "cls_";

type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A session just opened: the token (shown once, in LOGIN's answer) and when it expires.
pub struct NewSession {
    pub token: Secret,
    /// RFC 3339, UTC: `2026-12-29T17:58:00Z`.
    pub expires: String,
}

/// The most live sessions one customer keeps (phones, computers, browsers): a new login beyond
/// it ends that customer's oldest, so that logging in in a loop cannot grow the database.
pub const MAX_PER_CUSTOMER: i64 = 50;

/// Opens a session for customer `id`, valid `days` days. Expired sessions are swept out on
/// the way, so the table holds only live ones and a few; a customer keeps at most
/// [`MAX_PER_CUSTOMER`].
pub fn open(conn: &mut dyn Backend, id: i64, days: u32) -> store::Result<NewSession> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let expires = conn.open_session(&digest(&token), id, days, MAX_PER_CUSTOMER)?;
    Ok(NewSession {
        token: Secret::new(token),
        expires,
    })
}

/// The customer a live session token belongs to, or `None` (unknown, tampered, ended or
/// expired: the caller cannot tell which, and need not).
pub fn customer(conn: &mut dyn Backend, token: &str) -> store::Result<Option<i64>> {
    let wanted = digest(token);
    let found = conn.session(&wanted)?;
    // The index found it by digest; comparing again in constant time costs nothing and
    // keeps the last word away from a byte-by-byte comparison.
    Ok(found.and_then(|(stored, id)| bool::from(stored.as_slice().ct_eq(&wanted)).then_some(id)))
}

/// Ends the live session `token`; `false` when there was none (unknown, ended or expired).
pub fn end(conn: &mut dyn Backend, token: &str) -> store::Result<bool> {
    conn.end_session(&digest(token))
}

/// The session token a request presents: an `Authorization: Bearer` value with the session
/// prefix (any other `Bearer` value is an API key). Never logged: headers are not.
pub fn presented<'r>(request: &'r Request<'_>) -> Option<&'r str> {
    request
        .headers()
        .get("Authorization")
        .filter_map(bearer)
        .find(|value| value.starts_with(PREFIX))
}

/// The value of an `Authorization: Bearer VALUE` header (the scheme in any case).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, value) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether an `Authorization` header value carries a session token (the front layer's memo
/// must not keep such answers: a session can expire without any commit).
pub fn is_session_header(header: &[u8]) -> bool {
    std::str::from_utf8(header)
        .ok()
        .and_then(bearer)
        .is_some_and(|value| value.starts_with(PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn conn() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE session (digest BLOB PRIMARY KEY, customer INTEGER NOT NULL, \
             created TEXT NOT NULL DEFAULT '', expires TEXT NOT NULL, \
             opened INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
        )
        .unwrap();
        conn
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_as_digests_only() {
        let mut conn = conn();
        let a = open(&mut conn, 7, 30).unwrap();
        let b = open(&mut conn, 7, 30).unwrap();
        assert_ne!(a.token, b.token);
        let body = a.token.expose().strip_prefix(PREFIX).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert!(
            a.expires.ends_with('Z') && a.expires.len() == 20,
            "{}",
            a.expires
        );
        assert_eq!(customer(&mut conn, a.token.expose()).unwrap(), Some(7));
        let stored: Vec<Vec<u8>> = conn
            .prepare("SELECT digest FROM session")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(stored.contains(&digest(a.token.expose()).to_vec()));
        assert!(end(&mut conn, a.token.expose()).unwrap());
        assert!(!end(&mut conn, a.token.expose()).unwrap());
        assert_eq!(customer(&mut conn, a.token.expose()).unwrap(), None);
        assert_eq!(customer(&mut conn, b.token.expose()).unwrap(), Some(7));
        assert_eq!(customer(&mut conn, "cls_nothing").unwrap(), None);
    }

    #[test]
    fn bearer_values_tell_sessions_from_keys() {
        assert_eq!(bearer("Bearer cls_abc"), Some("cls_abc"));
        assert_eq!(bearer("bearer  clt_abc "), Some("clt_abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert!(is_session_header(b"Bearer cls_x"));
        assert!(!is_session_header(b"Bearer clt_x"));
        assert!(!is_session_header(&[0xff, 0xfe]));
    }
}
