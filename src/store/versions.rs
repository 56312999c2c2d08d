//! What changed, and since when: the versions the memo of answers keys on, per customer.
//!
//! A commit used to empty every cache of answers at once, so reads beside a stream of
//! account updates were all built afresh. Here each published change carries what it
//! touched, and an answer made at [`Stamp`] `m` stays good for as long as nothing it depends
//! on ([`Scope`]) changed after `m`:
//! - every answer depends on the API keys (one revoked or changed may no longer be let in);
//!   one made for a customer session depends on the sessions too;
//! - one customer's answer (a lookup by id) depends on that customer's row;
//! - any other list answer (the whole list, a page, a lookup by email) on every customer;
//! - everything depends on an unknown change (another program's commit whose effect cannot
//!   be told, a database restored under the server, the first look at it).
//!
//! A stamp is read before the data an answer is made from, and a change is published after
//! its commit, with a higher epoch: so an answer is never taken for fresher than the data it
//! was made from. The per-customer epochs are kept for the most recently changed customers
//! only; past that, all older answers for single customers count as changed (a floor).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// When an answer was made: the epoch read before its data was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub u64);

/// What an answer depends on, besides the keys, the sessions and unknown changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Nothing more: a shape of answer that holds no customer data.
    Keys,
    /// One customer's row.
    Customer(i64),
    /// Any customer's row (a list, a page, a search).
    Customers,
}

/// Which customers a commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    None,
    Some(Vec<i64>),
    /// Too many to list, or not known.
    All,
}

/// A change to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Anything may have changed.
    pub everything: bool,
    /// API keys changed.
    pub keys: bool,
    /// Sessions ended or changed (a new one changes no answer).
    pub sessions: bool,
    pub rows: Rows,
}

impl Change {
    pub fn everything() -> Change {
        Change {
            everything: true,
            keys: true,
            sessions: true,
            rows: Rows::All,
        }
    }

    fn is_empty(&self) -> bool {
        !self.everything && !self.keys && !self.sessions && self.rows == Rows::None
    }
}

/// Shards of the per-customer epochs, so that checks on different customers rarely meet.
const SHARDS: usize = 16;
/// Customers remembered per shard; past that the shard starts over and the floor rises.
const ROWS_PER_SHARD: usize = 4096;

/// The versions of one database, as this server has seen them.
#[derive(Debug)]
pub struct Versions {
    epoch: AtomicU64,
    everything: AtomicU64,
    keys: AtomicU64,
    sessions: AtomicU64,
    customers: AtomicU64,
    /// Customers not remembered changed at or before this epoch.
    floor: AtomicU64,
    rows: [Mutex<HashMap<i64, u64>>; SHARDS],
    /// Whether changes can be seen at all; while not, nothing kept may be trusted.
    live: AtomicBool,
    publishing: Mutex<()>,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            epoch: AtomicU64::new(1),
            everything: AtomicU64::new(1),
            keys: AtomicU64::new(1),
            sessions: AtomicU64::new(1),
            customers: AtomicU64::new(1),
            floor: AtomicU64::new(1),
            rows: std::array::from_fn(|_| Mutex::default()),
            live: AtomicBool::new(false),
            publishing: Mutex::default(),
        }
    }
}

impl Versions {
    /// The stamp to give an answer about to be made, or `None` while changes cannot be seen.
    pub fn stamp(&self) -> Option<Stamp> {
        self.live
            .load(Ordering::Acquire)
            .then(|| Stamp(self.epoch.load(Ordering::Acquire)))
    }

    /// A number that moves whenever any customer (or anything unknown) changed: what the
    /// caches of list bodies without per-customer versions key on.
    pub fn customers_generation(&self) -> Option<i64> {
        self.generation(&self.customers)
    }

    /// A number that moves whenever an API key (or anything unknown) changed: what the cache
    /// of keys keys on.
    pub fn keys_generation(&self) -> Option<i64> {
        self.generation(&self.keys)
    }

    fn generation(&self, of: &AtomicU64) -> Option<i64> {
        self.live.load(Ordering::Acquire).then(|| {
            let at = of
                .load(Ordering::Acquire)
                .max(self.everything.load(Ordering::Acquire));
            i64::try_from(at).unwrap_or(i64::MAX)
        })
    }

    /// Whether an answer made at `made` for a customer session may still be given: no
    /// session ended since (besides [`Versions::fresh`]).
    pub fn fresh_for_sessions(&self, made: Stamp) -> bool {
        self.sessions.load(Ordering::Acquire) <= made.0
    }

    /// Whether an answer made at `made` with `scope` still describes the data.
    pub fn fresh(&self, made: Stamp, scope: Scope) -> bool {
        let made = made.0;
        if !self.live.load(Ordering::Acquire)
            || self.everything.load(Ordering::Acquire) > made
            || self.keys.load(Ordering::Acquire) > made
        {
            return false;
        }
        match scope {
            Scope::Keys => true,
            Scope::Customers => self.customers.load(Ordering::Acquire) <= made,
            Scope::Customer(id) => {
                if self.customers.load(Ordering::Acquire) <= made {
                    return true;
                }
                if self.floor.load(Ordering::Acquire) > made {
                    return false;
                }
                let shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
                shard.get(&id).is_none_or(|&changed| changed <= made)
            }
        }
    }

