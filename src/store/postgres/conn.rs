//! One PostgreSQL connection as the backend uses it: the client, the statements it has
//! prepared, whether it may go back to the pool, and transactions.
//!
//! Every statement goes through [`Conn`], so that two things hold everywhere: a statement is
//! prepared once per connection (one round trip per query afterwards), and an error that
//! means the connection is gone or points at a standby marks it broken, so the pool drops it
//! instead of handing it to the next request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::store::{Error, Result};

/// The parameters of one statement.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements kept prepared per connection; beyond, the cache starts afresh (a list filter
/// makes one statement per combination of its parameters, so there are a few dozen at most).
const STATEMENTS_KEPT: usize = 256;

/// A connection idle longer than this is asked whether it still works before it is used
/// (one round trip): the server may have closed it meanwhile (a restart, a failover). A
/// connection in steady use is never asked.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// How long that question may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection and its prepared statements.
pub struct Conn {
    /// Always `Some` until the connection is dropped (see [`Drop`] below).
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    broken: bool,
    /// When the server last answered on it.
    last_used: Instant,
}

/// How a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// A write: READ COMMITTED whatever the server's default (the change-number lock
    /// serialises the writers that need it; REPEATABLE READ would fail them instead), and
    /// waiting at most 5 s for a lock, as SQLite's busy timeout does: then 503.
    Write,
    /// A write that changes customers: [`Begin::Write`], holding the customers' write lock
    /// from the start (the row of `change_log`, as SQLite's `BEGIN IMMEDIATE` takes the
    /// write lock), in the same round trip. Whatever node they run on, such writes go one
    /// at a time, so the checks they make (an email already taken, the next free id) still
    /// hold when they commit; the triggers would take the lock at the first change anyway.
    CustomerWrite,
    /// One consistent read-only snapshot, for a total and its rows.
    Snapshot,
}

impl Begin {
    fn sql(self) -> &'static str {
        match self {
            Begin::Write => {
                "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE; SET LOCAL lock_timeout = '5s'"
            }
            Begin::CustomerWrite => {
                "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE; SET LOCAL lock_timeout = '5s'; \
                 SELECT seq FROM change_log WHERE id = 1 FOR UPDATE"
            }
            Begin::Snapshot => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }
}

impl Conn {
    pub fn new(client: Client) -> Conn {
        Conn {
            client: Some(client),
            statements: HashMap::new(),
            broken: false,
            last_used: Instant::now(),
        }
    }

    /// Whether the connection must not be used again (lost, closed, or on a standby).
    pub fn is_broken(&self) -> bool {
        self.broken || self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// Says the connection must not go back to the pool.
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Whether this connection, taken from the pool, cannot serve: what has arrived on its
    /// socket says the server closed it (read without waiting), or, idle for a while, it
    /// does not answer a trivial query.
    pub fn closed_while_idle(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else {
            return true;
        };
        let failed = {
            let mut notifications = client.notifications();
            let mut pending = notifications.iter();
            // Nothing was LISTENed to on a pooled connection: any notification is dropped.
            loop {
                match postgres::fallible_iterator::FallibleIterator::next(&mut pending) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break false,
                    Err(_) => break true,
                }
            }
        };
        if failed
            || (self.last_used.elapsed() > IDLE_CHECK && client.is_valid(CHECK_TIMEOUT).is_err())
        {
            self.broken = true;
        } else {
            self.last_used = Instant::now();
        }
        self.is_broken()
    }

    pub fn client(&mut self) -> Result<&mut Client> {
        self.client
            .as_mut()
            .ok_or_else(|| Error::Unavailable("the connection is closed".into()))
    }

