//! The typed application config, read from Rocket's figment (`Rocket.toml`, then `ROCKET_*`
//! environment variables) and validated once, before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use rocket::figment::providers::{Env, Format, Serialized, Toml};
use rocket::figment::{Figment, Profile, Provider};
use serde::Deserialize;

use crate::auth::{Argon2Config, PasswordHasher};
use crate::customer::{Redaction, View};
use crate::error::StartupError;
use crate::store::Location;

/// The keys as they appear in `Rocket.toml`; see that file for what each means.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default = "default_database")]
    database: String,
    #[serde(default)]
    seed_demo: bool,
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default = "default_memory_kib")]
    argon2_memory_kib: u32,
    #[serde(default = "default_iterations")]
    argon2_iterations: u32,
    #[serde(default = "default_parallelism")]
    argon2_parallelism: u32,
    #[serde(default)]
    allow_anonymous: bool,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default = "default_max_failures")]
    login_max_failures: u32,
    #[serde(default = "default_window_secs")]
    login_window_secs: u64,
    #[serde(default)]
    login_workers: usize,
    #[serde(default = "default_header_timeout_secs")]
    header_timeout_secs: u64,
    #[serde(default)]
    max_connections: usize,
    #[serde(default = "default_response_cache_mib")]
    response_cache_mib: usize,
    #[serde(default = "default_audit_days")]
    audit_days: u32,
    #[serde(default = "default_reset_minutes")]
    reset_minutes: u32,
    #[serde(default)]
    smtp_url: Option<String>,
    #[serde(default)]
    smtp_from: Option<String>,
    #[serde(default)]
    reset_url: Option<String>,
    #[serde(default = "default_changes_keep_days")]
    changes_keep_days: u32,
    #[serde(default = "default_clcleunik_type")]
    clcleunik_type: String,
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default = "default_upstream_every_secs")]
    upstream_every_secs: u64,
    #[serde(default = "default_upstream_timeout_secs")]
    upstream_timeout_secs: u64,
    #[serde(default = "default_upstream_max_mib")]
    upstream_max_mib: u64,
    #[serde(default)]
    upstream_allow_mass_delete: bool,
    #[serde(default)]
    upstream_max_age_secs: u64,
    #[serde(default = "default_upstream_key_file")]
    upstream_key_file: String,
    #[serde(default = "default_session_days")]
    session_days: u32,
    #[serde(default)]
    public_registration: bool,
    #[serde(default = "default_log_format")]
    log_format: String,
    #[serde(flatten)]
    operations: RawOperations,
}

