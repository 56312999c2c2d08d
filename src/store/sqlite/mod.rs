//! The SQLite backend: opening and checking the file, the versioned schema, the one-time
//! migrations of stored data, the connection pool, [`Db::run`], which runs database work
//! off Rocket's async workers, and the [`Backend`] operations, whose SQL lives in the files
//! beside this one (`customers.rs`, `keys.rs`, `sessions.rs`, `resets.rs`, `audit.rs`).

pub mod audit;
pub mod customers;
pub mod import;
pub mod keys;
pub mod limits;
pub mod resets;
pub mod sessions;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::Semaphore;

use crate::apikey::{KeyInfo, KeyOptions, Scope};
use crate::audit::{Action, Entry};
use crate::auth::{self, PasswordHasher, Secret};
use crate::config::Retention;
use crate::customer::{
    ChangesPage, Customer, FieldSet, Identifier, ListFilter, Page, Totals, View, WriteError,
};
use crate::error::{ApiError, StartupError};
use crate::store::versions::Versions;
use crate::store::{Backend, ImportTx, StoredCustomer, StoredKey};
use crate::transfer::Progress;

/// `PRAGMA application_id` of a clientele database ("Clte"): how start-up tells our files from
/// another application's SQLite file, which it must not touch.
pub const APPLICATION_ID: i32 = 0x436C_7465;

/// How long a connection waits for another writer (an import, say) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pragmas every connection gets. `secure_delete` zeroes freed content, so a replaced password
/// or hash does not linger in free pages of the file.
const CONNECTION_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; \
    PRAGMA synchronous = NORMAL;";

/// The stored passwords that are neither Argon2 nor bcrypt: plain text left by the old system
/// (or written by another program), hashed at start-up. One text for the index and the query,
/// so that SQLite can match them.
macro_rules! legacy_password {
    () => {
        "password_hash IS NOT NULL AND substr(password_hash, 1, 7) <> '$argon2' \
         AND substr(password_hash, 1, 4) NOT IN ('$2a$', '$2b$', '$2y$')"
    };
}

/// Start-up's query for legacy passwords. It reads the partial index of migration 7 (empty
/// once they are hashed), never the whole table.
pub const LEGACY_PASSWORDS_QUERY: &str = concat!(
    "SELECT clcleunik, password_hash FROM customer WHERE ",
    legacy_password!()
);

/// How long [`Db::read_here`] waits for a lock (rare for a reader in WAL mode) before
/// giving up and letting the app answer.
const READ_HERE_BUSY: Duration = Duration::from_millis(50);