    /// Publishes a change, once committed: answers made before it that depend on it are no
    /// longer fresh.
    pub fn publish(&self, change: &Change) {
        if change.is_empty() {
            return;
        }
        let _turn = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.epoch.load(Ordering::Acquire) + 1;
        match &change.rows {
            Rows::None => {}
            Rows::All => {
                self.floor.store(next, Ordering::Release);
                self.customers.store(next, Ordering::Release);
            }
            Rows::Some(ids) => {
                for &id in ids {
                    let mut shard = self.shard(id).lock().unwrap_or_else(|e| e.into_inner());
                    if shard.len() >= ROWS_PER_SHARD {
                        shard.clear();
                        self.floor.store(next, Ordering::Release);
                    }
                    shard.insert(id, next);
                }
                self.customers.store(next, Ordering::Release);
            }
        }
        if change.keys || change.everything {
            self.keys.store(next, Ordering::Release);
        }
        if change.sessions || change.everything {
            self.sessions.store(next, Ordering::Release);
        }
        if change.everything {
            self.everything.store(next, Ordering::Release);
            self.customers.store(next, Ordering::Release);
            self.floor.store(next, Ordering::Release);
        }
        self.epoch.store(next, Ordering::Release);
    }

    /// Whether changes can be seen. Becoming live again publishes a change to everything:
    /// anything may have happened meanwhile.
    pub fn set_live(&self, live: bool) {
        if live && !self.live.load(Ordering::Acquire) {
            self.publish(&Change::everything());
        }
        self.live.store(live, Ordering::Release);
    }

    fn shard(&self, id: i64) -> &Mutex<HashMap<i64, u64>> {
        &self.rows[(id as u64 % SHARDS as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Versions {
        let versions = Versions::default();
        versions.set_live(true);
        versions
    }

    fn rows(ids: &[i64]) -> Change {
        Change {
            everything: false,
            keys: false,
            sessions: false,
            rows: Rows::Some(ids.to_vec()),
        }
    }

    #[test]
    fn a_customers_change_leaves_other_customers_answers_fresh() {
        let versions = live();
        let made = versions.stamp().unwrap();
        versions.publish(&rows(&[7]));
        assert!(!versions.fresh(made, Scope::Customer(7)));
        assert!(versions.fresh(made, Scope::Customer(8)));
        assert!(
            !versions.fresh(made, Scope::Customers),
            "lists hold every customer"
        );
        assert!(versions.fresh(made, Scope::Keys));
        // Made after the change: fresh again.
        let later = versions.stamp().unwrap();
        assert!(versions.fresh(later, Scope::Customer(7)));
        assert!(versions.fresh(later, Scope::Customers));
    }

    #[test]
    fn keys_and_unknown_changes_end_every_answer_sessions_only_sessions_answers() {
        for change in [
            Change {
                everything: false,
                keys: true,
                sessions: false,
                rows: Rows::None,
            },
            Change::everything(),
        ] {
            let versions = live();
            let made = versions.stamp().unwrap();
            let keys = versions.keys_generation();
            versions.publish(&change);
            for scope in [Scope::Keys, Scope::Customer(1), Scope::Customers] {
                assert!(!versions.fresh(made, scope), "{change:?} {scope:?}");
            }
            assert_ne!(versions.keys_generation(), keys);
        }
        let versions = live();
        let made = versions.stamp().unwrap();
        let (keys, customers) = (versions.keys_generation(), versions.customers_generation());
        versions.publish(&Change {
            everything: false,
            keys: false,
            sessions: true,
            rows: Rows::None,
        });
        assert!(versions.fresh(made, Scope::Customer(1)));
        assert!(versions.fresh(made, Scope::Customers));
        assert!(!versions.fresh_for_sessions(made));
        assert_eq!(versions.keys_generation(), keys);
        assert_eq!(versions.customers_generation(), customers);
    }

    #[test]
    fn nothing_is_fresh_while_changes_cannot_be_seen() {
        let versions = live();
        let made = versions.stamp().unwrap();
        versions.set_live(false);
        assert!(versions.stamp().is_none());
        assert!(!versions.fresh(made, Scope::Customer(1)));
        versions.set_live(true);
        assert!(
            !versions.fresh(made, Scope::Customer(1)),
            "coming back is a change to everything"
        );
    }

    #[test]
    fn forgetting_old_customers_raises_the_floor_so_nothing_is_taken_for_fresh() {
        let versions = live();
        let made = versions.stamp().unwrap();
        versions.publish(&rows(&[1]));
        let ids: Vec<i64> = (0..(SHARDS * ROWS_PER_SHARD * 2) as i64)
            .map(|i| i * 3 + 2)
            .collect();
        versions.publish(&rows(&ids));
        assert!(!versions.fresh(made, Scope::Customer(1)));
        assert!(!versions.fresh(made, Scope::Customer(4)), "below the floor");
        let after = versions.stamp().unwrap();
        assert!(versions.fresh(after, Scope::Customer(1)));
    }
}
