//! Customer sessions on SQLite, stored by the SHA-256 digest of their token.

use rusqlite::{Connection, OptionalExtension};

/// "Now" as the `session` table stores times: RFC 3339, UTC, to the second. Text in this
/// form sorts as time does, so expiry is a string comparison in SQL.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// Opens a session (its token's `digest`) for customer `id`, valid `days` days, sweeping
/// expired ones and keeping the customer's newest `max_per_customer`; when it expires.
pub fn open(
    conn: &Connection,
    digest: &[u8],
    id: i64,
    days: u32,
    max_per_customer: i64,
) -> rusqlite::Result<String> {
    conn.execute(&format!("DELETE FROM session WHERE expires <= {NOW}"), [])?;
    let expires: String = conn.query_row(
        "INSERT INTO session (digest, customer, created, expires, opened) \
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 strftime('%Y-%m-%dT%H:%M:%SZ', 'now', ?3), \
                 (SELECT COALESCE(MAX(opened), 0) + 1 FROM session)) RETURNING expires",
        rusqlite::params![digest, id, format!("+{days} days")],
        |row| row.get(0),
    )?;
    // The new session always stays; of the others, the newest MAX - 1.
    conn.execute(
        "DELETE FROM session WHERE customer = ?1 AND digest != ?3 AND digest NOT IN \
         (SELECT digest FROM session WHERE customer = ?1 AND digest != ?3 \
          ORDER BY created DESC, opened DESC, expires DESC LIMIT ?2)",
        rusqlite::params![id, max_per_customer - 1, digest],
    )?;
    Ok(expires)
}

/// The stored digest and customer of the live session `digest`.
pub fn find(conn: &Connection, digest: &[u8]) -> rusqlite::Result<Option<(Vec<u8>, i64)>> {
    conn.prepare_cached(&format!(
        "SELECT digest, customer FROM session WHERE digest = ?1 AND expires > {NOW}"
    ))?
    .query_row([digest], |row| Ok((row.get(0)?, row.get(1)?)))
    .optional()
}

/// Ends the live session `digest`; `false` when there was none.
pub fn end(conn: &Connection, digest: &[u8]) -> rusqlite::Result<bool> {
    let ended = conn.execute(
        &format!("DELETE FROM session WHERE digest = ?1 AND expires > {NOW}"),
        [digest],
    )?;
    Ok(ended > 0)
}

/// The sessions of a customer as stored (digest, created, expires).
pub type Stored = Vec<(Vec<u8>, String, String)>;

/// Customer `id`'s sessions, to be put back by [`restore`] in the same transaction around a
/// write that must not end them (the same password re-hashed at login).
pub fn save(conn: &Connection, id: i64) -> rusqlite::Result<Stored> {
    let mut statement =
        conn.prepare_cached("SELECT digest, created, expires FROM session WHERE customer = ?1")?;
    let rows = statement.query_map([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}

/// Puts back sessions read by [`save`] (those still there are left as they are).
pub fn restore(conn: &Connection, id: i64, stored: &Stored) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(
        "INSERT OR IGNORE INTO session (digest, customer, created, expires) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (digest, created, expires) in stored {
        statement.execute(rusqlite::params![digest, id, created, expires])?;
    }
    Ok(())
}
