//! The HTTP server: accepts connections, reads requests with hyper, and hands each one to the
//! Rocket application in process.
//!
//! Rocket 0.5 binds its own listener and switches hyper's header timeout off, with no setting
//! to change either, so a client that never finishes its headers holds a connection (and a
//! file descriptor) forever, and there is no bound on how many connections are open. This
//! module owns the socket instead and keeps these bounds:
//! - a request head must arrive within `header_timeout_secs` (30 s), idle keep-alive included,
//!   and then its whole body within as long again (else a 408 and the connection is closed);
//! - at most `max_connections` connections are served at once. When all are taken (or
//!   `accept` runs out of file descriptors), the connection that has waited longest for a
//!   request head is closed to make room ([`crate::connections`]); one with a request in flight
//!   never is;
//! - the open-files limit is raised to the hard limit at start-up;
//! - request heads are at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] headers, bodies at most
//!   [`MAX_BODY`] bytes; HTTP/1.1 without `Host` is a 400; methods are case-sensitive.
//!
//! The Rocket app is the same one the tests drive ([`crate::rocket`]); it is reached through
//! Rocket's public in-process client, which runs the same fairings, routes and catchers as
//! Rocket's own server. Each request is logged here, with `apikey` masked. A request the app
//! has already answered at the current data version may be answered again from the memo of
//! small list responses ([`crate::memo`]) without reaching the app.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use rocket::http::{Header, Method};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket::{Build, Rocket};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::connections::{Connection, Connections, Tracked};
use crate::customer::ListFilter;
use crate::logging::LAUNCH;
use crate::memo::{Memo, Memoized, RequestKey};
use crate::metrics::{Answered, Metrics};
use crate::routes::customers::FILE_HEADER;
use crate::store::versions::{Scope, Stamp};
use crate::store::Store;
use crate::tls::Tls;

/// The largest request body read. The API's own limit (16 KiB, a 413 naming it) is below.
pub const MAX_BODY: usize = 64 * 1024;
/// The largest request head (request line and headers); more is a bare 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most headers in one request; more is a bare 431.
pub const MAX_HEADERS: usize = 100;
/// Connections served at once when `max_connections` is 0, if the open-files limit allows.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// File descriptors kept back from connections: the database, its WAL, logs, the listener.
const RESERVED_FILES: u64 = 128;
/// Bodies up to this size are read whole and sent with a `Content-Length`; larger ones stream.
const WHOLE_BODY: usize = 64 * 1024;
/// How much of a streamed body goes to the socket at a time.
const STREAM_CHUNK: usize = 256 * 1024;
/// How long the accept loop waits for a connection asked to give way (or for any slot) before
/// looking again; also its pause when out of file descriptors with nothing to close.
const GIVE_WAY_WAIT: Duration = Duration::from_millis(100);
/// The methods the app knows, spelled as RFC 9110 spells them: method names are
/// case-sensitive, while Rocket's parser ignores case (it would take `get` for GET).
const METHODS: [Method; 9] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Patch,
    Method::Trace,
    Method::Connect,
];

/// The server's bounds, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long in-flight responses may take to finish after SIGTERM or Ctrl-C.
    pub grace: Duration,
    /// Bytes for the memo of small list responses (an eighth of the response cache's).
    pub memo_bytes: usize,
}