/// Numbers the handles opened in this process.
static NEXT_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The schema, one entry per version; `PRAGMA user_version` records how many have run.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: customers. Column names are the wire names; `password_hash` holds an Argon2id (or
    // legacy bcrypt) PHC string, or NULL for a customer who cannot log in.
    "CREATE TABLE customer (
        clcleunik INTEGER PRIMARY KEY CHECK (clcleunik >= 1),
        customerNumber TEXT NOT NULL DEFAULT '',
        groupePrice TEXT NOT NULL DEFAULT '',
        login TEXT NOT NULL DEFAULT '',
        lastName TEXT NOT NULL DEFAULT '',
        firstName TEXT NOT NULL DEFAULT '',
        address TEXT NOT NULL DEFAULT '',
        zipcode TEXT NOT NULL DEFAULT '',
        city TEXT NOT NULL DEFAULT '',
        country TEXT NOT NULL DEFAULT '',
        phone TEXT NOT NULL DEFAULT '',
        cellphone TEXT NOT NULL DEFAULT '',
        email TEXT NOT NULL DEFAULT '',
        denomination TEXT NOT NULL DEFAULT '',
        tvaNumber TEXT NOT NULL DEFAULT '',
        addedDate TEXT NOT NULL DEFAULT '',
        addHour TEXT NOT NULL DEFAULT '',
        language TEXT NOT NULL DEFAULT '',
        showPrice INTEGER NOT NULL DEFAULT 0 CHECK (showPrice IN (0, 1)),
        webRemise REAL NOT NULL DEFAULT 0,
        megawinapp_login TEXT NOT NULL DEFAULT '',
        notification_accepted INTEGER NOT NULL DEFAULT 0 CHECK (notification_accepted IN (0, 1)),
        password_hash TEXT,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX customer_email ON customer (email COLLATE NOCASE);
    CREATE INDEX customer_login ON customer (login);",
    // 2: API keys, stored only as SHA-256 digests of the key.
    "CREATE TABLE api_key (
        name TEXT PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );",
    // 3: mark the file as clientele's, so that start-up recognises it (see `check_ours`).
    "PRAGMA application_id = 1131181157;",
    // 4: keys that may write, and the audit trail of every write.
    "ALTER TABLE api_key ADD COLUMN scope TEXT NOT NULL DEFAULT 'read'
        CHECK (scope IN ('read', 'write'));
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        customer INTEGER,
        fields TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE INDEX audit_customer ON audit (customer, at);",
    // 5: the changes feed. Every insert, change of a sent field (a password alone is not
    // one) and delete takes the next number from `change_log`, by trigger, so every writer
    // feeds it: the API, imports, syncs, other processes. Deletions leave a tombstone.
    // Existing customers count as changed in key order.
    "ALTER TABLE customer ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
    UPDATE customer SET change_seq = clcleunik;
    CREATE INDEX customer_change ON customer (change_seq);
    CREATE TABLE change_log (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        pruned_through INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO change_log (id, seq) SELECT 1, COALESCE(MAX(clcleunik), 0) FROM customer;
    CREATE TABLE tombstone (
        seq INTEGER PRIMARY KEY,
        clcleunik INTEGER NOT NULL,
        deleted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX tombstone_deleted_at ON tombstone (deleted_at);
    CREATE TRIGGER customer_added AFTER INSERT ON customer BEGIN
        UPDATE change_log SET seq = seq + 1;
        UPDATE customer SET change_seq = (SELECT seq FROM change_log)
            WHERE clcleunik = NEW.clcleunik;
    END;
    CREATE TRIGGER customer_changed AFTER UPDATE OF
        clcleunik, customerNumber, groupePrice, login, lastName, firstName, address, zipcode, city, country, phone, cellphone, email, denomination, tvaNumber, addedDate, addHour, language, showPrice, webRemise, megawinapp_login, notification_accepted
        ON customer WHEN
        OLD.clcleunik IS NOT NEW.clcleunik OR OLD.customerNumber IS NOT NEW.customerNumber OR
        OLD.groupePrice IS NOT NEW.groupePrice OR OLD.login IS NOT NEW.login OR
        OLD.lastName IS NOT NEW.lastName OR OLD.firstName IS NOT NEW.firstName OR
        OLD.address IS NOT NEW.address OR OLD.zipcode IS NOT NEW.zipcode OR
        OLD.city IS NOT NEW.city OR OLD.country IS NOT NEW.country OR
        OLD.phone IS NOT NEW.phone OR OLD.cellphone IS NOT NEW.cellphone OR
        OLD.email IS NOT NEW.email OR OLD.denomination IS NOT NEW.denomination OR
        OLD.tvaNumber IS NOT NEW.tvaNumber OR OLD.addedDate IS NOT NEW.addedDate OR
        OLD.addHour IS NOT NEW.addHour OR OLD.language IS NOT NEW.language OR
        OLD.showPrice IS NOT NEW.showPrice OR OLD.webRemise IS NOT NEW.webRemise OR
        OLD.megawinapp_login IS NOT NEW.megawinapp_login OR
        OLD.notification_accepted IS NOT NEW.notification_accepted
    BEGIN
        UPDATE change_log SET seq = seq + 1;
        UPDATE customer SET change_seq = (SELECT seq FROM change_log)
            WHERE clcleunik = NEW.clcleunik;
    END;
    CREATE TRIGGER customer_deleted AFTER DELETE ON customer BEGIN
        UPDATE change_log SET seq = seq + 1;
        INSERT INTO tombstone (seq, clcleunik) SELECT seq, OLD.clcleunik FROM change_log;
    END;",
    // 6: mirroring the old API: a keyed digest of each password the last sync brought (the
    // key is kept outside the database), so that an unchanged password costs no Argon2.
    // A password set any other way, or a deleted customer, forgets it.
    "CREATE TABLE upstream_password (
        clcleunik INTEGER PRIMARY KEY,
        digest BLOB NOT NULL
    );
    CREATE TRIGGER upstream_password_replaced AFTER UPDATE OF password_hash ON customer
        WHEN OLD.password_hash IS NOT NEW.password_hash BEGIN
        DELETE FROM upstream_password WHERE clcleunik = NEW.clcleunik;
    END;
    CREATE TRIGGER upstream_password_deleted AFTER DELETE ON customer BEGIN
        DELETE FROM upstream_password WHERE clcleunik = OLD.clcleunik;
    END;",
    // 7: what start-up looks for, indexed so that it reads no whole table: the customers
    // whose password is stored in plain text (none, once start-up has hashed them), and in
    // mirror mode, the last good sync in the audit trail.
    concat!(
        "CREATE INDEX customer_legacy_password ON customer (clcleunik) WHERE ",
        legacy_password!(),
        ";
        CREATE INDEX audit_sync ON audit (at) WHERE action = 'sync' AND actor = 'sync';"
    ),
    // 8: keys of servers that call on behalf of end users and name them (login limits).
    "ALTER TABLE api_key ADD COLUMN forwards_client_address INTEGER NOT NULL DEFAULT 0;",
    // 9: the demo customers of a database seeded with them, until the first import or sync of
    // the shop's own customers removes them. A deleted customer is no longer one (its id may
    // be given to a real customer), nor is one the shop changed (adopted as its own).
    "CREATE TABLE demo_customer (clcleunik INTEGER PRIMARY KEY);
    CREATE TRIGGER demo_customer_deleted AFTER DELETE ON customer BEGIN
        DELETE FROM demo_customer WHERE clcleunik = OLD.clcleunik;
    END;
    CREATE TRIGGER demo_customer_adopted AFTER UPDATE ON customer
        WHEN EXISTS (SELECT 1 FROM demo_customer WHERE clcleunik = NEW.clcleunik) BEGIN
        DELETE FROM demo_customer WHERE clcleunik = NEW.clcleunik;
    END;",
    // 10: password-reset tokens, stored only as SHA-256 digests; a deleted customer's go, and
    // so do all of a customer's at any change of their password (by any program).
    "CREATE TABLE reset_token (
        digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
        customer INTEGER NOT NULL,
        expires TEXT NOT NULL
    );
    CREATE INDEX reset_token_customer ON reset_token (customer);
    CREATE TRIGGER reset_token_customer_deleted AFTER DELETE ON customer BEGIN
        DELETE FROM reset_token WHERE customer = OLD.clcleunik;
    END;
    CREATE TRIGGER reset_token_password_changed AFTER UPDATE OF password_hash ON customer
        WHEN OLD.password_hash IS NOT NEW.password_hash BEGIN
        DELETE FROM reset_token WHERE customer = NEW.clcleunik;
    END;",
    // 11: the largest id ever given, so that a registration never gets the id of a customer
    // deleted before (the changes feed would lose the deletion; a front-end's sessions and
    // orders kept by id would point to the new person).
    "CREATE TABLE customer_id_high (id INTEGER NOT NULL);
    INSERT INTO customer_id_high (id) SELECT max(
        (SELECT COALESCE(MAX(clcleunik), 0) FROM customer),
        (SELECT COALESCE(MAX(clcleunik), 0) FROM tombstone));
    CREATE TRIGGER customer_id_high_insert AFTER INSERT ON customer
        WHEN NEW.clcleunik > (SELECT id FROM customer_id_high) BEGIN
        UPDATE customer_id_high SET id = NEW.clcleunik;
    END;",
    // 12: public keys (browser code) and customer sessions. SQLite cannot change a CHECK, so
    // `api_key` is rebuilt with the same rows (digests, names, creation times and options
    // kept). A session is stored only as the SHA-256 digest of its token; a new password
    // (from the API, `clientele passwd`, an import or a sync: whoever writes it) and the
    // customer's deletion end all of that customer's sessions, by trigger.
    "CREATE TABLE api_key_new (
        name TEXT PRIMARY KEY,
        digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        scope TEXT NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'write', 'public')),
        forwards_client_address INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO api_key_new (name, digest, created_at, scope, forwards_client_address)
        SELECT name, digest, created_at, scope, forwards_client_address FROM api_key;
    DROP TABLE api_key;
    ALTER TABLE api_key_new RENAME TO api_key;
    CREATE TABLE session (
        digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
        customer INTEGER NOT NULL,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        expires TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX session_customer ON session (customer);
    CREATE INDEX session_expires ON session (expires);
    CREATE TRIGGER session_password_changed AFTER UPDATE OF password_hash ON customer
        WHEN OLD.password_hash IS NOT NEW.password_hash BEGIN
        DELETE FROM session WHERE customer = NEW.clcleunik;
    END;
    CREATE TRIGGER session_customer_deleted AFTER DELETE ON customer BEGIN
        DELETE FROM session WHERE customer = OLD.clcleunik;
    END;",
    // 13: what the memo of answers must see of any program's commit besides the customers
    // (`change_log`): a number that moves when an API key is added, changed or removed, and
    // one that moves when a session ends or changes (a new session changes no answer); and a
    // customer's old id, when another program renumbers one, counted as deleted; and the
    // order sessions were opened in.
    "CREATE TABLE answer_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        keys INTEGER NOT NULL,
        sessions INTEGER NOT NULL
    );
    INSERT INTO answer_version (id, keys, sessions) VALUES (1, 0, 0);
    CREATE TRIGGER answer_version_key_added AFTER INSERT ON api_key BEGIN
        UPDATE answer_version SET keys = keys + 1;
    END;
    CREATE TRIGGER answer_version_key_changed
        AFTER UPDATE OF name, digest, scope, forwards_client_address ON api_key BEGIN
        UPDATE answer_version SET keys = keys + 1;
    END;
    CREATE TRIGGER answer_version_key_removed AFTER DELETE ON api_key BEGIN
        UPDATE answer_version SET keys = keys + 1;
    END;
    CREATE TRIGGER answer_version_session_changed AFTER UPDATE ON session BEGIN
        UPDATE answer_version SET sessions = sessions + 1;
    END;
    CREATE TRIGGER answer_version_session_ended AFTER DELETE ON session BEGIN
        UPDATE answer_version SET sessions = sessions + 1;
    END;
    -- Another program giving a customer another id: the old id is gone, for the changes
    -- feed and for every answer about it (the new id is a change, by `customer_changed`).
    CREATE TRIGGER customer_renumbered AFTER UPDATE OF clcleunik ON customer
        WHEN OLD.clcleunik IS NOT NEW.clcleunik BEGIN
        UPDATE change_log SET seq = seq + 1;
        INSERT INTO tombstone (seq, clcleunik) SELECT seq, OLD.clcleunik FROM change_log;
    END;
    -- The order sessions were opened in: two opened in the same millisecond have the same
    -- `created`, and the cap per customer must still end the older one.
    ALTER TABLE session ADD COLUMN opened INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX session_opened ON session (opened);",
    // 14: failed logins and reset requests (`limits.rs`), so that `clientele limits` and
    // `unlock` reach them from their own process and a restart keeps them: the SHA-256 digest
    // of each subject an attempt failed against, and when (milliseconds since 1970); and
    // when `unlock` last cleared a subject, for a running server, which counts in memory
    // first. No trigger: these writes change no answer.
    "CREATE TABLE login_failure (
        subject BLOB NOT NULL CHECK (length(subject) = 32),
        at INTEGER NOT NULL
    );
    CREATE INDEX login_failure_subject ON login_failure (subject, at);
    CREATE INDEX login_failure_at ON login_failure (at);
    CREATE TABLE login_unlock (
        subject BLOB PRIMARY KEY CHECK (length(subject) = 32),
        at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 15: when each API key was last used (`clientele keys list`), by the key's rowid. Not a
    // column of `api_key`: its triggers (migration 13) would end every cached answer at each
    // write. The server keeps last uses in memory and writes them at most once a minute and
    // at shutdown; a key's deletion takes its row with it.
    "CREATE TABLE api_key_use (
        key_id INTEGER PRIMARY KEY,
        last_used TEXT NOT NULL
    );
    CREATE TRIGGER api_key_use_key_removed AFTER DELETE ON api_key BEGIN
        DELETE FROM api_key_use WHERE key_id = OLD.rowid;
    END;",
    // 16: a demo customer stays one whatever is changed in it (the README's own examples
    // change some), until it is deleted, `clientele remove-demo` or the first import or
    // sync of the shop's customers removes it: "adopted" demo rows were kept, and the first
    // import then merged a real customer into one (John Doe's address, discount and login
    // under Alice's name).
    "DROP TRIGGER IF EXISTS demo_customer_adopted;",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The unit of the jumps a restored copy's change numbers make.
