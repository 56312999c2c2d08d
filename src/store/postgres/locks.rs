//! Session-level advisory locks that keep the nodes of one database in step in mirror mode,
//! each on a connection of its own (never a pooled one, which would carry the lock back to
//! the pool):
//! - [`SYNC_LEADER`]: the node holding it runs the periodic syncs, the others stand by. If
//!   the leader dies, its session ends, the lock with it, and another node takes it at its
//!   next try.
//! - [`MIRROR_TURN`]: held by a sync from its fetch to its commit and by a forwarded write
//!   from sending it to storing the master's answer, whatever node they run on, so that a
//!   sync that fetched before a write never commits after it. [`TurnLock`] waits for it as
//!   a future and gives it back on every path (an error, a panic: the guard's drop).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::NoTls;

use super::conn::Conn;
use super::get;
use crate::store::{Error, Result};

/// The advisory lock of the node that runs the syncs ("CltLeadr").
pub const SYNC_LEADER: i64 = 0x436C_744C_6561_6472;
/// The advisory lock syncs and forwarded writes take in turn, on every node ("CltTurn_").
pub const MIRROR_TURN: i64 = 0x436C_7454_7572_6E5F;

/// How often a waiter asks again for a lock another node holds.
const POLL: Duration = Duration::from_millis(50);

/// An advisory lock on a connection of its own, made when first needed. Blocking: use it
/// off the async workers.
pub struct AdvisoryLock {
    config: Arc<postgres::Config>,
    key: i64,
    conn: Option<Conn>,
    held: bool,
}

impl AdvisoryLock {
    pub fn new(config: Arc<postgres::Config>, key: i64) -> AdvisoryLock {
        AdvisoryLock {
            config,
            key,
            conn: None,
            held: false,
        }
    }

    /// Takes the lock if it is free; `true` when this connection holds it (taken now, or
    /// still held: its session answers). A connection that no longer answers has lost the
    /// lock with its session: a new one is made and tries again.
    pub fn try_hold(&mut self) -> Result<bool> {
        if self.held {
            let alive = self
                .conn
                .as_mut()
                .is_some_and(|conn| conn.one("SELECT 1", &[]).is_ok());
            if alive {
                return Ok(true);
            }
            self.conn = None;
            self.held = false;
        }
        if self.conn.as_ref().is_none_or(Conn::is_broken) {
            self.conn = Some(Conn::new(self.config.connect(NoTls)?));
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Unavailable("not connected".into()))?;
        let taken = conn
            .one("SELECT pg_try_advisory_lock($1)", &[&self.key])
            .and_then(|row| get::<bool>(&row, 0));
        match taken {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(error) => {
                self.conn = None;
                Err(error)
            }
        }
    }

    /// Waits (blocking) until the lock is had, asking every [`POLL`].
    pub fn hold(&mut self) -> Result<()> {
        while !self.try_hold()? {
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Gives the lock back. Should that fail, the connection is dropped: its session ends,
    /// and the lock with it.
    pub fn release(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.held) {
            return Ok(());
        }
        let released = match self.conn.as_mut() {
            Some(conn) => conn
                .one("SELECT pg_advisory_unlock($1)", &[&self.key])
                .map(|_| ()),
            None => Ok(()),
        };
        if released.is_err() {
            self.conn = None;
        }
        released
    }
}

/// The turn the nodes share ([`MIRROR_TURN`]): one connection per node, kept between turns.
/// Within a node, the mirror's own mutex lets one holder at a time ask for it.
#[derive(Clone)]
pub struct TurnLock {
    config: Arc<postgres::Config>,
    idle: Arc<Mutex<Option<AdvisoryLock>>>,
}

/// The turn, held until dropped; dropping it gives it back (on a thread of its own, since a
/// guard may be dropped on an async worker, or while a panic unwinds).
pub struct TurnGuard {
    lock: Option<AdvisoryLock>,
    idle: Arc<Mutex<Option<AdvisoryLock>>>,
}

impl TurnLock {
    pub fn new(config: Arc<postgres::Config>) -> TurnLock {
        TurnLock {
            config,
            idle: Arc::new(Mutex::new(None)),
        }
    }

    fn take_idle(&self) -> AdvisoryLock {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .unwrap_or_else(|| AdvisoryLock::new(Arc::clone(&self.config), MIRROR_TURN))
    }

    fn put_back(idle: &Mutex<Option<AdvisoryLock>>, lock: AdvisoryLock) {
        let mut slot = idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            *slot = Some(lock);
        }
    }

    /// Waits for the turn as a future (each try on the blocking pool, a round trip): the
    /// guard, or `None` when `patience` passed first.
    pub async fn acquire(&self, patience: Option<Duration>) -> Result<Option<TurnGuard>> {
        let started = Instant::now();
        loop {
            let lock = self.take_idle();
            let (lock, held) = tokio::task::spawn_blocking(move || {
                let mut lock = lock;
                let held = lock.try_hold();
                (lock, held)
            })
            .await
            .map_err(|e| Error::Unavailable(format!("the turn could not be asked for: {e}")))?;
            match held {
                Ok(true) => {
                    return Ok(Some(TurnGuard {
                        lock: Some(lock),
                        idle: Arc::clone(&self.idle),
                    }))
                }
                Ok(false) => TurnLock::put_back(&self.idle, lock),
                Err(error) => return Err(error),
            }
            if patience.is_some_and(|patience| started.elapsed() >= patience) {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the turn, blocking (the command-line tools); `waiting` is called first when
    /// another holds it.
    pub fn acquire_blocking(&self, waiting: impl FnOnce()) -> Result<TurnGuard> {
        let mut lock = self.take_idle();
        if !lock.try_hold()? {
            waiting();
            lock.hold()?;
        }
        Ok(TurnGuard {
            lock: Some(lock),
            idle: Arc::clone(&self.idle),
        })
    }
}

impl Drop for TurnGuard {
    fn drop(&mut self) {
        let Some(mut lock) = self.lock.take() else {
            return;
        };
        let idle = Arc::clone(&self.idle);
        let released = std::thread::Builder::new()
            .name("clientele-turn".into())
            .spawn(move || {
                if lock.release().is_ok() {
                    TurnLock::put_back(&idle, lock);
                }
            });
        if let Err(error) = released {
            log::warn!("the turn the nodes share could not be given back: {error}");
        }
    }
}
