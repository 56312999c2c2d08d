//! Mirroring the old API, for shops whose ERP stays the master: fetch its whole list, check it
//! as an import does (all or nothing), and make the local customers equal to it in one
//! transaction. The server does it every `upstream_every_secs`; `clientele sync` once.
//!
//! **No needless hashing.** The old API sends plain-text passwords. Hashing all of them at
//! every sync would cost minutes of Argon2 per run; comparing them with the stored Argon2
//! hashes costs the same. Instead each sync stores, per customer, an HMAC-SHA256 of the
//! password under a 256-bit key kept in a file beside the database (`<database>.sync-key`,
//! mode 0600), never in it. An unchanged password has an unchanged HMAC, so an unchanged
//! upstream costs no Argon2 at all; a changed one is hashed at the next sync. The database
//! file alone lets nobody test guesses faster than Argon2id: without the key the HMACs are
//! random-looking. Whoever holds both the file *and* the key can test guesses at HMAC speed,
//! so the key file must be guarded like the old API's key (which reads every plain-text
//! password anyway). Without the key file (a restored backup elsewhere), a new key is made and
//! the next sync hashes every password once.
//!
//! **On PostgreSQL** the key is the file `upstream_key_file` names (every node needs the same
//! one: a node with another key finds no digest matching, and hashes again each password it
//! syncs, storing the digest under its own key; correct, but it costs Argon2 time, and, as
//! any new hash, ends those customers' sessions). Several nodes mirror one old API together:
//! one leads the periodic syncs (an advisory lock on a connection of its own; when it dies,
//! another takes over at its next tick), and syncs and forwarded writes take one turn shared
//! by every node (another advisory lock), as they take the node's own (see
//! [`crate::store::postgres::locks`]). `/health` reads the last good sync's age from the
//! audit trail, so that every node tells the same.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::audit::Action;
use crate::auth::{PasswordHasher, Secret};
use crate::config::{MirrorConfig, Retention, UpstreamSettings};
use crate::store::postgres::locks::{AdvisoryLock, TurnGuard, TurnLock, SYNC_LEADER};
use crate::store::{Backend, Store};
use crate::transfer::{self, KnownPasswords, Options, Progress, Records, Summary};

/// Seconds since the last good sync on SQLite (see [`Backend::last_sync_age`]).
pub use crate::store::sqlite::import::LAST_SYNC_AGE_QUERY;

/// The key of the password digests, read from (or created in) a file beside the database.
pub struct SyncKey([u8; 32]);

impl SyncKey {
    /// The key file for the database at `database`.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".sync-key");
        PathBuf::from(name)
    }

    /// The key file of `store`: beside a SQLite file; on PostgreSQL, `key_file` (the setting
    /// `upstream_key_file`), since the database has no folder of its own.
    pub fn path_for_store(store: &Store, key_file: &Path) -> PathBuf {
        match store.sqlite() {
            Some(db) => SyncKey::path_for(db.path()),
            None => key_file.to_owned(),
        }
    }

    /// Reads the key beside `database`, or makes one (readable by the owner only).
    pub fn load_or_create(database: &Path) -> Result<SyncKey, String> {
        SyncKey::load_or_create_at(&SyncKey::path_for(database))
    }

    /// Reads the key file at `path`, or makes one (readable by the owner only).
    pub fn load_or_create_at(path: &Path) -> Result<SyncKey, String> {
        let shown = path.display();
        match std::fs::read(path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(SyncKey)
                .map_err(|_| format!("{shown}: not a sync key (expected 32 bytes)")),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                use argon2::password_hash::rand_core::{OsRng, RngCore};
                use std::os::unix::fs::OpenOptionsExt;
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
                if let Some(folder) = folder.filter(|folder| !folder.is_dir()) {
                    return Err(format!(
                        "{shown}: the folder {} does not exist (the mirror's key file: \
                         setting upstream_key_file)",
                        folder.display()
                    ));
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut file| file.write_all(&key))
                    .map_err(|e| format!("{shown}: {e}"))?;
                Ok(SyncKey(key))
            }
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
                "{shown}: {error}; it belongs to another user (a `clientele sync` run as root?): \
                 give it to the user the server runs as (chown), or run the tools as that user"
            )),
            Err(error) => Err(format!("{shown}: {error}")),
        }
    }
}

impl KnownPasswords for SyncKey {
    fn digest(&self, id: i64, password: &Secret) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&id.to_be_bytes());
        mac.update(password.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Where and how to reach the old API.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The old list URL, with its key: `https://old-api.example/CUSTOMER/LIST/?apikey=OLDKEY`.
    url: String,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub allow_mass_delete: bool,
}

