//! The generation every cache of this node keys on, kept by `LISTEN clientele_changed`.
//!
//! A statement-level trigger on each table the caches depend on runs
//! `pg_notify('clientele_changed', '')`, so every commit that changes one, by any node or
//! program, reaches every listening node once committed. A thread of each node holds a
//! connection of its own to the primary, listening, and moves the generation on at each
//! notification; the node's own writes move it on right after their commit too
//! ([`super::PooledClient`]), so that its next request sees them without waiting for the
//! notification to come back.
//!
//! While that connection is down (the primary restarting or failing over), nothing is
//! heard, so the generation is `None` and the caches are bypassed; the thread reconnects
//! (within a second of the primary being back, through the URL's list of hosts) and moves
//! the generation on, since anything may have changed meanwhile.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

/// The channel the triggers notify.
pub const CHANNEL: &str = "clientele_changed";

/// How long the thread waits for a notification before asking the server whether the
/// connection still works.
const POLL: Duration = Duration::from_millis(500);
/// How long that question may take before the connection is given up for lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The generation and whether it can be trusted.
#[derive(Debug)]
pub struct Watch {
    counter: AtomicI64,
    live: AtomicBool,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            counter: AtomicI64::new(1),
            live: AtomicBool::new(false),
        }
    }
}

impl Watch {
    /// The current generation, or `None` while changes cannot be heard.
    pub fn generation(&self) -> Option<i64> {
        if self.live.load(Ordering::SeqCst) {
            Some(self.counter.load(Ordering::SeqCst))
        } else {
            None
        }
    }

    /// Something changed (or may have).
    pub fn bump(&self) {
        self.counter.fetch_add(1, Ordering::SeqCst);
    }

    fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
    }
}

/// Starts listening on `client` (a connection to the primary) and hands it to a thread of its
/// own, which keeps `watch` until the last handle on it is dropped.
pub fn start(mut client: Client, config: Arc<Config>, watch: &Arc<Watch>) -> Result<(), String> {
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| super::describe_error(&e))?;
    watch.set_live(true);
    let weak = Arc::downgrade(watch);
    std::thread::Builder::new()
        .name("clientele-pg-watch".into())
        .spawn(move || keep_watching(client, &config, &weak))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn keep_watching(mut client: Client, config: &Config, watch: &Weak<Watch>) {
    loop {
        let lost = match listen(&mut client, watch) {
            // Every handle on the database is gone: so is the need to watch it.
            Ok(()) => return,
            Err(error) => error,
        };
        let Some(current) = watch.upgrade() else {
            return;
        };
        current.set_live(false);
        drop(current);
        log::warn!(
            "PostgreSQL: lost the connection that hears other nodes' changes ({}); caches are \
             off until it is back",
            super::describe_error(&lost)
        );
        // Closing a dead connection can wait for the network: not on this thread.
        let _ = std::thread::Builder::new()
            .name("clientele-pg-close".into())
            .spawn(move || drop(client));
        client = match reconnect(config, watch) {
            Some(client) => client,
            None => return,
        };
        let Some(current) = watch.upgrade() else {
            return;
        };
        // Anything may have changed while nobody listened.
        current.bump();
        current.set_live(true);
        log::info!("PostgreSQL: hearing other nodes' changes again; caches are back on");
    }
}

/// Moves the generation on at each notification until the connection fails (`Err`) or the
/// last handle on `watch` is dropped (`Ok`).
fn listen(client: &mut Client, watch: &Weak<Watch>) -> Result<(), postgres::Error> {
    loop {
        let Some(current) = watch.upgrade() else {
            return Ok(());
        };
        let mut heard = 0;
        {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(POLL);
            // At most a few before looking at `watch` again, so a steady stream of
            // notifications cannot keep a dropped database watched.
            while heard < 64 {
                match waiting.next()? {
                    Some(_) => {
                        current.bump();
                        heard += 1;
                    }
                    None => break,
                }
            }
        }
        drop(current);
        if heard == 0 {
            // Quiet, or the server is gone without a word: ask it.
            client.is_valid(PING_TIMEOUT)?;
        }
    }
}

/// A new listening connection, trying again (every 100 ms at first, then every second)
/// until one is had, or `None` once nobody needs it any more.
fn reconnect(config: &Config, watch: &Weak<Watch>) -> Option<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if watch.strong_count() == 0 {
            return None;
        }
        let attempt = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(client)
        });
        match attempt {
            Ok(client) => return Some(client),
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
