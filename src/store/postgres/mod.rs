//! The PostgreSQL backend: several stateless clientele nodes sharing one primary (with a
//! standby and failover), selected by `database = "postgres://..."`.
//!
//! - [`Pg`] is the handle every request holds: a pool of connections to the read-write
//!   primary ([`Pg::run`] uses it off the async workers), the totals memo, and the
//!   [`generation`](Pg::generation) the caches key on, fed by `LISTEN clientele_changed`
//!   ([`watch`]).
//! - [`PooledClient`] is one connection; it implements [`Backend`], each operation's SQL
//!   beside it: [`customers`], [`keys`], [`sessions`], [`resets`], [`audit`], plus the login
//!   limits shared by every node ([`limits`]).
//! - [`schema`] creates and migrates the tables, triggers and functions, under an advisory
//!   lock so that nodes starting together do not race, and refuses a database that is not
//!   clientele's.
//!
//! The same bytes go on the wire as with SQLite: the columns have the same names (the
//! camelCase ones quoted), texts compare byte by byte (`COLLATE "C"`), times are stored as
//! the same ISO texts, and change numbers come from triggers in commit order.
//!
//! The URL's password never reaches a log line or an error: see [`redact_url`] and
//! [`api_error`].

pub mod audit;
mod conn;
pub mod copy;
pub mod customers;
pub mod import;
pub mod keys;
pub mod limits;
pub mod locks;
pub mod resets;
pub mod schema;
pub mod sessions;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use tokio::sync::Semaphore;

use crate::apikey::{KeyInfo, KeyOptions, Scope};
use crate::audit::{Action, Entry};
use crate::auth::{PasswordHasher, Secret};
use crate::config::Retention;
use crate::customer::{
    ChangesPage, Customer, FieldSet, Identifier, ListFilter, Page, Totals, View, WriteError,
};
use crate::error::{ApiError, StartupError};
use crate::store::{Backend, Error, ImportTx, OpenReport, Result, StoredCustomer, StoredKey};

use conn::Conn;
use watch::Watch;

/// How long a request waits for a pooled connection: then 503, never a hang (the primary is
/// down or failing over, or every connection is busy).
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a request waits for PostgreSQL (a connection, then its work) before it is
/// answered 503: more than a write's lock wait (5 s), so that only a database that does not
/// answer at all gets there.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// How long one connection attempt to one host may take, unless the URL says
/// (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long unacknowledged data may sit on a connection before the kernel gives up on it (a
/// primary that vanished without closing its sockets), unless the URL says.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// How many pooled connections a request tries before answering 503.
const CHECKOUT_TRIES: usize = 4;

/// Connections in the pool: two per core, at least 4, at most 32.
fn pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores * 2).unwrap_or(32).clamp(4, 32)
}

