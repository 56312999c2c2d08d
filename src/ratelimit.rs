//! Counting failed logins, per account and per client address, in a sliding window.
//!
//! An attempt is counted *before* the password is checked, in one step with the check of the
//! limit, and refunded if it succeeds: a burst of parallel attempts cannot all pass a check
//! that would only be recorded after the slow verification.
//!
//! On SQLite (one node) the counts are taken in memory ([`FailureLimiter`]): atomic, and no
//! write before the password check. What failed is then written to the database
//! (`store/sqlite/limits.rs`), so that `clientele limits` and `unlock` reach it from their own
//! process and a restart counts it again; `unlock` leaves a mark that this server reads before
//! refusing a subject. The memory is bounded: subjects are kept as fixed-size digests (a
//! client chooses the email it sends, up to the body limit), and at most [`MAX_SUBJECTS`] are
//! tracked. On PostgreSQL every node shares them in the database
//! (`store/postgres/limits.rs`), so that ten failures are ten whichever nodes they hit:
//! [`Limits`] is either.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The most subjects (accounts and addresses) tracked at once: about 200 bytes each, so a few
/// megabytes at most. When full, expired subjects are dropped first, then the one whose last
/// failure is oldest.
pub const MAX_SUBJECTS: usize = 50_000;

/// A subject's name, digested: the same size whatever the client sent.
type SubjectKey = [u8; 16];

/// A subject's SHA-256 digest, as the database stores it.
type Digest32 = [u8; 32];

fn digest(subject: &str) -> Digest32 {
    Sha256::digest(subject.as_bytes()).into()
}

/// Whether `subject` is an identifier as typed (an email or login that matches no account),
/// as opposed to an account (`customer:ID`) or an address.
fn typed_identifier(subject: &str) -> bool {
    let subject = subject.strip_prefix("reset:").unwrap_or(subject);
    subject.starts_with("email:") || subject.starts_with("login:")
}