const RESTORE_JUMP: i64 = 1 << 40;

/// On the first open of a backup (marked by [`crate::export::backup`]: `pruned_through`
/// negative), numbers its changes anew, past every number the database it was copied from
/// may have handed out since: the numbers in use (customers' and deletions') become
/// `J + 1, J + 2...` in their order, where `J` is the next multiple of 2^40 above the
/// copy's counter plus a random 1 to 65,536 more multiples, so that two restores of the same
/// copy number apart. Every token below `J` (from any earlier life of the data) gets 410; a
/// walk from `since=0` meets only the new numbers. The triggers on `customer` are set aside
/// meanwhile and put back exactly as they were, all in one transaction. Whether it did.
pub fn renumber_if_restored(conn: &mut Connection) -> rusqlite::Result<bool> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let (seq, pruned): (i64, i64) =
        conn.query_row("SELECT seq, pruned_through FROM change_log", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    if pruned >= 0 {
        return Ok(false);
    }
    let extra = i64::from(OsRng.next_u32() % 65_536) + 1;
    let jump = (seq.max(0) / RESTORE_JUMP)
        .checked_add(extra)
        .and_then(|units| units.checked_mul(RESTORE_JUMP))
        .unwrap_or(seq.saturating_add(1));
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let triggers: Vec<(String, String)> = tx
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'customer'",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER \"{}\"", name.replace('"', "\"\"")))?;
    }
    tx.execute_batch(
        "CREATE TEMP TABLE renumbered (old INTEGER PRIMARY KEY, new INTEGER NOT NULL);",
    )?;
    tx.execute(
        "INSERT INTO temp.renumbered (old, new)
         SELECT n, ?1 + ROW_NUMBER() OVER (ORDER BY n)
         FROM (SELECT change_seq AS n FROM customer UNION SELECT seq FROM tombstone)",
        [jump],
    )?;
    tx.execute_batch(
        "UPDATE customer SET change_seq =
             (SELECT new FROM temp.renumbered WHERE old = customer.change_seq);
         UPDATE tombstone SET seq = (SELECT new FROM temp.renumbered WHERE old = tombstone.seq);",
    )?;
    tx.execute(
        "UPDATE change_log SET seq = ?1 + (SELECT count(*) FROM temp.renumbered),
                               pruned_through = ?1",
        [jump],
    )?;
    tx.execute_batch("DROP TABLE temp.renumbered;")?;
    for (_, sql) in &triggers {
        tx.execute_batch(sql)?;
    }
    tx.commit()?;
    Ok(true)
}