/// The pool's connection manager: r2d2_postgres's, with a [`Conn`] (prepared statements,
/// broken flag) around each client, so that a connection that failed in a way that
/// matters (lost, or now on a standby) is dropped rather than handed out again.
#[derive(Debug)]
struct Manager {
    inner: PostgresConnectionManager<NoTls>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn> {
        Ok(self.inner.connect().map(Conn::new)?)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<()> {
        Ok(self.inner.is_valid(conn.client()?)?)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

/// Connection failures the pool meets in the background, in the log without the URL.
#[derive(Debug)]
struct LogPoolErrors;

impl r2d2::HandleError<Error> for LogPoolErrors {
    fn handle_error(&self, error: Error) {
        match error {
            Error::Postgres(error) => log::warn!("PostgreSQL: {}", describe_error(&error)),
            other => log::warn!("PostgreSQL: {other}"),
        }
    }
}

/// A handle on the PostgreSQL database, shared by every request.
#[derive(Clone)]
pub struct Pg {
    shared: Arc<Shared>,
}

struct Shared {
    pool: r2d2::Pool<Manager>,
    /// The parsed URL, for connections of their own ([`Pg::dedicated`]).
    config: Arc<postgres::Config>,
    /// One permit per pooled connection: work beyond that waits here, as a cheap future.
    permits: Arc<Semaphore>,
    totals: Arc<Totals>,
    watch: Arc<Watch>,
    created: bool,
    /// The URL without its password.
    shown: String,
}

impl Pg {
    /// Connects to the primary the URL names, creates or migrates the schema (refusing a
    /// database that holds another application's tables), hashes legacy plain-text
    /// passwords, then starts the pool and the change watcher. Errors name the URL without
    /// its password.
    pub fn open(url: &Secret, hasher: &PasswordHasher) -> Result<(Pg, OpenReport), StartupError> {
        // The blocking client runs a runtime of its own, which tokio refuses inside another:
        // called from async code, open on a plain thread.
        if tokio::runtime::Handle::try_current().is_ok() {
            return std::thread::scope(|scope| {
                scope
                    .spawn(|| Pg::open_blocking(url, hasher))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(startup_error(
                            &redact_url(url.expose()),
                            "opening it failed unexpectedly (see the log)",
                        ))
                    })
            });
        }
        Pg::open_blocking(url, hasher)
    }

    fn open_blocking(
        url: &Secret,
        hasher: &PasswordHasher,
    ) -> Result<(Pg, OpenReport), StartupError> {
        let shown = redact_url(url.expose());
        let config = Arc::new(parse_config(url).map_err(|reason| lasting_error(&shown, reason))?);
        let refused = |refusal: Refusal| {
            let reason = scrub(&refusal.reason, url);
            if refusal.lasting {
                lasting_error(&shown, reason)
            } else {
                startup_error(&shown, reason)
            }
        };
        let mut client = config
            .connect(NoTls)
            .map_err(|e| refused(Refusal::from_driver(&e).explained("cannot connect")))?;
        let report = schema::prepare(&mut client, hasher).map_err(refused)?;
        let watch = Arc::new(Watch::default());
        watch::start(client, Arc::clone(&config), &watch)
            .map_err(|e| startup_error(&shown, format!("cannot watch for changes: {e}")))?;
        let size = pool_size();
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            // No round trip per checkout (the hot path): a connection is checked without one
            // when taken (see `closed_while_idle`), and dropped when it fails.
            .test_on_check_out(false)
            .connection_timeout(POOL_TIMEOUT)
            .error_handler(Box::new(LogPoolErrors))
            .build_unchecked(Manager {
                inner: PostgresConnectionManager::new((*config).clone(), NoTls),
            });
        let pg = Pg {
            shared: Arc::new(Shared {
                pool,
                config,
                permits: Arc::new(Semaphore::new(size as usize)),
                totals: Arc::default(),
                watch,
                created: report.created,
                shown,
            }),
        };
        Ok((pg, report))
    }

    /// Whether the schema was created by this open (the database was empty).
    pub fn created(&self) -> bool {
        self.shared.created
    }

    /// A number that changes whenever anyone commits (this node at once; other nodes and
    /// tools through `NOTIFY`); `None` while the change watcher has no connection, when
    /// nothing cached may be trusted.
    pub fn generation(&self) -> Option<i64> {
        self.shared.watch.generation()
    }

    /// List totals already counted, shared by every request of this node.
    pub fn totals(&self) -> Arc<Totals> {
        Arc::clone(&self.shared.totals)
    }

    /// Runs `work` on a pooled connection on the blocking thread pool. No connection within
    /// a couple of seconds is a 503; a panic inside `work` is re-raised here.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError>,
        F: FnOnce(&mut dyn Backend) -> Result<T, E> + Send + 'static,
    {
        self.run_client(move |client| work(client).map_err(Into::into))
            .await
    }

    /// [`Pg::run`], with the connection itself: for what only PostgreSQL has (the shared
    /// login limits of [`limits`]).
    pub async fn run_client<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PooledClient) -> Result<T, ApiError> + Send + 'static,
    {
        // A primary that hangs (stopped, overloaded, or waiting for a synchronous standby
        // that is gone) must not hang the request: past the deadline it is a 503, whatever
        // the database does later with the work (a write may still commit then, as with
        // any timeout).
        let deadline = tokio::time::Instant::now() + ANSWER_DEADLINE;
        let late = || {
            ApiError::unavailable(Error::Unavailable(format!(
                "PostgreSQL did not answer within {} s",
                ANSWER_DEADLINE.as_secs()
            )))
        };
        let pg = self.clone();
        let permit =
            tokio::time::timeout_at(deadline, Arc::clone(&self.shared.permits).acquire_owned())
                .await
                .map_err(|_| late())?
                .map_err(ApiError::internal)?;
        let task = tokio::task::spawn_blocking(move || {
            // Held by the work, not the request: a client that leaves does not free it early.
            let _permit = permit;
            let mut client = pg.pooled().map_err(ApiError::from)?;
            work(&mut client)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => Err(late()),
            Ok(Ok(result)) => result,
            Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Ok(Err(error)) => Err(ApiError::internal(error)),
        }
    }

    /// A pooled connection for synchronous work (the command-line tools, start-up).
    pub fn connection(&self) -> Result<PooledClient, ApiError> {
        self.pooled().map_err(ApiError::from)
    }

    /// A connection of its own, outside the pool, for work that lasts as long as a slow
    /// client reads (a streamed list). It connects when first used, so that taking it
    /// never blocks (it is taken on an async worker) and dropping it unused costs nothing.
    pub fn dedicated(&self) -> Result<PooledClient, ApiError> {
        Ok(PooledClient {
            handle: Handle::Unopened(Arc::clone(&self.shared.config)),
            watch: Arc::clone(&self.shared.watch),
        })
    }

    /// Whether the primary answers, and accepts writes (a standby, or a primary demoted by
    /// a failover, does not).
    pub async fn check_health(&self) -> Result<(), ApiError> {
        self.run_client(|client| client.check_read_write().map_err(ApiError::from))
            .await
    }

    /// An advisory lock on a connection of its own (see [`locks`]).
    pub fn advisory_lock(&self, key: i64) -> locks::AdvisoryLock {
        locks::AdvisoryLock::new(Arc::clone(&self.shared.config), key)
    }

    /// The turn syncs and forwarded writes share with every node (see [`locks`]).
    pub fn turn_lock(&self) -> locks::TurnLock {
        locks::TurnLock::new(Arc::clone(&self.shared.config))
    }

    /// The URL without its password, for messages.
    pub fn describe(&self) -> String {
        self.shared.shown.clone()
    }

    /// The URL with no password at all, for a command to suggest (`pg_dump`, which reads
    /// the password from `PGPASSWORD` or `~/.pgpass`).
    pub fn url_without_password(&self) -> String {
        without_password(&self.shared.shown)
    }

    /// A connection from the pool: one whose server closed it while it sat idle (a
    /// restart, a failover) is noticed here and replaced. A few tries at most: each dead
    /// connection is dropped, so the next requests find fewer.
    fn pooled(&self) -> Result<PooledClient> {
        let pool = &self.shared.pool;
        for _ in 0..CHECKOUT_TRIES {
            let mut conn = pool
                .get_timeout(POOL_TIMEOUT)
                .map_err(|e| Error::Unavailable(format!("no PostgreSQL connection: {e}")))?;
            if conn.closed_while_idle() {
                // Dropped by the pool (`has_broken`) when it goes back.
                continue;
            }
            return Ok(PooledClient {
                handle: Handle::Pooled(Box::new(conn)),
                watch: Arc::clone(&self.shared.watch),
            });
        }
        Err(Error::Unavailable(
            "every PostgreSQL connection was closed by the server".into(),
        ))
    }
}

/// Reads the URL; fills in the timeouts it does not set, so that a host that does not
/// answer costs seconds, not minutes. A scheme in capitals is read as the same scheme.
fn parse_config(url: &Secret) -> std::result::Result<postgres::Config, String> {
    let text = url.expose().trim();
    let normalised = ["postgresql://", "postgres://"]
        .iter()
        .find(|prefix| {
            text.get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        })
        .map(|prefix| format!("{prefix}{}", &text[prefix.len()..]))
        .unwrap_or_else(|| text.to_owned());
    let mut config: postgres::Config = normalised.parse().map_err(|e: postgres::Error| {
        format!(
            "is not a valid PostgreSQL URL ({})",
            scrub(&describe_error(&e), url)
        )
    })?;
    // This build speaks plain TCP to PostgreSQL: a URL that asks for TLS is refused here,
    // in words, rather than at the handshake (or, with `prefer`, silently in the clear).
    if config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err(
            "asks for TLS (sslmode=require), which this version of clientele does not \
                    speak to PostgreSQL: run the nodes and the database on a private network, \
                    and leave sslmode out"
                .into(),
        );
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("clientele");
    }
    // Every node writes: of the URL's hosts, only a primary will do (a standby, or a former
    // primary come back as one, is skipped), whether or not the URL says so.
    if config.get_target_session_attrs() == postgres::config::TargetSessionAttrs::Any {
        config.target_session_attrs(postgres::config::TargetSessionAttrs::ReadWrite);
    }
    Ok(config)
}

