//! The typed application config, read from Rocket's figment (`Rocket.toml`, then `ROCKET_*`
//! environment variables) and validated once, before anything starts.

use std::path::PathBuf;

use rocket::figment::Figment;
use serde::Deserialize;

use crate::auth::{Argon2Config, PasswordHasher};
use crate::customer::Redaction;
use crate::error::StartupError;

/// The keys as they appear in `Rocket.toml`; see that file for what each means.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default = "default_database")]
    database: PathBuf,
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
}

fn default_max_failures() -> u32 {
    10
}
fn default_window_secs() -> u64 {
    300
}

fn default_database() -> PathBuf {
    PathBuf::from("data/clientele.db")
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
    /// The SQLite file (key `database`).
    pub database: PathBuf,
    /// Fill a newly created database with the demo customers (key `seed_demo`).
    pub seed_demo: bool,
    /// Fields withheld from every customer object (key `redact`).
    pub redaction: Redaction,
    /// Argon2id parameters for new hashes (keys `argon2_*`).
    pub hasher: PasswordHasher,
    /// Serve without keys on a non-loopback address when none exists (key `allow_anonymous`).
    pub allow_anonymous: bool,
    /// Browser origins allowed to call the API (key `cors_origins`), e.g. `https://shop.be`.
    pub cors_origins: Vec<String>,
    /// Failed logins allowed per account and per address in the window (`login_max_failures`).
    pub login_max_failures: u32,
    /// The window for counting failed logins (`login_window_secs`).
    pub login_window: std::time::Duration,
    /// How many password verifications may run at once (`login_workers`; 0 = half the cores).
    pub login_workers: usize,
}

impl Config {
    /// Reads and checks the config; the error names the key at fault.
    pub fn from_figment(figment: &Figment) -> Result<Config, StartupError> {
        let raw: RawConfig = figment
            .extract()
            .map_err(|error| StartupError::Config(one_line(&error)))?;
        if raw.database.as_os_str().is_empty() {
            return Err(StartupError::Config("database: the path is empty".into()));
        }
        let redaction = Redaction::from_names(&raw.redact).map_err(StartupError::Config)?;
        let hasher = PasswordHasher::new(Argon2Config {
            memory_kib: raw.argon2_memory_kib,
            iterations: raw.argon2_iterations,
            parallelism: raw.argon2_parallelism,
        })
        .map_err(StartupError::Config)?;
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
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let login_workers = if raw.login_workers == 0 {
            (cores / 2).max(1)
        } else {
            raw.login_workers
        };
        Ok(Config {
            database: raw.database,
            seed_demo: raw.seed_demo,
            redaction,
            hasher,
            allow_anonymous: raw.allow_anonymous,
            cors_origins: raw.cors_origins,
            login_max_failures: raw.login_max_failures,
            login_window: std::time::Duration::from_secs(raw.login_window_secs),
            login_workers,
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