/// The keys for running the server for a long time: HTTPS, metrics, scheduled backups.
#[derive(Debug, Deserialize)]
struct RawOperations {
    #[serde(default)]
    tls_certs: Option<String>,
    #[serde(default)]
    tls_key: Option<String>,
    #[serde(default)]
    acme_domains: Vec<String>,
    #[serde(default)]
    acme_email: Option<String>,
    #[serde(default = "default_acme_directory")]
    acme_directory: String,
    #[serde(default)]
    acme_ca_root: Option<String>,
    #[serde(default)]
    metrics_address: Option<String>,
    #[serde(default)]
    backup_dir: Option<String>,
    #[serde(default = "default_backup_every_hours")]
    backup_every_hours: u32,
    #[serde(default = "default_backup_keep")]
    backup_keep: u32,
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

fn default_acme_directory() -> String {
    LETS_ENCRYPT.to_owned()
}
fn default_backup_every_hours() -> u32 {
    24
}
fn default_backup_keep() -> u32 {
    7
}

/// Where the server's certificate comes from (`tls_*` or `acme_*`).
#[derive(Debug, Clone)]
pub enum TlsSettings {
    /// PEM files, read again when they change.
    Files { certs: PathBuf, key: PathBuf },
    /// An ACME certificate authority; `cache` holds the account and certificates.
    Acme {
        domains: Vec<String>,
        email: Option<String>,
        directory: String,
        ca_root: Option<PathBuf>,
        cache: PathBuf,
    },
}

/// Backups taken by the server itself (`backup_dir`, `backup_every_hours`, `backup_keep`).
#[derive(Debug, Clone)]
pub struct BackupSchedule {
    pub folder: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

/// HTTPS, the metrics listener and scheduled backups, checked.
#[derive(Debug, Clone, Default)]
pub struct Operations {
    pub tls: Option<TlsSettings>,
    /// A listener of its own for `/metrics`, without a key (loopback only).
    pub metrics_address: Option<std::net::SocketAddr>,
    pub backups: Option<BackupSchedule>,
}

impl Operations {
    fn from_raw(raw: RawOperations, database: &Location) -> Result<Operations, StartupError> {
        let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let files = match (set(raw.tls_certs), set(raw.tls_key)) {
            (None, None) => None,
            (Some(certs), Some(key)) => Some(TlsSettings::Files {
                certs: PathBuf::from(certs),
                key: PathBuf::from(key),
            }),
            _ => {
                return Err(StartupError::Config(
                    "tls_certs and tls_key go together: set both (PEM files: the certificate \
                     chain, and its private key), or neither"
                        .into(),
                ))
            }
        };
        let acme_rest = [
            ("acme_email", raw.acme_email.is_some()),
            ("acme_ca_root", raw.acme_ca_root.is_some()),
            ("acme_directory", raw.acme_directory != LETS_ENCRYPT),
        ];
        if let (true, Some((name, _))) = (
            raw.acme_domains.is_empty(),
            acme_rest.iter().find(|(_, set)| *set),
        ) {
            return Err(StartupError::Config(format!(
                "{name} is set but acme_domains is empty: name the domains to get certificates \
                 for (acme_domains = [\"shop.example\"]), or remove {name}"
            )));
        }
        let acme = match raw.acme_domains.is_empty() {
            true => None,
            false => Some(acme_settings(
                raw.acme_domains,
                set(raw.acme_email),
                raw.acme_directory,
                set(raw.acme_ca_root),
                database,
            )?),
        };
        let tls =
            match (files, acme) {
                (Some(_), Some(_)) => return Err(StartupError::Config(
                    "tls_certs/tls_key and acme_domains: choose one, the certificate from files \
                     or from an ACME authority"
                        .into(),
                )),
                (files, acme) => files.or(acme),
            };
        let metrics_address = match set(raw.metrics_address) {
            None => None,
            Some(text) => {
                let address: std::net::SocketAddr = text.trim().parse().map_err(|_| {
                    StartupError::Config(format!(
                        "metrics_address: {text:?} is not an address and port like \"127.0.0.1:9464\""
                    ))
                })?;
                if !address.ip().is_loopback() {
                    return Err(StartupError::Config(format!(
                        "metrics_address: {address} is not a loopback address; this listener \
                         answers /metrics without a key, so it only listens on this machine \
                         (127.0.0.1 or ::1). To scrape from another machine, scrape /metrics on \
                         the main port with a read key"
                    )));
                }
                Some(address)
            }
        };
        let backups = match set(raw.backup_dir) {
            None => None,
            Some(folder) => {
                if matches!(database, Location::Postgres(_)) {
                    return Err(StartupError::Config(
                        "backup_dir: scheduled backups copy a SQLite file; this database is \
                         PostgreSQL. Back it up with pg_dump on a schedule of its own (a \
                         systemd timer or cron; `clientele backup` prints the command), or rely \
                         on the standby (README, \"More than one machine\")"
                            .into(),
                    ));
                }
                if raw.backup_every_hours == 0 || raw.backup_keep == 0 {
                    return Err(StartupError::Config(
                        "backup_every_hours and backup_keep: must be at least 1".into(),
                    ));
                }
                Some(BackupSchedule {
                    folder: PathBuf::from(folder),
                    every: Duration::from_secs(u64::from(raw.backup_every_hours) * 3600),
                    keep: raw.backup_keep as usize,
                })
            }
        };
        Ok(Operations {
            tls,
            metrics_address,
            backups,
        })
    }
}

/// `acme_*`, checked: names a certificate authority can validate over TLS-ALPN-01.
fn acme_settings(
    domains: Vec<String>,
    email: Option<String>,
    directory: String,
    ca_root: Option<String>,
    database: &Location,
) -> Result<TlsSettings, StartupError> {
    for (n, domain) in domains.iter().enumerate() {
        if domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(StartupError::Config(format!(
                "acme_domains: {domain:?} is an IP address; ACME certificates here are for \
                 host names (\"shop.example\")"
            )));
        }
        if domains[..n].iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(StartupError::Config(format!(
                "acme_domains: {domain:?} is listed twice"
            )));
        }
        // A public name: labels of letters, digits and `-`, none empty, at least two, the
        // last not a number (`127.1` is an address), never `localhost`.
        let labels: Vec<&str> = domain.split('.').collect();
        let valid = domain.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|last| !last.chars().all(|c| c.is_ascii_digit()))
            && !labels
                .iter()
                .any(|label| label.eq_ignore_ascii_case("localhost"));
        if !valid {
            return Err(StartupError::Config(format!(
                "acme_domains: {domain:?} is not a host name like \"shop.example\" (no scheme, \
                 port, path or wildcard: each name is validated on this server's HTTPS port)"
            )));
        }
    }
    if let Some(email) = &email {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(StartupError::Config(format!(
                "acme_email: {email:?} is not an email address"
            )));
        }
    }
    if !directory.starts_with("https://") {
        return Err(StartupError::Config(format!(
            "acme_directory: {directory:?} is not an https:// URL (Let's Encrypt's is {LETS_ENCRYPT})"
        )));
    }
    let ca_root = ca_root.map(PathBuf::from);
    if let Some(path) = &ca_root {
        if !path.is_file() {
            return Err(StartupError::Config(format!(
                "acme_ca_root: {} does not exist or is not a file",
                path.display()
            )));
        }
    }
    // Beside the database: its folder for a file, `data/` for PostgreSQL.
    let cache = match database {
        Location::File(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("acme"),
        Location::Postgres(_) => PathBuf::from("data/acme"),
    };
    Ok(TlsSettings::Acme {
        domains,
        email,
        directory,
        ca_root,
        cache,
    })
}