/// A start-up error about the database at `shown` (a URL already without its password).
/// Waiting may cure it (the server not up yet, a failover under way): a restart is worth
/// trying.
fn startup_error(shown: &str, reason: impl std::fmt::Display) -> StartupError {
    StartupError::Other(format!(
        "database {shown}: {reason} (config key `database`)"
    ))
}

/// A start-up error about the database at `shown` that only its owner can cure: exits as a
/// configuration mistake, which systemd does not restart in a loop.
fn lasting_error(shown: &str, reason: impl std::fmt::Display) -> StartupError {
    StartupError::Refused(format!(
        "database {shown}: {reason} (config key `database`)"
    ))
}

/// Why a PostgreSQL database cannot be served from, and whether only its owner can change
/// that (a wrong password, a missing database, a foreign or newer schema, a role without
/// rights: `lasting`), or waiting may (the server not up yet, a connection lost).
#[derive(Debug)]
pub struct Refusal {
    pub reason: String,
    pub lasting: bool,
}

impl Refusal {
    pub fn lasting(reason: impl Into<String>) -> Self {
        Refusal {
            reason: reason.into(),
            lasting: true,
        }
    }

    /// A driver error, lasting when the server's SQLSTATE says the role, its password, the
    /// database or a privilege is wrong.
    pub fn from_driver(error: &postgres::Error) -> Self {
        let lasting = error.as_db_error().is_some_and(|db| {
            let code = db.code().code();
            // 28xxx: invalid authorization (wrong password, no such role, pg_hba refuses);
            // 3D000: no such database; 3F000: no such schema; 42501: insufficient privilege.
            code.starts_with("28") || matches!(code, "3D000" | "3F000" | "42501")
        });
        Refusal {
            reason: describe_error(error),
            lasting,
        }
    }

