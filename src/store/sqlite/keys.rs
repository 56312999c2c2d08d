//! API keys on SQLite, stored only as SHA-256 digests.

use rusqlite::Connection;

use crate::apikey::{KeyInfo, KeyOptions, Scope};
use crate::store::StoredKey;

/// Stores a key; `false` when a key of that name exists.
pub fn create(
    conn: &Connection,
    name: &str,
    digest: &[u8],
    scope: Scope,
    options: KeyOptions,
) -> rusqlite::Result<bool> {
    let inserted = conn.execute(
        "INSERT INTO api_key (name, digest, scope, forwards_client_address) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
        rusqlite::params![
            name,
            digest,
            scope.as_str(),
            options.forwards_client_address
        ],
    )?;
    Ok(inserted > 0)
}

/// Every key's name, scope and creation time, oldest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<KeyInfo>> {
    let mut statement = conn.prepare(
        "SELECT name, scope, created_at, forwards_client_address FROM api_key \
             ORDER BY created_at, name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(KeyInfo {
            name: row.get(0)?,
            scope: Scope::from_stored(&row.get::<_, String>(1)?),
            created_at: row.get(2)?,
            forwards_client_address: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Every key's digest, name, scope and options: what requests are checked against.
pub fn stored(conn: &Connection) -> rusqlite::Result<Vec<StoredKey>> {
    let mut statement =
        conn.prepare_cached("SELECT digest, name, scope, forwards_client_address FROM api_key")?;
    let rows = statement.query_map([], |row| {
        Ok(StoredKey {
            digest: row.get(0)?,
            name: row.get(1)?,
            scope: Scope::from_stored(&row.get::<_, String>(2)?),
            forwards_client_address: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Removes the key named `name`; `false` when there was none.
pub fn revoke(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM api_key WHERE name = ?1", [name])? > 0)
}

/// How many keys exist.
pub fn count(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT count(*) FROM api_key", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
}
