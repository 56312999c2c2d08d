//! Writing records to the store: two passes (check and hash without a lock, then write in
//! one transaction), as `clientele import` and the demo seeding do.

use std::collections::HashMap;

use rusqlite::{params_from_iter, Connection, OptionalExtension, ToSql};

use crate::auth::{PasswordHasher, Secret, Verdict};
use crate::customer::{Customer, Field, COLUMNS};
use crate::transfer::{record_error, PasswordInput, RecordError, Records};

/// What a write did (or, in a dry run, would do), for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    /// Passwords run through Argon2 (hashed, or verified against the stored hash).
    pub hashed: usize,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    /// Demo customers removed before the import (see [`import`]); not counted in `deleted`.
    pub demo_removed: usize,
}

/// Progress callbacks, so the command line can draw bars; the library draws nothing.
pub trait Progress: Sync {
    /// A phase starts with `total` steps: "checking passwords", "writing".
    fn phase(&self, name: &'static str, total: usize);
    /// One more step of the current phase is done.
    fn step(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &'static str, _: usize) {}
    fn step(&self) {}
}

/// Tells, without Argon2, whether a plain-text password is the one a previous sync stored:
/// a keyed digest, kept in `upstream_password` (see [`crate::sync`]).
pub trait KnownPasswords: Sync {
    /// The digest of `password` for customer `id`.
    fn digest(&self, id: i64, password: &Secret) -> [u8; 32];
}

/// How an import treats the customers already stored.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Also delete the customers that are not in the file.
    pub replace: bool,
    /// With `replace`, accept a file with no customers (it deletes them all).
    pub allow_empty: bool,
    /// Check and count, write nothing.
    pub dry_run: bool,
    /// Record the import in the audit trail as this actor and action (`cli`/import,
    /// `sync`/sync), kept as long as the retention says; `None` for the demo seeding.
    pub audit: Option<(&'a str, crate::audit::Action, crate::config::Retention)>,
    /// For a sync: plain-text passwords whose digest matches the stored one keep their hash
    /// without any Argon2 work; the others are hashed without verifying first.
    pub known: Option<&'a dyn KnownPasswords>,
}

/// The most bad values one check reports before it stops reading.
pub const MAX_REPORTED: usize = 20;

/// Why an import stopped. Nothing was written in either case.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A value in the file: `LINE: field: what is wrong`.
    #[error("{0}")]
    Record(#[from] RecordError),
    /// Several bad values (the first [`MAX_REPORTED`]), so that one run finds them all.
    #[error("{} bad values, the first on line {}", .0.len(), .0.first().map_or(0, |e| e.line))]
    Records(Vec<RecordError>),
    /// Anything else (the store, hashing, a refused `--replace`).
    #[error("{0}")]
    Other(String),
}

impl From<rusqlite::Error> for ImportError {
    fn from(error: rusqlite::Error) -> Self {
        ImportError::Other(error.to_string())
    }
}

/// What to do with the stored password of one record.
enum PasswordWrite {
    /// Leave the stored value (or NULL for a new customer) as it is.
    Keep,
    Set(Option<String>),
}

/// The customer stored under `id`, with their hash.
fn stored(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Customer, Option<String>)>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, password_hash FROM customer WHERE clcleunik = ?"
    ))?
    .query_row([id], |row| {
        Ok((
            Customer::from_row(row)?,
            row.get::<_, Option<String>>(Field::ALL.len())?,
        ))
    })
    .optional()
}

/// The first pass over a file: every value checked, each key once, counted; and the plain-text
/// passwords hashed (in parallel, before any lock is taken), keyed by their row.
struct Checked {
    rows: usize,
    passwords: HashMap<usize, PasswordWrite>,
    /// For a sync: the digest to store for each row whose password was hashed.
    digests: HashMap<usize, [u8; 32]>,
    summary: Summary,
}