    /// The same refusal, its reason led by what was being done.
    pub fn explained(self, doing: &str) -> Self {
        Refusal {
            reason: format!("{doing}: {}", self.reason),
            ..self
        }
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal {
            reason,
            lasting: false,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// `text` with the URL's password, should it appear, replaced by `***`.
fn scrub(text: &str, url: &Secret) -> String {
    let mut scrubbed = text.to_owned();
    if let Ok(config) = url.expose().trim().parse::<postgres::Config>() {
        if let Some(password) = config
            .get_password()
            .and_then(|p| std::str::from_utf8(p).ok())
        {
            if !password.is_empty() {
                scrubbed = scrubbed.replace(password, "***");
            }
        }
    }
    scrubbed
}

/// `url` with its password replaced by `***`: in the user part of a URL
/// (`postgres://user:***@h1:5432,h2:5433/db`), in a `password=` query parameter, and in the
/// `password=` of a `key=value` connection string (quoted or not). Anything after the last
/// `@` is taken for the host part, so a password holding a raw `@` is hidden whole (at worst,
/// more than the password is).
pub fn redact_url(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    let scheme_end = ["postgres://", "postgresql://"]
        .iter()
        .find(|prefix| lower.trim_start().starts_with(*prefix))
        .and_then(|prefix| lower.find(prefix).map(|at| at + prefix.len()));
    let Some(scheme_end) = scheme_end else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], hosts),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    // `?password=...` (or `&password=...`): up to the next `&` or `#`.
    let mut out = String::with_capacity(rest.len());
    let mut remaining = rest.as_str();
    while let Some(found) = find_param(remaining, "password=") {
        let value_start = found + "password=".len();
        out.push_str(&remaining[..value_start]);
        out.push_str("***");
        let value = &remaining[value_start..];
        let end = value.find(['&', '#']).unwrap_or(value.len());
        remaining = &value[end..];
    }
    out.push_str(remaining);
    format!("{scheme}{out}")
}

/// `url` with no password: `user:PASS@` becomes `user@`, and a `password=` query parameter
/// goes (a `key=value` string loses its `password=...`).
pub fn without_password(url: &str) -> String {
    let redacted = redact_url(url);
    let Some(scheme_end) = redacted.find("://").map(|at| at + 3) else {
        return redacted
            .split_whitespace()
            .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (scheme, rest) = redacted.split_at(scheme_end);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = rest.split_at(at);
            format!(
                "{}{hosts}",
                userinfo.strip_suffix(":***").unwrap_or(userinfo)
            )
        }
        None => rest.to_owned(),
    };
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
                .collect();
            match kept.is_empty() {
                true => base.to_owned(),
                false => format!("{base}?{}", kept.join("&")),
            }
        }
        None => rest,
    };
    format!("{scheme}{rest}")
}

