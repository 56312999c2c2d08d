//! Customer sessions on PostgreSQL, stored by the SHA-256 digest of their token
//! (`store/sqlite/sessions.rs` on SQLite). Times are texts in UTC: `created` to the
//! millisecond (which of two sessions is newer), `expires` to the second.

use super::conn::{Begin, Conn};
use super::{get, retrying};
use crate::store::Result;

/// The advisory locks that serialise the logins of one customer, so that two nodes opening
/// sessions for them at once cannot both keep their newest `max_per_customer - 1` others and
/// end up above the cap ("Cls1").
const SESSION_LOCKS: i32 = 0x436C_7331;

/// The advisory lock key of customer `id` (two ids may share one: they only wait on each
/// other a little).
pub fn lock_key(id: i64) -> i32 {
    (id ^ (id >> 32)) as i32
}

/// Opens a session (its token's `digest`) for customer `id`, valid `days` days, sweeping
/// expired ones and keeping the customer's newest `max_per_customer` (this one included);
/// when it expires.
pub fn open(
    conn: &mut Conn,
    digest: &[u8],
    id: i64,
    days: u32,
    max_per_customer: i64,
) -> Result<String> {
    // On its own, outside the transaction: logins sweeping at once wait only for each other's
    // deletes, and never hold a lock on the whole table for long.
    conn.exec(
        "DELETE FROM session WHERE expires <= clientele_utc_s()",
        &[],
    )?;
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    // As SQLite's LIMIT -1: a cap below one keeps every other session.
    let others = max_per_customer.checked_sub(1).filter(|keep| *keep >= 0);
    retrying(conn, |conn| {
        let mut tx = conn.begin(Begin::Write)?;
        tx.one(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&SESSION_LOCKS, &lock_key(id)],
        )?;
        let expires: String = get(
            &tx.one(
                "INSERT INTO session (digest, customer, created, expires) \
                 VALUES ($1, $2, clientele_utc_ms(), clientele_utc_s(make_interval(days => $3))) \
                 RETURNING expires",
                &[&digest, &id, &days],
            )?,
            0,
        )?;
        // The new session always stays; of the others, the newest MAX - 1.
        tx.exec(
            "DELETE FROM session WHERE customer = $1 AND digest <> $3 AND digest NOT IN \
             (SELECT digest FROM session WHERE customer = $1 AND digest <> $3 \
              ORDER BY created DESC, expires DESC LIMIT $2)",
            &[&id, &others, &digest],
        )?;
        tx.commit()?;
        Ok(expires)
    })
}

/// The stored digest and customer of the live session `digest`.
pub fn find(conn: &mut Conn, digest: &[u8]) -> Result<Option<(Vec<u8>, i64)>> {
    conn.opt(
        "SELECT digest, customer FROM session WHERE digest = $1 AND expires > clientele_utc_s()",
        &[&digest],
    )?
    .map(|row| Ok((get(&row, 0)?, get(&row, 1)?)))
    .transpose()
}

/// Ends the live session `digest`; `false` when there was none.
pub fn end(conn: &mut Conn, digest: &[u8]) -> Result<bool> {
    let ended = conn.exec(
        "DELETE FROM session WHERE digest = $1 AND expires > clientele_utc_s()",
        &[&digest],
    )?;
    Ok(ended > 0)
}

/// The sessions of a customer as stored (digest, created, expires).
pub type Stored = Vec<(Vec<u8>, String, String)>;

/// Customer `id`'s sessions, to be put back by [`restore`] in the same transaction around a
/// write that must not end them (the same password re-hashed at login).
pub fn save(conn: &mut Conn, id: i64) -> Result<Stored> {
    conn.query(
        "SELECT digest, created, expires FROM session WHERE customer = $1",
        &[&id],
    )?
    .iter()
    .map(|row| Ok((get(row, 0)?, get(row, 1)?, get(row, 2)?)))
    .collect()
}

/// Puts back sessions read by [`save`] (those still there are left as they are).
pub fn restore(conn: &mut Conn, id: i64, stored: &Stored) -> Result<()> {
    for (digest, created, expires) in stored {
        conn.exec(
            "INSERT INTO session (digest, customer, created, expires) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO NOTHING",
            &[digest, &id, created, expires],
        )?;
    }
    Ok(())
}