/// Serves `rocket` (built by [`crate::rocket`]) on its configured address until SIGTERM or
/// Ctrl-C. Builds the runtime from the config's `workers` and `max_blocking`.
pub fn run(rocket: Rocket<Build>) -> Result<(), String> {
    let config = rocket
        .state::<Config>()
        .cloned()
        .ok_or("the application has no configuration")?;
    let settings: rocket::Config = rocket
        .figment()
        .extract()
        .map_err(|e| format!("configuration: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers.max(1))
        .max_blocking_threads(settings.max_blocking.max(1))
        .thread_name("clientele-worker")
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the runtime: {e}"))?;
    let bounds = Bounds {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        grace: Duration::from_secs(u64::from(settings.shutdown.grace + settings.shutdown.mercy)),
        memo_bytes: config.response_cache_bytes / 8,
    };
    let address = SocketAddr::new(settings.address, settings.port);
    let sqlite = rocket
        .state::<crate::store::Store>()
        .and_then(crate::store::Store::sqlite)
        .map(|db| db.path().to_owned());
    let result = runtime.block_on(serve(rocket, address, bounds));
    runtime.shutdown_timeout(Duration::from_millis(500));
    if let Some(path) = sqlite.filter(|_| result.is_ok()) {
        fold_in_the_wal(&path);
    }
    result
}

/// Raises the soft open-files limit to the hard limit; returns the soft limit now in force.
fn raise_open_files_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// How many connections to serve at once: as configured, or as many as the open-files limit
/// leaves room for, up to [`DEFAULT_MAX_CONNECTIONS`].
fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let room = open_files.map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        usize::try_from(limit.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX)
    });
    let cap = if configured == 0 {
        DEFAULT_MAX_CONNECTIONS
    } else {
        configured
    };
    cap.min(room).max(1)
}

async fn serve(rocket: Rocket<Build>, address: SocketAddr, bounds: Bounds) -> Result<(), String> {
    let open_files = raise_open_files_limit();
    let max_connections = connection_cap(bounds.max_connections, open_files);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("could not listen on {address}: {e}"))?;
    let local = listener.local_addr().unwrap_or(address);
    // Lists copied to disk are sent by this layer, not read through the app.
    if let Some(streams) = rocket.state::<crate::routes::customers::ListStreams>() {
        streams.send_copies_in_front();
    }
    let client = Client::untracked(rocket)
        .await
        .map_err(|e| format!("the application could not start: {}", e.kind()))?;
    let db = client
        .rocket()
        .state::<Store>()
        .cloned()
        .ok_or("the application has no database")?;
    let config = client
        .rocket()
        .state::<Config>()
        .ok_or("the application has no configuration")?;
    let (view, operations) = (config.view, config.operations.clone());
    let mirroring = client
        .rocket()
        .state::<crate::sync::Mirroring>()
        .map(|mirroring| crate::sync::Mirroring(mirroring.0.clone()))
        .ok_or("the application has no mirroring state")?;
    let metrics = client
        .rocket()
        .state::<Arc<Metrics>>()
        .cloned()
        .ok_or("the application has no metrics")?;
    let key_uses = client
        .rocket()
        .state::<Arc<crate::keyuse::KeyUses>>()
        .cloned();
    // Live as long as the process: every connection task borrows them.
    let app: &'static App = Box::leak(Box::new(App {
        client,
        db,
        memo: Memo::new(bounds.memo_bytes),
        key_uses,
        view,
        metrics,
        mirroring,
        body_timeout: bounds.header_timeout,
    }));
    log::info!(
        "serving at most {max_connections} connections at once; request heads, then their \
         bodies, must each arrive within {} s",
        bounds.header_timeout.as_secs()
    );
    let tls = match &operations.tls {
        Some(settings) => Some(Arc::new(Tls::start(settings, &app.metrics)?)),
        None => None,
    };
    if let Some(address) = operations.metrics_address {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| format!("metrics_address: could not listen on {address}: {e}"))?;
        let address = listener.local_addr().unwrap_or(address);
        log::info!("metrics at http://{address}/metrics, without a key");
        tokio::spawn(serve_metrics(app, listener));
    }
    if let Some(schedule) = operations.backups.clone() {
        crate::backup::start(schedule, app.db.clone(), Arc::clone(&app.metrics))?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    log::warn!(target: LAUNCH, "clientele launched from {scheme}://{local}");

    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(Connections::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut stop = pin!(shutdown_signal());
    let mut out_of_files_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if out_of_files(&error) => {
                // The client stays in the kernel's queue. Close the connection that has waited
                // longest for a request head and try again once it has gone; with none to
                // close, pause rather than spin on a listener that stays readable.
                if out_of_files_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    log::warn!(
                        "could not accept a connection: {error}; closing the connections \
                         waiting longest for a request to make room"
                    );
                    out_of_files_logged = Some(Instant::now());
                }
                let freed = match connections.give_way() {
                    Some(oldest) => tokio::time::timeout(GIVE_WAY_WAIT, oldest.closed())
                        .await
                        .is_ok(),
                    None => false,
                };
                if !freed {
                    tokio::time::sleep(GIVE_WAY_WAIT).await;
                }
                continue;
            }
            Err(error) if accept_failed_for_that_client(&error) => continue,
            Err(error) => {
                log::warn!("could not accept a connection: {error}");
                tokio::time::sleep(GIVE_WAY_WAIT).await;
                continue;
            }
        };
        let slot = tokio::select! {
            slot = room(&slots, &connections) => slot,
            () = &mut stop => break,
        };
        let Some(slot) = slot else { break };
        let _ = stream.set_nodelay(true);
        let registration = connections.open();
        let connection = Arc::clone(registration.connection());
        let mut stop = stop_rx.clone();
        let tls = tls.clone();
        app.metrics.connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            match tls {
                None => {
                    let tracked = Tracked::new(stream, Arc::clone(&connection));
                    serve_connection(app, peer, &connection, tracked, &mut stop, bounds).await;
                }
                Some(tls) => {
                    // The handshake is part of the request head: it has as long, and a
                    // connection still in it may be closed to make room.
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(
                            bounds.header_timeout,
                            tls.accept(stream, Arc::clone(&connection), peer),
                        ) => done,
                        () = connection.asked_to_give_way() => Ok(Ok(None)),
                        _ = stop.changed() => Ok(Ok(None)),
                    };
                    match handshake {
                        Ok(Ok(Some(secured))) => {
                            serve_connection(app, peer, &connection, secured, &mut stop, bounds)
                                .await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(error)) => log::debug!("TLS handshake with {peer} failed: {error}"),
                        Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
            app.metrics.connections.fetch_sub(1, Relaxed);
            // The socket closes before the slot is given back.
            drop(registration);
            drop(slot);
        });
    }

    log::warn!(target: LAUNCH, "shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(bounds.grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        log::warn!("closing connections still open after the grace period");
    }
    if let Some(uses) = &app.key_uses {
        uses.flush(&app.db).await;
    }
    Ok(())
}