fn check(
    conn: &Connection,
    records: Records<'_>,
    hasher: &PasswordHasher,
    options: Options<'_>,
    progress: &dyn Progress,
) -> Result<Checked, ImportError> {
    // Key -> line, to name the first occurrence of a repeated key.
    let mut lines: HashMap<i64, usize> = HashMap::new();
    let mut plain: Vec<(usize, Secret, Option<String>)> = Vec::new();
    let mut passwords = HashMap::new();
    let mut digests = HashMap::new();
    let mut summary = Summary {
        demo_removed: demo_count(conn)?,
        ..Summary::default()
    };
    let mut existing = 0;
    // Every bad value is reported (up to MAX_REPORTED), not only the first: an owner fixing
    // a spreadsheet should not need one run per mistake.
    let mut bad: Vec<RecordError> = Vec::new();
    for (index, record) in records.enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                // A file the reader cannot get past repeats its line: no use going on.
                let stuck = bad.last().is_some_and(|last| last.line == error.line);
                if !stuck {
                    bad.push(error);
                }
                if stuck || bad.len() >= MAX_REPORTED {
                    break;
                }
                continue;
            }
        };
        let id = record.customer.clcleunik;
        if let Some(first) = lines.insert(id, record.line) {
            bad.push(record_error(
                record.line,
                "clcleunik",
                format!("{id} appears twice (first on line {first})"),
            ));
            if bad.len() >= MAX_REPORTED {
                break;
            }
            continue;
        }
        if !bad.is_empty() {
            // Nothing will be written: only look for more bad values.
            continue;
        }
        // A demo customer is removed before the write: the shop's row replaces it whole.
        let current = match is_demo(conn, id)? {
            true => None,
            false => stored(conn, id)?,
        };
        existing += usize::from(current.is_some());
        match &current {
            None => summary.inserted += 1,
            Some((customer, _)) if *customer == record.merged(Some(customer)) => {
                summary.unchanged += 1
            }
            Some(_) => summary.updated += 1,
        }
        if let PasswordInput::Plain(secret) = record.password {
            let hash = current.and_then(|(_, hash)| hash);
            match options.known {
                Some(known) => {
                    let digest = known.digest(id, &secret);
                    if hash.is_some() && stored_digest(conn, id)? == Some(digest) {
                        passwords.insert(index, PasswordWrite::Keep);
                    } else {
                        digests.insert(index, digest);
                        // Hashed without verifying first: the digest says it changed.
                        plain.push((index, secret, None));
                    }
                }
                None => plain.push((index, secret, hash)),
            }
        }
    }
    match bad.len() {
        0 => {}
        1 => return Err(ImportError::Record(bad.remove(0))),
        _ => return Err(ImportError::Records(bad)),
    }
    summary.rows = lines.len();
    if options.replace {
        let total: i64 = conn.query_row(
            "SELECT count(*) FROM customer \
             WHERE clcleunik NOT IN (SELECT clcleunik FROM demo_customer)",
            [],
            |row| row.get(0),
        )?;
        summary.deleted = usize::try_from(total).unwrap_or(0).saturating_sub(existing);
        if summary.rows == 0 && summary.deleted > 0 && !options.allow_empty {
            return Err(ImportError::Other(format!(
                "the file has no customers, and --replace would delete all {} stored ones; \
                 add --allow-empty if that is what you want",
                summary.deleted
            )));
        }
    }
    if options.dry_run {
        // Passwords are not checked in a dry run: that costs as much as hashing.
        return Ok(Checked {
            rows: summary.rows,
            passwords: HashMap::new(),
            digests: HashMap::new(),
            summary,
        });
    }
    progress.phase("hashing passwords", plain.len());
    // A plain-text password that already matches the stored hash keeps it, so re-importing a
    // file changes nothing.
    let outcomes = crate::auth::parallel_map(&plain, hasher.concurrency(), |(_, secret, hash)| {
        let result = match hash {
            Some(hash) if matches!(hasher.verify(secret, Some(hash)), Verdict::Valid { .. }) => {
                Ok(PasswordWrite::Keep)
            }
            _ => hasher
                .hash(secret)
                .map(|hash| PasswordWrite::Set(Some(hash))),
        };
        progress.step();
        result
    });
    summary.hashed = plain.len();
    for ((index, _, _), outcome) in plain.iter().zip(outcomes) {
        passwords.insert(
            *index,
            outcome.map_err(|e| ImportError::Other(e.to_string()))?,
        );
    }
    Ok(Checked {
        rows: summary.rows,
        passwords,
        digests,
        summary,
    })
}