/// A handle on the database: a pool of connections to one file.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// What any connection, in this process or another, committed ([`watch`]).
    watch: Arc<watch::Watch>,
    /// One permit per pooled connection: database work beyond that waits here, as a cheap
    /// future, rather than as a blocked thread in the blocking pool.
    permits: Arc<Semaphore>,
    /// The file did not exist and was created when this handle was opened.
    created: bool,
    /// List totals already counted (see [`crate::customer::Totals`]).
    totals: Arc<crate::customer::Totals>,
    /// Tells this handle's connections in [`Db::read_here`] from another's.
    handle: u64,
    /// The device and inode of the file opened: a file deleted or replaced under the server
    /// (which keeps serving the old one) is told apart from the one it opened.
    identity: Option<(u64, u64)>,
    /// The database file, open for reading its header (see [`check_header`]); never closed
    /// while the server runs, since closing it would drop SQLite's locks.
    header_file: Option<Arc<std::fs::File>>,
}

/// The device and inode of the file at `path`, if it exists.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// What [`Db::open`] did to the file, for the start-up log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist and was created.
    pub created: bool,
    /// Legacy plain-text passwords that were hashed in place.
    pub passwords_hashed: usize,
}

impl Db {
    /// Opens (or creates) the database at `path`, migrates its schema and hashes any legacy
    /// plain-text passwords. Errors name the file and say what is wrong with it.
    pub fn open(path: &Path, hasher: &PasswordHasher) -> Result<(Db, OpenReport), StartupError> {
        let mut report = OpenReport {
            created: !path.exists(),
            ..OpenReport::default()
        };
        if path.is_dir() {
            return Err(StartupError::database(path, "is a directory, not a file"));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(StartupError::database(
                    path,
                    format!("the folder {} does not exist", parent.display()),
                ));
            }
        }
        if report.created {
            // Customer data and password hashes: readable by this user alone, whatever the
            // umask. SQLite gives the -wal and -shm files the same mode as this file.
            create_private_file(path).map_err(|e| describe_io(path, &e))?;
        }
        let mut conn = open_connection(path).map_err(|e| describe(path, e))?;
        // Before anything is written: another application's file is refused untouched.
        check_ours(&conn, path)?;
        if !report.created {
            warn_if_readable_by_others(path);
        }
        // A newer schema is refused before the journal mode is set: switching a copy made
        // by `VACUUM INTO` (a rollback-journal file) to WAL would already change it.
        schema_of(&conn, path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| describe(path, e))?;
        migrate(&mut conn, path)?;
        if renumber_if_restored(&mut conn).map_err(|e| describe(path, e))? {
            log::warn!(
                "{} is a restored backup: its changes are numbered anew, so a back office's \
                 changes token from before gets 410 and starts again from since=0",
                path.display()
            );
        }
        // The header (with the application id) in the main file, where `/health` reads it.
        fold_wal(&conn).map_err(|e| describe(path, e))?;
        report.passwords_hashed = hash_legacy_passwords(&mut conn, hasher, &LogProgress::new())
            .map_err(|e| StartupError::database(path, e))?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|conn| {
                conn.busy_timeout(BUSY_TIMEOUT)?;
                conn.execute_batch(CONNECTION_PRAGMAS)
            });
        let size = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .max(4);
        let permits = Arc::new(Semaphore::new(size));
        // No idle minimum: r2d2 would otherwise reopen a connection in the background each
        // time one is taken, and a command that removes the file it just created (a failed
        // import into a new database) could see that late open fail on stderr. Connections,
        // once open, are kept: SQLite connections need no recycling.
        let pool = r2d2::Pool::builder()
            .max_size(u32::try_from(size).unwrap_or(8))
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|e| StartupError::database(path, e))?;
        Ok((
            Db {
                pool,
                path: path.to_owned(),
                watch: Arc::new(watch::Watch::new(conn, path)),
                permits,
                created: report.created,
                totals: Arc::default(),
                handle: NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                identity: file_identity(path),
                header_file: std::fs::File::open(path).ok().map(Arc::new),
            },
            report,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own, outside the pool, for work that may last as long as a slow
    /// client reads (a streamed list): it must not hold a pooled connection meanwhile.
    pub fn dedicated(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// List totals already counted, shared by every request.
    pub fn totals(&self) -> Arc<crate::customer::Totals> {
        Arc::clone(&self.totals)
    }

    /// Whether the file was created by this handle (it did not exist before).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The versions of the data, brought up to date with every commit made before now by
    /// anyone (this server, `clientele import` or `keys` in another process). Cheap: it
    /// reads shared memory, and asks the database only after a commit.
    pub fn versions(&self) -> &Versions {
        self.watch.versions()
    }

    /// The versions, looked at again only if the last look is more than [`watch::POLL`] old
    /// (every write of this server is looked at before its answer goes).
    pub fn versions_seen(&self) -> &Versions {
        self.watch.recent()
    }

    /// The list body for `filter` and its total, read on this thread with a connection of
    /// its own (one per thread, opened on first use, reading only): for the lane in front
    /// of the app, which reads one customer without a hand-off to the blocking pool. `None`
    /// when it cannot be read now (the caller then goes through the app, which says why).
    pub fn read_here(&self, filter: &ListFilter, view: View) -> Option<(Vec<u8>, u64)> {
        thread_local! {
            static HERE: std::cell::RefCell<Option<(u64, Connection)>> =
                const { std::cell::RefCell::new(None) };
        }
        HERE.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if !matches!(&*slot, Some((handle, _)) if *handle == self.handle) {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .ok()?;
                conn.busy_timeout(READ_HERE_BUSY).ok()?;
                conn.pragma_update(None, "query_only", true).ok()?;
                *slot = Some((self.handle, conn));
            }
            let (_, conn) = slot.as_ref()?;
            customers::list_json(conn, filter, view, Some(&self.totals)).ok()
        })
    }

    /// A connection for synchronous work (the command-line tools).
    pub fn connection(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, ApiError> {
        self.pool.get().map_err(ApiError::unavailable)
    }

    /// Runs `work` on a pooled connection on the blocking thread pool, so SQLite never stalls
    /// Rocket's async workers. A panic inside `work` is re-raised here, where Rocket turns it
    /// into a 500.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError>,
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        let watch = Arc::clone(&self.watch);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(ApiError::internal)?;
        let task = rocket::tokio::task::spawn_blocking(move || {
            // Held by the work, not the request: a client that leaves does not free it early.
            let _permit = permit;
            let mut conn = pool.get().map_err(ApiError::unavailable)?;
            let changes = conn.total_changes();
            let result = work(&mut conn).map_err(Into::into);
            // A write is seen by the very next request: published before this answer goes.
            if conn.total_changes() != changes {
                watch.look();
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(ApiError::internal(error)),
        }
    }
}

impl Db {
    /// Whether the store answers, reading the file itself: the header must still be a
    /// clientele database's, then a query must succeed. (SQLite answers from its page cache,
    /// so a query alone keeps succeeding after the file is overwritten.)
    pub async fn check_health(&self) -> Result<(), ApiError> {
        let path = self.path.clone();
        if self.identity.is_some() && file_identity(&path) != self.identity {
            return Err(ApiError::unavailable(HeaderError {
                path: path.display().to_string(),
                reason: "was deleted or replaced since the server opened it: the server \
                         still uses the old file, whose changes no tool sees. Restart it"
                    .to_owned(),
            }));
        }
        let file = self.header_file.clone();
        self.run(move |conn| {
            if let Some(file) = file {
                check_header(&path, &file).map_err(ApiError::unavailable)?;
            }
            conn.query_row("SELECT count(*) FROM customer", [], |_| Ok(()))
                .map_err(ApiError::from)
        })
        .await
    }
}

/// Why the file on disk is not (or no longer) a clientele database.
#[derive(Debug, thiserror::Error)]
#[error("database file {path}: {reason}")]
pub struct HeaderError {
    path: String,
    reason: String,
}

/// Reads the file's first 100 bytes through `file`, a descriptor kept open for the life of
/// the server: SQLite's magic string and our application id, as they are on disk (SQLite
/// itself would answer from its cache, or from the WAL's copy of the page).
///
/// Never through a `File::open` and close: closing any descriptor of a file drops every POSIX
/// lock this process holds on it, SQLite's included, and another program opening the database
/// then takes the server for gone, checkpoints and deletes the WAL under it.
pub fn check_header(path: &Path, file: &std::fs::File) -> Result<(), HeaderError> {
    use std::os::unix::fs::FileExt;
    let fail = |reason: &str| HeaderError {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    };
    let mut header = [0u8; 100];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| fail(&format!("cannot be read: {e}")))?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(fail(
            "is no longer a SQLite database (damaged or overwritten)",
        ));
    }
    let id = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if id != APPLICATION_ID {
        return Err(fail("is no longer a clientele database"));
    }
    Ok(())
}