/// On a clean stop, everything into the database file itself: the write-ahead log folded in
/// and emptied. A copy of the stopped server's file alone (or a `-wal` deleted against the
/// README's advice) then loses nothing. Run once the runtime is down, so that no request's
/// read is open any more (a list download cut at the end of the grace period ends its read
/// when its connection is dropped); a reader still open (another program) holds part of the
/// log back: tried again for up to 3 s, then said, never fatal (the next start folds it).
fn fold_in_the_wal(path: &std::path::Path) {
    let fold = || {
        crate::store::sqlite::open_connection(path)
            .and_then(|conn| crate::store::sqlite::fold_wal(&conn))
    };
    let until = Instant::now() + Duration::from_secs(3);
    let mut folded = fold();
    while matches!(folded, Ok(busy) if busy != 0) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        folded = fold();
    }
    match folded {
        Ok(0) => log::info!("folded the write-ahead log into {}", path.display()),
        Ok(_) => log::warn!(
            "{}: another program has the database open, so part of its write-ahead log \
             (-wal) stays beside it until the next start; copy the three files together",
            path.display()
        ),
        Err(error) => log::warn!(
            "could not fold the write-ahead log into {}: {error}",
            path.display()
        ),
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends, it is closed to make room,
/// or the server stops. The socket is closed when this returns.
async fn serve_connection<IO>(
    app: &'static App,
    peer: SocketAddr,
    connection: &Arc<Connection>,
    io: IO,
    stop: &mut watch::Receiver<bool>,
    bounds: Bounds,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .keep_alive(true)
        // Without max_header_size, hyper counts a head against its read buffer, which
        // may grow past max_buf_size in one read: heads of 100 KB and more got through.
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD.max(8192))
        .max_headers(MAX_HEADERS);
    let for_requests = Arc::clone(connection);
    let service = service_fn(move |request| handle(app, peer, Arc::clone(&for_requests), request));
    let mut served = Box::pin(http.serve_connection(TokioIo::new(io), service));
    let result = loop {
        tokio::select! {
            result = served.as_mut() => break result,
            () = connection.asked_to_give_way() => {
                if connection.should_close() {
                    log::debug!("closed the connection from {peer}, waiting for a request \
                        head, to make room for a new client");
                    break Ok(());
                }
            }
            _ = stop.changed() => {
                served.as_mut().graceful_shutdown();
                break served.as_mut().await;
            }
        }
    };
    if let Err(error) = result {
        log::debug!("connection from {peer} ended: {error}");
    }
}