/// Where `name` (`password=`) begins as a query parameter of `text` (after `?` or `&`),
/// ignoring ASCII case.
fn find_param(text: &str, name: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let at = from + found;
        if at > 0 && matches!(lower.as_bytes()[at - 1], b'?' | b'&') {
            return Some(at);
        }
        from = at + name.len();
    }
    None
}

/// A `key=value` connection string with the value of `password` replaced by `***`.
fn redact_key_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let at = from + found;
        let after_key = at + "password".len();
        from = after_key;
        // A whole keyword: at the start or after a space, then `=` (spaces allowed around).
        if at > 0 && !bytes[at - 1].is_ascii_whitespace() {
            continue;
        }
        let mut i = after_key;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'\'' {
            // Quoted: up to the closing quote, `\'` and `\\` escaped.
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        out.push_str(&text[copied..value_start]);
        out.push_str("***");
        copied = i;
        from = i.max(from);
    }
    out.push_str(&text[copied..]);
    out
}

/// What a driver error says, for the log: the server's message and SQLSTATE (not its
/// DETAIL, which can quote a row's values), or the chain of causes of a connection failure.
pub fn describe_error(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A driver error as the log shows it (see [`describe_error`]).
#[derive(Debug)]
struct PgFailure(String);

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL: {}", self.0)
    }
}

impl std::error::Error for PgFailure {}

/// Whether a failure is the database being unavailable for now, rather than a bug: the
/// connection lost or refused, the server shutting down or starting, a standby that took
/// the write (a failover under way), too many connections, a statement cancelled or a lock
/// not had in time, or two transactions that could not both go on (after the one retry).
pub fn is_unavailable(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    if conn::breaks_connection(error) {
        return true;
    }
    error.code().is_some_and(|code| {
        code.code().starts_with("53")
            || [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
            ]
            .contains(code)
    })
}