impl From<rusqlite::Error> for ApiError {
    /// A store that is busy, missing or damaged is "unavailable" (503); anything else is a bug.
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::NotADatabase
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull,
            ) => ApiError::unavailable(error),
            _ => ApiError::internal(error),
        }
    }
}

/// A single connection with the server's settings; the file is created if missing.
pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(CONNECTION_PRAGMAS)?;
    Ok(conn)
}

/// Creates an empty file at `path` that only this user may read or write (mode 0600), for
/// what holds customer data: the database, backups, exports. Fails if it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Says so in the log when the database file can be read by other users of the machine (a
/// file made by an older version, or copied with a loose umask): it holds password hashes.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            log::warn!(
                "database file {} can be read by other users (mode {mode:o}); it holds \
                 customer data and password hashes: chmod 600 it",
                path.display()
            );
        }
    }
}

/// The folder a file is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether this process may create files in `folder` (SQLite needs to, for its -wal and -shm
/// files beside the database).
fn folder_is_writable(folder: &Path) -> bool {
    tempfile::tempfile_in(folder).is_ok()
}

/// Turns an I/O error on the database file into words about the file.
fn describe_io(path: &Path, error: &std::io::Error) -> StartupError {
    let reason = match error.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            format!(
                "cannot be created: the folder {} is read-only for this user",
                folder_of(path).display()
            )
        }
        _ => error.to_string(),
    };
    StartupError::database(path, reason)
}

