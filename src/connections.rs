//! The connections the server holds open, and which of them gives way to a new client.
//!
//! A connection is *waiting* while no request is in flight on it: from accept until its first
//! request head has been read, and again between requests (keep-alive), once the last byte of
//! the previous response has been handed to the kernel. When every connection slot is taken,
//! or `accept` fails for want of file descriptors, the server asks the connection that has been
//! waiting longest to close ([`Connections::give_way`]). A connection with a request in flight
//! (its body being read, its answer being made or written) is never asked: clients that stall
//! there are bounded by the body timeout instead.
//!
//! The state changes happen on the connection's own task (the request handler, the response
//! body, the socket's flush), so the task itself makes the final decision when asked: it closes
//! only if it is still waiting.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// No request in flight: waiting for a request head.
const WAITING: u8 = 0;
/// A request is being read or answered.
const BUSY: u8 = 1;
/// The response is complete; its last bytes may still be on their way to the socket.
const FLUSHING: u8 = 2;

/// Every open connection, for finding the one waiting longest.
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// One connection's state, shared by its task and [`Connections`].
pub struct Connection {
    id: u64,
    state: AtomicU8,
    /// When it began waiting (microseconds since [`Connections::epoch`]).
    waiting_since: AtomicU64,
    /// Asked to give way and not yet answered: not asked twice.
    asked: AtomicBool,
    give_way: Notify,
    closed: Notify,
    epoch: Instant,
}

impl Default for Connections {
    fn default() -> Self {
        Connections::new()
    }
}

impl Connections {
    pub fn new() -> Connections {
        Connections {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Registers a newly accepted connection (waiting for its first head); it is forgotten
    /// when the returned registration is dropped.
    pub fn open(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            state: AtomicU8::new(WAITING),
            waiting_since: AtomicU64::new(micros_since(self.epoch)),
            asked: AtomicBool::new(false),
            give_way: Notify::new(),
            closed: Notify::new(),
            epoch: self.epoch,
        });
        self.lock().insert(id, Arc::clone(&connection));
        Registration {
            connections: Arc::clone(self),
            connection,
        }
    }

    /// Asks the connection that has been waiting longest for a request head to close; returns
    /// it (to await [`Connection::closed`]), or `None` when every connection has a request in
    /// flight (or has been asked already).
    pub fn give_way(&self) -> Option<Arc<Connection>> {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|c| c.state.load(Ordering::Acquire) == WAITING)
            .filter(|c| !c.asked.load(Ordering::Acquire))
            .min_by_key(|c| (c.waiting_since.load(Ordering::Relaxed), c.id))?;
        oldest.asked.store(true, Ordering::Release);
        oldest.give_way.notify_one();
        Some(Arc::clone(oldest))
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        // The map stays consistent whatever panicked while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Connection {
    /// A request head has been read: the connection is busy until its response is written.
    pub fn request_started(&self) {
        self.state.store(BUSY, Ordering::Release);
    }

    /// The response body is finished (or dropped); its last bytes may still be buffered.
    pub fn response_finished(&self) {
        let _ = self
            .state
            .compare_exchange(BUSY, FLUSHING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Everything written so far has been handed to the socket.
    fn flushed(&self) {
        if self.state.load(Ordering::Acquire) == FLUSHING {
            self.waiting_since
                .store(micros_since(self.epoch), Ordering::Relaxed);
            self.state.store(WAITING, Ordering::Release);
        }
    }

    /// Resolves when [`Connections::give_way`] picked this connection. Then call
    /// [`Connection::should_close`].
    pub async fn asked_to_give_way(&self) {
        self.give_way.notified().await;
    }

    /// Whether the connection, asked to give way, is still waiting for a request head (and so
    /// must close); if a request has started since, it stays and may be asked again later.
    pub fn should_close(&self) -> bool {
        let waiting = self.state.load(Ordering::Acquire) == WAITING;
        if !waiting {
            self.asked.store(false, Ordering::Release);
        }
        waiting
    }

    /// Resolves once the connection has closed (its registration dropped).
    pub async fn closed(&self) {
        self.closed.notified().await;
    }
}

/// A connection's place in [`Connections`], removed when dropped.
pub struct Registration {
    connections: Arc<Connections>,
    connection: Arc<Connection>,
}

impl Registration {
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.connection.id);
        self.connection.closed.notify_one();
    }
}

/// A socket that tells its [`Connection`] when a finished response has been flushed.
pub struct Tracked<T> {
    io: T,
    connection: Arc<Connection>,
}

impl<T> Tracked<T> {
    pub fn new(io: T, connection: Arc<Connection>) -> Tracked<T> {
        Tracked { io, connection }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(context, buffer)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(context, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// hyper flushes the socket only once its own buffers are empty.
    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.io).poll_flush(context))?;
        self.connection.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_waiting_longest_gives_way_and_busy_ones_never_do() {
        let connections = Arc::new(Connections::new());
        let first = connections.open();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = connections.open();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let third = connections.open();
        first.connection().request_started();

        let asked = connections.give_way().map(|c| c.id);
        let next = connections.give_way().map(|c| c.id);

        assert_eq!(asked, Some(second.connection().id), "the oldest waiting");
        assert_eq!(next, Some(third.connection().id), "not asked twice");
        assert!(
            connections.give_way().is_none(),
            "the busy one is never asked"
        );
        assert!(second.connection().should_close());
        // A request started after it was asked: it stays, and may be asked again later.
        third.connection().request_started();
        assert!(!third.connection().should_close());
        third.connection().response_finished();
        third.connection().flushed();
        assert_eq!(
            connections.give_way().map(|c| c.id),
            Some(third.connection().id)
        );
        drop(second);
        assert_eq!(connections.len(), 2);
    }

    #[test]
    fn a_finished_response_waits_for_its_flush_before_the_connection_may_give_way() {
        let connections = Arc::new(Connections::new());
        let only = connections.open();
        only.connection().request_started();
        only.connection().response_finished();

        assert!(connections.give_way().is_none(), "still flushing");
        only.connection().flushed();
        assert!(connections.give_way().is_some());
    }
}