/// A driver error as an API error: 503 when the database is unavailable for now (see
/// [`is_unavailable`]), 500 otherwise. The log gets the server's message, never the URL.
pub fn api_error(error: postgres::Error) -> ApiError {
    let failure = PgFailure(describe_error(&error));
    if is_unavailable(&error) {
        ApiError::unavailable(failure)
    } else {
        ApiError::internal(failure)
    }
}

/// One connection to the primary, from the pool or of its own.
pub struct PooledClient {
    handle: Handle,
    /// This node's generation, moved on right after each of its own commits.
    watch: Arc<Watch>,
}

// Boxed: a pooled connection is some 500 bytes, which every enum holding a handle (the
// store's `Connection`) would otherwise carry in each of its variants.
enum Handle {
    Pooled(Box<r2d2::PooledConnection<Manager>>),
    Own(Box<Conn>),
    /// A connection of its own, not made yet ([`Pg::dedicated`]).
    Unopened(Arc<postgres::Config>),
}

impl PooledClient {
    /// The connection, made now if it is one of its own not used yet.
    fn conn(&mut self) -> Result<&mut Conn> {
        if let Handle::Unopened(config) = &self.handle {
            let client = config.connect(NoTls)?;
            self.handle = Handle::Own(Box::new(Conn::new(client)));
        }
        match &mut self.handle {
            Handle::Pooled(conn) => Ok(&mut ***conn),
            Handle::Own(conn) => Ok(&mut **conn),
            Handle::Unopened(_) => Err(Error::Unavailable("not connected".into())),
        }
    }

    /// Tells this node's caches that it just committed (or may have).
    fn bump(&self) {
        self.watch.bump();
    }

    /// Runs a write and moves the generation on afterwards, whatever its outcome (a commit
    /// whose answer was lost may still have happened).
    fn write<T, E>(&mut self, work: impl FnOnce(&mut Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        let result = match self.conn() {
            Ok(conn) => work(conn),
            Err(error) => Err(error.into()),
        };
        self.bump();
        result
    }

    /// Whether the server answers and accepts writes.
    pub fn check_read_write(&mut self) -> Result<()> {
        let conn = self.conn()?;
        let row = conn.one("SELECT pg_is_in_recovery()", &[])?;
        let recovering: bool = row.try_get(0)?;
        if recovering {
            conn.set_broken();
            return Err(Error::Unavailable(
                "the PostgreSQL server is a standby (read-only); waiting for a primary".into(),
            ));
        }
        Ok(())
    }
}

impl Backend for PooledClient {
    fn find(&mut self, id: i64) -> Result<Option<Customer>> {
        customers::find(self.conn()?, id)
    }

    fn find_for_login(&mut self, who: &Identifier) -> Result<Option<(Customer, Option<Secret>)>> {
        customers::find_for_login(self.conn()?, who)
    }

    fn list(&mut self, filter: &ListFilter) -> Result<Page> {
        customers::list(self.conn()?, filter)
    }

    fn list_json(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: Option<&Totals>,
    ) -> Result<(Vec<u8>, u64)> {
        customers::list_json(self.conn()?, filter, view, totals)
    }

    fn list_size(&mut self, filter: &ListFilter, totals: &Totals) -> Result<(u64, i64)> {
        customers::list_size(self.conn()?, filter, totals)
    }

    fn stream_list(
        &mut self,
        filter: &ListFilter,
        view: View,
        totals: &Totals,
        chunk: usize,
        start: &mut dyn FnMut(u64, i64) -> bool,
        piece: &mut dyn FnMut(Vec<u8>) -> bool,
    ) -> Result<()> {
        customers::stream_list(self.conn()?, filter, view, totals, chunk, start, piece)
    }