/// Turns an SQLite error at start-up into words about the file.
fn describe(path: &Path, error: rusqlite::Error) -> StartupError {
    let folder = folder_of(path);
    let reason = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "is not a SQLite database".to_string(),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly) if !folder_is_writable(folder) => {
            format!(
                "the folder {} is read-only for this user; the server needs to write the \
                 database and its -wal and -shm files there",
                folder.display()
            )
        }
        Some(ErrorCode::CannotOpen) => "cannot be opened (check the path and permissions)".into(),
        Some(ErrorCode::ReadOnly) => "is read-only; the server needs to write it".into(),
        Some(ErrorCode::DatabaseCorrupt) => "is damaged (restore it from a backup)".into(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "is locked by another program".into()
        }
        _ => error.to_string(),
    };
    StartupError::database(path, reason)
}

/// Refuses a file that is another application's: ours carry [`APPLICATION_ID`]; an empty file
/// is ours to fill; a file from before the id (schema 1 or 2) is recognised by its tables.
/// Reads only: nothing is written to a file that is refused.
fn check_ours(conn: &Connection, path: &Path) -> Result<(), StartupError> {
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|e| describe(path, e))?;
    if id == APPLICATION_ID {
        return Ok(());
    }
    let refuse = |what: String| {
        StartupError::database(
            path,
            format!("{what}; clientele has not changed it. Point `database` at another file"),
        )
    };
    if id != 0 {
        return Err(refuse(format!(
            "belongs to another application (application_id {id:#x})"
        )));
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| describe(path, e))?;
    if tables.is_empty() {
        return Ok(());
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| describe(path, e))?;
    let our_columns = conn
        .prepare("SELECT clcleunik, password_hash, updated_at FROM customer LIMIT 0")
        .is_ok();
    if (1..=2).contains(&version) && our_columns {
        return Ok(());
    }
    Err(refuse(format!(
        "is not a clientele database (it holds the tables {})",
        tables.join(", ")
    )))
}

/// The schema version of the clientele database at `path` when this binary would migrate
/// it (an existing file of ours, older than [`SCHEMA_VERSION`]); `None` otherwise (no file,
/// a new or current one, a newer or a foreign one, which opening then refuses). Reads only.
pub fn schema_behind(path: &Path) -> Option<usize> {
    if !path.is_file() {
        return None;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(BUSY_TIMEOUT).ok()?;
    check_ours(&conn, path).ok()?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .ok()?;
    let version = usize::try_from(version).ok()?;
    (1..SCHEMA_VERSION).contains(&version).then_some(version)
}

/// The file's schema version; a newer one than this binary knows is refused, unchanged.
fn schema_of(conn: &Connection, path: &Path) -> Result<usize, StartupError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| describe(path, e))?;
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > SCHEMA_VERSION {
        return Err(StartupError::database(
            path,
            format!(
                "was written by a newer clientele (schema {current}; this one knows up to \
                 {SCHEMA_VERSION}) and was not changed: run that newer version, or restore \
                 the copy taken before the upgrade ({}.before-v{current}; README, \
                 \"Upgrading\")",
                path.display()
            ),
        ));
    }
    Ok(current)
}

/// Brings the schema up to [`SCHEMA_VERSION`], each step in its own transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StartupError> {
    let current = schema_of(conn, path)?;
    for (version, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current)
        .map(|(i, sql)| (i + 1, sql))
    {
        let mut step = || -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version as i64)?;
            tx.commit()
        };
        step().map_err(|e| describe(path, e))?;
    }
    Ok(())
}

/// More legacy passwords than this are hashed on every core at start-up.
const LARGE_MIGRATION: usize = 256;

/// Hashes every stored password that is not already a hash (databases carried over from the
/// old API hold plain text), on every core the hasher may use, reporting progress. Then writes
/// them in one transaction, each only where the stored value is still the plain text that was
/// hashed: a `passwd` or an import committed meanwhile wins. Finally rewrites the file so the
/// plain text is gone from free pages and the WAL too. Returns how many were replaced.
pub fn hash_legacy_passwords(
    conn: &mut Connection,
    hasher: &PasswordHasher,
    progress: &dyn Progress,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let legacy: Vec<(i64, Secret)> = {
        // Hashes are told apart in SQL, through a partial index, so that a million hashed
        // customers cost nothing at start-up; `is_hash` has the last word.
        let mut statement = conn.prepare(LEGACY_PASSWORDS_QUERY)?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut legacy = Vec::new();
        for row in rows {
            let (id, stored) = row?;
            if !auth::is_hash(&stored) {
                legacy.push((id, Secret::new(stored)));
            }
        }
        legacy
    };
    if legacy.is_empty() {
        return Ok(0);
    }
    progress.phase("hashing legacy passwords", legacy.len());
    // Every core for a real migration (the port is not open yet); a few passwords are not
    // worth the memory each extra thread's 19 MiB buffer keeps afterwards.
    let threads = if legacy.len() > LARGE_MIGRATION {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        hasher.concurrency()
    };
    let hashes = auth::parallel_map(&legacy, threads, |(_, plain)| {
        // An empty legacy password means "no password": nobody can log in with it.
        let hash = if plain.expose().is_empty() {
            Ok(None)
        } else {
            hasher.hash(plain).map(Some)
        };
        progress.step();
        hash
    });
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut replaced = 0;
    {
        let mut update = tx.prepare(
            "UPDATE customer SET password_hash = ?3, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE clcleunik = ?1 AND password_hash = ?2",
        )?;
        for ((id, plain), hash) in legacy.iter().zip(hashes) {
            replaced += update.execute(rusqlite::params![id, plain.expose(), hash?])?;
        }
    }
    tx.commit()?;
    scrub(conn)?;
    let kept = legacy.len() - replaced;
    log::warn!(
        "hashed {replaced} legacy plain-text password(s) in place with Argon2id{}",
        if kept > 0 {
            format!("; {kept} changed meanwhile and kept their new value")
        } else {
            String::new()
        }
    );
    Ok(replaced)
}

