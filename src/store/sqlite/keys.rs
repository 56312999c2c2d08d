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

/// Every key's name, scope, creation time and last use, oldest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<KeyInfo>> {
    let mut statement = conn.prepare(
        "SELECT name, scope, created_at, forwards_client_address, api_key_use.last_used \
         FROM api_key LEFT JOIN api_key_use ON api_key_use.key_id = api_key.rowid \
         ORDER BY created_at, name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(KeyInfo {
            name: row.get(0)?,
            scope: Scope::from_stored(&row.get::<_, String>(1)?),
            created_at: row.get(2)?,
            forwards_client_address: row.get(3)?,
            last_used: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// Every key's id, digest, name, scope and options: what requests are checked against.
pub fn stored(conn: &Connection) -> rusqlite::Result<Vec<StoredKey>> {
    let mut statement = conn.prepare_cached(
        "SELECT rowid, digest, name, scope, forwards_client_address FROM api_key",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(StoredKey {
            id: row.get(0)?,
            digest: row.get(1)?,
            name: row.get(2)?,
            scope: Scope::from_stored(&row.get::<_, String>(3)?),
            forwards_client_address: row.get(4)?,
        })
    })?;
    rows.collect()
}

/// Writes when keys were last used (`(key id, time)`, times as the audit trail writes
/// them), keeping the later of the stored and the new time. A key revoked meanwhile is
/// skipped; so is a rowid SQLite gave again to a key created after that use, or in the same
/// second (`created_at` has whole seconds): a use in a key's first second may go unwritten
/// until its next, but a revoked key's use never lands on its successor.
pub fn record_uses(conn: &Connection, uses: &[(i64, String)]) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO api_key_use (key_id, last_used) \
             SELECT rowid, ?2 FROM api_key \
             WHERE rowid = ?1 AND substr(created_at, 1, 19) < substr(?2, 1, 19) \
             ON CONFLICT (key_id) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
        )?;
        for (id, at) in uses {
            upsert.execute(rusqlite::params![id, at])?;
        }
    }
    tx.commit()
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