    fn customer_count(&mut self) -> Result<u64> {
        customers::count_all(self.conn()?)
    }

    fn database_bytes(&mut self) -> Result<u64> {
        let row = self
            .conn()?
            .one("SELECT pg_database_size(current_database())", &[])?;
        let bytes: i64 = get(&row, 0)?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    fn slowest_hash(&mut self) -> Result<Option<String>> {
        customers::slowest_hash(self.conn()?)
    }

    fn update(
        &mut self,
        id: i64,
        changes: &Customer,
        present: FieldSet,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError> {
        self.write(|conn| customers::update(conn, id, changes, present, actor, retention))
    }

    fn insert(
        &mut self,
        customer: Customer,
        present: FieldSet,
        password_hash: Option<String>,
        actor: &str,
        retention: Retention,
    ) -> Result<Customer, WriteError> {
        self.write(|conn| {
            customers::insert(conn, customer, present, password_hash, actor, retention)
        })
    }

    fn delete(&mut self, id: i64, actor: &str, retention: Retention) -> Result<(), WriteError> {
        self.write(|conn| customers::delete(conn, id, actor, retention))
    }

    fn set_password(
        &mut self,
        id: i64,
        hash: &str,
        actor: &str,
        action: Action,
        retention: Retention,
    ) -> Result<bool> {
        self.write(|conn| customers::set_password(conn, id, hash, actor, action, retention))
    }

    fn replace_hash(&mut self, id: i64, old: &str, new: &str) -> Result<bool> {
        self.write(|conn| customers::replace_hash(conn, id, old, new))
    }

    fn changes_since(&mut self, since: i64, limit: u32) -> Result<ChangesPage, ApiError> {
        customers::changes_since(self.conn()?, since, limit)
    }

    fn create_key(
        &mut self,
        name: &str,
        digest: &[u8],
        scope: Scope,
        options: KeyOptions,
    ) -> Result<bool> {
        self.write(|conn| keys::create(conn, name, digest, scope, options))
    }

    fn keys(&mut self) -> Result<Vec<KeyInfo>> {
        keys::list(self.conn()?)
    }

    fn stored_keys(&mut self) -> Result<Vec<StoredKey>> {
        keys::stored(self.conn()?)
    }

    fn revoke_key(&mut self, name: &str) -> Result<bool> {
        self.write(|conn| keys::revoke(conn, name))
    }

    fn key_count(&mut self) -> Result<usize> {
        keys::count(self.conn()?)
    }

    fn record_key_uses(&mut self, uses: &[(i64, String)]) -> Result<()> {
        // Not `write`: `api_key_use` notifies no node, and no answer depends on it.
        keys::record_uses(self.conn()?, uses)
    }

    fn open_session(
        &mut self,
        digest: &[u8],
        id: i64,
        days: u32,
        max_per_customer: i64,
    ) -> Result<String> {
        self.write(|conn| sessions::open(conn, digest, id, days, max_per_customer))
    }

    fn session(&mut self, digest: &[u8]) -> Result<Option<(Vec<u8>, i64)>> {
        sessions::find(self.conn()?, digest)
    }

    fn end_session(&mut self, digest: &[u8]) -> Result<bool> {
        self.write(|conn| sessions::end(conn, digest))
    }

    fn store_reset(
        &mut self,
        digest: &[u8],
        id: i64,
        minutes: u32,
        actor: &str,
        retention: Retention,
    ) -> Result<String> {
        self.write(|conn| resets::store(conn, digest, id, minutes, actor, retention))
    }

    fn reset_holder(&mut self, digest: &[u8]) -> Result<Option<i64>> {
        resets::holder(self.conn()?, digest)
    }

    fn spend_reset(
        &mut self,
        digest: &[u8],
        hash: &str,
        actor: &str,
        retention: Retention,
    ) -> Result<Option<i64>> {
        self.write(|conn| resets::spend(conn, digest, hash, actor, retention))
    }

    fn audit(
        &mut self,
        kind: crate::audit::Kind,
        customer: Option<i64>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        audit::list(self.conn()?, kind, customer, since, limit)
    }

    fn audit_event(
        &mut self,
        actor: &str,
        action: Action,
        customer: Option<i64>,
        detail: &str,
        retention: Retention,
    ) -> Result<()> {
        // Not `write`: the audit table notifies no node, and a login must not end the
        // caches of this one either.
        let conn = self.conn()?;
        retrying(conn, |conn| {
            let mut tx = conn.begin(conn::Begin::Write)?;
            audit::prune(&mut tx, retention)?;
            audit::record(&mut tx, actor, action, customer, &[], detail)?;
            tx.commit()
        })
    }

    fn demo_left(&mut self) -> Result<usize> {
        customers::demo_left(self.conn()?)
    }

    fn remove_demo(&mut self, actor: &str, retention: Retention) -> Result<usize> {
        self.write(|conn| import::remove_demo(conn, actor, retention))
    }

    fn demo_ids(&mut self) -> Result<Vec<i64>> {
        import::demo_ids(self.conn()?)
    }

    fn own_customer_count(&mut self) -> Result<u64> {
        import::own_customer_count(self.conn()?)
    }

    fn own_customers_among(&mut self, ids: &[i64]) -> Result<u64> {
        import::own_customers_among(self.conn()?, ids)
    }

    fn stored_customers(
        &mut self,
        ids: &[i64],
        digests: bool,
    ) -> Result<HashMap<i64, StoredCustomer>> {
        import::stored_customers(self.conn()?, ids, digests)
    }

    fn begin_import(&mut self, replace: bool) -> Result<Box<dyn ImportTx + '_>> {
        let watch = Arc::clone(&self.watch);
        let conn = self.conn()?;
        Ok(Box::new(import::PgImport::begin(conn, replace, watch)?))
    }

    fn last_sync_age(&mut self) -> Result<Option<i64>> {
        import::last_sync_age(self.conn()?)
    }

    fn limit_status(
        &mut self,
        subjects: &[&str],
        max_failures: u32,
        window: std::time::Duration,
    ) -> Result<Vec<(i64, u64)>> {
        limits::status(self.conn()?, subjects, max_failures, window)
    }

    fn limit_totals(
        &mut self,
        max_failures: u32,
        window: std::time::Duration,
    ) -> Result<(i64, i64)> {
        limits::totals(self.conn()?, max_failures, window)
    }

    fn limit_clear(&mut self, subjects: &[&str], _window: std::time::Duration) -> Result<u64> {
        // No notification: the limits are read from this table on every attempt.
        limits::clear(self.conn()?, subjects)
    }

    fn ping(&mut self) -> Result<()> {
        self.conn()?.one("SELECT 1", &[]).map(|_| ())
    }
}

/// Retries `work` once when PostgreSQL gave up on its transaction because of another one (a
/// serialization failure or a deadlock, which READ COMMITTED writes taking their locks in
/// one order should not meet, but another program's may cause); a second failure is a 503
/// (see [`is_unavailable`]).
fn retrying<T, E: Retryable>(
    conn: &mut Conn,
    mut work: impl FnMut(&mut Conn) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    match work(conn) {
        Err(error) if error.is_retryable() && !conn.is_broken() => work(conn),
        result => result,
    }
}

/// Errors that may say "try the transaction again".
trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            Error::Postgres(error) => error.code().is_some_and(|code| {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            }),
            _ => false,
        }
    }
}

impl Retryable for WriteError {
    fn is_retryable(&self) -> bool {
        matches!(self, WriteError::Db(error) if error.is_retryable())
    }
}

/// Reads column `index` of `row`: a value of an unexpected type (a hand-edited column) is
/// an error, never a panic.
fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a postgres::Row, index: usize) -> Result<T> {
    row.try_get(index).map_err(Error::from)
}
