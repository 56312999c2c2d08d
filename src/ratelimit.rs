//! Counting failed logins, per account and per client address, in a sliding window.
//!
//! An attempt is counted *before* the password is checked, in one step with the check of the
//! limit, and refunded if it succeeds: a burst of parallel attempts cannot all pass a check
//! that would only be recorded after the slow verification.
//!
//! On SQLite (one node) the counts live in memory ([`FailureLimiter`]): a restart forgets them,
//! which is acceptable for a single small server and keeps the file free of attacker-controlled
//! writes. The memory is bounded: subjects are kept as fixed-size digests (a client chooses the
//! email it sends, up to the body limit), and at most [`MAX_SUBJECTS`] are tracked. On
//! PostgreSQL every node shares them in the database (`store/postgres/limits.rs`), so that ten
//! failures are ten whichever nodes they hit: [`Limits`] is either.

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

fn key(subject: &str) -> SubjectKey {
    let digest = Sha256::digest(subject.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// An attempt counted against its subjects, until it is refunded.
#[derive(Debug)]
pub struct Attempt {
    subjects: Vec<SubjectKey>,
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
        let keys: Vec<SubjectKey> = subjects.iter().map(|subject| key(subject)).collect();
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
        Ok(Attempt {
            subjects: keys,
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
    /// failures are forgiven.
    pub fn succeeded(&self, attempt: Attempt, subject: &str) {
        self.refund(attempt);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&key(subject));
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

/// Login (and reset) limits as the routes use them: in this process's memory on SQLite, in
/// the database on PostgreSQL, with the same rules.
pub struct Limits {
    kind: Kind,
    max_failures: u32,
    window: Duration,
}

enum Kind {
    Memory(FailureLimiter),
    Shared(crate::store::postgres::Pg),
}

/// An attempt counted, until refunded or forgiven.
pub enum Counted {
    Memory(Attempt),
    Shared(i64),
}

impl Limits {
    pub fn new(store: &crate::store::Store, max_failures: u32, window: Duration) -> Limits {
        let kind = match store {
            crate::store::Store::Postgres(pg) => Kind::Shared(pg.clone()),
            crate::store::Store::Sqlite(_) => {
                Kind::Memory(FailureLimiter::new(max_failures, window))
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
            Kind::Memory(limiter) => limiter
                .begin(subjects, Instant::now())
                .map(Counted::Memory)
                .map_err(refused),
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

    /// The attempt did not fail (or could not be checked): it no longer counts.
    pub async fn refund(&self, attempt: Counted) {
        match (&self.kind, attempt) {
            (Kind::Memory(limiter), Counted::Memory(attempt)) => limiter.refund(attempt),
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

    /// A successful login: refunded, and `subject`'s (the account's) failures forgiven.
    pub async fn succeeded(&self, attempt: Counted, subject: &str) {
        match (&self.kind, attempt) {
            (Kind::Memory(limiter), Counted::Memory(attempt)) => {
                limiter.succeeded(attempt, subject);
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
        limiter.succeeded(third, "account");
        assert!(limiter.begin(&["account"], now).is_ok());
        assert!(limiter.begin(&["account"], now).is_ok());
        // The address keeps its one real failure.
        assert!(limiter.begin(&["ip"], now).is_ok());
        assert!(limiter.begin(&["ip"], now).is_err());
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
