//! The import, once for both backends: two passes over a file's records (check and hash
//! without any lock, then write all or nothing in one transaction), as `clientele import`,
//! a sync from the old API, a forwarded write's copy and the demo seeding use it.
//!
//! The rules live here: every record checked, each key once, every bad value reported (the
//! first [`MAX_REPORTED`]), passwords hashed (or kept when they match), what is inserted,
//! updated, unchanged and deleted counted, the demo customers removed first, the audit row.
//! The backends give a few primitives of the [`Backend`] trait ([`Backend::demo_ids`],
//! [`Backend::stored_customers`], [`Backend::begin_import`]...), each with its own SQL:
//! SQLite reads and writes row by row in its file, PostgreSQL reads stored customers a
//! batch at a time and writes through `COPY` into a staging table.

use std::collections::{HashMap, HashSet};

use crate::auth::{PasswordHasher, Secret, Verdict};
use crate::customer::Customer;
use crate::store::{Backend, ImportRow, ImportTx, RowWrite, StoredCustomer};
use crate::transfer::{record_error, PasswordInput, Record, RecordError, Records};

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

/// Records looked up (or written) together: one round trip to the store per batch, and
/// memory that does not grow with the file.
const BATCH: usize = 2_000;

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

impl From<crate::store::Error> for ImportError {
    fn from(error: crate::store::Error) -> Self {
        ImportError::Other(error.to_string())
    }
}

/// What to do with the stored password of one record.
enum PasswordWrite {
    /// Leave the stored value (or NULL for a new customer) as it is.
    Keep,
    Set(Option<String>),
}

impl PasswordWrite {
    /// Whether writing this leaves `stored`'s password as it is.
    fn keeps(&self, stored: &StoredCustomer) -> bool {
        match self {
            PasswordWrite::Keep => true,
            PasswordWrite::Set(hash) => stored.hash == *hash,
        }
    }
}

/// Whether a row of the file changes the customer stored under its key: the one rule that
/// the write follows ([`row_write`]) and that a dry run counts by (before any hashing, with
/// `keeps_password` said from the file and a verification: see [`Comparison::compare`]).
#[derive(Clone, Copy)]
enum Change {
    Insert,
    Update,
    Unchanged,
}

fn change(stored: Option<&Customer>, customer: &Customer, keeps_password: bool) -> Change {
    match stored {
        None => Change::Insert,
        Some(stored) if *stored == *customer && keeps_password => Change::Unchanged,
        Some(_) => Change::Update,
    }
}