/// How many demo customers the store still holds (seeded, not deleted since).
fn demo_count(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT count(*) FROM demo_customer", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| usize::try_from(n).unwrap_or(0))
}

fn is_demo(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM demo_customer WHERE clcleunik = ?1")?
        .exists([id])
}

/// Removes the demo customers still stored, in one transaction with its audit row; how many.
pub fn remove_demo(
    conn: &mut Connection,
    actor: &str,
    retention: crate::config::Retention,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let removed = tx.execute(
        "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
        [],
    )?;
    if removed > 0 {
        let detail = format!("{removed} demo customers removed");
        super::audit::record(
            &tx,
            actor,
            crate::audit::Action::Delete,
            None,
            &[],
            &detail,
            retention,
        )?;
    }
    tx.commit()?;
    Ok(removed)
}

/// How many demo customers are still stored.
pub fn demo_left(conn: &Connection) -> rusqlite::Result<usize> {
    demo_count(conn)
}

/// Marks every stored customer as a demo customer (after the demo seeding), so that the first
/// import or sync of the shop's own customers removes them.
pub fn mark_all_as_demo(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO demo_customer (clcleunik) SELECT clcleunik FROM customer",
        [],
    )
}

/// The digest the last sync stored for customer `id`'s password.
fn stored_digest(conn: &Connection, id: i64) -> rusqlite::Result<Option<[u8; 32]>> {
    let digest: Option<Vec<u8>> = conn
        .prepare_cached("SELECT digest FROM upstream_password WHERE clcleunik = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    Ok(digest.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()))
}

/// Imports a file in two passes over `open()`'s records: the first checks every value and
/// hashes the plain-text passwords without any lock; the second writes everything in one
/// transaction (inserted or updated by `clcleunik`; with `replace`, customers not in the file
/// deleted). Nothing is written if anything fails, and a crash or kill before the commit
/// leaves the store exactly as it was. Memory stays flat in the number of rows for CSV: rows
/// are read, checked and written one at a time.
pub fn import<'a>(
    conn: &mut Connection,
    mut open: impl FnMut() -> Result<Records<'a>, RecordError>,
    hasher: &PasswordHasher,
    options: Options<'_>,
    progress: &dyn Progress,
) -> Result<Summary, ImportError> {
    let mut checked = check(conn, open()?, hasher, options, progress)?;
    if options.dry_run {
        return Ok(checked.summary);
    }

    progress.phase("writing", checked.rows);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // The demo customers go first, in the same transaction: a shop's first import never
    // keeps one, nor lets one of its customers keep a demo password or address.
    let demo_removed = tx.execute(
        "DELETE FROM customer WHERE clcleunik IN (SELECT clcleunik FROM demo_customer)",
        [],
    )?;
    tx.execute("DELETE FROM demo_customer", [])?;
    let mut summary = Summary {
        rows: checked.rows,
        hashed: checked.summary.hashed,
        demo_removed,
        ..Summary::default()
    };
    {
        let set_columns = COLUMNS
            .split(", ")
            .skip(1)
            .map(|column| format!("{column} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        let now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
        let mut insert = tx.prepare(&format!(
            "INSERT INTO customer ({COLUMNS}, password_hash) VALUES ({}, ?)",
            vec!["?"; Field::ALL.len()].join(", ")
        ))?;
        let mut update = tx.prepare(&format!(
            "UPDATE customer SET {set_columns}, updated_at = {now} WHERE clcleunik = ?"
        ))?;
        let mut update_password = tx.prepare(&format!(
            "UPDATE customer SET {set_columns}, password_hash = ?, updated_at = {now} \
             WHERE clcleunik = ?"
        ))?;
        if options.replace {
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS import_keys (clcleunik INTEGER PRIMARY KEY); \
                 DELETE FROM import_keys;",
            )?;
        }
        let mut remember = tx.prepare(
            "INSERT OR REPLACE INTO upstream_password (clcleunik, digest) VALUES (?1, ?2)",
        )?;
        let mut keep = match options.replace {
            true => Some(tx.prepare("INSERT OR IGNORE INTO temp.import_keys VALUES (?)")?),
            false => None,
        };
        for (index, record) in open()?.enumerate() {
            let record = record?;
            let password = match &record.password {
                PasswordInput::Absent => PasswordWrite::Keep,
                PasswordInput::Empty => PasswordWrite::Set(None),
                PasswordInput::Hashed(hash) => PasswordWrite::Set(Some(hash.clone())),
                PasswordInput::Plain(_) => checked
                    .passwords
                    .remove(&index)
                    .unwrap_or(PasswordWrite::Keep),
            };
            let id = record.customer.clcleunik;
            // Read again inside the transaction: the store may have changed while we hashed.
            let current = stored(&tx, id)?;
            let customer = record.merged(current.as_ref().map(|(customer, _)| customer));
            let params = customer.to_params();
            match (current, &password) {
                (None, PasswordWrite::Keep) => {
                    let none: Option<String> = None;
                    insert.execute(params_from_iter(
                        params.iter().copied().chain([&none as &dyn ToSql]),
                    ))?;
                    summary.inserted += 1;
                }
                (None, PasswordWrite::Set(hash)) => {
                    insert.execute(params_from_iter(
                        params.iter().copied().chain([hash as &dyn ToSql]),
                    ))?;
                    summary.inserted += 1;
                }
                (Some((current, _)), PasswordWrite::Keep) if current == customer => {
                    summary.unchanged += 1;
                }
                (Some((current, stored)), PasswordWrite::Set(hash))
                    if current == customer && stored == *hash =>
                {
                    summary.unchanged += 1;
                }
                (Some(_), PasswordWrite::Keep) => {
                    update.execute(params_from_iter(
                        params[1..].iter().copied().chain([&id as &dyn ToSql]),
                    ))?;
                    summary.updated += 1;
                }
                (Some(_), PasswordWrite::Set(hash)) => {
                    let tail: [&dyn ToSql; 2] = [hash, &id];
                    update_password
                        .execute(params_from_iter(params[1..].iter().copied().chain(tail)))?;
                    summary.updated += 1;
                }
            }
            if let Some(keep) = keep.as_mut() {
                keep.execute([id])?;
            }
            if let Some(digest) = checked.digests.get(&index) {
                remember.execute(rusqlite::params![id, digest.as_slice()])?;
            }
            progress.step();
        }
        drop(keep);
        drop(remember);
        if options.replace {
            summary.deleted = tx.execute(
                "DELETE FROM customer WHERE clcleunik NOT IN (SELECT clcleunik FROM import_keys)",
                [],
            )?;
            tx.execute_batch("DROP TABLE import_keys;")?;
        }
    }
    if let Some((actor, action, retention)) = options.audit {
        let mut detail = format!(
            "{} rows: {} inserted, {} updated, {} deleted, {} unchanged",
            summary.rows, summary.inserted, summary.updated, summary.deleted, summary.unchanged
        );
        if summary.demo_removed > 0 {
            detail.push_str(&format!(
                "; {} demo customers removed first",
                summary.demo_removed
            ));
        }
        super::audit::record(&tx, actor, action, None, &[], &detail, retention)?;
    }
    tx.commit()?;
    Ok(summary)
}
