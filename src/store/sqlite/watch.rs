//! Seeing commits on SQLite, by this server or any other program, and what they changed.
//!
//! Asking SQLite whether anything was committed (`PRAGMA data_version`) takes a lock and
//! file-lock system calls, too much for every request. Instead:
//! - after each piece of database work of this server ([`super::Db::run`]) that changed
//!   anything, the watch looks at once, before the request's answer is sent: a commit
//!   through this server is seen by the very next request;
//! - every request looks for the others (an import or `keys revoke` from the command line,
//!   a sync, another server on the same file) when the last look is more than [`POLL`] old,
//!   and every request the memo does not answer looks anyway: a look reads the change
//!   counter SQLite keeps in the WAL index (the `-shm` file), bytes 8 to 11 of its header,
//!   "incremented with each transaction" (<https://sqlite.org/walformat.html>), with one
//!   `pread`. An idle server does nothing (no thread polls), and under load it is one
//!   `pread` a millisecond;
//! - only when that counter moved does the watch connection ask what changed, from what the
//!   triggers keep: `change_log.seq` with each customer's `change_seq` and the tombstones
//!   (which customers), and `answer_version` (API keys changed, sessions ended).
//!
//! A commit that changed no answer (a login's audit row, a new session) costs one look.
//! Without a WAL index (a database not in WAL mode) each look asks `PRAGMA data_version`.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::store::versions::{Change, Rows, Versions};

/// Customers listed per change at most; more count as all of them.
const ROWS_LISTED: usize = 1024;
/// How old the last look may be when a request is answered from memory (the bound the
/// README states for other programs' commits).
pub const POLL: Duration = Duration::from_millis(1);

/// The watch on one database.
pub struct Watch {
    watcher: Mutex<Watcher>,
    shm: Option<Shm>,
    /// The WAL index's change counter as of the last look that found everything published,
    /// tagged (bit 32) so that 0 means never.
    seen: AtomicU64,
    /// When the last look started, in nanoseconds since `epoch`.
    looked: AtomicU64,
    epoch: Instant,
    versions: Versions,
}

/// What the last look found.
struct Watcher {
    conn: Connection,
    data_version: Option<i64>,
    seq: i64,
    keys: i64,
    sessions: i64,
}

impl Watch {
    /// Watches the database at `path` through `conn` (a connection that never writes).
    pub fn new(conn: Connection, path: &Path) -> Watch {
        // Reading once makes sure the WAL index exists before it is mapped.
        let _ = conn.query_row("PRAGMA data_version", [], |row| row.get::<_, i64>(0));
        let watch = Watch {
            watcher: Mutex::new(Watcher {
                conn,
                data_version: None,
                seq: 0,
                keys: 0,
                sessions: 0,
            }),
            shm: Shm::open(path),
            seen: AtomicU64::new(0),
            looked: AtomicU64::new(0),
            epoch: Instant::now(),
            versions: Versions::default(),
        };
        watch.look();
        watch
    }

    /// The versions, brought up to date first.
    pub fn versions(&self) -> &Versions {
        self.look();
        &self.versions
    }

    /// The versions, looked at again only if the last look is more than [`POLL`] old.
    pub fn recent(&self) -> &Versions {
        let now = self.nanos();
        if now.saturating_sub(self.looked.load(Ordering::Acquire)) > POLL.as_nanos() as u64 {
            self.look();
        }
        &self.versions
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Publishes whatever was committed since the last look.
    pub fn look(&self) {
        self.looked.store(self.nanos(), Ordering::Release);
        let counter = self.shm.as_ref().and_then(Shm::change_counter);
        if counter.is_some_and(|counter| self.seen.load(Ordering::Acquire) == tag(counter)) {
            return;
        }
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        // Another request may have looked meanwhile.
        if counter.is_some_and(|counter| self.seen.load(Ordering::Acquire) == tag(counter)) {
            return;
        }
        // Read before the database is: a commit after this moves it again.
        let counter = self.shm.as_ref().and_then(Shm::change_counter);
        match watcher.changes() {
            Ok(change) => {
                self.versions.publish(&change);
                self.versions.set_live(true);
                if let Some(counter) = counter {
                    self.seen.store(tag(counter), Ordering::Release);
                }
            }
            Err(error) => {
                log::debug!("could not look for changes in the database: {error}");
                self.versions.set_live(false);
                watcher.data_version = None;
            }
        }
    }
}

fn tag(counter: u32) -> u64 {
    (1 << 32) | u64::from(counter)
}

impl Watcher {
    /// What was committed since the last call (everything, the first time).
    fn changes(&mut self) -> rusqlite::Result<Change> {
        let data_version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        let first = self.data_version.is_none();
        if self.data_version == Some(data_version) {
            return Ok(Change {
                everything: false,
                keys: false,
                sessions: false,
                rows: Rows::None,
            });
        }
        let (seq, keys, sessions): (i64, i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT seq FROM change_log), keys, sessions FROM answer_version",
            )?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        // A number that went back: the file was replaced or restored under the server.
        let replaced = seq < self.seq || keys < self.keys || sessions < self.sessions;
        let rows = if first || replaced {
            Rows::All
        } else if seq == self.seq {
            Rows::None
        } else {
            let mut statement = self.conn.prepare_cached(
                "SELECT clcleunik FROM customer WHERE change_seq > ?1 \
                 UNION ALL SELECT clcleunik FROM tombstone WHERE seq > ?1 LIMIT ?2",
            )?;
            let limit = i64::try_from(ROWS_LISTED + 1).unwrap_or(i64::MAX);
            let ids = statement
                .query_map(rusqlite::params![self.seq, limit], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            if ids.len() > ROWS_LISTED {
                Rows::All
            } else {
                Rows::Some(ids)
            }
        };
        let change = Change {
            everything: first || replaced,
            keys: keys != self.keys,
            sessions: sessions != self.sessions,
            rows,
        };
        self.data_version = Some(data_version);
        self.seq = seq;
        self.keys = keys;
        self.sessions = sessions;
        Ok(change)
    }
}

/// The WAL index, open for reading its header.
struct Shm {
    file: std::fs::File,
}

impl Shm {
    fn open(path: &Path) -> Option<Shm> {
        let mut name = path.as_os_str().to_owned();
        name.push("-shm");
        let file = std::fs::File::open(&name).ok()?;
        Some(Shm { file })
    }

    /// `iChange` of the first copy of the header (native byte order); `None` if unreadable.
    fn change_counter(&self) -> Option<u32> {
        let mut bytes = [0u8; 4];
        self.file.read_exact_at(&mut bytes, 8).ok()?;
        Some(u32::from_ne_bytes(bytes))
    }
}
