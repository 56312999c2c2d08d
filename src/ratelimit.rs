//! Counting failed logins, per account and per client address, in a sliding window.
//!
//! In memory only: a restart forgets the counts, which is acceptable for a single small server
//! and keeps the store free of attacker-controlled writes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Beyond this many tracked subjects, expired ones are swept before adding another, so that
/// an attacker rotating names or addresses cannot grow the map without bound.
const SWEEP_ABOVE: usize = 10_000;

/// Failed attempts per subject (an account, an address) within `window`.
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures: usize::try_from(max_failures).unwrap_or(usize::MAX),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` to wait when any of `subjects` has used up its failures in the window.
    pub fn check(&self, subjects: &[&str], now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for subject in subjects {
            if let Some(times) = failures.get_mut(*subject) {
                self.expire(times, now);
                if times.len() >= self.max_failures {
                    if let Some(oldest) = times.front() {
                        wait = wait.max(self.window.saturating_sub(now - *oldest));
                    }
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            // Round up: "retry in 0 seconds" would invite an immediate, refused retry.
            Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        }
    }

    /// Records one failure against each of `subjects`.
    pub fn record_failure(&self, subjects: &[&str], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < self.window)
            });
        }
        for subject in subjects {
            let times = failures.entry((*subject).to_owned()).or_default();
            self.expire(times, now);
            times.push_back(now);
            // Only the newest `max_failures` matter for the decision.
            while times.len() > self.max_failures.max(1) {
                times.pop_front();
            }
        }
    }

    /// Forgets the failures of `subject` (after a successful login).
    pub fn clear(&self, subject: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(subject);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_last_allowed_failure_waits_out_the_window() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(
                limiter.check(&["a"], start + Duration::from_secs(i)),
                Ok(())
            );
            limiter.record_failure(&["a"], start + Duration::from_secs(i));
        }
        assert_eq!(
            limiter.check(&["a"], start + Duration::from_secs(10)),
            Err(50)
        );
        assert_eq!(
            limiter.check(&["b"], start + Duration::from_secs(10)),
            Ok(())
        );
        assert_eq!(
            limiter.check(&["a"], start + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn any_subject_over_its_limit_blocks() {
        let limiter = FailureLimiter::new(1, Duration::from_secs(10));
        let now = Instant::now();
        limiter.record_failure(&["ip:1"], now);
        assert!(limiter.check(&["account:x", "ip:1"], now).is_err());
        limiter.clear("ip:1");
        assert!(limiter.check(&["account:x", "ip:1"], now).is_ok());
    }
}
