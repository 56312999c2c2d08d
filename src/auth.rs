//! Password hashing and verification.
//!
//! Passwords are stored only as Argon2id PHC strings (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
//! Plain text only ever lives in a [`Secret`], whose `Debug` prints nothing, so it cannot end up
//! in a log line through `{:?}`.

use std::fmt;
use std::thread;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A plain-text secret (a password or an API key). `Debug` never shows it, and it has no
/// `Display`, so it cannot be formatted into a message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is hashed or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The Argon2id cost parameters (config keys `argon2_memory_kib`, `argon2_iterations`,
/// `argon2_parallelism`). The defaults are OWASP's: 19 MiB, 2 passes, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Argon2Config {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Whether a stored value is already a hash this server understands (Argon2 in PHC form, or
/// bcrypt as PHP's `password_hash` writes it), rather than a legacy plain-text password.
pub fn is_hash(stored: &str) -> bool {
    stored.starts_with("$argon2") || is_bcrypt(stored)
}

/// `$2a$`, `$2b$` or `$2y$` followed by a two-digit cost.
pub fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| stored.starts_with(prefix))
}

/// Hashes passwords with the configured Argon2id parameters.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
}

/// Hashing failed; only happens with parameters Argon2 refuses, which start-up already checked.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordHasher {
    /// Checks the parameters; the error names the config key at fault.
    pub fn new(config: Argon2Config) -> Result<PasswordHasher, String> {
        if config.memory_kib < 8 * config.parallelism.max(1) {
            return Err(format!(
                "argon2_memory_kib: {} is too small (at least 8 KiB per lane)",
                config.memory_kib
            ));
        }
        if config.iterations < 1 {
            return Err("argon2_iterations: must be at least 1".into());
        }
        if !(1..=255).contains(&config.parallelism) {
            return Err("argon2_parallelism: must be from 1 to 255".into());
        }
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|error| format!("argon2 parameters: {error}"))?;
        Ok(PasswordHasher { params })
    }

    pub fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string for `password`, with a fresh random salt.
    pub fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| HashError(error.to_string()))
    }

    /// Hashes many passwords, spread over all cores. The result is in input order.
    pub fn hash_many(&self, passwords: &[Secret]) -> Result<Vec<String>, HashError> {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = passwords.len().div_ceil(threads).max(1);
        thread::scope(|scope| {
            let workers: Vec<_> = passwords
                .chunks(chunk)
                .map(|slice| {
                    scope.spawn(move || slice.iter().map(|p| self.hash(p)).collect::<Vec<_>>())
                })
                .collect();
            let mut hashes = Vec::with_capacity(passwords.len());
            for worker in workers {
                let results = worker
                    .join()
                    .map_err(|_| HashError("a hashing thread panicked".into()))?;
                for result in results {
                    hashes.push(result?);
                }
            }
            Ok(hashes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[test]
    fn hashes_are_argon2id_with_the_configured_parameters() {
        let hash = cheap().hash(&Secret::new("hunter2")).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(!hash.contains("hunter2"));
    }

    #[test]
    fn hash_many_keeps_the_order_and_salts_each() {
        let passwords: Vec<_> = (0..5).map(|i| Secret::new(format!("pw{i}"))).collect();
        let hashes = cheap().hash_many(&passwords).unwrap();
        assert_eq!(hashes.len(), 5);
        let hasher = cheap().argon2();
        for (password, hash) in passwords.iter().zip(&hashes) {
            let parsed = argon2::PasswordHash::new(hash).unwrap();
            use argon2::PasswordVerifier;
            assert!(hasher
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok());
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn bad_parameters_name_the_key() {
        let error = PasswordHasher::new(Argon2Config {
            memory_kib: 1,
            ..Argon2Config::default()
        })
        .unwrap_err();
        assert!(error.starts_with("argon2_memory_kib"), "{error}");
    }
}
