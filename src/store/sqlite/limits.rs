//! Failed logins and reset requests on SQLite, in the database (`store/postgres/limits.rs`
//! on PostgreSQL), so that `clientele limits` and `clientele unlock` reach them from another
//! process, and a restart keeps them.
//!
//! The server still counts in its own memory first ([`crate::ratelimit`]): that is what makes
//! taking an attempt atomic without a write before the password check. Only what failed is
//! written here, after the check: a successful login writes nothing here (unless the account
//! had failures, which it then clears). `unlock` deletes a subject's rows and leaves a mark
//! (`login_unlock`) that the server reads when it is about to refuse that subject, so a
//! customer unlocked while the server runs gets in at the next attempt.
//!
//! Subjects (`customer:12`, `address:198.51.100.7`...) are stored only as SHA-256 digests;
//! times are milliseconds since 1970. What a visitor typed for an account that does not exist
//! is never written, not even digested ([`crate::ratelimit`]): it is counted in memory only.

use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// A subject as stored: its SHA-256 digest (the server's memory keeps its first 16 bytes).
pub fn digest(subject: &str) -> [u8; 32] {
    Sha256::digest(subject.as_bytes()).into()
}

/// Records one failed attempt against each of `digests`, at `at`; drops a few rows that left
/// the window (`window_ms`) on the way, so the table holds about one window's failures.
pub fn record(
    conn: &Connection,
    digests: &[[u8; 32]],
    at: i64,
    window_ms: i64,
) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO login_failure (subject, at) VALUES (?1, ?2)")?;
        for digest in digests {
            insert.execute(rusqlite::params![digest.as_slice(), at])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM login_failure WHERE rowid IN \
         (SELECT rowid FROM login_failure WHERE at <= ?1 ORDER BY at LIMIT 64)",
    )?
    .execute([at.saturating_sub(window_ms)])?;
    tx.commit()
}

/// Forgets every failure of `digest` (a successful login forgives its account).
pub fn forgive(conn: &Connection, digest: &[u8; 32]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM login_failure WHERE subject = ?1")?
        .execute([digest.as_slice()])?;
    Ok(())
}

/// When each of `digests` was last unlocked by `clientele unlock`, if it was.
pub fn unlocks(conn: &Connection, digests: &[[u8; 32]]) -> rusqlite::Result<Vec<([u8; 32], i64)>> {
    let mut statement = conn.prepare_cached("SELECT at FROM login_unlock WHERE subject = ?1")?;
    let mut found = Vec::new();
    for digest in digests {
        let at: Option<i64> = statement
            .query_row([digest.as_slice()], |row| row.get(0))
            .map(Some)
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        found.extend(at.map(|at| (*digest, at)));
    }
    Ok(found)
}

/// Every failure since `since`, oldest first: what a starting server counts again.
pub fn since(conn: &Connection, since: i64) -> rusqlite::Result<Vec<([u8; 32], i64)>> {
    let mut statement =
        conn.prepare("SELECT subject, at FROM login_failure WHERE at > ?1 ORDER BY at, rowid")?;
    let rows = statement.query_map([since], |row| {
        let subject: Vec<u8> = row.get(0)?;
        Ok((subject, row.get::<_, i64>(1)?))
    })?;
    let mut failures = Vec::new();
    for row in rows {
        let (subject, at) = row?;
        if let Ok(digest) = <[u8; 32]>::try_from(subject.as_slice()) {
            failures.push((digest, at));
        }
    }
    Ok(failures)
}

/// For `clientele limits`: of `subjects`, each one's failures in the window before `now` and
/// the seconds until its next attempt is allowed (0: not locked).
pub fn status(
    conn: &Connection,
    subjects: &[&str],
    max_failures: u32,
    window_ms: i64,
    now: i64,
) -> rusqlite::Result<Vec<(i64, u64)>> {
    let max = i64::from(max_failures.max(1));
    let from = now.saturating_sub(window_ms);
    let mut count =
        conn.prepare_cached("SELECT count(*) FROM login_failure WHERE subject = ?1 AND at > ?2")?;
    // The oldest of the newest `max` failures: the attempt waits until it leaves the window.
    let mut oldest_counted = conn.prepare_cached(
        "SELECT at FROM login_failure WHERE subject = ?1 AND at > ?2 \
         ORDER BY at DESC LIMIT 1 OFFSET ?3 - 1",
    )?;
    let mut status = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let digest = digest(subject);
        let failures: i64 =
            count.query_row(rusqlite::params![digest.as_slice(), from], |row| row.get(0))?;
        let wait_ms = if failures >= max {
            let at: i64 = oldest_counted
                .query_row(rusqlite::params![digest.as_slice(), from, max], |row| {
                    row.get(0)
                })?;
            at.saturating_add(window_ms).saturating_sub(now).max(1)
        } else {
            0
        };
        let wait = u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000);
        status.push((failures, wait));
    }
    Ok(status)
}

/// For `clientele limits`: how many subjects (accounts, addresses) have failures in the
/// window before `now`, and how many of them are locked.
pub fn totals(
    conn: &Connection,
    max_failures: u32,
    window_ms: i64,
    now: i64,
) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT count(*), COALESCE(sum(failures >= ?1), 0) FROM (
             SELECT subject, count(*) AS failures FROM login_failure WHERE at > ?2
             GROUP BY subject)",
        rusqlite::params![
            i64::from(max_failures.max(1)),
            now.saturating_sub(window_ms)
        ],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// For `clientele unlock`: forgets every failure of `subjects`, and marks them unlocked at
/// `now` for a running server, which counts in memory too; how many failures were forgotten.
pub fn clear(
    conn: &Connection,
    subjects: &[&str],
    window_ms: i64,
    now: i64,
) -> rusqlite::Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let mut cleared = 0;
    for subject in subjects {
        let digest = digest(subject);
        cleared += tx.execute(
            "DELETE FROM login_failure WHERE subject = ?1",
            [digest.as_slice()],
        )?;
        tx.execute(
            "INSERT INTO login_unlock (subject, at) VALUES (?1, ?2) \
             ON CONFLICT (subject) DO UPDATE SET at = excluded.at",
            rusqlite::params![digest.as_slice(), now],
        )?;
    }
    // A mark older than the window has nothing left to clear in any server's memory.
    tx.execute(
        "DELETE FROM login_unlock WHERE at < ?1",
        [now.saturating_sub(window_ms)],
    )?;
    tx.commit()?;
    Ok(u64::try_from(cleared).unwrap_or(0))
}
