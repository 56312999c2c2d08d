//! Password hashing and verification.
//!
//! Passwords are stored only as Argon2id PHC strings (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
//! Plain text only ever lives in a [`Secret`], whose `Debug` prints nothing, so it cannot end up
//! in a log line through `{:?}`.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// The shortest new password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest new password, in bytes (Argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// The lowest zxcvbn score (0 to 4) a new password needs: 2 means it resists about 10^8
/// guesses, which Argon2id at the shipped cost makes thousands of core-hours offline.
const MIN_SCORE: u8 = 2;

/// Checks a new password (set through the API or `clientele passwd`): at least 8
/// characters, at most 1,024 bytes, and not easy to guess, judged by zxcvbn with `context`
/// (the customer's email, login and names) as words an attacker would try first. The error
/// is a sentence saying why, for the person choosing it.
pub fn check_new_password(password: &Secret, context: &[&str]) -> Result<(), String> {
    let text = password.expose();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "The new password is too short: use at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "The new password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    let context: Vec<&str> = context.iter().copied().filter(|c| !c.is_empty()).collect();
    let estimate = zxcvbn::zxcvbn(text, &context);
    if u8::from(estimate.score()) >= MIN_SCORE {
        return Ok(());
    }
    let why = estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| warning.to_string())
        .filter(|warning| !warning.is_empty())
        .unwrap_or_else(|| "it would be guessed quickly".into());
    Err(format!(
        "The new password is too easy to guess ({}): add more words or characters",
        why.trim_end_matches('.')
    ))
}

/// Largest costs accepted in a *stored* hash. A hash imported from elsewhere with absurd costs
/// would otherwise let one login attempt take gigabytes of memory or minutes of CPU.
const MAX_STORED_MEMORY_KIB: u32 = 256 * 1024;
const MAX_STORED_ITERATIONS: u32 = 64;
const MAX_BCRYPT_COST: u32 = 16;

/// The outcome of checking a password against what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Right password. `rehash`: the stored hash is bcrypt or weaker than the configured
    /// Argon2id parameters, and should be replaced by a fresh hash.
    Valid {
        rehash: bool,
    },
    Invalid,
}

/// Hashes passwords with the configured Argon2id parameters.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified against when an account does not exist so that
    /// "unknown account" takes as long as "wrong password".
    dummy: Arc<OnceLock<String>>,
    memory: Arc<MemoryPool>,
}

/// Argon2's working memory (19 MiB per hash by default), reused rather than allocated for
/// every hash: allocating and freeing blocks that size makes the C allocator keep them, and a
/// burst of logins then grew the process to a gigabyte. At most `keep` buffers stay allocated
/// between hashes; more may exist while more hashes run at once.
#[derive(Debug, Default)]
struct MemoryPool {
    idle: Mutex<Vec<Vec<Block>>>,
    /// How many hashes run at once: buffers kept between hashes, and threads for batches.
    concurrency: AtomicUsize,
}