/// The settings clientele itself reads (Rocket reads its own: address, port, log_level...).
/// Anything else in the config file or a `ROCKET_*` variable is a mistake, and stops start-up.
const APP_KEYS: &[&str] = &[
    "database",
    "seed_demo",
    "redact",
    "argon2_memory_kib",
    "argon2_iterations",
    "argon2_parallelism",
    "allow_anonymous",
    "cors_origins",
    "login_max_failures",
    "login_window_secs",
    "login_workers",
    "header_timeout_secs",
    "max_connections",
    "response_cache_mib",
    "audit_days",
    "reset_minutes",
    "smtp_url",
    "smtp_from",
    "reset_url",
    "changes_keep_days",
    "clcleunik_type",
    "upstream",
    "upstream_every_secs",
    "upstream_timeout_secs",
    "upstream_max_mib",
    "upstream_allow_mass_delete",
    "upstream_max_age_secs",
    "upstream_key_file",
    "session_days",
    "public_registration",
    "tls_certs",
    "tls_key",
    "acme_domains",
    "acme_email",
    "acme_directory",
    "acme_ca_root",
    "metrics_address",
    "backup_dir",
    "backup_every_hours",
    "backup_keep",
    "log_format",
];

/// The configuration sources, lowest priority first: Rocket's built-in defaults, then
/// clientele's safe defaults (set here, so that they hold whichever file is read, or none),
/// then `Rocket.toml` (or the file `ROCKET_CONFIG` names), then `ROCKET_*` variables.
pub fn figment() -> Figment {
    let file = match config_file() {
        ConfigFile::Found(path) | ConfigFile::Missing(path) => Some(path),
        ConfigFile::None { .. } => None,
    };
    let figment =
        Figment::from(rocket::Config::default()).merge(Serialized::defaults(safe_defaults()));
    // `file_exact`: a file `ROCKET_CONFIG` names that does not exist is an error, not nothing.
    let figment = match file {
        Some(path) => figment.merge(Toml::file_exact(path).nested()),
        None => figment,
    };
    figment
        .merge(Env::prefixed("ROCKET_").ignore(&["PROFILE"]).global())
        .select(Profile::from_env_or(
            "ROCKET_PROFILE",
            rocket::Config::DEFAULT_PROFILE,
        ))
}

