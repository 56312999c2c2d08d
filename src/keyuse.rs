//! When each API key was last used, for `clientele keys list`, without a database write per
//! request.
//!
//! Every request whose key is checked touches it here, in memory (by the key's row id); the
//! server in front does the same for the answers its memo and lane give without the app
//! ([`crate::memo`] keeps the key's id, which the app tells it in
//! [`crate::memo::KEY_HEADER`], with each answer). The times are written to the database
//! (`api_key_use`, never `api_key`, whose triggers end cached answers) at most once every
//! [`FLUSH_EVERY`] and when the server stops: `keys list` may be that much behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::store::Store;

/// How often, at most, the last uses are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// The last uses not written yet: key id to milliseconds since 1970.
#[derive(Default)]
pub struct KeyUses {
    pending: Mutex<HashMap<i64, u64>>,
}

impl KeyUses {
    /// Key `id` was used now.
    pub fn touch(&self, id: i64) {
        let now = crate::clock::millis(SystemTime::now());
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let last = pending.entry(id).or_insert(now);
        *last = (*last).max(now);
    }

    /// Writes the last uses not written yet. On failure they are kept for the next time
    /// (unless newer ones came meanwhile) and the error is logged.
    pub async fn flush(&self, db: &Store) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return;
        }
        let uses: Vec<(i64, String)> = taken
            .iter()
            .map(|(id, at)| (*id, crate::clock::utc_millis(*at)))
            .collect();
        let written = db.run(move |conn| conn.record_key_uses(&uses)).await;
        if let Err(error) = written {
            log::warn!("could not write when the API keys were last used: {error}");
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (id, at) in taken {
                let last = pending.entry(id).or_insert(at);
                *last = (*last).max(at);
            }
        }
    }

    /// Writes the last uses every [`FLUSH_EVERY`], for as long as the runtime runs.
    pub async fn flush_every_minute(self: std::sync::Arc<Self>, db: Store) {
        loop {
            rocket::tokio::time::sleep(FLUSH_EVERY).await;
            self.flush(&db).await;
        }
    }

    /// How many keys have a use not written yet (for tests).
    pub fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// The key a request was checked against, for the answer's [`crate::memo::KEY_HEADER`].
pub struct UsedKey(pub Option<i64>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_keeps_the_latest_time_of_each_key() {
        let uses = KeyUses::default();
        uses.touch(3);
        uses.touch(3);
        uses.touch(7);
        assert_eq!(uses.pending(), 2);
        let first = uses.pending.lock().unwrap()[&3];
        std::thread::sleep(Duration::from_millis(5));
        uses.touch(3);
        assert!(uses.pending.lock().unwrap()[&3] > first);
    }
}