/// The key the memory counts a subject under: the first half of its digest.
fn key_of(digest: &Digest32) -> SubjectKey {
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

fn key(subject: &str) -> SubjectKey {
    key_of(&digest(subject))
}

/// An attempt counted against its subjects, until it is refunded.
#[derive(Debug)]
pub struct Attempt {
    subjects: Vec<SubjectKey>,
    /// The subjects' whole digests, for the database.
    digests: Vec<Digest32>,
    at: Instant,
}

/// Failed attempts per subject (an account, an address) within `window`.
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    capacity: usize,
    failures: Mutex<HashMap<SubjectKey, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter::with_capacity(max_failures, window, MAX_SUBJECTS)
    }

    /// A limiter that tracks at most `capacity` subjects.
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX).max(1),
            window,
            capacity: capacity.max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt against every one of `subjects`, unless one of them has used up its
    /// failures in the window: then nothing is counted and `Err(seconds to wait)`.
    pub fn begin(&self, subjects: &[&str], now: Instant) -> Result<Attempt, u64> {
        let digests: Vec<Digest32> = subjects.iter().map(|subject| digest(subject)).collect();
        let keys: Vec<SubjectKey> = digests.iter().map(key_of).collect();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for subject in &keys {
            if let Some(times) = failures.get_mut(subject) {
                self.expire(times, now);
                if times.len() >= self.max_failures {
                    if let Some(oldest) = times.front() {
                        wait = wait.max(self.window.saturating_sub(now - *oldest));
                    }
                }
            }
        }
        if !wait.is_zero() {
            // Round up: "retry in 0 seconds" would invite an immediate, refused retry.
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        for subject in &keys {
            if !failures.contains_key(subject) && failures.len() >= self.capacity {
                self.make_room(&mut failures, now);
            }
            let times = failures.entry(*subject).or_default();
            times.push_back(now);
            // Only the newest `max_failures` matter for the decision.
            while times.len() > self.max_failures {
                times.pop_front();
            }
        }
        // What a visitor typed for an account that does not exist (`email:...`,
        // `login:...`) is counted here only, never written: an unsalted digest in the file
        // would let whoever reads it test guesses of it (a password typed into the email
        // field) at SHA-256 speed. Existing accounts are `customer:ID`.
        let digests = subjects
            .iter()
            .zip(digests)
            .filter(|(subject, _)| !typed_identifier(subject))
            .map(|(_, digest)| digest)
            .collect();
        Ok(Attempt {
            subjects: keys,
            digests,
            at: now,
        })
    }

    /// The attempt did not fail (right password, or it could not be checked): it no longer
    /// counts against any of its subjects.
    pub fn refund(&self, attempt: Attempt) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for subject in &attempt.subjects {
            if let Some(times) = failures.get_mut(subject) {
                if let Some(index) = times.iter().rposition(|at| *at == attempt.at) {
                    times.remove(index);
                }
                if times.is_empty() {
                    failures.remove(subject);
                }
            }
        }
    }

    /// A successful login: the attempt is refunded, and `subject`'s (the account's) earlier
    /// failures are forgiven. Whether it had any.
    pub fn succeeded(&self, attempt: Attempt, subject: &str) -> bool {
        self.refund(attempt);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&key(subject)).is_some()
    }

    /// Forgets the failures of `subject` counted at or before `until` (`clientele unlock`).
    /// Whether there were any.
    fn forget_until(&self, subject: SubjectKey, until: Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = failures.get_mut(&subject) else {
            return false;
        };
        let before = times.len();
        times.retain(|at| *at > until);
        let forgot = times.len() < before;
        if times.is_empty() {
            failures.remove(&subject);
        }
        forgot
    }

    /// Counts again a failure of `subject` at `at` (read back from the database at start-up),
    /// oldest first.
    fn restore(&self, subject: SubjectKey, at: Instant, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !failures.contains_key(&subject) && failures.len() >= self.capacity {
            self.make_room(&mut failures, now);
        }
        let times = failures.entry(subject).or_default();
        times.push_back(at);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    /// How many subjects are tracked now.
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Drops expired subjects; if none had expired, the one whose last failure is oldest.
    fn make_room(&self, failures: &mut HashMap<SubjectKey, VecDeque<Instant>>, now: Instant) {
        failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|last| now.duration_since(*last) < self.window)
        });
        if failures.len() < self.capacity {
            return;
        }
        let oldest = failures
            .iter()
            .min_by_key(|(_, times)| times.back().copied())
            .map(|(subject, _)| *subject);
        if let Some(oldest) = oldest {
            failures.remove(&oldest);
        }
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
    }
}

/// Login (and reset) limits as the routes use them: counted in this process's memory and
/// written to the database as they fail on SQLite, in the database on PostgreSQL, with the
/// same rules.
pub struct Limits {
    kind: Kind,
    max_failures: u32,
    window: Duration,
}

enum Kind {
    Local {
        memory: FailureLimiter,
        db: crate::store::sqlite::Db,
    },
    Shared(crate::store::postgres::Pg),
}

/// An attempt counted, until refunded or forgiven.
pub enum Counted {
    Local(Attempt),
    Shared(i64),
}

/// Now, in milliseconds since 1970, as `login_failure` counts time on SQLite.
fn now_millis() -> i64 {
    i64::try_from(crate::clock::millis(std::time::SystemTime::now())).unwrap_or(i64::MAX)
}

/// The instant `millis` (since 1970) was, as far as this process can tell: now, for a time
/// not in the past.
fn instant_of(millis: i64, now: Instant, now_millis: i64) -> Instant {
    let ago = u64::try_from(now_millis.saturating_sub(millis)).unwrap_or(0);
    now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
}

impl Limits {
    /// The limits for `store`. On SQLite the failures of the last window that the database
    /// holds are counted again: a restart does not clear a lock.
    pub fn new(store: &crate::store::Store, max_failures: u32, window: Duration) -> Limits {
        let kind = match store {
            crate::store::Store::Postgres(pg) => Kind::Shared(pg.clone()),
            crate::store::Store::Sqlite(db) => {
                let memory = FailureLimiter::new(max_failures, window);
                let since =
                    now_millis().saturating_sub(crate::store::sqlite::window_millis(window));
                let stored = db.connection().map_err(|e| e.to_string()).and_then(|conn| {
                    crate::store::sqlite::limits::since(&conn, since).map_err(|e| e.to_string())
                });
                match stored {
                    Ok(failures) => {
                        let (now, now_ms) = (Instant::now(), now_millis());
                        for (digest, at) in failures {
                            memory.restore(key_of(&digest), instant_of(at, now, now_ms), now);
                        }
                    }
                    Err(error) => {
                        log::warn!(
                            "could not read the failed logins kept in the database: {error}"
                        );
                    }
                }
                Kind::Local {
                    memory,
                    db: db.clone(),
                }
            }
        };
        Limits {
            kind,
            max_failures,
            window,
        }
    }