/// The configuration file the server reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// `ROCKET_CONFIG`'s file, or the `Rocket.toml` found in the working folder or above.
    Found(PathBuf),
    /// `ROCKET_CONFIG` names a file that does not exist: start-up stops.
    Missing(PathBuf),
    /// No `ROCKET_CONFIG`, and no `Rocket.toml` in `searched` or any folder above it: the
    /// built-in defaults and `ROCKET_*` variables only.
    None { searched: PathBuf },
}

/// Which configuration file [`figment`] reads: the one `ROCKET_CONFIG` names, else the first
/// `Rocket.toml` in the working folder or its parents (as Rocket itself looks for it).
pub fn config_file() -> ConfigFile {
    if let Some(named) = std::env::var_os("ROCKET_CONFIG").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(named);
        return match path.is_file() {
            true => ConfigFile::Found(path),
            false => ConfigFile::Missing(path),
        };
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let found = cwd
        .ancestors()
        .map(|folder| folder.join("Rocket.toml"))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => ConfigFile::Found(path),
        None => ConfigFile::None { searched: cwd },
    }
}

impl ConfigFile {
    /// Stops start-up when `ROCKET_CONFIG` names a file that does not exist: starting with
    /// the defaults instead would silently drop the owner's settings (`redact`, keys' rules).
    pub fn check(&self) -> Result<(), StartupError> {
        match self {
            ConfigFile::Missing(path) => Err(StartupError::Config(format!(
                "ROCKET_CONFIG names {}, which does not exist or is not a file",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// The start-up line that says where the settings come from.
    pub fn describe(&self) -> String {
        match self {
            ConfigFile::Found(path) => format!(
                "configuration: {} (and ROCKET_* variables)",
                std::fs::canonicalize(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
            ),
            ConfigFile::Missing(path) => format!("configuration: {} is missing", path.display()),
            ConfigFile::None { searched } => format!(
                "configuration: no Rocket.toml in {} or above; built-in defaults and ROCKET_* \
                 variables only",
                searched.display()
            ),
        }
    }
}

/// Defaults whose Rocket value would be unsafe here. Rocket trusts `X-Real-IP` by default,
/// which lets any client choose its own address and dodge the per-address login limit; it
/// announces itself in a `Server` header; it accepts 1 MiB JSON bodies; and its blocking pool
/// grows to 512 threads under load.
fn safe_defaults() -> serde_json::Value {
    serde_json::json!({
        "address": "127.0.0.1",
        "port": 8000,
        "ip_header": false,
        "ident": false,
        "log_level": "normal",
        "max_blocking": 32,
        "limits": {
            "json": "16KiB", "form": "16KiB", "data-form": "16KiB", "string": "16KiB",
            "bytes": "16KiB", "file": "16KiB", "msgpack": "16KiB",
        },
    })
}

/// Every key that is not ours or Rocket's, in every profile: `unknown setting "redcat" (in
/// Rocket.toml); did you mean "redact"?`.
fn check_known_keys(figment: &Figment) -> Result<(), StartupError> {
    let rocket_keys = Serialized::defaults(rocket::Config::default())
        .data()
        .ok()
        .and_then(|mut data| data.remove(&Profile::Default))
        .map(|dict| dict.into_keys().collect::<Vec<_>>())
        .unwrap_or_default();
    // `ROCKET_CONFIG` names the file; the environment provider also reads it as a key.
    let known = |key: &str| {
        APP_KEYS.contains(&key) || key == "config" || rocket_keys.iter().any(|k| k == key)
    };
    let data = figment
        .data()
        .map_err(|error| StartupError::Config(one_line(&error)))?;
    check_known_sections(figment, &data)?;
    let unknown = data
        .values()
        .flat_map(|dict| dict.keys())
        .find(|key| !known(key));
    let Some(key) = unknown else {
        return Ok(());
    };
    let source = figment
        .find_metadata(key)
        .map(|meta| match &meta.source {
            Some(source) => format!(" (in {source})"),
            None => format!(" (from {})", meta.name),
        })
        .unwrap_or_default();
    let closest = APP_KEYS
        .iter()
        .copied()
        .chain(rocket_keys.iter().map(String::as_str))
        .map(|candidate| (strsim::damerau_levenshtein(key, candidate), candidate))
        .min();
    let hint = match closest {
        Some((distance, candidate)) if distance <= key.len().max(3) / 2 => {
            format!("; did you mean \"{candidate}\"?")
        }
        _ => format!("; the settings are: {}", APP_KEYS.join(", ")),
    };
    Err(StartupError::Config(format!(
        "unknown setting \"{key}\"{hint}{source}"
    )))
}

/// Every section (profile) is one Rocket reads: `[default]`, `[debug]`, `[release]`,
/// `[global]`, or the one `ROCKET_PROFILE` selects. A misspelled `[defualt]` would otherwise
/// be skipped whole, and the server would start without the owner's settings.
fn check_known_sections(
    figment: &Figment,
    data: &rocket::figment::value::Map<Profile, rocket::figment::value::Dict>,
) -> Result<(), StartupError> {
    const SECTIONS: [&str; 4] = ["default", "debug", "release", "global"];
    let selected = figment.profile().as_str().as_str().to_owned();
    let Some(unknown) = data
        .keys()
        .map(|profile| profile.as_str().as_str().to_owned())
        .find(|name| !SECTIONS.contains(&name.as_str()) && !name.eq_ignore_ascii_case(&selected))
    else {
        return Ok(());
    };
    let source = match config_file() {
        ConfigFile::Found(path) => format!(" (in {})", path.display()),
        _ => String::new(),
    };
    let closest = SECTIONS
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(&unknown, candidate), candidate))
        .min()
        .filter(|(distance, _)| *distance <= 3)
        .map(|(_, candidate)| format!("did you mean [{candidate}]? "))
        .unwrap_or_default();
    Err(StartupError::Config(format!(
        "unknown section [{unknown}]{source}; {closest}the sections are [default], [debug], \
         [release], [global], or the one ROCKET_PROFILE names"
    )))
}

fn default_max_failures() -> u32 {
    10
}
fn default_window_secs() -> u64 {
    300
}

fn default_header_timeout_secs() -> u64 {
    30
}
fn default_response_cache_mib() -> usize {
    96
}
fn default_reset_minutes() -> u32 {
    60
}
fn default_audit_days() -> u32 {
    365
}
fn default_changes_keep_days() -> u32 {
    90
}
fn default_clcleunik_type() -> String {
    "number".into()
}
fn default_session_days() -> u32 {
    30
}
fn default_upstream_every_secs() -> u64 {
    300
}
fn default_upstream_timeout_secs() -> u64 {
    60
}
fn default_upstream_max_mib() -> u64 {
    512
}
fn default_log_format() -> String {
    "text".to_owned()
}
fn default_upstream_key_file() -> String {
    "data/upstream.key".to_owned()
}

/// A `database` setting meant for PostgreSQL that is not a `postgres://` URL: a libpq
/// key=value string (`host=... password=...`), or a scheme without `//`. Taken for a file
/// name, it would make a SQLite file named after the password.
fn looks_like_a_broken_postgres_setting(setting: &str) -> bool {
    let lower = setting.trim().to_ascii_lowercase();
    let url = lower.starts_with("postgres://") || lower.starts_with("postgresql://");
    let scheme_without_slashes =
        !url && (lower.starts_with("postgres:") || lower.starts_with("postgresql:"));
    let key_value = lower.split_whitespace().any(|word| {
        [
            "host=",
            "hostaddr=",
            "dbname=",
            "user=",
            "password=",
            "port=",
            "sslmode=",
        ]
        .iter()
        .any(|key| word.starts_with(key))
    });
    scheme_without_slashes || (!url && key_value)
}

fn default_database() -> String {
    "data/clientele.db".to_owned()
}
fn default_memory_kib() -> u32 {
    Argon2Config::default().memory_kib
}
fn default_iterations() -> u32 {
    Argon2Config::default().iterations
}
fn default_parallelism() -> u32 {
    Argon2Config::default().parallelism
}

/// The validated config every part of the server and the CLI reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SQLite file, or a PostgreSQL URL (key `database`).
    pub database: Location,
    /// Fill a newly created database with the demo customers (key `seed_demo`).
    pub seed_demo: bool,
    /// How customers go on the wire: fields withheld (key `redact`), and `clcleunik` as a
    /// number or a string (key `clcleunik_type`).
    pub view: View,
    /// Argon2id parameters for new hashes (keys `argon2_*`).
    pub hasher: PasswordHasher,
    /// Serve without keys on a non-loopback address when none exists (key `allow_anonymous`).
    pub allow_anonymous: bool,
    /// Browser origins allowed to call the API (key `cors_origins`), e.g. `https://shop.be`.
    pub cors_origins: Vec<String>,
    /// Failed logins allowed per account and per address in the window (`login_max_failures`).
    pub login_max_failures: u32,
    /// The window for counting failed logins (`login_window_secs`).
    pub login_window: Duration,
    /// How many password verifications may run at once (`login_workers`; 0 = half the cores).
    pub login_workers: usize,
    /// A connection that has not sent a whole request head within this long is closed
    /// (`header_timeout_secs`); idle keep-alive connections too.
    pub header_timeout: Duration,
    /// Connections served at once (`max_connections`; 0 = from the open-files limit).
    /// Further clients wait in the kernel's queue until one closes.
    pub max_connections: usize,
    /// Memory for finished list responses, bodies, keys and bookkeeping included
    /// (`response_cache_mib`).
    pub response_cache_bytes: usize,
    /// How long the audit trail and the changes feed's deletions are kept.
    pub retention: Retention,
    /// How long a password-reset token stays usable (`reset_minutes`, 60).
    pub reset_minutes: u32,
    /// Where reset emails go out (`smtp_url`, `smtp_from`, `reset_url`), if configured.
    pub mail: Option<MailSettings>,
    /// The old API this server mirrors (`upstream`), if any, and how.
    pub mirror: Option<MirrorConfig>,
    /// How to reach an old API (`upstream_timeout_secs`, `upstream_max_mib`,
    /// `upstream_allow_mass_delete`), for the mirror and for `clientele sync URL` alike.
    pub upstream_settings: UpstreamSettings,
    /// On PostgreSQL, the mirror's key file (`upstream_key_file`, `data/upstream.key`):
    /// the key of the password digests, kept out of the database, the same on every node.
    /// On SQLite the key sits beside the database file instead.
    pub upstream_key_file: PathBuf,
    /// How long a customer session from LOGIN lasts, in days (`session_days`, 30).
    pub session_days: u32,
    /// A public key may register customers through ADD (`public_registration`, false).
    pub public_registration: bool,
    /// HTTPS, the metrics listener, scheduled backups.
    pub operations: Operations,
    /// How log lines are written (`log_format`, "text").
    pub log_format: LogFormat,
}

/// How log lines are written (`log_format`): every line starts with its UTC time either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-30T01:02:03.456Z warning: the message`, for people and `journalctl`.
    #[default]
    Text,
    /// One JSON object per line (`{"time":...,"level":...,"target":...,"message":...}`), for
    /// log shippers (Vector, promtail, Fluent Bit).
    Json,
}

impl LogFormat {
    /// The setting's value, or an error naming the setting and the values it takes.
    pub fn parse(value: &str) -> Result<LogFormat, String> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "log_format: {other:?} is not a log format; use \"text\" or \"json\""
            )),
        }
    }
}