/// Start-up progress in the log: a line every few seconds, so a long migration is visibly
/// alive (100,000 passwords take minutes).
pub struct LogProgress {
    state: Mutex<(&'static str, usize, usize, std::time::Instant)>,
}

impl Default for LogProgress {
    fn default() -> LogProgress {
        LogProgress::new()
    }
}

impl LogProgress {
    pub fn new() -> LogProgress {
        LogProgress {
            state: Mutex::new(("", 0, 0, std::time::Instant::now())),
        }
    }
}

impl Progress for LogProgress {
    fn phase(&self, name: &'static str, total: usize) {
        log::warn!("{name}: {total} to do; the port opens when done");
        if let Ok(mut state) = self.state.lock() {
            *state = (name, total, 0, std::time::Instant::now());
        }
    }

    fn step(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.2 += 1;
        let (name, total, done, last) = *state;
        if done == total || last.elapsed() >= Duration::from_secs(5) {
            state.3 = std::time::Instant::now();
            log::warn!("{name}: {done} of {total} ({}%)", done * 100 / total.max(1));
        }
    }
}

/// Rewrites the whole file and empties the WAL, so that no freed page keeps old content.
pub fn scrub(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("VACUUM;")?;
    fold_wal(conn).map(drop)
}

/// A window in milliseconds, as `login_failure` counts time.
pub fn window_millis(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
}

/// The database file's side file named by `suffix` (`-wal`, `-shm`; `""` is the file).
pub fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Folds the write-ahead log into the database file and empties it. The number SQLite
/// answers: 0 when it did all of it, 1 when a reader still open held part of it back.
pub fn fold_wal(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
}

/// Deletes a database file and its WAL side files, ignoring those that do not exist.
pub fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(side_file(path, suffix));
    }
}

/// The operations on one SQLite connection: each is the function of the same name in the
/// file of its subject.
impl Backend for Connection {
    fn find(&mut self, id: i64) -> crate::store::Result<Option<Customer>> {
        Ok(customers::find(self, id)?)
    }

    fn find_for_login(
        &mut self,
        who: &Identifier,
    ) -> crate::store::Result<Option<(Customer, Option<Secret>)>> {
        Ok(customers::find_for_login(self, who)?)
    }

    fn list(&mut self, filter: &ListFilter) -> crate::store::Result<Page> {
        Ok(customers::list(self, filter)?)
    }

    fn list_json(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: Option<&Totals>,
    ) -> crate::store::Result<(Vec<u8>, u64)> {
        Ok(customers::list_json(self, filter, view, totals)?)
    }

    fn list_size(
        &mut self,
        filter: &ListFilter,
        totals: &Totals,
    ) -> crate::store::Result<(u64, i64)> {
        Ok(customers::list_size(self, filter, totals)?)
    }

