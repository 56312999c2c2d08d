//! Failed logins counted in the database, so that every node shares them: ten failures are
//! ten whichever nodes they hit. The same rules as the in-memory [`crate::ratelimit`]
//! limiter: an attempt is counted *before* the password is checked, in one step with the
//! check of the limit, against each of its subjects (an account, an address); it is refunded
//! if it does not fail; a success also forgives the account's earlier failures.
//!
//! One step across nodes: the attempt's transaction takes an advisory lock per subject (in
//! one order, so two attempts never wait on each other crosswise), then counts and records.
//! Only SHA-256 digests of the subjects are stored (they name emails and addresses), and
//! rows older than the window are pruned as attempts come.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::conn::{Begin, Conn};
use super::{get, PooledClient};
use crate::store::Result;

/// The advisory locks of the login limits ("Cll1"), one per subject.
const LIMIT_LOCKS: i32 = 0x436C_6C31;

/// The longest window counted (a longer one is read as this): beyond, PostgreSQL's
/// intervals in microseconds would overflow.
const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A subject as stored: its SHA-256 digest.
fn digest(subject: &str) -> Vec<u8> {
    Sha256::digest(subject.as_bytes()).to_vec()
}

/// The advisory lock key of a subject's digest (two subjects may share one: they only wait
/// on each other a little).
fn lock_key(digest: &[u8]) -> i32 {
    let mut key = [0u8; 4];
    for (slot, byte) in key.iter_mut().zip(digest) {
        *slot = *byte;
    }
    i32::from_be_bytes(key)
}

fn micros(window: Duration) -> i64 {
    i64::try_from(window.min(MAX_WINDOW).as_micros()).unwrap_or(i64::MAX)
}

impl PooledClient {
    /// Counts an attempt against every one of `subjects`, unless one of them has used up its
    /// `max_failures` in the last `window`: then nothing is counted and `Err(seconds to
    /// wait, rounded up)`. `Ok` holds the attempt, for [`PooledClient::limit_refund`] or
    /// [`PooledClient::limit_succeeded`].
    pub fn limit_begin(
        &mut self,
        subjects: &[&str],
        max_failures: u32,
        window: Duration,
    ) -> Result<std::result::Result<i64, u64>> {
        let mut digests: Vec<Vec<u8>> = subjects.iter().map(|subject| digest(subject)).collect();
        digests.sort();
        digests.dedup();
        let mut keys: Vec<i32> = digests.iter().map(|d| lock_key(d)).collect();
        keys.sort_unstable();
        keys.dedup();
        let max = i64::from(max_failures.max(1));
        let window = micros(window);
        let conn = self.conn()?;
        super::retrying(conn, |conn| {
            let mut tx = conn.begin(Begin::Write)?;
            for key in &keys {
                tx.one("SELECT pg_advisory_xact_lock($1, $2)", &[&LIMIT_LOCKS, key])?;
            }
            // A few expired rows of anyone's, skipping those another attempt is pruning.
            tx.exec(
                "DELETE FROM login_failure WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM login_failure
                     WHERE at <= statement_timestamp() - $1::bigint * interval '1 microsecond'
                     LIMIT 64 FOR UPDATE SKIP LOCKED))",
                &[&window],
            )?;
            let mut wait: i64 = 0;
            for subject in &digests {
                // The oldest of the subject's newest `max` failures in the window, if it
                // has that many: the attempt waits until it leaves the window.
                if let Some(row) = tx.opt(
                    "SELECT (extract(epoch FROM at - (statement_timestamp() \
                         - $3::bigint * interval '1 microsecond')) * 1000000)::bigint \
                     FROM login_failure \
                     WHERE subject = $1 AND at > statement_timestamp() - $3::bigint * interval '1 microsecond' \
                     ORDER BY at DESC OFFSET $2::bigint - 1 LIMIT 1",
                    &[subject, &max, &window],
                )? {
                    wait = wait.max(get::<i64>(&row, 0)?.max(1));
                }
            }
            if wait > 0 {
                // Rolled back: a refused attempt counts against nobody.
                let wait = u64::try_from(wait).unwrap_or(u64::MAX);
                return Ok(Err(wait.div_ceil(1_000_000)));
            }
            let attempt: i64 = get(&tx.one("SELECT nextval('login_attempt')", &[])?, 0)?;
            tx.exec(
                "INSERT INTO login_failure (subject, attempt, at) \
                 SELECT subject, $2, statement_timestamp() FROM unnest($1::bytea[]) AS subject",
                &[&digests, &attempt],
            )?;
            tx.commit()?;
            Ok(Ok(attempt))
        })
    }

    /// The attempt did not fail (right password, or it could not be checked): it no longer
    /// counts against any of its subjects.
    pub fn limit_refund(&mut self, attempt: i64) -> Result<()> {
        self.conn()?
            .exec("DELETE FROM login_failure WHERE attempt = $1", &[&attempt])?;
        Ok(())
    }

    /// A successful login: the attempt is refunded, and `subject`'s (the account's) earlier
    /// failures are forgiven, in one transaction.
    pub fn limit_succeeded(&mut self, attempt: i64, subject: &str) -> Result<()> {
        let subject = digest(subject);
        let conn = self.conn()?;
        super::retrying(conn, |conn| {
            let mut tx = conn.begin(Begin::Write)?;
            tx.exec("DELETE FROM login_failure WHERE attempt = $1", &[&attempt])?;
            tx.exec("DELETE FROM login_failure WHERE subject = $1", &[&subject])?;
            tx.commit()
        })
    }
}