/// Why a sync (or a forwarded write) did not happen. The last good data stays.
///
/// `Display` is the summary that `/health` and clients may see: it never holds a value of a
/// customer, nor a key (the old API's messages are masked). [`SyncError::detail`] is for the
/// log and the operator's terminal.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Nothing reached the old API, or (for a fetch) its answer did not come.
    #[error("the old API could not be reached: {0}")]
    Unreachable(String),
    /// A forwarded write was sent, but no answer came in time: the master may have made it.
    #[error("the old API did not answer in time: {0}")]
    NoAnswer(String),
    #[error("the old API answered HTTP {0}")]
    Status(u16),
    /// The old API said no (an error status, or `"success":"false"`), with its message, masked.
    #[error("{}", refusal(*status, message))]
    Rejected { status: u16, message: String },
    /// The old API's answer is not a valid customer list.
    #[error("{summary}")]
    Invalid { summary: String, detail: String },
    /// The mass-delete guard.
    #[error("{0}")]
    Refused(String),
    #[error("the local store failed: {0}")]
    Store(String),
    /// Too many forwarded writes wait already, or this one waited too long for its turn.
    #[error("the old API is busy with other changes or a sync")]
    Busy,
}

fn refusal(status: u16, message: &str) -> String {
    if (200..300).contains(&status) {
        format!("the old API refused: {message}")
    } else {
        format!("the old API refused (HTTP {status}): {message}")
    }
}

