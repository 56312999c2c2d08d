//! Storage: the one place the rest of the program reaches the database through.
//!
//! [`Backend`] is the one set of operations (customers, keys, sessions, reset tokens, the
//! audit trail, the changes feed) that the routes and the command-line tools call. Two
//! backends implement it, each with its SQL beside it:
//! - [`sqlite`]: one file, the default (`database = "data/clientele.db"`);
//! - [`postgres`]: a PostgreSQL URL (`database = "postgres://..."`), for several stateless
//!   nodes sharing one primary, with a standby and failover.
//!
//! [`Store`] is the handle every request holds: it hands out a backend connection
//! ([`Store::run`] on the blocking pool, [`Store::connection`] for the tools) and tells the
//! caches when anyone, anywhere, committed ([`Store::generation`]).

pub mod postgres;
pub mod sqlite;
pub mod versions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apikey::{KeyInfo, KeyOptions, Scope};
use crate::audit::{Action, Entry, Kind as AuditKind};
use crate::auth::{PasswordHasher, Secret};
use crate::config::Retention;
use crate::customer::{
    ChangesPage, Customer, FieldSet, Identifier, ListFilter, Page, Totals, View, WriteError,
};
use crate::error::{ApiError, StartupError};

/// Where the data lives: the `database` setting, a file path or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL. Never printed whole: see [`Location`]'s
    /// `Display`, which hides the password.
    Postgres(Secret),
}

impl Location {
    /// Reads the `database` setting: a URL starting `postgres://` or `postgresql://` is
    /// PostgreSQL, anything else a file path.
    pub fn parse(setting: &str) -> Location {
        let lower = setting.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Location::Postgres(Secret::new(setting.trim().to_owned()))
        } else {
            Location::File(PathBuf::from(setting))
        }
    }

    /// The file, for the SQLite backend.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

impl std::fmt::Display for Location {
    /// The path, or the URL with its password replaced by `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&postgres::redact_url(url.expose())),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({self})")
    }
}

/// An error from either backend. The PostgreSQL one never carries the URL's password (the
/// driver's errors do not include the connection string).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", postgres::describe_error(.0))]
    Postgres(#[from] ::postgres::Error),
    /// No connection could be had in time (PostgreSQL down or failing over, pool exhausted).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A stored value the program cannot read (a hand-edited row, say).
    #[error("unexpected stored data: {0}")]
    Data(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    /// A store that is busy, missing, damaged or failing over is "unavailable" (503);
    /// anything else is a bug (500).
    fn from(error: Error) -> Self {
        match error {
            Error::Sqlite(error) => error.into(),
            Error::Postgres(error) => postgres::api_error(error),
            Error::Unavailable(_) => ApiError::unavailable(error),
            Error::Data(_) => ApiError::internal(error),
        }
    }
}

/// A key as the server checks requests against it (its digest, never the key).
pub struct StoredKey {
    /// The key's row: what its last use is recorded by (a rowid on SQLite).
    pub id: i64,
    pub digest: Vec<u8>,
    pub name: String,
    pub scope: Scope,
    pub forwards_client_address: bool,
}

/// A stored customer as an import compares it with a file's row: the row, its password
/// hash, and (when asked, for a sync) the digest of the password the last sync brought.
#[derive(Debug, Clone)]
pub struct StoredCustomer {
    pub customer: Customer,
    pub hash: Option<String>,
    pub digest: Option<[u8; 32]>,
}

/// What an import writes for one row of its file (the rules that decide it live in
/// [`crate::transfer::import`], once for both backends).
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite {
    /// A new customer, with this password hash (or none).
    Insert(Option<String>),
    /// The stored customer's fields replaced, the password hash kept.
    Update,
    /// The fields and the password hash replaced.
    UpdateWithPassword(Option<String>),
    /// Nothing to change: the row only says that the customer stays (`replace`), and maybe
    /// brings a digest to remember.
    Unchanged,
}

/// One row of an import, decided: the customer as it will be stored, what to write, and for
/// a sync the digest of the password just hashed (kept in `upstream_password`).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub customer: Customer,
    pub write: RowWrite,
    pub digest: Option<[u8; 32]>,
}