/// Connections the `metrics_address` listener serves at once; more are closed at once. A
/// scraper needs one: the cap keeps anyone on this machine from spending the process's file
/// descriptors (and so the main port's) on it.
const METRICS_CONNECTIONS: usize = 16;
/// How long the `metrics_address` listener waits for a request head (or the next one).
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The `metrics_address` listener: `GET /metrics` (and `HEAD`) without a key; other paths
/// are a 404, other methods a 405. Only for a `Host` that names this machine (a web page
/// that rebinds its own name to 127.0.0.1 gets a 403), with the same header timeout.
async fn serve_metrics(app: &'static App, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    let listening = listener
        .local_addr()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |address| {
            address.ip()
        });
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(GIVE_WAY_WAIT).await;
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            log::debug!("metrics listener: {peer} refused, {METRICS_CONNECTIONS} connections open");
            drop(stream);
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<Incoming>| async move {
                Ok::<_, Infallible>(metrics_reply(app, listening, &request).await)
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            // A scraper sends its request at once: a short timeout keeps 16 stalled
            // connections from shutting it out for long.
            http.timer(TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT)
                .max_header_size(MAX_HEAD)
                .max_buf_size(MAX_HEAD.max(8192))
                .max_headers(MAX_HEADERS);
            if let Err(error) = http.serve_connection(TokioIo::new(stream), service).await {
                log::debug!("metrics connection from {peer} ended: {error}");
            }
            drop(slot);
        });
    }
}

/// The `metrics_address` listener's answer to one request.
async fn metrics_reply(
    app: &'static App,
    listening: IpAddr,
    request: &hyper::Request<Incoming>,
) -> Reply {
    // One Host, naming this machine (the keyless main port's own rule against rebinding).
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        _ => None,
    };
    if !host.is_some_and(|host| crate::apikey::is_local_host(host, listening)) {
        return error_reply(
            StatusCode::FORBIDDEN,
            "Forbidden: this listener answers requests addressed to localhost, 127.0.0.1 or \
             [::1] only",
        );
    }
    if request.uri().path() != "/metrics" {
        return error_reply(
            StatusCode::NOT_FOUND,
            "Not found: this listener serves /metrics only",
        );
    }
    if !matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD) {
        let mut reply = error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed: /metrics takes GET or HEAD",
        );
        reply
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return reply;
    }
    let text = crate::routes::metrics::scrape(&app.db, &app.mirroring, &app.metrics).await;
    let mut reply = hyper::Response::new(ResponseBody::whole(Bytes::from(text)));
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::routes::metrics::CONTENT_TYPE),
    );
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    reply
}

/// A connection slot: a free one, or one made by closing the connection that has waited
/// longest for a request head. With every connection busy with a request, waits for one to
/// finish. `None` once the server is shutting down.
async fn room(slots: &Arc<Semaphore>, connections: &Connections) -> Option<OwnedSemaphorePermit> {
    loop {
        match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => return Some(slot),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        // Looked at again after a while: a connection may have finished its request and
        // become one that waits.
        let _ = connections.give_way();
        match tokio::time::timeout(GIVE_WAY_WAIT, Arc::clone(slots).acquire_owned()).await {
            Ok(Ok(slot)) => return Some(slot),
            Ok(Err(_)) => return None,
            Err(_) => {}
        }
    }
}