/// The longest `session_days` accepted: ten years.
const MAX_SESSION_DAYS: u32 = 3650;

/// Where password-reset emails go out (`smtp_url`, `smtp_from`, `reset_url`): all three, or
/// none. [`crate::mail`] checks that the URL and the sender parse.
#[derive(Clone)]
pub struct MailSettings {
    /// `smtp://HOST:PORT` (plain, for a relay on this machine), `smtp://USER:PASS@HOST:587?tls=required`
    /// (STARTTLS) or `smtps://USER:PASS@HOST` (TLS). Holds a password: never logged.
    pub smtp_url: String,
    /// The sender, e.g. `Shop <noreply@shop.example>`.
    pub from: String,
    /// The shop's page that sets a new password, with `{token}` where the token goes.
    pub reset_url: String,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("from", &self.from)
            .field("reset_url", &self.reset_url)
            .finish_non_exhaustive()
    }
}

impl MailSettings {
    fn from_raw(
        smtp_url: Option<String>,
        from: Option<String>,
        reset_url: Option<String>,
    ) -> Result<Option<MailSettings>, StartupError> {
        let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        match (set(smtp_url), set(from), set(reset_url)) {
            (None, None, None) => Ok(None),
            (Some(smtp_url), Some(from), Some(reset_url)) => {
                if !reset_url.contains("{token}") {
                    return Err(StartupError::Config(
                        "reset_url: put {token} where the reset token goes, e.g. \
                         \"https://shop.example/reset?token={token}\""
                            .into(),
                    ));
                }
                Ok(Some(MailSettings {
                    smtp_url,
                    from,
                    reset_url,
                }))
            }
            _ => Err(StartupError::Config(
                "smtp_url, smtp_from and reset_url go together: set all three to email \
                 password resets, or none"
                    .into(),
            )),
        }
    }
}