/// For `clientele limits`: of `subjects`, each one's failures in the last `window` and the
/// seconds until its next attempt is allowed (0: not locked).
pub fn status(
    conn: &mut Conn,
    subjects: &[&str],
    max_failures: u32,
    window: Duration,
) -> Result<Vec<(i64, u64)>> {
    let max = i64::from(max_failures.max(1));
    let window = micros(window);
    let mut status = Vec::new();
    for subject in subjects {
        let row = conn.one(
            "SELECT count(*),
                    COALESCE((SELECT (extract(epoch FROM at - (statement_timestamp() \
                          - $3::bigint * interval '1 microsecond')) * 1000000)::bigint
                      FROM login_failure
                      WHERE subject = $1
                        AND at > statement_timestamp() - $3::bigint * interval '1 microsecond'
                      ORDER BY at DESC OFFSET $2::bigint - 1 LIMIT 1), 0)
             FROM login_failure
             WHERE subject = $1 AND at > statement_timestamp() - $3::bigint * interval '1 microsecond'",
            &[&digest(subject), &max, &window],
        )?;
        let failures: i64 = get(&row, 0)?;
        let wait: i64 = get(&row, 1)?;
        status.push((
            failures,
            u64::try_from(wait.max(0)).unwrap_or(0).div_ceil(1_000_000),
        ));
    }
    Ok(status)
}

/// For `clientele limits`: how many subjects (accounts, addresses) have failures in the last
/// `window`, and how many of them are locked.
pub fn totals(conn: &mut Conn, max_failures: u32, window: Duration) -> Result<(i64, i64)> {
    let max = i64::from(max_failures.max(1));
    let window = micros(window);
    let row = conn.one(
        "SELECT count(*), count(*) FILTER (WHERE failures >= $1::bigint) FROM (
             SELECT subject, count(*) AS failures FROM login_failure
             WHERE at > statement_timestamp() - $2::bigint * interval '1 microsecond'
             GROUP BY subject) counted",
        &[&max, &window],
    )?;
    Ok((get(&row, 0)?, get(&row, 1)?))
}

/// For `clientele unlock`: forgets every failure of `subjects` (every node counts from this
/// table alone); how many were forgotten.
pub fn clear(conn: &mut Conn, subjects: &[&str]) -> Result<u64> {
    let digests: Vec<Vec<u8>> = subjects.iter().map(|subject| digest(subject)).collect();
    let row = conn.one(
        "WITH gone AS (DELETE FROM login_failure WHERE subject = ANY ($1) RETURNING 1)
         SELECT count(*) FROM gone",
        &[&digests],
    )?;
    let cleared: i64 = get(&row, 0)?;
    Ok(u64::try_from(cleared).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_stored_as_digests_and_locked_by_their_first_bytes() {
        let stored = digest("email:jo@shop.example");
        assert_eq!(stored.len(), 32);
        assert_ne!(stored, b"email:jo@shop.example".to_vec());
        assert_eq!(
            lock_key(&stored),
            i32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]])
        );
        assert_eq!(lock_key(&[]), 0);
    }

    #[test]
    fn a_huge_window_is_capped_rather_than_overflowing() {
        assert_eq!(micros(Duration::from_secs(60)), 60_000_000);
        assert_eq!(micros(Duration::MAX), micros(MAX_WINDOW));
    }
}