/// Whether `accept` failed for want of file descriptors (the process's or the system's).
fn out_of_files(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether `accept` failed because of that one client (it reset the connection before it was
/// accepted): nothing to wait for, the next one may be accepted at once.
fn accept_failed_for_that_client(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || error.raw_os_error() == Some(libc::EPROTO)
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

type Reply = hyper::Response<ResponseBody>;

/// What every connection answers with: the Rocket app, its database (for the versions of
/// the data and the lane's reads), the memo of small list answers and the lane's templates.
struct App {
    client: Client,
    db: Store,
    memo: Memo,
    /// When each API key was last used: answers given without the app count too.
    key_uses: Option<Arc<crate::keyuse::KeyUses>>,
    /// The fields the list sends (the lane writes bodies as the app does).
    view: crate::customer::View,
    /// How long a request body may take to arrive, once its head has.
    body_timeout: Duration,
    /// The counters `/metrics` reads.
    metrics: Arc<Metrics>,
    /// The mirror, whose last sync's age `/metrics` tells.
    mirroring: crate::sync::Mirroring,
}

/// Answers one request: the checks only this layer can make, then the memo or the Rocket app.
async fn handle(
    app: &'static App,
    peer: SocketAddr,
    connection: Arc<Connection>,
    request: hyper::Request<Incoming>,
) -> Result<Reply, Infallible> {
    connection.request_started();
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str())
        .to_owned();
    let route = crate::metrics::route_of(&target);
    let second = crate::memo::second_of(started);
    let reply = dispatch(app, peer, parts, body, &target, route, second).await;
    app.metrics
        .request(route, reply.status().as_u16(), started.elapsed());
    if method == hyper::Method::POST || method == hyper::Method::DELETE {
        app.metrics.wrote(route, reply.status().as_u16());
    }
    // The logger masks the value of `apikey`; headers are never logged.
    log::info!(
        "{} {method} {target} {} {:.1}ms",
        client_address(peer.ip()),
        reply.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(reply.map(|body| body.finishing(connection)))
}

/// IPv4 peers as `1.2.3.4`, not `::ffff:1.2.3.4`.
fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

async fn dispatch(
    app: &'static App,
    peer: SocketAddr,
    parts: hyper::http::request::Parts,
    body: Incoming,
    target: &str,
    route: usize,
    second: u64,
) -> Reply {
    // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host.
    if parts.version == Version::HTTP_11 && !parts.headers.contains_key(HOST) {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "Bad request: HTTP/1.1 requires a Host header",
        );
    }
    // A method Rocket does not know (QUERY, PROPFIND, or `get`: methods are case-sensitive)
    // is answered as one the path does not accept: PATCH, which no path takes, gets the
    // path's 405 with its `Allow` (or 404).
    let method = app_method(&parts.method);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return too_large();
    }
    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        // The whole body within the bound, however slowly it trickles in: a client that stops
        // sending must not hold its connection (and its slot) for ever.
        let collect = Limited::new(body, MAX_BODY).collect();
        match tokio::time::timeout(app.body_timeout, collect).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Err(_) => return body_timed_out(app.body_timeout),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
            Ok(Err(_)) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "Bad request: the body could not be read",
                );
            }
        }
    };

    if log::log_enabled!(log::Level::Debug) {
        // Names only: values carry keys (`X-API-Key`, `Authorization`) and cookies.
        let names: Vec<&str> = parts.headers.keys().map(|name| name.as_str()).collect();
        log::debug!("{peer} sent headers: {}", names.join(", "));
    }
    let peer_ip = client_address(peer.ip());
    let memo_key = app.memo.key(
        &parts.method,
        target,
        &parts.headers,
        !bytes.is_empty(),
        peer_ip,
    );
    // Read before anything the answer is made from: see `store::versions`.
    let before = match memo_key {
        Some(ref key) => {
            let fresh = |made, scope, session| app.db.fresh(made, scope, session);
            if let Some(kept) = app.memo.get(key, fresh) {
                app.metrics.answered(Answered::Memo);
                log::debug!("{peer} answered from the memo");
                touch_key(app, kept.key_to_touch(second));
                return memoized_reply(&kept);
            }
            // A miss looks for other programs' commits first (a `pread`): what it makes is
            // then stamped after them, rather than taken for stale at once.
            let made = app.db.stamp();
            if let Some(reply) = lane(app, key, made, target, &parts.headers, second) {
                app.metrics.answered(Answered::Lane);
                log::debug!("{peer} answered by the lane");
                return reply;
            }
            made
        }
        None => None,
    };
    if route == crate::metrics::LIST {
        app.metrics.answered(Answered::App);
    }
    let mut local = app.client.req(method, target.to_owned());
    local.set_remote(peer);
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        local.add_header(Header::new(name.as_str().to_owned(), value));
    }
    if !bytes.is_empty() {
        local.set_body(&bytes);
    }
    let response = local.dispatch().await;
    let mut reply = into_hyper(response, method == Method::Head).await;
    let api_key = crate::memo::take_key(reply.headers_mut());
    if let Some(file) = reply.headers_mut().remove(FILE_HEADER) {
        return file_reply(reply, &file, method == Method::Head).await;
    }
    let scope = crate::memo::take_scope(reply.headers_mut());
    if let (Some(key), Some(body)) = (memo_key, reply.body().whole_bytes()) {
        app.memo.learn(
            before,
            &key,
            reply.status(),
            reply.headers(),
            scope,
            api_key,
        );
        let kept = Memoized::new(
            reply.status(),
            reply.headers().clone(),
            body,
            api_key,
            second,
        );
        app.memo.keep(before, &key, kept, scope);
    }
    reply
}

