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
        Ok(Config {
            database: raw.database,
            seed_demo: raw.seed_demo,
            redaction,
            hasher,
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
