//! API keys on PostgreSQL, stored only as SHA-256 digests (`store/sqlite/keys.rs` on SQLite).

use super::conn::Conn;
use super::get;
use crate::apikey::{KeyInfo, KeyOptions, Scope};
use crate::store::{Result, StoredKey};

/// A stored scope; anything unexpected is the least capable that can read, as on SQLite.
fn scope(text: &str) -> Scope {
    match text {
        "write" => Scope::Write,
        "public" => Scope::Public,
        _ => Scope::Read,
    }
}

/// Stores a key; `false` when a key of that name exists.
pub fn create(
    conn: &mut Conn,
    name: &str,
    digest: &[u8],
    scope: Scope,
    options: KeyOptions,
) -> Result<bool> {
    let inserted = conn.exec(
        "INSERT INTO api_key (name, digest, scope, forwards_client_address) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        &[
            &name,
            &digest,
            &scope.as_str(),
            &options.forwards_client_address,
        ],
    )?;
    Ok(inserted > 0)
}

/// Every key's name, scope and creation time, oldest first. Never the keys.
pub fn list(conn: &mut Conn) -> Result<Vec<KeyInfo>> {
    conn.query(
        "SELECT name, scope, created_at, forwards_client_address, api_key_use.last_used \
         FROM api_key LEFT JOIN api_key_use ON api_key_use.key_id = api_key.id \
         ORDER BY created_at, name",
        &[],
    )?
    .iter()
    .map(|row| {
        Ok(KeyInfo {
            name: get(row, 0)?,
            scope: scope(&get::<String>(row, 1)?),
            created_at: get(row, 2)?,
            forwards_client_address: get(row, 3)?,
            last_used: get(row, 4)?,
        })
    })
    .collect()
}

/// The keys as the server checks requests against them.
pub fn stored(conn: &mut Conn) -> Result<Vec<StoredKey>> {
    conn.query(
        "SELECT id, digest, name, scope, forwards_client_address FROM api_key",
        &[],
    )?
    .iter()
    .map(|row| {
        Ok(StoredKey {
            id: get(row, 0)?,
            digest: get(row, 1)?,
            name: get(row, 2)?,
            scope: scope(&get::<String>(row, 3)?),
            forwards_client_address: get(row, 4)?,
        })
    })
    .collect()
}

/// Writes when keys were last used (`(key id, time)`), keeping the later of the stored time
/// and this one (every node writes its own); a key revoked meanwhile is skipped.
pub fn record_uses(conn: &mut Conn, uses: &[(i64, String)]) -> Result<()> {
    let ids: Vec<i64> = uses.iter().map(|(id, _)| *id).collect();
    let times: Vec<&str> = uses.iter().map(|(_, at)| at.as_str()).collect();
    conn.exec(
        "INSERT INTO api_key_use (key_id, last_used)
         SELECT api_key.id, used.at FROM unnest($1::bigint[], $2::text[]) AS used (id, at)
         JOIN api_key ON api_key.id = used.id
         ON CONFLICT (key_id) DO UPDATE
             SET last_used = GREATEST(api_key_use.last_used, excluded.last_used)",
        &[&ids, &times],
    )?;
    Ok(())
}

/// Removes the key named `name`; `false` when there is none.
pub fn revoke(conn: &mut Conn, name: &str) -> Result<bool> {
    Ok(conn.exec("DELETE FROM api_key WHERE name = $1", &[&name])? > 0)
}

/// How many keys exist.
pub fn count(conn: &mut Conn) -> Result<usize> {
    let n: i64 = get(&conn.one("SELECT count(*) FROM api_key", &[])?, 0)?;
    Ok(usize::try_from(n).unwrap_or(0))
}