/// One customer by id, answered without the app when a request of the same shape was
/// answered by it (see [`crate::memo`]): the row read here, the headers from the template.
/// `None` sends the request to the app.
fn lane(
    app: &App,
    key: &RequestKey,
    made: Option<Stamp>,
    target: &str,
    headers: &hyper::HeaderMap,
    second: u64,
) -> Option<Reply> {
    let id = key.lane_customer()?;
    let db = app.db.sqlite()?;
    let made = made?;
    let template = app.memo.template(key, |made, scope, session| {
        app.db.fresh(made, scope, session)
    })?;
    let filter = ListFilter::parse(target.split_once('?').map(|(_, query)| query)).ok()?;
    if filter.id != Some(id) {
        return None;
    }
    let (body, total) = db.read_here(&filter, app.view)?;
    // The app compresses larger bodies for clients that take gzip: it answers those.
    let compressible = body.len() >= crate::cache::MIN_GZIP_SIZE
        && headers.contains_key(hyper::header::ACCEPT_ENCODING);
    if total != 1 || compressible {
        return None;
    }
    let answer = Memoized::new(
        StatusCode::OK,
        template.headers(&crate::cache::etag(&body))?,
        Bytes::from(body),
        template.touch.key(),
        second,
    );
    // Counted through the template (once a second for the shape), then the entry starts
    // counted for this second.
    touch_key(app, template.touch.due(second));
    let reply = memoized_reply(&answer);
    app.memo.keep(Some(made), key, answer, Scope::Customer(id));
    Some(reply)
}

/// Counts API key `key` (if any) as used by an answer given without the app.
fn touch_key(app: &App, key: Option<i64>) {
    if let (Some(key), Some(uses)) = (key, &app.key_uses) {
        uses.touch(key);
    }
}

/// The app's answer with the body from the file it named (a list copied to disk,
/// [`crate::routes::spool`]), read in large pieces on the blocking pool.
async fn file_reply(mut reply: Reply, file: &HeaderValue, head: bool) -> Reply {
    if head {
        return reply;
    }
    let named = String::from_utf8_lossy(file.as_bytes()).into_owned();
    let opened = tokio::task::spawn_blocking(move || {
        let (expected, path) = crate::routes::spool::FileId::parse_named(&named)
            .ok_or_else(|| io::Error::other("the app named no file"))?;
        let file = crate::routes::spool::open_checked(std::path::Path::new(path), &expected)?;
        Ok::<_, io::Error>((file, expected.len))
    })
    .await;
    let (file, size) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => {
            log::error!("could not read a copy of a list: {error}");
            return internal_error();
        }
        Err(error) => {
            log::error!("could not read a copy of a list: {error}");
            return internal_error();
        }
    };
    reply
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(size));
    *reply.body_mut() = ResponseBody::file(file, size);
    reply
}