    /// Notes what an error says about the connection, and turns it into the store's error.
    pub fn check<T>(&mut self, result: Result<T, postgres::Error>) -> Result<T> {
        if result.is_ok() {
            self.last_used = Instant::now();
        }
        result.map_err(|error| {
            if breaks_connection(&error) {
                self.broken = true;
            }
            // "cached plan must not change result type": a newer schema under a prepared
            // statement. Prepare again next time.
            if error.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
                self.statements.clear();
            }
            Error::Postgres(error)
        })
    }

    /// `sql`, prepared on this connection (once).
    pub fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let prepared = self.client()?.prepare(sql);
        let statement = self.check(prepared)?;
        if self.statements.len() >= STATEMENTS_KEPT {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let rows = self.client()?.query(&statement, params);
        self.check(rows)
    }

    pub fn opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let statement = self.statement(sql)?;
        let row = self.client()?.query_opt(&statement, params);
        self.check(row)
    }

    pub fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        let statement = self.statement(sql)?;
        let row = self.client()?.query_one(&statement, params);
        self.check(row)
    }

    /// Runs a statement; how many rows it changed.
    pub fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let statement = self.statement(sql)?;
        let changed = self.client()?.execute(&statement, params);
        self.check(changed)
    }

    /// Runs statements without parameters (the simple protocol: nothing is prepared).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        let done = self.client()?.batch_execute(sql);
        self.check(done)
    }

    /// Starts a [`Begin::Snapshot`] transaction and reads the change number in it, in one
    /// round trip (the hot path of every list).
    pub fn snapshot_at_seq(&mut self) -> Result<(Tx<'_>, i64)> {
        let sql = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                   SELECT seq FROM change_log WHERE id = 1";
        let answered = self.client()?.simple_query(sql);
        let answer = match self.check(answered) {
            Ok(answer) => answer,
            Err(error) => {
                if !self.is_broken() && self.batch("ROLLBACK").is_err() {
                    self.broken = true;
                }
                return Err(error);
            }
        };
        let seq = answer.iter().find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        });
        let tx = Tx {
            conn: self,
            open: true,
        };
        match seq {
            Some(seq) => Ok((tx, seq)),
            None => Err(Error::Data("change_log has no change number".into())),
        }
    }

    /// Starts a transaction, rolled back unless [`Tx::commit`] is called.
    pub fn begin(&mut self, kind: Begin) -> Result<Tx<'_>> {
        if let Err(error) = self.batch(kind.sql()) {
            // The transaction may have begun before a later statement of the batch failed
            // (the write lock not had in time): never leave it open on a pooled connection.
            if !self.is_broken() && self.batch("ROLLBACK").is_err() {
                self.broken = true;
            }
            return Err(error);
        }
        Ok(Tx {
            conn: self,
            open: true,
        })
    }
}

impl Drop for Conn {
    /// The blocking client closes its socket by running its own small runtime, which tokio
    /// forbids on an async worker thread (a panic). A connection dropped where a runtime is
    /// current (a handler that gave up, the server's shutdown) is closed on a thread of its
    /// own instead.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let closing = std::thread::Builder::new()
                    .name("clientele-pg-close".into())
                    .spawn(move || drop(client));
                if let Err(error) = closing {
                    log::warn!("could not close a PostgreSQL connection cleanly: {error}");
                }
            } else {
                drop(client);
            }
        }
    }
}

/// A transaction on a [`Conn`]: rolled back when dropped, unless committed.
pub struct Tx<'a> {
    conn: &'a mut Conn,
    open: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.batch("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // A broken connection is dropped by the pool, which ends its transaction.
        if self.open && !self.conn.is_broken() {
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

/// Whether an error means the connection can no longer serve requests: lost or closed,
/// refused (class 08), the server shutting down (57P01..57P03), or a standby that no longer
/// (or never did) accept writes (25006).
pub fn breaks_connection(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::READ_ONLY_SQL_TRANSACTION,
                ]
                .contains(code)
        }
        // No SQLSTATE: the socket failed, or a connection attempt did.
        None => is_io(error),
    }
}

/// Whether the error came from the socket (a lost connection, a refused or timed-out
/// connection attempt) rather than from a value that could not be read.
pub fn is_io(error: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    // The driver's own words for a connection that ended or could not be made.
    let text = error.to_string();
    text.starts_with("error connecting to server")
        || text.starts_with("timeout waiting for server")
        || text.contains("connection closed")
}