    /// Counts an attempt against every one of `subjects`, unless one has used up its
    /// allowance: then 429 with the seconds to wait, and nothing is counted.
    pub async fn begin(&self, subjects: &[&str]) -> Result<Counted, ApiError> {
        let refused = |retry_after| ApiError::TooManyAttempts { retry_after };
        match &self.kind {
            Kind::Local { memory, db } => match memory.begin(subjects, Instant::now()) {
                Ok(attempt) => Ok(Counted::Local(attempt)),
                // About to refuse: `clientele unlock` may have cleared a subject meanwhile.
                Err(wait) => match Self::unlocked(memory, db, subjects).await {
                    true => memory
                        .begin(subjects, Instant::now())
                        .map(Counted::Local)
                        .map_err(refused),
                    false => Err(refused(wait)),
                },
            },
            Kind::Shared(pg) => {
                let subjects: Vec<String> = subjects.iter().map(|s| (*s).to_owned()).collect();
                let (max, window) = (self.max_failures, self.window);
                pg.run_client(move |client| {
                    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
                    client
                        .limit_begin(&subjects, max, window)
                        .map_err(ApiError::from)
                })
                .await?
                .map(Counted::Shared)
                .map_err(refused)
            }
        }
    }

    /// Forgets in memory what `clientele unlock` cleared in the database for `subjects`;
    /// whether anything was forgotten. A database that cannot be read forgets nothing.
    async fn unlocked(
        memory: &FailureLimiter,
        db: &crate::store::sqlite::Db,
        subjects: &[&str],
    ) -> bool {
        let digests: Vec<Digest32> = subjects.iter().map(|subject| digest(subject)).collect();
        let marks = db
            .run(move |conn| crate::store::sqlite::limits::unlocks(conn, &digests))
            .await;
        let marks = match marks {
            Ok(marks) => marks,
            Err(error) => {
                log::warn!("could not read the unlocked accounts: {error}");
                return false;
            }
        };
        let (now, now_ms) = (Instant::now(), now_millis());
        let mut forgot = false;
        for (digest, at) in marks {
            forgot |= memory.forget_until(key_of(&digest), instant_of(at, now, now_ms));
        }
        forgot
    }

    /// The attempt failed (wrong password, unknown account), or counts for good (a reset
    /// request): it stays counted. On SQLite it is written to the database now, for the tools
    /// and a restart; a write that fails is logged, and the attempt still counts here.
    pub async fn failed(&self, attempt: Counted) {
        let (Kind::Local { db, .. }, Counted::Local(attempt)) = (&self.kind, attempt) else {
            return;
        };
        let window = crate::store::sqlite::window_millis(self.window);
        let digests = attempt.digests;
        let written = db
            .run(move |conn| {
                crate::store::sqlite::limits::record(conn, &digests, now_millis(), window)
            })
            .await;
        if let Err(error) = written {
            log::warn!("a failed login could not be written to the database: {error}");
        }
    }

    /// The attempt did not fail (or could not be checked): it no longer counts.
    pub async fn refund(&self, attempt: Counted) {
        match (&self.kind, attempt) {
            (Kind::Local { memory, .. }, Counted::Local(attempt)) => memory.refund(attempt),
            (Kind::Shared(pg), Counted::Shared(attempt)) => {
                let refunded = pg
                    .run_client(move |client| client.limit_refund(attempt).map_err(ApiError::from))
                    .await;
                if let Err(error) = refunded {
                    log::warn!("a login attempt could not be refunded: {error}");
                }
            }
            _ => {}
        }
    }