impl MemoryPool {
    fn with<R>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> R) -> R {
        let reuse = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut buffer = match reuse {
            Some(buffer) if buffer.len() >= blocks => buffer,
            _ => vec![Block::new(); blocks],
        };
        let result = work(&mut buffer[..blocks]);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.concurrency.load(Ordering::Relaxed) {
                idle.push(buffer);
            }
        }
        result
    }
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
        let memory = MemoryPool::default();
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        memory.concurrency.store(cores, Ordering::Relaxed);
        Ok(PasswordHasher {
            params,
            dummy: Arc::new(OnceLock::new()),
            memory: Arc::new(memory),
        })
    }

    /// How many hashes may run at once: batches ([`Self::hash_many`], imports) use this many
    /// threads, and this many working buffers are kept between hashes. All cores by default
    /// (the import tool); the server sets its `login_workers`, so that start-up hashing
    /// runs on the main thread and memory stays at one buffer per login worker.
    pub fn limit_concurrency(&self, count: usize) {
        self.memory
            .concurrency
            .store(count.max(1), Ordering::Relaxed);
    }

    /// Frees the kept working buffers (after start-up hashing, which may have been the only
    /// hashing for a long while).
    pub fn release_buffers(&self) {
        if let Ok(mut idle) = self.memory.idle.lock() {
            idle.clear();
        }
    }

    /// See [`Self::limit_concurrency`].
    pub fn concurrency(&self) -> usize {
        self.memory.concurrency.load(Ordering::Relaxed)
    }

    /// Runs Argon2 over `password` and `salt` with the given parameters, in pooled memory.
    fn compute(
        &self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &Secret,
        salt: Salt<'_>,
    ) -> Result<Output, argon2::password_hash::Error> {
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let blocks = params.block_count();
        let argon2 = Argon2::new(algorithm, version, params);
        self.memory.with(blocks, |memory| {
            Output::init_with(length, |out| {
                argon2
                    .hash_password_into_with_memory(password.expose().as_bytes(), salt, out, memory)
                    .map_err(Into::into)
            })
        })
    }

    /// The PHC string for `password`, with a fresh random salt.
    pub fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let fail = |error: argon2::password_hash::Error| HashError(error.to_string());
        let output = self
            .compute(
                Algorithm::Argon2id,
                Version::V0x13,
                self.params.clone(),
                password,
                salt.as_salt(),
            )
            .map_err(fail)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(fail)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Checks `password` against a stored hash (`None`: the account has no password or does
    /// not exist; a dummy hash is verified instead so the time taken is the same).
    pub fn verify(&self, password: &Secret, stored: Option<&str>) -> Verdict {
        let Some(stored) = stored else {
            let dummy = self.dummy.get_or_init(|| {
                let random = SaltString::generate(&mut OsRng);
                self.hash(&Secret::new(random.as_str())).unwrap_or_default()
            });
            let _ = self.verify_argon2(password, dummy);
            return Verdict::Invalid;
        };
        if is_bcrypt(stored) {
            return verify_bcrypt(password, stored);
        }
        self.verify_argon2(password, stored)
    }

    fn verify_argon2(&self, password: &Secret, stored: &str) -> Verdict {
        let Ok(hash) = PasswordHash::new(stored) else {
            log::warn!("a stored password hash is not a valid PHC string; login refused");
            return Verdict::Invalid;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return Verdict::Invalid;
        };
        if params.m_cost() > MAX_STORED_MEMORY_KIB || params.t_cost() > MAX_STORED_ITERATIONS {
            log::warn!("a stored password hash has excessive Argon2 costs; login refused");
            return Verdict::Invalid;
        }
        let (Ok(algorithm), Some(salt), Some(expected)) =
            (Algorithm::try_from(hash.algorithm), hash.salt, hash.hash)
        else {
            return Verdict::Invalid;
        };
        let version = hash
            .version
            .map_or(Ok(Version::V0x13), Version::try_from)
            .unwrap_or(Version::V0x13);
        // `Output`'s equality is constant-time.
        match self.compute(algorithm, version, params.clone(), password, salt) {
            Ok(output) if output == expected => {}
            _ => return Verdict::Invalid,
        }
        let weaker = algorithm != Algorithm::Argon2id
            || params.m_cost() < self.params.m_cost()
            || params.t_cost() < self.params.t_cost()
            || params.p_cost() < self.params.p_cost();
        Verdict::Valid { rehash: weaker }
    }

    /// The parameters new hashes get, as the config keys name them.
    pub fn describe(&self) -> String {
        format!(
            "argon2_memory_kib = {}, argon2_iterations = {}, argon2_parallelism = {}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        )
    }

    /// Correct-password verifications per second that `workers` threads complete together
    /// in about `duration`: the most logins per second these parameters allow on them.
    pub fn verify_rate(&self, workers: usize, duration: Duration) -> Result<f64, HashError> {
        let password = Secret::new("a password to measure the rate with");
        let stored = self.hash(&password)?;
        let done = AtomicU64::new(0);
        let start = Instant::now();
        thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    while start.elapsed() < duration {
                        if matches!(self.verify(&password, Some(&stored)), Verdict::Valid { .. }) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // Counted as u64, shown as a rate: exact well past any count a run reaches.
        #[allow(clippy::cast_precision_loss)]
        Ok(done.into_inner() as f64 / start.elapsed().as_secs_f64())
    }

    /// Hashes many passwords, spread over all cores. The result is in input order.
    pub fn hash_many(&self, passwords: &[Secret]) -> Result<Vec<String>, HashError> {
        parallel_map(passwords, self.concurrency(), |password| {
            self.hash(password)
        })
        .into_iter()
        .collect()
    }
}

/// Applies `work` to every item on up to `threads` threads; results in input order. For
/// CPU-bound work such as hashing. With one thread, it runs on the caller's.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(work).collect();
    }
    let chunk = items.len().div_ceil(threads).max(1);
    let work = &work;
    thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|slice| scope.spawn(move || slice.iter().map(work).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(results) => results,
                // Re-raise a worker's panic in the caller, as a sequential map would.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// bcrypt as PHP writes it (`$2y$`, `$2b$`, `$2a$`); always to be replaced by Argon2id.
fn verify_bcrypt(password: &Secret, stored: &str) -> Verdict {
    let cost = stored
        .get(4..6)
        .and_then(|cost| cost.parse::<u32>().ok())
        .unwrap_or(u32::MAX);
    if cost > MAX_BCRYPT_COST {
        log::warn!("a stored bcrypt hash has an excessive cost; login refused");
        return Verdict::Invalid;
    }
    match bcrypt::verify(password.expose(), stored) {
        Ok(true) => Verdict::Valid { rehash: true },
        _ => Verdict::Invalid,
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
        // Five times the same password, then four others: only a salt of its own makes each
        // of the first five hashes differ.
        let passwords: Vec<_> = ["same"; 5]
            .into_iter()
            .map(String::from)
            .chain((0..4).map(|i| format!("pw{i}")))
            .map(Secret::new)
            .collect();
        let hashes = cheap().hash_many(&passwords).unwrap();
        assert_eq!(hashes.len(), passwords.len());
        // Checked with the argon2 crate's own verifier, not ours: hash i is password i's, and
        // not its neighbour's.
        let reference = Argon2::default();
        let matches = |password: &Secret, hash: &str| {
            use argon2::PasswordVerifier;
            let parsed = argon2::PasswordHash::new(hash).unwrap();
            reference
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
        };
        for (i, (password, hash)) in passwords.iter().zip(&hashes).enumerate() {
            assert!(matches(password, hash), "hash {i} is not password {i}'s");
            if i >= 5 {
                assert!(
                    !matches(&passwords[i - 1], hash),
                    "hash {i} is out of order"
                );
            }
        }
        let salts: std::collections::HashSet<String> = hashes
            .iter()
            .map(|hash| {
                let parsed = argon2::PasswordHash::new(hash).unwrap();
                parsed.salt.expect("a salt").as_str().to_owned()
            })
            .collect();
        assert_eq!(salts.len(), hashes.len(), "a salt each: {hashes:?}");
    }

    #[test]
    fn verify_accepts_the_right_password_only() {
        let hasher = cheap();
        let hash = hasher.hash(&Secret::new("right")).unwrap();
        assert_eq!(
            hasher.verify(&Secret::new("right"), Some(&hash)),
            Verdict::Valid { rehash: false }
        );
        assert_eq!(
            hasher.verify(&Secret::new("wrong"), Some(&hash)),
            Verdict::Invalid
        );
        assert_eq!(hasher.verify(&Secret::new("right"), None), Verdict::Invalid);
        assert_eq!(
            hasher.verify(&Secret::new("right"), Some("garbage")),
            Verdict::Invalid
        );
    }

    #[test]
    fn weaker_hashes_and_bcrypt_ask_for_a_rehash() {
        let weak = cheap().hash(&Secret::new("pw")).unwrap();
        let stronger = PasswordHasher::new(Argon2Config {
            memory_kib: 128,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap();
        assert_eq!(
            stronger.verify(&Secret::new("pw"), Some(&weak)),
            Verdict::Valid { rehash: true }
        );
        let bcrypt_hash = bcrypt::hash("pw", 4).unwrap().replacen("$2b$", "$2y$", 1);
        assert_eq!(
            cheap().verify(&Secret::new("pw"), Some(&bcrypt_hash)),
            Verdict::Valid { rehash: true }
        );
        assert_eq!(
            cheap().verify(&Secret::new("no"), Some(&bcrypt_hash)),
            Verdict::Invalid
        );
    }

    #[test]
    fn stored_hashes_with_absurd_costs_are_refused_without_running() {
        // Each would take minutes (or 4 GB) to run: refused, it answers at once. Run on a
        // thread of its own, so that a regression fails after the bound instead of hanging.
        let refused_within = |stored: String, bound: Duration| {
            let (sender, receiver) = std::sync::mpsc::channel();
            let started = Instant::now();
            let hash = stored.clone();
            std::thread::spawn(move || {
                let _ = sender.send(cheap().verify(&Secret::new("pw"), Some(&hash)));
            });
            let verdict = receiver
                .recv_timeout(bound)
                .unwrap_or_else(|_| panic!("still running after {bound:?}: {stored}"));
            assert_eq!(verdict, Verdict::Invalid, "{stored}");
            assert!(started.elapsed() < bound, "{stored}");
        };
        let bound = Duration::from_secs(1);
        refused_within(
            "$argon2id$v=19$m=4000000,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            bound,
        );
        refused_within(
            "$argon2id$v=19$m=1024,t=1000000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            bound,
        );
        // A well-formed bcrypt hash (the crate would run it) with its cost raised to 2^20 and
        // 2^31 rounds: a minute and days.
        let bcrypt = bcrypt::hash("pw", 4).unwrap();
        for cost in ["$20$", "$31$"] {
            refused_within(bcrypt.replacen("$04$", cost, 1), bound);
        }
    }

    #[test]
    fn verify_reads_hashes_made_elsewhere() {
        use argon2::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(32, 1, 1, None).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"legacy", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            cheap().verify(&Secret::new("legacy"), Some(&argon2i)),
            Verdict::Valid { rehash: true },
            "an Argon2i hash is accepted and upgraded to Argon2id"
        );
        assert_eq!(
            cheap().verify(&Secret::new("other"), Some(&argon2i)),
            Verdict::Invalid
        );
    }

    #[test]
    fn weak_new_passwords_are_refused_with_the_reason() {
        let check = |pw: &str| check_new_password(&Secret::new(pw), &["jdoe@example.com", "jdoe"]);
        assert!(check("short1!").unwrap_err().contains("too short"));
        assert!(check(&"x".repeat(1025)).unwrap_err().contains("too long"));
        assert!(check("password123").unwrap_err().contains("too easy"));
        assert!(check("jdoe@example.com1").unwrap_err().contains("too easy"));
        assert!(check("Correct-Horse-Battery-Staple-9").is_ok());
        assert!(check("lavande moulin 1987 rouge").is_ok());
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