/// The write pass of an import or sync: one transaction, holding the customers' write lock,
/// committed by [`ImportTx::commit`] and rolled back if dropped before (an error, a panic, a
/// kill: all or nothing). Rows come in batches, in the file's order.
pub trait ImportTx {
    /// Deletes the demo customers still stored, and forgets which they were; how many.
    fn remove_demo(&mut self) -> Result<usize>;
    /// The stored customers among `ids` (their hashes with them), read inside the
    /// transaction: the store may have changed while the passwords were hashed.
    fn stored(&mut self, ids: &[i64]) -> Result<HashMap<i64, StoredCustomer>>;
    /// Writes these rows (or stages them, for [`ImportTx::finish`] to write).
    fn write(&mut self, rows: &[ImportRow]) -> Result<()>;
    /// Writes whatever is staged and, for an import that replaces, deletes every customer no
    /// row named; how many were deleted.
    fn finish(&mut self) -> Result<usize>;
    /// The import's audit row (its counts, never a value).
    fn audit(
        &mut self,
        actor: &str,
        action: Action,
        detail: &str,
        retention: Retention,
    ) -> Result<()>;
    fn commit(self: Box<Self>) -> Result<()>;
}

/// What the tools and the server ask of the data, whichever database holds it. Each
/// backend's implementation lives in its own folder with its SQL: `store/sqlite/` and
/// `store/postgres/`. Every write that changes customers records its audit row in the same
/// transaction; change numbers and tombstones come from the database itself (triggers), so
/// that another program's writes are reported by the changes feed too.
pub trait Backend {
    // Customers, read.
    /// The customer `id`, if there is one.
    fn find(&mut self, id: i64) -> Result<Option<Customer>>;
    /// The customer a login names, with their stored password hash; the first by id when
    /// several share the email or login.
    fn find_for_login(&mut self, who: &Identifier) -> Result<Option<(Customer, Option<Secret>)>>;
    /// The customers matching `filter`, and how many match before paging.
    fn list(&mut self, filter: &ListFilter) -> Result<Page>;
    /// The whole list response body for `filter`, written as rows are read, and the total.
    fn list_json(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: Option<&Totals>,
    ) -> Result<(Vec<u8>, u64)>;
    /// How many customers a list request would send (after paging), and the change number.
    fn list_size(&mut self, filter: &ListFilter, totals: &Totals) -> Result<(u64, i64)>;
    /// The list response in pieces of about `chunk` bytes, one snapshot throughout: `start`
    /// gets the total and the change number first, then `piece` each piece; either returns
    /// `false` when the reader has gone.
    #[allow(clippy::too_many_arguments)]
    fn stream_list(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: &Totals,
        chunk: usize,
        start: &mut dyn FnMut(u64, i64) -> bool,
        piece: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<()>;
    /// How many customers there are.
    fn customer_count(&mut self) -> Result<u64>;
    /// How many bytes the database takes (SQLite: the file and its write-ahead log;
    /// PostgreSQL: `pg_database_size`), for `/metrics`.
    fn database_bytes(&mut self) -> Result<u64>;
    /// The stored bcrypt hash of highest cost, if any (the login failure floor).
    fn slowest_hash(&mut self) -> Result<Option<String>>;

    // Customers, written (each with its audit row, in one transaction).
    fn update(
        &mut self,
        id: i64,
        changes: &Customer,
        present: FieldSet,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError>;
    fn insert(
        &mut self,
        customer: Customer,
        present: FieldSet,
        password_hash: Option<String>,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError>;
    fn delete(&mut self, id: i64, actor: &str, retention: Retention) -> Result<(), WriteError>;
    /// Sets a password hash with its audit row; `false` when there is no such customer.
    fn set_password(
        &mut self,
        id: i64,
        hash: &str,
        actor: &str,
        action: Action,
        retention: Retention,
    ) -> Result<bool>;
    /// Replaces a hash only if it is still `old` (a re-hash at login), keeping the
    /// customer's sessions; `false` when it changed meanwhile.
    fn replace_hash(&mut self, id: i64, old: &str, new: &str) -> Result<bool>;

    // The changes feed.
    fn changes_since(&mut self, since: i64, limit: u32) -> Result<ChangesPage, ApiError>;

    // API keys, by SHA-256 digest.
    /// Stores a key; `false` when a key of that name exists.
    fn create_key(
        &mut self,
        name: &str,
        digest: &[u8],
        scope: Scope,
        options: KeyOptions,
    ) -> Result<bool>;
    fn keys(&mut self) -> Result<Vec<KeyInfo>>;
    fn stored_keys(&mut self) -> Result<Vec<StoredKey>>;
    /// `false` when no key has that name.
    fn revoke_key(&mut self, name: &str) -> Result<bool>;
    fn key_count(&mut self) -> Result<usize>;
    /// Writes when keys were last used (`(key id, UTC time)`), keeping the later time; keys
    /// revoked meanwhile are skipped. It tells no cache anything: no answer depends on it.
    fn record_key_uses(&mut self, uses: &[(i64, String)]) -> Result<()>;

    // Customer sessions, by digest.
    /// Opens a session for `id` for `days`, sweeping expired ones and ending the customer's
    /// oldest beyond `max_per_customer`; when it expires (RFC 3339, UTC).
    fn open_session(
        &mut self,
        digest: &[u8],
        id: i64,
        days: u32,
        max_per_customer: i64,
    ) -> Result<String>;
    /// The stored digest and customer of a live session.
    fn session(&mut self, digest: &[u8]) -> Result<Option<(Vec<u8>, i64)>>;
    fn end_session(&mut self, digest: &[u8]) -> Result<bool>;

    // Password-reset tokens, by digest.
    /// Stores a token for `id` valid `minutes`, ending older ones, with its audit row;
    /// when it expires.
    fn store_reset(
        &mut self,
        digest: &[u8],
        id: i64,
        minutes: u32,
        actor: &str,
        retention: Retention,
    ) -> Result<String>;
    fn reset_holder(&mut self, digest: &[u8]) -> Result<Option<i64>>;
    /// Spends a token: sets the password, ends the customer's tokens, audits; the customer.
    fn spend_reset(
        &mut self,
        digest: &[u8],
        hash: &str,
        actor: &str,
        retention: Retention,
    ) -> Result<Option<i64>>;

    // The audit trail.
    /// The newest `limit` rows of `kind`, oldest first, of one customer and/or since a date.
    fn audit(
        &mut self,
        kind: AuditKind,
        customer: Option<i64>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>>;
    /// Records a row that goes with no write (a login attempt), pruning what `retention` no
    /// longer keeps on the way. It tells no cache anything: no answer depends on the trail.
    fn audit_event(
        &mut self,
        actor: &str,
        action: Action,
        customer: Option<i64>,
        detail: &str,
        retention: Retention,
    ) -> Result<()>;

    // The demo customers.
    fn demo_left(&mut self) -> Result<usize>;
    /// Removes the demo customers still stored, in one transaction with its audit row; how
    /// many.
    fn remove_demo(&mut self, actor: &str, retention: Retention) -> Result<usize>;

    // Imports and syncs: the primitives the one import driver ([`crate::transfer::import`])
    // calls; the rules (checks, passwords, counts, demo customers, errors) live there.
    /// The ids of the demo customers still stored.
    fn demo_ids(&mut self) -> Result<Vec<i64>>;
    /// How many customers are stored, demo customers not counted.
    fn own_customer_count(&mut self) -> Result<u64>;
    /// How many of `ids` are stored customers, demo customers not counted (the sync's guard
    /// against mass deletes).
    fn own_customers_among(&mut self, ids: &[i64]) -> Result<u64>;
    /// The stored customers among `ids`, read in bulk (not one round trip each), with their
    /// hashes and, if `digests`, the digests of their mirrored passwords.
    fn stored_customers(
        &mut self,
        ids: &[i64],
        digests: bool,
    ) -> Result<HashMap<i64, StoredCustomer>>;
    /// Starts the write pass of an import (see [`ImportTx`]); `replace` deletes, at
    /// [`ImportTx::finish`], every customer its rows did not name.
    fn begin_import(&mut self, replace: bool) -> Result<Box<dyn ImportTx + '_>>;
    /// Seconds since the last good sync from the old API, from the audit trail (shared by
    /// every node of a database); `None` before the first.
    fn last_sync_age(&mut self) -> Result<Option<i64>>;

    // Failed logins and reset requests, for `clientele limits` and `unlock` (the server
    // counts them through `crate::ratelimit`).
    /// Of `subjects` (`customer:12`, `reset:customer:12`...), each one's failures in the last
    /// `window` and the seconds until its next attempt is allowed (0: not locked).
    fn limit_status(
        &mut self,
        subjects: &[&str],
        max_failures: u32,
        window: Duration,
    ) -> Result<Vec<(i64, u64)>>;
    /// How many subjects have failures in the last `window`, and how many are locked.
    fn limit_totals(&mut self, max_failures: u32, window: Duration) -> Result<(i64, i64)>;
    /// Forgets every failure of `subjects`, for running servers too; how many were forgotten.
    fn limit_clear(&mut self, subjects: &[&str], window: Duration) -> Result<u64>;

    /// One cheap query: does the database answer?
    fn ping(&mut self) -> Result<()>;
}

/// The handle on the database every request and tool holds.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::Db),
    Postgres(postgres::Pg),
}

/// What opening did, for the start-up log.
pub use sqlite::OpenReport;

impl Store {
    /// Opens (creating and migrating as needed) the database at `location`.
    pub fn open(
        location: &Location,
        hasher: &PasswordHasher,
    ) -> Result<(Store, OpenReport), StartupError> {
        match location {
            Location::File(path) => {
                let (db, report) = sqlite::Db::open(path, hasher)?;
                Ok((Store::Sqlite(db), report))
            }
            Location::Postgres(url) => {
                let (pg, report) = postgres::Pg::open(url, hasher)?;
                Ok((Store::Postgres(pg), report))
            }
        }
    }

    /// The SQLite database, for what only a file has (backup, `copy-to`, the demo seeding).
    pub fn sqlite(&self) -> Option<&sqlite::Db> {
        match self {
            Store::Sqlite(db) => Some(db),
            Store::Postgres(_) => None,
        }
    }

    /// The PostgreSQL database, for what only it has (the locks the nodes share).
    pub fn postgres(&self) -> Option<&postgres::Pg> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(pg) => Some(pg),
        }
    }

    /// Whether this handle created the database (it did not exist before).
    pub fn created(&self) -> bool {
        match self {
            Store::Sqlite(db) => db.created(),
            Store::Postgres(pg) => pg.created(),
        }
    }

    /// A number that changes whenever anyone (this node, another node, a tool) commits a
    /// change to a customer: the caches of list bodies keep an answer only while it stays
    /// the same. `None` when the database cannot be watched, in which case nothing cached
    /// may be trusted. (On PostgreSQL it moves at every commit to the watched tables.)
    pub fn generation(&self) -> Option<i64> {
        match self {
            Store::Sqlite(db) => db.versions().customers_generation(),
            Store::Postgres(pg) => pg.generation(),
        }
    }

    /// The same for API keys: the cache of keys keeps them while it stays the same.
    pub fn keys_generation(&self) -> Option<i64> {
        match self {
            Store::Sqlite(db) => db.versions().keys_generation(),
            Store::Postgres(pg) => pg.generation(),
        }
    }

    /// The stamp to give an answer about to be made (read before its data), once every
    /// commit made before now is seen; `None` while changes cannot be seen.
    pub fn stamp(&self) -> Option<versions::Stamp> {
        match self {
            Store::Sqlite(db) => db.versions().stamp(),
            Store::Postgres(pg) => pg
                .generation()
                .and_then(|at| u64::try_from(at).ok())
                .map(versions::Stamp),
        }
    }

    /// Whether an answer made at `made`, depending on `scope` (and on the customer sessions,
    /// when `session`), still holds, as of a look for commits at most a millisecond old. On
    /// PostgreSQL any commit ends every answer.
    pub fn fresh(&self, made: versions::Stamp, scope: versions::Scope, session: bool) -> bool {
        match self {
            Store::Sqlite(db) => {
                let versions = db.versions_seen();
                versions.fresh(made, scope) && (!session || versions.fresh_for_sessions(made))
            }
            Store::Postgres(pg) => {
                pg.generation().and_then(|at| u64::try_from(at).ok()) == Some(made.0)
            }
        }
    }

    /// List totals already counted, shared by every request.
    pub fn totals(&self) -> Arc<Totals> {
        match self {
            Store::Sqlite(db) => db.totals(),
            Store::Postgres(pg) => pg.totals(),
        }
    }

    /// Runs `work` on a connection on the blocking thread pool, so the database never
    /// stalls the async workers.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError>,
        F: FnOnce(&mut dyn Backend) -> Result<T, E> + Send + 'static,
    {
        let result = match self {
            Store::Sqlite(db) => db.run(move |conn| work(conn)).await,
            Store::Postgres(pg) => pg.run(work).await,
        };
        result
    }

    /// A connection for synchronous work (the command-line tools, start-up).
    pub fn connection(&self) -> Result<Connection, ApiError> {
        match self {
            Store::Sqlite(db) => db.connection().map(Connection::Sqlite),
            Store::Postgres(pg) => pg.connection().map(Connection::Postgres),
        }
    }

    /// A connection of its own, outside the pool, for work that lasts as long as a slow
    /// client reads (a streamed list).
    pub fn dedicated(&self) -> Result<Box<dyn Backend + Send>, ApiError> {
        match self {
            Store::Sqlite(db) => Ok(Box::new(db.dedicated().map_err(ApiError::from)?)),
            Store::Postgres(pg) => Ok(Box::new(pg.dedicated()?)),
        }
    }

    /// Whether the store answers: for SQLite, the file on disk is still ours; for
    /// PostgreSQL, the primary answers.
    pub async fn check_health(&self) -> Result<(), ApiError> {
        match self {
            Store::Sqlite(db) => db.check_health().await,
            Store::Postgres(pg) => pg.check_health().await,
        }
    }

    /// Where the data is, for messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(db) => db.path().display().to_string(),
            Store::Postgres(pg) => pg.describe(),
        }
    }
}

/// A connection taken from the pool for synchronous work.
pub enum Connection {
    Sqlite(r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>),
    Postgres(postgres::PooledClient),
}

impl std::ops::Deref for Connection {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        match self {
            Connection::Sqlite(conn) => &**conn,
            Connection::Postgres(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Connection::Sqlite(conn) => &mut **conn,
            Connection::Postgres(conn) => conn,
        }
    }
}

/// The customers' generation as of this request ([`Store::generation`]), asked once per
/// request however many parts need it.
pub fn request_generation(request: &rocket::Request<'_>) -> Option<i64> {
    struct Cached(Option<i64>);
    request
        .local_cache(|| Cached(asked(request, Store::generation)))
        .0
}

/// The keys' generation as of this request ([`Store::keys_generation`]).
pub fn request_keys_generation(request: &rocket::Request<'_>) -> Option<i64> {
    struct Cached(Option<i64>);
    request
        .local_cache(|| Cached(asked(request, Store::keys_generation)))
        .0
}

fn asked(request: &rocket::Request<'_>, generation: fn(&Store) -> Option<i64>) -> Option<i64> {
    request.rocket().state::<Store>().and_then(generation)
}