impl SyncError {
    /// The full story, for the log and `clientele sync`: which line, which field, and what is
    /// wrong with its value (never a password: no check of a password echoes it).
    pub fn detail(&self) -> String {
        match self {
            SyncError::Invalid { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// A bad customer list: the field and the line for everyone, the value for the log only.
    fn invalid(error: &transfer::RecordError) -> SyncError {
        let field: String = mask_keys(&error.field).chars().take(64).collect();
        let summary = if field.is_empty() {
            format!(
                "the old API's answer is not a customer list (line {}; the log has the details)",
                error.line
            )
        } else if error.message == "unknown field" {
            format!(
                "the old API's list has an unknown field {field} (line {} of its answer)",
                error.line
            )
        } else {
            format!(
                "the old API's list has an invalid value in field {field} (line {} of its \
                 answer; the log has the details)",
                error.line
            )
        };
        let detail = if field.eq_ignore_ascii_case("password") {
            format!(
                "the old API's answer is not a customer list: line {}: password",
                error.line
            )
        } else {
            format!("the old API's answer is not a customer list: line {error}")
        };
        SyncError::Invalid {
            summary,
            detail: mask_keys(&detail),
        }
    }
}

/// How many forwarded writes may be in progress at once (one sent, the others waiting their
/// turn); the next is a 503 telling the client to try again, and nothing is sent.
pub const MAX_WAITING_WRITES: usize = 16;

impl From<SyncError> for crate::error::ApiError {
    /// A refusal keeps the master's 4xx and its message; anything else is a 503 that says
    /// whether the master made the change (no, or not known).
    fn from(error: SyncError) -> Self {
        use rocket::http::Status;
        let (status, message, retry_after) = match &error {
            SyncError::Rejected { status, message } if (400..500).contains(status) => (
                Status::new(*status),
                format!("The old API (the master) refused the change: {message}"),
                None,
            ),
            SyncError::Busy => (
                Status::ServiceUnavailable,
                "The old API (the master) is busy with other changes or a sync, so this one \
                 was not sent and nothing changed. Try again in a few seconds"
                    .to_owned(),
                Some(5),
            ),
            SyncError::NoAnswer(_) => (
                Status::ServiceUnavailable,
                "The old API (the master) did not answer in time, so whether it made the \
                 change is not known. This server syncs with it now: check the customer in a \
                 moment before sending the change again"
                    .to_owned(),
                None,
            ),
            _ => (
                Status::ServiceUnavailable,
                format!(
                    "The old API (the master) did not take the change, so nothing changed: \
                     {error}"
                ),
                None,
            ),
        };
        crate::error::ApiError::Master {
            status,
            message,
            retry_after,
        }
    }
}

/// `text` with the value of every `apikey` in it masked: `apikey=KEY`, `apikey%3DKEY`,
/// `"apikey":"KEY"`, any case. A master's error may echo its own URL, or what it was sent.
pub fn mask_keys(text: &str) -> String {
    const NAME: &str = "apikey";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(NAME) {
        let name_end = at + found + NAME.len();
        let mut i = name_end;
        let mut separated = false;
        while i < bytes.len() {
            match bytes[i] {
                b'"' | b'\'' | b' ' | b'\\' => i += 1,
                b'=' | b':' => {
                    separated = true;
                    i += 1;
                }
                b'%' if lower[i..].starts_with("%3d") => {
                    separated = true;
                    i += 3;
                }
                _ => break,
            }
        }
        out.push_str(&text[at..i]);
        at = i;
        if separated {
            let end = text[i..]
                .find(|c: char| c.is_whitespace() || "&\"',;<>(){}[]#\\".contains(c))
                .map_or(text.len(), |n| i + n);
            if end > i {
                out.push_str("***");
            }
            at = end;
        }
    }
    out.push_str(&text[at..]);
    out
}

/// A message of the old API, fit to show: its keys masked, no control characters, at most
/// 200 characters (cut after masking, so that no piece of a key is left).
fn shown(upstream: &Upstream, message: &str) -> String {
    upstream
        .mask(message)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// The `message` of an old API's JSON answer, if it has one.
fn message_of(body: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    answer["message"].as_str().map(str::to_owned)
}

impl Upstream {
    /// Checks the URL (http or https, a path ending in the list's name).
    pub fn new(url: &str, settings: UpstreamSettings) -> Result<Upstream, String> {
        let (scheme, _) = url.split_once("://").ok_or_else(|| {
            "upstream: expected a URL like https://old-api.example/CUSTOMER/LIST/?apikey=KEY"
                .to_owned()
        })?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("upstream: {scheme}:// is not http or https"));
        }
        let upstream = Upstream {
            url: url.to_owned(),
            timeout: settings.timeout,
            max_bytes: settings.max_bytes,
            allow_mass_delete: settings.allow_mass_delete,
        };
        if !upstream
            .path()
            .to_ascii_lowercase()
            .trim_end_matches('/')
            .ends_with("/list")
        {
            return Err(format!(
                "upstream: {} does not end in /CUSTOMER/LIST/ (the old list's URL)",
                upstream.display()
            ));
        }
        Ok(upstream)
    }

    /// The URL without its query or credentials, for logs: the old API's key never shows.
    pub fn display(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let rest = match rest.split_once('/') {
            Some((authority, path)) => {
                let host = authority.rsplit('@').next().unwrap_or(authority);
                format!("{host}/{path}")
            }
            None => rest.rsplit('@').next().unwrap_or(rest).to_owned(),
        };
        format!("{scheme}://{rest}")
    }

    fn path(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        rest.find('/').map_or("", |at| &rest[at..])
    }

    fn query(&self) -> Option<&str> {
        self.url
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(q))
    }

    /// The URL of the call beside the list (`UPDATE`, `ADD`, `DELETE`), in the list's case,
    /// with the same query (the key) plus `extra`.
    pub fn sibling(&self, name: &str, extra: Option<&str>) -> String {
        let base = self.url.split(['?', '#']).next().unwrap_or(&self.url);
        let trailing = base.ends_with('/');
        let trimmed = base.trim_end_matches('/');
        let cut = trimmed.len() - "list".len();
        let list = &trimmed[cut..];
        let name = if list.chars().all(|c| c.is_ascii_lowercase()) {
            name.to_ascii_lowercase()
        } else {
            name.to_ascii_uppercase()
        };
        let mut url = format!(
            "{}{name}{}",
            &trimmed[..cut],
            if trailing { "/" } else { "" }
        );
        let query: Vec<&str> = self.query().into_iter().chain(extra).collect();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_connect(Some(self.timeout.min(Duration::from_secs(10))))
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// The list, or one customer of it (`extra` = `id_client=N`): the body, within the size
    /// limit and the timeout. An error status is the old API's refusal, with its message if
    /// its answer has one.
    pub fn fetch(&self, extra: Option<&str>) -> Result<Vec<u8>, SyncError> {
        let url = match extra {
            Some(extra) => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}{extra}", self.url)
            }
            None => self.url.clone(),
        };
        let mut response = self
            .agent()
            .get(&url)
            .call()
            .map_err(|e| SyncError::Unreachable(self.mask(&e.to_string())))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_vec()
                .unwrap_or_default();
            return Err(match message_of(&body) {
                Some(message) => SyncError::Rejected {
                    status,
                    message: shown(self, &message),
                },
                None => SyncError::Status(status),
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(self.max_bytes)
            .read_to_vec()
            .map_err(|e| SyncError::Unreachable(self.mask(&e.to_string())))
    }

    /// The whole list, checked.
    pub fn fetch_list(&self) -> Result<Vec<transfer::Record>, SyncError> {
        self.parse(&self.fetch(None)?)
    }

    /// Customer `id` as the old API has it now (`?id_client=N`), checked.
    pub fn fetch_one(&self, id: i64) -> Result<transfer::Record, SyncError> {
        self.parse(&self.fetch(Some(&format!("id_client={id}")))?)?
            .into_iter()
            .find(|r| r.customer.clcleunik == id)
            .ok_or_else(|| {
                let summary = format!("the old API did not send customer {id} back");
                SyncError::Invalid {
                    detail: summary.clone(),
                    summary,
                }
            })
    }

    /// Reads the old API's answer as an import reads a file: every customer checked, all or
    /// none. An answer `{"success":"false","message":...}` is the old API's refusal.
    pub fn parse(&self, bytes: &[u8]) -> Result<Vec<transfer::Record>, SyncError> {
        let not_utf8 = "the old API's answer is not a customer list (not UTF-8)";
        let text = std::str::from_utf8(bytes).map_err(|_| SyncError::Invalid {
            summary: not_utf8.into(),
            detail: not_utf8.into(),
        })?;
        if let Ok(answer) = serde_json::from_str::<serde_json::Value>(text) {
            if answer["success"] == "false" || answer["success"] == false {
                let message = answer["message"].as_str().unwrap_or("no message");
                return Err(SyncError::Rejected {
                    status: 200,
                    message: shown(self, message),
                });
            }
        }
        transfer::parse_json(text).map_err(|e| SyncError::invalid(&e))
    }

    /// Sends a write to the master: `method` to the call `name` beside the list, with `body`.
    /// The old API's answer: status and body. An error says whether the write may have
    /// reached the master ([`SyncError::NoAnswer`]) or surely did not
    /// ([`SyncError::Unreachable`]).
    pub fn forward(
        &self,
        method: &str,
        name: &str,
        extra_query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), SyncError> {
        let url = self.sibling(name, extra_query);
        let agent = self.agent();
        let result = match method {
            "DELETE" => agent.delete(&url).call(),
            _ => {
                let request = agent.post(&url);
                let request = match content_type {
                    Some(content_type) => request.header("Content-Type", content_type),
                    None => request,
                };
                request.send(body)
            }
        };
        let mut response = result.map_err(|e| {
            let text = self.mask(&e.to_string());
            if never_sent(&e) {
                SyncError::Unreachable(text)
            } else {
                SyncError::NoAnswer(text)
            }
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The old API's answer to a forwarded write, if it took it: a 2xx whose `success` is not
    /// `"false"`. Else its refusal, with its message masked.
    pub fn accepted(&self, status: u16, body: &[u8]) -> Result<serde_json::Value, SyncError> {
        let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if (200..300).contains(&status) && answer["success"] != "false" {
            return Ok(answer);
        }
        let message = shown(self, answer["message"].as_str().unwrap_or("no message"));
        Err(SyncError::Rejected { status, message })
    }

    /// `text` (an error, a message of the old API) with the old API's key taken out: the
    /// URL's query, each of its values, any credentials in the URL, and any `apikey=...`.
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        if let Some(query) = self.query().filter(|q| !q.is_empty()) {
            text = text.replace(query, "***");
            for (_, value) in form_urlencoded::parse(query.as_bytes()) {
                if value.len() >= 4 {
                    text = text.replace(value.as_ref(), "***");
                }
            }
            for (_, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
                if value.len() >= 4 {
                    text = text.replace(value, "***");
                }
            }
        }
        let authority = self.url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        if let Some((credentials, _)) = authority.rsplit_once('@') {
            let password = credentials.split_once(':').map_or("", |(_, p)| p);
            for secret in [credentials, password] {
                if !secret.is_empty() {
                    text = text.replace(secret, "***");
                }
            }
        }
        mask_keys(&text)
    }
}

/// Whether a failed call surely never reached the old API (nothing could have been done
/// there): no address, no connection.
fn never_sent(error: &ureq::Error) -> bool {
    use ureq::Timeout;
    match error {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::BadUri(_) => true,
        ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve) => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

/// Refuses a list that would wipe the shop: empty while customers exist, or deleting more
/// than half of them, unless `allow` (`upstream_allow_mass_delete`).
fn guard(
    conn: &mut dyn Backend,
    records: &[transfer::Record],
    allow: bool,
) -> Result<(), SyncError> {
    let store_error = |e: crate::store::Error| SyncError::Store(e.to_string());
    // Demo customers are not the shop's: the first sync removes them whatever the guard says.
    let stored =
        usize::try_from(conn.own_customer_count().map_err(store_error)?).unwrap_or(usize::MAX);
    if allow || stored == 0 {
        return Ok(());
    }
    let mut ids: Vec<i64> = records
        .iter()
        .map(|record| record.customer.clcleunik)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut kept: u64 = 0;
    for batch in ids.chunks(10_000) {
        kept += conn.own_customers_among(batch).map_err(store_error)?;
    }
    let deleting = stored.saturating_sub(usize::try_from(kept).unwrap_or(usize::MAX));
    if records.is_empty() {
        return Err(SyncError::Refused(format!(
            "refused: the old API sent an empty list while {stored} customers exist; nothing \
             changed (set upstream_allow_mass_delete = true if that is right)"
        )));
    }
    if deleting.saturating_mul(2) > stored {
        return Err(SyncError::Refused(format!(
            "refused: the old API's list would delete {deleting} of {stored} customers; \
             nothing changed (set upstream_allow_mass_delete = true if that is right)"
        )));
    }
    Ok(())
}

fn records_of(records: &[transfer::Record]) -> Records<'_> {
    Box::new(records.iter().cloned().map(Ok))
}

/// Stores `records` (a whole list when `replace`, else a few customers) as the master has
/// them, recorded in the audit trail as `actor` doing `action`.
#[allow(clippy::too_many_arguments)]
pub fn store(
    conn: &mut dyn Backend,
    records: &[transfer::Record],
    replace: bool,
    hasher: &PasswordHasher,
    key: &SyncKey,
    audit: (&str, Action, Retention),
    progress: &dyn Progress,
) -> Result<Summary, SyncError> {
    let options = Options {
        replace,
        allow_empty: true,
        dry_run: false,
        audit: Some(audit),
        known: Some(key),
    };
    transfer::import(conn, || Ok(records_of(records)), hasher, options, progress).map_err(|e| {
        match e {
            transfer::ImportError::Record(e) => SyncError::invalid(&e),
            transfer::ImportError::Records(errors) => match errors.first() {
                Some(first) => SyncError::invalid(first),
                None => SyncError::Store("the old list has bad values".into()),
            },
            transfer::ImportError::Other(e) => SyncError::Store(e),
        }
    })
}

/// One sync: fetch the old list, check it, guard it, make the local customers equal to it.
pub fn sync(
    conn: &mut dyn Backend,
    upstream: &Upstream,
    hasher: &PasswordHasher,
    key: &SyncKey,
    retention: Retention,
    progress: &dyn Progress,
) -> Result<Summary, SyncError> {
    let records = upstream.fetch_list()?;
    apply(conn, upstream, &records, hasher, key, retention, progress)
}

/// The second half of a sync, once the list is fetched: guard it, make the local customers
/// equal to it. (The server fetches without holding a connection.)
pub fn apply(
    conn: &mut dyn Backend,
    upstream: &Upstream,
    records: &[transfer::Record],
    hasher: &PasswordHasher,
    key: &SyncKey,
    retention: Retention,
    progress: &dyn Progress,
) -> Result<Summary, SyncError> {
    guard(conn, records, upstream.allow_mass_delete)?;
    let audit = ("sync", Action::Sync, retention);
    store(conn, records, true, hasher, key, audit, progress)
}

/// The server's mirror, if `upstream` is set (Rocket state).
pub struct Mirroring(pub Option<Arc<Mirror>>);

/// The mirror as the server runs it: the settings, the digest key, and how syncs went.
pub struct Mirror {
    pub config: MirrorConfig,
    /// The old API, from `config.url`.
    pub upstream: Upstream,
    pub key: SyncKey,
    status: Mutex<Status>,
    /// Held by a sync from its fetch to its commit, and by a forwarded write from sending it to
    /// storing the master's answer: a sync that fetched before a write must not commit after
    /// it, or it would put back what the write changed. An async lock: whoever waits for it
    /// is a future, not a blocked thread of the blocking pool (which reads, logins and
    /// `/health` need). On PostgreSQL its holder also takes the turn every node shares.
    exclusive: Arc<tokio::sync::Mutex<()>>,
    /// One permit per forwarded write in progress (sent, or waiting for its turn): at most
    /// [`MAX_WAITING_WRITES`]; the next is told to try again.
    writes: Arc<tokio::sync::Semaphore>,
    /// Wakes the sync loop for a sync now (after a write whose outcome is not stored here).
    wake: tokio::sync::Notify,
    /// On PostgreSQL, what keeps the nodes of the database in step.
    nodes: Option<Nodes>,
}

/// The nodes of one PostgreSQL database mirroring together: who leads the periodic syncs,
/// and the turn they all share.
struct Nodes {
    /// Held by the node that runs the periodic syncs.
    leader: Arc<Mutex<AdvisoryLock>>,
    /// What this node last knew of the lead ([`UNKNOWN`], [`LEADS`], [`STANDS_BY`]), to log
    /// each change once.
    leading: AtomicU8,
    turn: TurnLock,
}

const UNKNOWN: u8 = 0;
const LEADS: u8 = 1;
const STANDS_BY: u8 = 2;

/// A forwarded write's turn with the master: no sync and no other write runs until it ends,
/// on this node or (on PostgreSQL) any other. Given back, the shared turn first, when
/// dropped.
pub struct Turn {
    _shared: Option<TurnGuard>,
    _exclusive: tokio::sync::OwnedMutexGuard<()>,
    _write: tokio::sync::OwnedSemaphorePermit,
}

#[derive(Debug, Default)]
struct Status {
    last_good: Option<SystemTime>,
    last_error: Option<String>,
}

/// What `/health` says of the mirror.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorReport {
    pub upstream: String,
    /// Seconds since the last good sync (`null`: none yet).
    pub last_good_sync_age_secs: Option<u64>,
    /// Why the last attempt failed, if it did (`null` after a good one).
    pub last_error: Option<String>,
}

impl Mirror {
    /// Loads the digest key (`key_file`: see [`SyncKey::path_for_store`]) and the time of the
    /// last good sync recorded in the audit trail (so a restart does not forget it).
    pub fn open(
        config: MirrorConfig,
        settings: UpstreamSettings,
        key_file: &Path,
        store: &Store,
    ) -> Result<Mirror, String> {
        let upstream = Upstream::new(&config.url, settings)?;
        let key = SyncKey::load_or_create_at(key_file)?;
        let age = store
            .connection()
            .map_err(|e| e.to_string())?
            .last_sync_age()
            .map_err(|e| e.to_string())?;
        let last_good = age.and_then(|secs| {
            SystemTime::now().checked_sub(Duration::from_secs(u64::try_from(secs).ok()?))
        });
        let nodes = store.postgres().map(|pg| Nodes {
            leader: Arc::new(Mutex::new(pg.advisory_lock(SYNC_LEADER))),
            leading: AtomicU8::new(UNKNOWN),
            turn: pg.turn_lock(),
        });
        Ok(Mirror {
            config,
            upstream,
            key,
            status: Mutex::new(Status {
                last_good,
                last_error: None,
            }),
            exclusive: Arc::new(tokio::sync::Mutex::new(())),
            writes: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING_WRITES)),
            wake: tokio::sync::Notify::new(),
            nodes,
        })
    }

    /// Waits (as a future) for a forwarded write's turn: no sync or other write in progress.
    /// `Busy` at once when [`MAX_WAITING_WRITES`] are in progress already, or after waiting
    /// `upstream_timeout_secs` for the turn (a long sync, a slow master).
    pub async fn write_turn(&self) -> Result<Turn, SyncError> {
        let write = Arc::clone(&self.writes)
            .try_acquire_owned()
            .map_err(|_| SyncError::Busy)?;
        let started = Instant::now();
        let exclusive = tokio::time::timeout(
            self.upstream.timeout,
            Arc::clone(&self.exclusive).lock_owned(),
        )
        .await
        .map_err(|_| SyncError::Busy)?;
        let left = self.upstream.timeout.saturating_sub(started.elapsed());
        let shared = self.shared_turn(Some(left)).await?;
        Ok(Turn {
            _shared: shared,
            _exclusive: exclusive,
            _write: write,
        })
    }

    /// The turn every node shares (PostgreSQL; nothing to take on SQLite), waited for as a
    /// future: `Busy` when `patience` passes first.
    async fn shared_turn(
        &self,
        patience: Option<Duration>,
    ) -> Result<Option<TurnGuard>, SyncError> {
        let Some(nodes) = &self.nodes else {
            return Ok(None);
        };
        match nodes.turn.acquire(patience).await {
            Ok(Some(guard)) => Ok(Some(guard)),
            Ok(None) => Err(SyncError::Busy),
            Err(error) => Err(SyncError::Store(format!(
                "the turn the nodes share could not be had: {error}"
            ))),
        }
    }

    /// Whether this node runs the periodic syncs: always on SQLite; on PostgreSQL, the node
    /// that holds (or now takes) the leader's lock. Each change is logged once.
    async fn leads(&self) -> bool {
        let Some(nodes) = &self.nodes else {
            return true;
        };
        let leader = Arc::clone(&nodes.leader);
        let held = tokio::task::spawn_blocking(move || {
            leader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .try_hold()
        })
        .await;
        let (leads, error) = match held {
            Ok(Ok(leads)) => (leads, None),
            Ok(Err(error)) => (false, Some(error.to_string())),
            Err(error) => (false, Some(error.to_string())),
        };
        let before = nodes
            .leading
            .swap(if leads { LEADS } else { STANDS_BY }, Ordering::SeqCst);
        let upstream = self.upstream.display();
        match (before, leads) {
            (LEADS, true) | (STANDS_BY, false) => {}
            (_, true) => log::info!(
                "this node leads the syncs from {upstream}; the other nodes of the database \
                 stand by"
            ),
            (LEADS, false) => log::warn!(
                "this node no longer leads the syncs from {upstream} (its database session \
                 ended{}); another node takes over",
                error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            (_, false) => match error {
                Some(error) => log::warn!(
                    "this node cannot tell who leads the syncs from {upstream} ({error}); it \
                     stands by and tries again at its next tick"
                ),
                None => log::info!(
                    "another node leads the syncs from {upstream}; this one stands by, and \
                     takes over if that one stops"
                ),
            },
        }
        leads
    }

    /// Asks the sync loop for a sync as soon as no write holds the turn.
    pub fn sync_soon(&self) {
        self.wake.notify_one();
    }

    /// One sync, as the server runs it: the turn awaited as a future, the list fetched on a
    /// blocking thread without a database connection, then stored on a pooled connection.
    async fn sync_now(
        self: &Arc<Self>,
        store: &Store,
        hasher: &PasswordHasher,
        retention: Retention,
    ) -> Result<Summary, SyncError> {
        let _exclusive = Arc::clone(&self.exclusive).lock_owned().await;
        // Dropped before `_exclusive` (the reverse order of declaration).
        let _shared = self.shared_turn(None).await?;
        let upstream = self.upstream.clone();
        let records = tokio::task::spawn_blocking(move || upstream.fetch_list())
            .await
            .map_err(|e| SyncError::Store(e.to_string()))??;
        let (this, hasher) = (Arc::clone(self), hasher.clone());
        store
            .run(move |conn| {
                Ok::<_, crate::error::ApiError>(apply(
                    conn,
                    &this.upstream,
                    &records,
                    &hasher,
                    &this.key,
                    retention,
                    &transfer::Silent,
                ))
            })
            .await
            .map_err(|e| SyncError::Store(e.to_string()))?
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the last good sync's age comes from the audit trail every node shares
    /// (PostgreSQL: several nodes, one of which syncs), rather than from what this server saw.
    pub fn shares_its_age(&self) -> bool {
        self.nodes.is_some()
    }

    /// On PostgreSQL, the last good sync's age from the audit trail every node shares (one
    /// node syncs for all), so that each tells the same age; `None` on SQLite, or when it
    /// cannot be read (logged). Pass it to [`Mirror::report`] and [`Mirror::stale`].
    pub async fn shared_age(&self, db: &crate::store::Store) -> Option<Option<u64>> {
        if !self.shares_its_age() {
            return None;
        }
        db.run(|conn| conn.last_sync_age())
            .await
            .inspect_err(|error| log::warn!("the last sync's age could not be read: {error}"))
            .ok()
            .map(|age| age.map(|secs| u64::try_from(secs).unwrap_or(0)))
    }

    /// How old the last good sync is: `shared` when read from the audit trail (see
    /// [`Mirror::shares_its_age`]), else as this server saw it.
    fn age(&self, shared: Option<Option<u64>>) -> Option<Duration> {
        match shared {
            Some(secs) => secs.map(Duration::from_secs),
            None => self.status().last_good.and_then(|at| at.elapsed().ok()),
        }
    }

    /// What `/health` says; `shared`: see [`Mirror::age`].
    pub fn report(&self, shared: Option<Option<u64>>) -> MirrorReport {
        MirrorReport {
            upstream: self.upstream.display(),
            last_good_sync_age_secs: self.age(shared).map(|age| age.as_secs()),
            last_error: self.status().last_error.clone(),
        }
    }

    /// Whether the data is older than `upstream_max_age_secs` allows.
    pub fn stale(&self, shared: Option<Option<u64>>) -> bool {
        let Some(max_age) = self.config.max_age else {
            return false;
        };
        self.age(shared).is_none_or(|age| age > max_age)
    }

    /// Syncs every `upstream_every_secs`, for as long as the server runs. A failure keeps the
    /// last good data, is logged in one line (without the old API's key), and is retried
    /// sooner, doubling from 5 s up to the normal interval. On PostgreSQL only the node that
    /// leads syncs at each tick; the others try to take the lead then (and sync when a
    /// forwarded write of theirs asks for it).
    pub async fn run(self: Arc<Self>, store: Store, hasher: PasswordHasher, retention: Retention) {
        let mut retry = RETRY_FIRST;
        let mut asked = false;
        loop {
            if !asked && !self.leads().await {
                tokio::select! {
                    () = tokio::time::sleep(self.config.every) => asked = false,
                    () = self.wake.notified() => asked = true,
                }
                continue;
            }
            let started = std::time::Instant::now();
            // On a task of its own, so that a panic in it is a failed sync, not the end of the
            // loop.
            let (this, store_, hasher_) = (Arc::clone(&self), store.clone(), hasher.clone());
            let outcome =
                tokio::spawn(async move { this.sync_now(&store_, &hasher_, retention).await })
                    .await
                    .unwrap_or_else(|e| Err(SyncError::Store(e.to_string())));
            let upstream = self.upstream.display();
            let wait = match outcome {
                Ok(summary) => {
                    let mut status = self.status();
                    status.last_good = Some(SystemTime::now());
                    status.last_error = None;
                    drop(status);
                    log::info!(
                        "synced from {upstream} in {:.1} s: {} rows, {} inserted, {} updated, \
                         {} deleted, {} unchanged, {} password(s) hashed",
                        started.elapsed().as_secs_f64(),
                        summary.rows,
                        summary.inserted,
                        summary.updated,
                        summary.deleted,
                        summary.unchanged,
                        summary.hashed
                    );
                    retry = RETRY_FIRST;
                    self.config.every
                }
                Err(error) => {
                    let wait = retry.min(self.config.every);
                    log::warn!(
                        "sync from {upstream} failed: {}; still serving the last good data, \
                         next try in {} s",
                        error.detail(),
                        wait.as_secs()
                    );
                    // What `/health` shows (no key needed): no customer's values.
                    self.status().last_error = Some(error.to_string());
                    retry = retry.saturating_mul(2).min(self.config.every);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => asked = false,
                () = self.wake.notified() => asked = true,
            }
        }
    }
}

/// The turn every node of a PostgreSQL database shares, for a one-off sync from the command
/// line (`clientele sync`): waited for, blocking (`waiting` is called first if a node holds
/// it); `None` on SQLite.
pub fn command_line_turn(
    store: &Store,
    waiting: impl FnOnce(),
) -> Result<Option<TurnGuard>, String> {
    let Some(pg) = store.postgres() else {
        return Ok(None);
    };
    pg.turn_lock()
        .acquire_blocking(waiting)
        .map(Some)
        .map_err(|e| format!("the turn the nodes share could not be had: {e}"))
}

/// The first wait after a failed sync; it doubles at each failure, up to the interval.
const RETRY_FIRST: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: UpstreamSettings = UpstreamSettings {
        timeout: Duration::from_secs(1),
        max_bytes: 1024,
        allow_mass_delete: false,
    };

    fn upstream(url: &str) -> Upstream {
        Upstream::new(url, SETTINGS).unwrap()
    }

    #[test]
    fn the_key_never_shows_in_what_is_logged() {
        let up = upstream("https://user:pw@old.example/api/CUSTOMER/LIST/?apikey=SECRET");
        assert_eq!(up.display(), "https://old.example/api/CUSTOMER/LIST/");
        assert!(!up
            .mask("GET https://old.example/x?apikey=SECRET failed")
            .contains("SECRET"));
    }

    #[test]
    fn siblings_sit_beside_the_list_in_its_case() {
        let up = upstream("http://old.example/CUSTOMER/LIST/?apikey=K");
        assert_eq!(
            up.sibling("UPDATE", None),
            "http://old.example/CUSTOMER/UPDATE/?apikey=K"
        );
        let lower = upstream("http://old.example/customer/list");
        assert_eq!(
            lower.sibling("DELETE", Some("id_client=3")),
            "http://old.example/customer/delete?id_client=3"
        );
        assert!(Upstream::new("ftp://x/CUSTOMER/LIST/", SETTINGS).is_err());
        assert!(Upstream::new("http://x/other/", SETTINGS).is_err());
    }

    #[test]
    fn every_apikey_and_every_value_of_the_urls_query_is_masked() {
        for text in [
            "GET /x?apikey=K1-secret&b=2",
            "bad APIKEY%3DK1-secret here",
            r#"{"apikey": "K1-secret"}"#,
            "apikey: K1-secret",
        ] {
            let masked = mask_keys(text);
            assert!(!masked.contains("K1-secret"), "{masked}");
            assert!(masked.contains("***"), "{masked}");
        }
        assert_eq!(
            mask_keys("no key here, apikey alone"),
            "no key here, apikey alone"
        );
        assert_eq!(mask_keys("apikey="), "apikey=");
        assert_eq!(mask_keys("é apikey=ü& é"), "é apikey=***& é");
        for odd in [
            "apikey",
            "APIKEY=",
            "apikey%3",
            "apikey%3Dé",
            "éapikey\"",
            "apikeyapikey=x",
        ] {
            assert!(!mask_keys(odd).contains('x') || !odd.contains('='), "{odd}");
        }
        let up = upstream("http://u:pw-77@old.example/CUSTOMER/LIST/?token=T0K3N&apikey=OLD");
        let masked = up.mask("token T0K3N, pw-77, and http://old.example/?token=T0K3N&apikey=OLD");
        assert!(
            !masked.contains("T0K3N") && !masked.contains("pw-77") && !masked.contains("OLD"),
            "{masked}"
        );
    }

    #[test]
    fn a_refusal_is_reported_as_one_with_its_message_masked() {
        let up = upstream("http://old.example/CUSTOMER/LIST/?apikey=OLD-KEY-1");
        let error = up
            .parse(br#"{"success":"false","message":"bad key OLD-KEY-1"}"#)
            .unwrap_err();
        assert_eq!(error.to_string(), "the old API refused: bad key ***");
        let error = up
            .accepted(
                403,
                br#"{"success":"false","message":"see /x?apikey=OTHER"}"#,
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the old API refused (HTTP 403): see /x?apikey=***"
        );
    }

    #[test]
    fn a_bad_list_is_summed_up_without_its_values() {
        let up = upstream("http://old.example/CUSTOMER/LIST/");
        let text = "[{\"clcleunik\":1},\n{\"clcleunik\":2,\"addedDate\":\"secret@x\"}]";
        let error = up.parse(text.as_bytes()).unwrap_err();
        let summary = error.to_string();
        assert!(summary.contains("field addedDate"), "{summary}");
        assert!(summary.contains("line 2"), "{summary}");
        assert!(!summary.contains("secret@x"), "{summary}");
        assert!(error.detail().contains("secret@x"), "the log has it");
    }

    #[test]
    fn digests_depend_on_the_key_the_customer_and_the_password() {
        let (a, b) = (SyncKey([1; 32]), SyncKey([2; 32]));
        let pw = Secret::new("hunter22");
        assert_eq!(a.digest(1, &pw), a.digest(1, &pw));
        assert_ne!(a.digest(1, &pw), b.digest(1, &pw));
        assert_ne!(a.digest(1, &pw), a.digest(2, &pw));
        assert_ne!(a.digest(1, &pw), a.digest(1, &Secret::new("hunter23")));
    }
}