/// A kept response, as the app sent it.
fn memoized_reply(kept: &Memoized) -> Reply {
    let mut reply = hyper::Response::new(ResponseBody::whole(kept.body.clone()));
    *reply.status_mut() = kept.status;
    *reply.headers_mut() = kept.headers.clone();
    reply
}

/// A Rocket response as a hyper one: small bodies read whole, large ones streamed.
async fn into_hyper(mut response: LocalResponse<'static>, head: bool) -> Reply {
    let mut builder = hyper::Response::builder().status(response.status().code);
    let mut declared_length = None;
    for header in response.headers().iter() {
        if header
            .name()
            .as_str()
            .eq_ignore_ascii_case("content-length")
        {
            declared_length = Some(header.value().to_owned());
            continue;
        }
        builder = builder.header(header.name().as_str(), header.value());
    }
    if head {
        // No body; the length a GET would have, as the responders state it.
        if let Some(length) = declared_length {
            builder = builder.header(CONTENT_LENGTH, length);
        }
        return builder
            .body(ResponseBody::whole(Bytes::new()))
            .unwrap_or_else(|_| internal_error());
    }
    // Sized exactly when the responder stated its length (they all do); a 304 has none.
    let expected = declared_length
        .as_deref()
        .and_then(|length| length.parse::<usize>().ok())
        .unwrap_or(0);
    let mut first = BytesMut::with_capacity(expected.min(WHOLE_BODY) + 1);
    loop {
        match response.read_buf(&mut first).await {
            Ok(0) => {
                return builder
                    .body(ResponseBody::whole(first.freeze()))
                    .unwrap_or_else(|_| internal_error())
            }
            Ok(_) if first.len() >= WHOLE_BODY => break,
            Ok(_) => {
                if first.capacity() == first.len() {
                    first.reserve(first.len());
                }
            }
            Err(error) => {
                log::error!("could not produce a response body: {error}");
                return internal_error();
            }
        }
    }
    if let Some(length) = declared_length {
        builder = builder.header(CONTENT_LENGTH, length);
    }
    builder
        .body(ResponseBody::streamed(first.freeze(), response))
        .unwrap_or_else(|_| internal_error())
}

/// The app's name for `method`, matched exactly; PATCH (which no path takes) for any other.
fn app_method(method: &hyper::Method) -> Method {
    METHODS
        .into_iter()
        .find(|known| known.as_str() == method.as_str())
        .unwrap_or(Method::Patch)
}

/// A 408: the request body did not arrive in time. The connection is closed after it.
fn body_timed_out(bound: Duration) -> Reply {
    error_reply(
        StatusCode::REQUEST_TIMEOUT,
        &format!(
            "Request timeout: the request body did not arrive within {} s",
            bound.as_secs()
        ),
    )
}

fn too_large() -> Reply {
    error_reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        &crate::error::ApiError::BodyTooLarge.to_string(),
    )
}

fn internal_error() -> Reply {
    let mut reply = hyper::Response::new(ResponseBody::whole(Bytes::from_static(
        br#"{"success":"false","message":"Internal error. The server log has the details"}"#,
    )));
    *reply.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    reply
}

/// An error in the contract's envelope, for the checks made before the app sees a request.
fn error_reply(status: StatusCode, message: &str) -> Reply {
    let body = crate::error::JsonResponse::message(
        rocket::http::Status::new(status.as_u16()),
        false,
        message,
    )
    .body;
    let mut reply = hyper::Response::new(ResponseBody::whole(Bytes::from(body)));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::BAD_REQUEST || status == StatusCode::REQUEST_TIMEOUT {
        headers.insert("connection", HeaderValue::from_static("close"));
    }
    reply
}

/// A response body: bytes in hand, then (for large bodies) the rest read from the app, or
/// a file.
pub struct ResponseBody {
    first: Option<Bytes>,
    rest: Option<LocalResponse<'static>>,
    file: Option<FileBody>,
    buffer: BytesMut,
    /// Told when the body is finished (dropped by hyper), so the connection may wait again.
    connection: Option<Arc<Connection>>,
}