    /// A successful login: refunded, and `subject`'s (the account's) failures forgiven. On
    /// SQLite the database is written only when the account had failures to forgive.
    pub async fn succeeded(&self, attempt: Counted, subject: &str) {
        match (&self.kind, attempt) {
            (Kind::Local { memory, db }, Counted::Local(attempt)) => {
                let had_failures = memory.succeeded(attempt, subject);
                if had_failures {
                    let digest = digest(subject);
                    let forgiven = db
                        .run(move |conn| crate::store::sqlite::limits::forgive(conn, &digest))
                        .await;
                    if let Err(error) = forgiven {
                        log::warn!("a successful login's account could not be cleared: {error}");
                    }
                }
            }
            (Kind::Shared(pg), Counted::Shared(attempt)) => {
                let subject = subject.to_owned();
                let forgiven = pg
                    .run_client(move |client| {
                        client
                            .limit_succeeded(attempt, &subject)
                            .map_err(ApiError::from)
                    })
                    .await;
                if let Err(error) = forgiven {
                    log::warn!("a successful login's account could not be cleared: {error}");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_last_allowed_failure_waits_out_the_window() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..3 {
            assert!(limiter
                .begin(&["a"], start + Duration::from_secs(i))
                .is_ok());
        }
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(limiter.begin(&["a"], at(10)).unwrap_err(), 50);
        assert!(limiter.begin(&["b"], at(10)).is_ok());
        assert!(limiter.begin(&["a"], at(60)).is_ok());
    }

    #[test]
    fn any_subject_over_its_limit_blocks_and_counts_nothing() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(10));
        let now = Instant::now();
        assert!(limiter.begin(&["ip:1"], now).is_ok());
        assert!(limiter.begin(&["account:x", "ip:1"], now).is_err());
        // The refused attempt did not count against the account.
        assert!(limiter.begin(&["account:x"], now).is_ok());
    }

    #[test]
    fn a_refunded_attempt_does_not_count_and_success_forgives_the_account() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(10));
        let now = Instant::now();
        limiter.begin(&["account", "ip"], now).unwrap();
        let second = limiter.begin(&["account", "ip"], now).unwrap();
        assert!(limiter.begin(&["ip"], now).is_err());
        limiter.refund(second);
        let third = limiter.begin(&["account", "ip"], now).unwrap();
        assert!(
            limiter.succeeded(third, "account"),
            "it had a failure to forgive"
        );
        assert!(limiter.begin(&["account"], now).is_ok());
        assert!(limiter.begin(&["account"], now).is_ok());
        // The address keeps its one real failure.
        assert!(limiter.begin(&["ip"], now).is_ok());
        assert!(limiter.begin(&["ip"], now).is_err());
    }

    #[test]
    fn an_unlock_forgets_the_failures_before_it_and_keeps_later_ones() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        limiter.begin(&["customer:1"], at(1)).unwrap();
        limiter.begin(&["customer:1"], at(2)).unwrap();
        assert!(limiter.begin(&["customer:1"], at(3)).is_err());

        assert!(limiter.forget_until(key("customer:1"), at(3)));
        assert!(
            !limiter.forget_until(key("customer:1"), at(3)),
            "nothing left"
        );

        limiter.begin(&["customer:1"], at(4)).unwrap();
        limiter.restore(key("customer:1"), at(5), at(5));
        assert!(
            limiter.begin(&["customer:1"], at(6)).is_err(),
            "restored counts"
        );
        assert!(!limiter.forget_until(key("customer:1"), at(3)));
        assert!(limiter.begin(&["customer:1"], at(6)).is_err());
    }

    #[test]
    fn huge_names_and_many_subjects_stay_within_the_bound() {
        let limiter = FailureLimiter::with_capacity(10, Duration::from_secs(300), 1_000);
        let now = Instant::now();
        let huge = "x".repeat(15_000);
        for n in 0..3_000 {
            let name = format!("email:{n}{huge}");
            limiter.begin(&[&name], now).unwrap();
        }
        assert!(limiter.tracked() <= 1_000, "{}", limiter.tracked());
        // Keys are digests: the 15 KB names are not kept.
        assert_eq!(std::mem::size_of::<SubjectKey>(), 16);
    }
}