/// How to reach an old API and what to accept from it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub timeout: Duration,
    pub max_bytes: u64,
    pub allow_mass_delete: bool,
}

/// Mirroring the old API (`upstream` and the `upstream_*` keys).
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// The old list's URL (`upstream`), checked when the mirror starts.
    pub url: String,
    /// Time between syncs (`upstream_every_secs`, 300).
    pub every: Duration,
    /// `/health` turns 503 when the last good sync is older (`upstream_max_age_secs`; 0: never).
    pub max_age: Option<Duration>,
}

/// How long history is kept, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The audit trail (`audit_days`, 365).
    pub audit_days: u32,
    /// Deletions in the changes feed (`changes_keep_days`, 90); older tokens get 410.
    pub changes_days: u32,
}

impl Config {
    /// Reads and checks the config; the error names the key at fault.
    pub fn from_figment(figment: &Figment) -> Result<Config, StartupError> {
        config_file().check()?;
        check_known_keys(figment)?;
        let raw: RawConfig = figment
            .extract()
            .map_err(|error| StartupError::Config(one_line(&error)))?;
        if looks_like_a_broken_postgres_setting(&raw.database) {
            // Never echoed: it may hold a password.
            return Err(StartupError::Config(
                "database: this looks like a PostgreSQL connection setting, but only a URL \
                 starting postgres:// is read (README, \"More than one machine\"); a libpq \
                 keyword string, or a URL without its //, would be taken for a file name"
                    .into(),
            ));
        }
        if raw.database.trim().is_empty() {
            return Err(StartupError::Config("database: the path is empty".into()));
        }
        let log_format = LogFormat::parse(&raw.log_format).map_err(StartupError::Config)?;
        let redaction = Redaction::from_names(&raw.redact).map_err(StartupError::Config)?;
        let string_ids = match raw.clcleunik_type.as_str() {
            "number" => false,
            "string" => true,
            other => {
                return Err(StartupError::Config(format!(
                    "clcleunik_type: {other:?} is neither \"number\" nor \"string\""
                )))
            }
        };
        for (key, days) in [
            ("audit_days", raw.audit_days),
            ("changes_keep_days", raw.changes_keep_days),
            ("reset_minutes", raw.reset_minutes),
        ] {
            if days == 0 {
                return Err(StartupError::Config(format!("{key}: must be at least 1")));
            }
        }
        let hasher = PasswordHasher::new(Argon2Config {
            memory_kib: raw.argon2_memory_kib,
            iterations: raw.argon2_iterations,
            parallelism: raw.argon2_parallelism,
        })
        .map_err(StartupError::Config)?;
        if !(1..=MAX_SESSION_DAYS).contains(&raw.session_days) {
            return Err(StartupError::Config(format!(
                "session_days: must be from 1 to {MAX_SESSION_DAYS}"
            )));
        }
        if raw.login_max_failures == 0 {
            return Err(StartupError::Config(
                "login_max_failures: must be at least 1".into(),
            ));
        }
        if raw.login_window_secs == 0 {
            return Err(StartupError::Config(
                "login_window_secs: must be at least 1".into(),
            ));
        }
        for origin in &raw.cors_origins {
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains(char::is_whitespace);
            if !valid {
                return Err(StartupError::Config(format!(
                    "cors_origins: {origin:?} is not an origin like \"https://shop.example\" \
                     (scheme and host, optional port, no path or trailing slash)"
                )));
            }
        }
        if raw.header_timeout_secs == 0 {
            return Err(StartupError::Config(
                "header_timeout_secs: must be at least 1".into(),
            ));
        }
        if raw.upstream_every_secs == 0 || raw.upstream_timeout_secs == 0 {
            return Err(StartupError::Config(
                "upstream_every_secs and upstream_timeout_secs: must be at least 1".into(),
            ));
        }
        let upstream_settings = UpstreamSettings {
            timeout: Duration::from_secs(raw.upstream_timeout_secs),
            max_bytes: raw.upstream_max_mib.saturating_mul(1024 * 1024),
            allow_mass_delete: raw.upstream_allow_mass_delete,
        };
        let mirror = match raw.upstream.as_deref().filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => Some(MirrorConfig {
                url: url.to_owned(),
                every: Duration::from_secs(raw.upstream_every_secs),
                max_age: (raw.upstream_max_age_secs > 0)
                    .then(|| Duration::from_secs(raw.upstream_max_age_secs)),
            }),
        };
        if raw.upstream_key_file.trim().is_empty() {
            return Err(StartupError::Config(
                "upstream_key_file: the path is empty".into(),
            ));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let login_workers = if raw.login_workers == 0 {
            (cores / 2).max(1)
        } else {
            raw.login_workers
        };
        let database = Location::parse(&raw.database);
        let operations = Operations::from_raw(raw.operations, &database)?;
        Ok(Config {
            database,
            operations,
            seed_demo: raw.seed_demo,
            view: View {
                redaction,
                string_ids,
            },
            hasher,
            allow_anonymous: raw.allow_anonymous,
            cors_origins: raw.cors_origins,
            login_max_failures: raw.login_max_failures,
            login_window: Duration::from_secs(raw.login_window_secs),
            login_workers,
            header_timeout: Duration::from_secs(raw.header_timeout_secs),
            max_connections: raw.max_connections,
            response_cache_bytes: raw.response_cache_mib.saturating_mul(1024 * 1024),
            retention: Retention {
                audit_days: raw.audit_days,
                changes_days: raw.changes_keep_days,
            },
            reset_minutes: raw.reset_minutes,
            mail: MailSettings::from_raw(raw.smtp_url, raw.smtp_from, raw.reset_url)?,
            mirror,
            upstream_settings,
            upstream_key_file: PathBuf::from(raw.upstream_key_file),
            session_days: raw.session_days,
            public_registration: raw.public_registration,
            log_format,
        })
    }
}

/// Figment errors can chain several; keep them on one line.
fn one_line(error: &rocket::figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_log_format_is_named_with_the_values_it_takes() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        let error = LogFormat::parse("jsn").unwrap_err();
        assert!(
            error.starts_with("log_format: \"jsn\"") && error.contains("\"text\" or \"json\""),
            "{error}"
        );
    }

    #[test]
    fn postgres_settings_that_are_not_urls_are_refused_not_taken_for_files() {
        for setting in [
            "host=127.0.0.1 user=clientele password=S3cret dbname=shop",
            "postgres:/clientele:pw@127.0.0.1:5432/shop",
            "postgresql:clientele:pw@host/shop",
            "  dbname=shop",
        ] {
            assert!(looks_like_a_broken_postgres_setting(setting), "{setting}");
        }
        for setting in [
            "data/clientele.db",
            "/srv/shop=old.db",
            "postgres://clientele:pw@127.0.0.1/shop?sslmode=disable",
            "POSTGRESQL://u:p@h/db",
        ] {
            assert!(!looks_like_a_broken_postgres_setting(setting), "{setting}");
        }
    }
}