impl Summary {
    fn count(&mut self, change: Change) {
        match change {
            Change::Insert => self.inserted += 1,
            Change::Update => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

/// What the write pass writes for a row, by [`change`]'s rule.
fn row_write(
    stored: Option<&StoredCustomer>,
    customer: &Customer,
    password: PasswordWrite,
) -> RowWrite {
    let keeps = stored.is_some_and(|stored| password.keeps(stored));
    match (
        change(stored.map(|s| &s.customer), customer, keeps),
        password,
    ) {
        (Change::Insert, PasswordWrite::Keep) => RowWrite::Insert(None),
        (Change::Insert, PasswordWrite::Set(hash)) => RowWrite::Insert(hash),
        (Change::Unchanged, _) => RowWrite::Unchanged,
        (Change::Update, PasswordWrite::Keep) => RowWrite::Update,
        (Change::Update, PasswordWrite::Set(hash)) => RowWrite::UpdateWithPassword(hash),
    }
}

/// Whether a plain-text password is the one `hash` holds (never true without a hash). The
/// import keeps such a hash; a dry run counts the row as the import will.
fn verifies(hasher: &PasswordHasher, secret: &Secret, hash: Option<&str>) -> bool {
    hash.is_some_and(|hash| matches!(hasher.verify(secret, Some(hash)), Verdict::Valid { .. }))
}

/// A plain-text password of the file, to hash in the first pass (and first to verify against
/// the stored hash, if any).
struct Plain {
    index: usize,
    secret: Secret,
    /// The stored hash to verify it against first (none for a sync: its digest decided).
    hash: Option<String>,
    /// Whether the row leaves the stored customer's fields as they are: with `hash`, the
    /// row is counted (unchanged or updated) once the password is verified.
    same_fields: bool,
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

/// What the first pass gathers as it compares the file with the store, batch by batch.
struct Comparison<'a> {
    demo: HashSet<i64>,
    known: Option<&'a dyn KnownPasswords>,
    /// How many of the file's customers are stored (demo customers not counted).
    existing: usize,
    plain: Vec<Plain>,
    passwords: HashMap<usize, PasswordWrite>,
    digests: HashMap<usize, [u8; 32]>,
    summary: Summary,
}

impl Comparison<'_> {
    /// Compares a batch of good records with what the store holds under their keys.
    fn compare(
        &mut self,
        conn: &mut dyn Backend,
        batch: &mut Vec<(usize, Record)>,
    ) -> Result<(), ImportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = batch.iter().map(|(_, r)| r.customer.clcleunik).collect();
        let stored = conn.stored_customers(&ids, self.known.is_some())?;
        for (index, record) in batch.drain(..) {
            let id = record.customer.clcleunik;
            // A demo customer is removed before the write: the shop's row replaces it whole.
            let current = match self.demo.contains(&id) {
                true => None,
                false => stored.get(&id),
            };
            self.existing += usize::from(current.is_some());
            let stored_hash = current.and_then(|stored| stored.hash.as_deref());
            let merged = record.merged(current.map(|stored| &stored.customer));
            let same_fields = current.is_some_and(|stored| stored.customer == merged);
            // Whether the stored password stays, as the write will decide it; `None` until
            // a plain-text password is verified against the stored hash.
            let keeps_password = match record.password {
                PasswordInput::Absent => Some(true),
                PasswordInput::Empty => Some(stored_hash.is_none()),
                PasswordInput::Hashed(ref hash) => Some(stored_hash == Some(hash.as_str())),
                PasswordInput::Plain(secret) => match self.known {
                    Some(known) => {
                        let digest = known.digest(id, &secret);
                        if stored_hash.is_some() && current.and_then(|s| s.digest) == Some(digest) {
                            self.passwords.insert(index, PasswordWrite::Keep);
                            Some(true)
                        } else {
                            self.digests.insert(index, digest);
                            // Hashed without verifying first: the digest says it changed.
                            self.plain.push(Plain {
                                index,
                                secret,
                                hash: None,
                                same_fields,
                            });
                            Some(false)
                        }
                    }
                    None => {
                        let hash = stored_hash.map(str::to_owned);
                        let verify = hash.is_some();
                        self.plain.push(Plain {
                            index,
                            secret,
                            hash,
                            same_fields,
                        });
                        // A new hash (its salt is new) never equals a stored value.
                        (!verify).then_some(false)
                    }
                },
            };
            if let Some(keeps) = keeps_password {
                let stored = current.map(|stored| &stored.customer);
                self.summary.count(change(stored, &merged, keeps));
            }
        }
        Ok(())
    }
}

fn check(
    conn: &mut dyn Backend,
    records: Records<'_>,
    hasher: &PasswordHasher,
    options: Options<'_>,
    progress: &dyn Progress,
) -> Result<Checked, ImportError> {
    let demo: HashSet<i64> = conn.demo_ids()?.into_iter().collect();
    let mut comparison = Comparison {
        summary: Summary {
            demo_removed: demo.len(),
            ..Summary::default()
        },
        demo,
        known: options.known,
        existing: 0,
        plain: Vec::new(),
        passwords: HashMap::new(),
        digests: HashMap::new(),
    };
    // Key -> line, to name the first occurrence of a repeated key.
    let mut lines: HashMap<i64, usize> = HashMap::new();
    let mut batch: Vec<(usize, Record)> = Vec::with_capacity(BATCH);
    // Every bad value is reported (up to MAX_REPORTED), not only the first: an owner fixing
    // a spreadsheet should not need one run per mistake.
    let mut bad: Vec<RecordError> = Vec::new();
    for (index, record) in records.enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                // A file the reader cannot get past repeats its error: no use going on. (A
                // row with several bad values gives one error for each, on the same line.)
                let stuck = bad.last() == Some(&error);
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
            batch.clear();
            continue;
        }
        batch.push((index, record));
        if batch.len() >= BATCH {
            comparison.compare(conn, &mut batch)?;
        }
    }
    match bad.len() {
        0 => {}
        1 => return Err(ImportError::Record(bad.remove(0))),
        _ => return Err(ImportError::Records(bad)),
    }
    comparison.compare(conn, &mut batch)?;
    let Comparison {
        existing,
        plain,
        mut passwords,
        digests,
        mut summary,
        ..
    } = comparison;
    summary.rows = lines.len();
    if options.replace {
        let total = usize::try_from(conn.own_customer_count()?).unwrap_or(usize::MAX);
        summary.deleted = total.saturating_sub(existing);
        if summary.rows == 0 && summary.deleted > 0 && !options.allow_empty {
            return Err(ImportError::Other(format!(
                "the file has no customers, and --replace would delete all {} stored ones; \
                 add --allow-empty if that is what you want",
                summary.deleted
            )));
        }
    }
    if options.dry_run {
        // A dry run counts as the import will: a plain-text password that a stored hash
        // verifies keeps it, any other is a change. It verifies those (as the import does
        // first) and hashes nothing.
        let verified: Vec<&Plain> = plain.iter().filter(|p| p.hash.is_some()).collect();
        progress.phase("checking passwords", verified.len());
        let keeps = crate::auth::parallel_map(&verified, hasher.concurrency(), |p| {
            let keeps = verifies(hasher, &p.secret, p.hash.as_deref());
            progress.step();
            keeps
        });
        for (p, keeps) in verified.iter().zip(keeps) {
            let change = match p.same_fields && keeps {
                true => Change::Unchanged,
                false => Change::Update,
            };
            summary.count(change);
        }
        summary.hashed = verified.len();
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
    let outcomes = crate::auth::parallel_map(&plain, hasher.concurrency(), |p| {
        let result = match verifies(hasher, &p.secret, p.hash.as_deref()) {
            true => Ok(PasswordWrite::Keep),
            false => hasher
                .hash(&p.secret)
                .map(|hash| PasswordWrite::Set(Some(hash))),
        };
        progress.step();
        result
    });
    summary.hashed = plain.len();
    for (p, outcome) in plain.iter().zip(outcomes) {
        passwords.insert(
            p.index,
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

/// Decides and writes one batch of the second pass: each record merged over the customer
/// stored now (read again inside the transaction: the store may have changed while the
/// passwords were hashed), counted as inserted, updated or unchanged.
fn write_batch(
    tx: &mut dyn ImportTx,
    batch: &mut Vec<(usize, Record)>,
    checked: &mut Checked,
    summary: &mut Summary,
    progress: &dyn Progress,
) -> Result<(), ImportError> {
    if batch.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = batch.iter().map(|(_, r)| r.customer.clcleunik).collect();
    let mut current = tx.stored(&ids)?;
    let mut rows = Vec::with_capacity(batch.len());
    for (index, record) in batch.drain(..) {
        let password = match &record.password {
            PasswordInput::Absent => PasswordWrite::Keep,
            PasswordInput::Empty => PasswordWrite::Set(None),
            PasswordInput::Hashed(hash) => PasswordWrite::Set(Some(hash.clone())),
            PasswordInput::Plain(_) => checked
                .passwords
                .remove(&index)
                .unwrap_or(PasswordWrite::Keep),
        };
        let stored: Option<StoredCustomer> = current.remove(&record.customer.clcleunik);
        let customer = record.merged(stored.as_ref().map(|stored| &stored.customer));
        let write = row_write(stored.as_ref(), &customer, password);
        match write {
            RowWrite::Insert(_) => summary.inserted += 1,
            RowWrite::Unchanged => summary.unchanged += 1,
            RowWrite::Update | RowWrite::UpdateWithPassword(_) => summary.updated += 1,
        }
        rows.push(ImportRow {
            customer,
            write,
            digest: checked.digests.remove(&index),
        });
    }
    tx.write(&rows)?;
    for _ in &rows {
        progress.step();
    }
    Ok(())
}

/// Imports a file in two passes over `open()`'s records: the first checks every value and
/// hashes the plain-text passwords without any lock; the second writes everything in one
/// transaction (inserted or updated by `clcleunik`; with `replace`, customers not in the file
/// deleted). Nothing is written if anything fails, and a crash or kill before the commit
/// leaves the store exactly as it was. Memory stays flat in the number of rows: records are
/// read, compared and written a batch at a time.
pub fn import<'a>(
    conn: &mut dyn Backend,
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
    let mut tx = conn.begin_import(options.replace)?;
    // The demo customers go first, in the same transaction: a shop's first import never
    // keeps one, nor lets one of its customers keep a demo password or address.
    let demo_removed = tx.remove_demo()?;
    let mut summary = Summary {
        rows: checked.rows,
        hashed: checked.summary.hashed,
        demo_removed,
        ..Summary::default()
    };
    let mut batch: Vec<(usize, Record)> = Vec::with_capacity(BATCH);
    for (index, record) in open()?.enumerate() {
        batch.push((index, record?));
        if batch.len() >= BATCH {
            write_batch(&mut *tx, &mut batch, &mut checked, &mut summary, progress)?;
        }
    }
    write_batch(&mut *tx, &mut batch, &mut checked, &mut summary, progress)?;
    let deleted = tx.finish()?;
    if options.replace {
        summary.deleted = deleted;
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
        tx.audit(actor, action, &detail, retention)?;
    }
    tx.commit()?;
    Ok(summary)
}