    fn stream_list(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: &Totals,
        chunk: usize,
        start: &mut dyn FnMut(u64, i64) -> bool,
        piece: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> crate::store::Result<()> {
        Ok(customers::stream_list(
            self, filter, view, totals, chunk, start, piece,
        )?)
    }

    fn customer_count(&mut self) -> crate::store::Result<u64> {
        Ok(customers::count_all(self)?)
    }

    fn database_bytes(&mut self) -> crate::store::Result<u64> {
        let pages: i64 = self.query_row("PRAGMA page_count", [], |row| row.get(0))?;
        let size: i64 = self.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let wal = self
            .path()
            .and_then(|path| std::fs::metadata(format!("{path}-wal")).ok())
            .map_or(0, |meta| meta.len());
        Ok(u64::try_from(pages * size).unwrap_or(0) + wal)
    }

    fn slowest_hash(&mut self) -> crate::store::Result<Option<String>> {
        Ok(customers::slowest_hash(self)?)
    }

    fn update(
        &mut self,
        id: i64,
        changes: &Customer,
        present: FieldSet,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError> {
        customers::update(self, id, changes, present, actor, retention)
    }

    fn insert(
        &mut self,
        customer: Customer,
        present: FieldSet,
        password_hash: Option<String>,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError> {
        customers::insert(self, customer, present, password_hash, actor, retention)
    }

    fn delete(&mut self, id: i64, actor: &str, retention: Retention) -> Result<(), WriteError> {
        customers::delete(self, id, actor, retention)
    }

    fn set_password(
        &mut self,
        id: i64,
        hash: &str,
        actor: &str,
        action: Action,
        retention: Retention,
    ) -> crate::store::Result<bool> {
        Ok(customers::set_password(
            self, id, hash, actor, action, retention,
        )?)
    }

    fn replace_hash(&mut self, id: i64, old: &str, new: &str) -> crate::store::Result<bool> {
        Ok(customers::replace_hash(self, id, old, new)?)
    }

    fn changes_since(&mut self, since: i64, limit: u32) -> Result<ChangesPage, ApiError> {
        customers::changes_since(self, since, limit)
    }

    fn create_key(
        &mut self,
        name: &str,
        digest: &[u8],
        scope: Scope,
        options: KeyOptions,
    ) -> crate::store::Result<bool> {
        Ok(keys::create(self, name, digest, scope, options)?)
    }

    fn keys(&mut self) -> crate::store::Result<Vec<KeyInfo>> {
        Ok(keys::list(self)?)
    }

    fn stored_keys(&mut self) -> crate::store::Result<Vec<StoredKey>> {
        Ok(keys::stored(self)?)
    }

    fn revoke_key(&mut self, name: &str) -> crate::store::Result<bool> {
        Ok(keys::revoke(self, name)?)
    }

    fn key_count(&mut self) -> crate::store::Result<usize> {
        Ok(keys::count(self)?)
    }

    fn record_key_uses(&mut self, uses: &[(i64, String)]) -> crate::store::Result<()> {
        Ok(keys::record_uses(self, uses)?)
    }

    fn open_session(
        &mut self,
        digest: &[u8],
        id: i64,
        days: u32,
        max_per_customer: i64,
    ) -> crate::store::Result<String> {
        Ok(sessions::open(self, digest, id, days, max_per_customer)?)
    }

    fn session(&mut self, digest: &[u8]) -> crate::store::Result<Option<(Vec<u8>, i64)>> {
        Ok(sessions::find(self, digest)?)
    }

    fn end_session(&mut self, digest: &[u8]) -> crate::store::Result<bool> {
        Ok(sessions::end(self, digest)?)
    }

    fn store_reset(
        &mut self,
        digest: &[u8],
        id: i64,
        minutes: u32,
        actor: &str,
        retention: Retention,
    ) -> crate::store::Result<String> {
        Ok(resets::store(self, digest, id, minutes, actor, retention)?)
    }

    fn reset_holder(&mut self, digest: &[u8]) -> crate::store::Result<Option<i64>> {
        Ok(resets::holder(self, digest)?)
    }

    fn spend_reset(
        &mut self,
        digest: &[u8],
        hash: &str,
        actor: &str,
        retention: Retention,
    ) -> crate::store::Result<Option<i64>> {
        Ok(resets::spend(self, digest, hash, actor, retention)?)
    }

    fn audit(
        &mut self,
        kind: crate::audit::Kind,
        customer: Option<i64>,
        since: Option<&str>,
        limit: usize,
    ) -> crate::store::Result<Vec<Entry>> {
        Ok(audit::list(self, kind, customer, since, limit)?)
    }

    fn audit_event(
        &mut self,
        actor: &str,
        action: Action,
        customer: Option<i64>,
        detail: &str,
        retention: Retention,
    ) -> crate::store::Result<()> {
        let tx = self.transaction()?;
        audit::record(&tx, actor, action, customer, &[], detail, retention)?;
        Ok(tx.commit()?)
    }

    fn demo_left(&mut self) -> crate::store::Result<usize> {
        Ok(import::demo_left(self)?)
    }

    fn remove_demo(&mut self, actor: &str, retention: Retention) -> crate::store::Result<usize> {
        Ok(import::remove_demo(self, actor, retention)?)
    }

    fn demo_ids(&mut self) -> crate::store::Result<Vec<i64>> {
        Ok(import::demo_ids(self)?)
    }

    fn own_customer_count(&mut self) -> crate::store::Result<u64> {
        Ok(import::own_customer_count(self)?)
    }

    fn own_customers_among(&mut self, ids: &[i64]) -> crate::store::Result<u64> {
        Ok(import::own_customers_among(self, ids)?)
    }

    fn stored_customers(
        &mut self,
        ids: &[i64],
        digests: bool,
    ) -> crate::store::Result<HashMap<i64, StoredCustomer>> {
        Ok(import::stored_customers(self, ids, digests)?)
    }

    fn begin_import(&mut self, replace: bool) -> crate::store::Result<Box<dyn ImportTx + '_>> {
        Ok(Box::new(import::SqliteImport::begin(self, replace)?))
    }

    fn last_sync_age(&mut self) -> crate::store::Result<Option<i64>> {
        Ok(import::last_sync_age(self)?)
    }

    fn limit_status(
        &mut self,
        subjects: &[&str],
        max_failures: u32,
        window: Duration,
    ) -> crate::store::Result<Vec<(i64, u64)>> {
        let now = crate::clock::millis(std::time::SystemTime::now());
        Ok(limits::status(
            self,
            subjects,
            max_failures,
            window_millis(window),
            i64::try_from(now).unwrap_or(i64::MAX),
        )?)
    }

    fn limit_totals(
        &mut self,
        max_failures: u32,
        window: Duration,
    ) -> crate::store::Result<(i64, i64)> {
        let now = crate::clock::millis(std::time::SystemTime::now());
        Ok(limits::totals(
            self,
            max_failures,
            window_millis(window),
            i64::try_from(now).unwrap_or(i64::MAX),
        )?)
    }

    fn limit_clear(&mut self, subjects: &[&str], window: Duration) -> crate::store::Result<u64> {
        let now = crate::clock::millis(std::time::SystemTime::now());
        Ok(limits::clear(
            self,
            subjects,
            window_millis(window),
            i64::try_from(now).unwrap_or(i64::MAX),
        )?)
    }

    fn ping(&mut self) -> crate::store::Result<()> {
        Ok(self.query_row("SELECT count(*) FROM customer", [], |_| Ok(()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_writes_the_application_id_the_checks_expect() {
        let expected = format!("PRAGMA application_id = {APPLICATION_ID};");
        assert!(MIGRATIONS.contains(&expected.as_str()));
    }

    /// A failed import into a new file removes it: no pool thread may open it afterwards.
    #[test]
    fn taking_a_connection_opens_no_other_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let hasher = PasswordHasher::new(crate::auth::Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let (db, _) = Db::open(&dir.path().join("shop.db"), &hasher).unwrap();
        let conn = db.connection().unwrap();
        // A replenishing pool would have opened its second connection well within this.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(db.pool.state().connections, 1);
        drop(conn);
        assert_eq!(db.pool.state().idle_connections, 1, "a connection is kept");
    }
}