impl ResponseBody {
    fn whole(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            first: (!bytes.is_empty()).then_some(bytes),
            rest: None,
            file: None,
            buffer: BytesMut::new(),
            connection: None,
        }
    }

    /// This body, telling `connection` when it is finished.
    fn finishing(mut self, connection: Arc<Connection>) -> ResponseBody {
        self.connection = Some(connection);
        self
    }

    /// The whole body, when it was read whole (not streamed).
    fn whole_bytes(&self) -> Option<Bytes> {
        match (&self.rest, &self.file) {
            (None, None) => Some(self.first.clone().unwrap_or_default()),
            _ => None,
        }
    }

    fn streamed(first: Bytes, rest: LocalResponse<'static>) -> ResponseBody {
        ResponseBody {
            first: Some(first),
            rest: Some(rest),
            file: None,
            buffer: BytesMut::new(),
            connection: None,
        }
    }

    fn file(file: std::fs::File, size: u64) -> ResponseBody {
        ResponseBody {
            first: None,
            rest: None,
            file: Some(FileBody {
                file: Some(file),
                reading: None,
                left: size,
            }),
            buffer: BytesMut::new(),
            connection: None,
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.response_finished();
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if let Some(file) = this.file.as_mut() {
            let polled = file.poll_piece(context);
            if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                this.file = None;
            }
            return polled.map(|piece| piece.map(|piece| piece.map(Frame::data)));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        if this.buffer.capacity() < STREAM_CHUNK / 4 {
            this.buffer.reserve(STREAM_CHUNK);
        }
        match tokio_util::io::poll_read_buf(Pin::new(rest), context, &mut this.buffer) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze())))),
            Poll::Ready(Err(error)) => {
                this.rest = None;
                Poll::Ready(Some(Err(error)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none() && self.file.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(file) = &self.file {
            return SizeHint::with_exact(file.left);
        }
        match (&self.first, &self.rest) {
            (first, None) => SizeHint::with_exact(first.as_ref().map_or(0, |b| b.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

/// How much of a file is read at a time.
const FILE_PIECE: usize = 512 * 1024;

/// A file sent as a body: pieces read on the blocking pool, one at a time.
struct FileBody {
    file: Option<std::fs::File>,
    reading: Option<tokio::task::JoinHandle<io::Result<(std::fs::File, Bytes)>>>,
    left: u64,
}

impl FileBody {
    fn poll_piece(&mut self, context: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if let Some(reading) = self.reading.as_mut() {
                let read = match Pin::new(reading).poll(context) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(read) => read,
                };
                self.reading = None;
                let (file, piece) = match read {
                    Ok(Ok(read)) => read,
                    Ok(Err(error)) => return Poll::Ready(Some(Err(error))),
                    Err(error) => return Poll::Ready(Some(Err(io::Error::other(error)))),
                };
                if piece.is_empty() {
                    return Poll::Ready(Some(Err(io::Error::other(
                        "the file ended before its length",
                    ))));
                }
                self.file = Some(file);
                self.left = self.left.saturating_sub(piece.len() as u64);
                return Poll::Ready(Some(Ok(piece)));
            }
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(None);
            };
            let want = usize::try_from(self.left).map_or(FILE_PIECE, |left| left.min(FILE_PIECE));
            self.reading = Some(tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut piece = vec![0; want];
                let mut filled = 0;
                while filled < want {
                    match file.read(&mut piece[filled..]) {
                        Ok(0) => break,
                        Ok(read) => filled += read,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                }
                piece.truncate(filled);
                Ok((file, Bytes::from(piece)))
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_leaves_room_for_the_open_files_limit() {
        assert_eq!(connection_cap(0, Some(1_048_576)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(connection_cap(0, Some(1024)), 1024 - 128);
        assert_eq!(connection_cap(100, Some(1024)), 100);
        assert_eq!(connection_cap(5000, Some(1024)), 896);
        assert_eq!(connection_cap(0, None), DEFAULT_MAX_CONNECTIONS);
    }
}
