//! What the front layer (`src/server.rs`) promises on a real socket against clients that
//! stall, send too much, or speak HTTP wrongly: stalled bodies are dropped within the bound,
//! heads stop at 64 KiB, methods are case-sensitive, and stalled heads give way to new
//! clients when every connection (or every file descriptor) is taken.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// The most the tests below wait for anything the server should do at once.
const PROMPTLY: Duration = Duration::from_secs(3);

/// A login whose head promises 100 bytes of body, of which one arrives.
fn stalled_body(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            b"POST /CUSTOMER/LOGIN/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .unwrap();
    stream
}

/// A connection that sends half a request head and stops.
fn stalled_head(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    stream
}

/// Whether the server has closed `stream` (within `wait`); what it sent before, as text.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> (bool, String) {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (closed, String::from_utf8_lossy(&received).into_owned())
}

/// `GET path` on a fresh connection, waiting at most `wait` for the whole answer: the status
/// (`None`: no complete answer in time) and how long it took.
fn timed_get(port: u16, path: &str, wait: Duration) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (None, started.elapsed());
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (None, started.elapsed());
    }
    let (closed, text) = closed_within(&mut stream, wait);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .filter(|_| closed);
    (status, started.elapsed())
}

/// CPU time the process `pid` has used so far, in clock ticks (user and system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which is in parentheses): state is the first.
    let after = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `clientele serve`, started by bash after it has run `shell` (to set limits, open files).
fn serve_under(shell: &str) -> Command {
    let mut command = Command::new("bash");
    command.current_dir(root()).args([
        "-c",
        &format!("{shell} && exec \"$0\" serve"),
        env!("CARGO_BIN_EXE_clientele"),
    ]);
    command
        .env("ROCKET_CLI_COLORS", "false")
        .env("ROCKET_ARGON2_MEMORY_KIB", "64")
        .env("ROCKET_ARGON2_ITERATIONS", "1");
    command
}

#[test]
fn a_stalled_request_body_is_dropped_within_the_bound_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // Every connection slot but none to spare: 8, all taken by stalled bodies.
    let server = Server::start(
        &dir.path().join("body.db"),
        &[
            ("ROCKET_HEADER_TIMEOUT_SECS", "2"),
            ("ROCKET_MAX_CONNECTIONS", "8"),
        ],
    );
    let started = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..8).map(|_| stalled_body(server.port)).collect();
    std::thread::sleep(Duration::from_millis(200));

    // Waits in the kernel's queue until the stalled bodies' bound has passed.
    let (status, _) = timed_get(server.port, "/health", Duration::from_secs(8));
    let (closed, answer) = closed_within(&mut stalled[0], Duration::from_secs(8));

    let waited = started.elapsed();
    assert_eq!(status, Some(200), "the normal client is served");
    assert!(
        closed,
        "the stalled body's connection was closed: {answer:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "within the 2 s bound, not the test's 8 s: {waited:?}"
    );
    let reply = parse_raw(&answer);
    let message = reply.assert_error(408);
    assert!(message.contains("body"), "{message}");
    for other in &mut stalled[1..] {
        assert!(closed_within(other, PROMPTLY).0, "every one is closed");
    }
}

#[test]
fn a_slow_body_that_keeps_coming_within_the_bound_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("slow.db"),
        &[("ROCKET_HEADER_TIMEOUT_SECS", "2")],
    );
    // A login padded with JSON whitespace to 16,000 bytes, sent in 16 pieces over 1.5 s.
    let login = r#"{"email":"jdoe@example.com","password":"password123"}"#;
    let body = format!("{login}{}", " ".repeat(16_000 - login.len()));
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let head = format!(
        "POST /CUSTOMER/LOGIN/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    for piece in body.as_bytes().chunks(1_000) {
        std::thread::sleep(Duration::from_millis(100));
        stream.write_all(piece).unwrap();
    }

    let (closed, answer) = closed_within(&mut stream, Duration::from_secs(10));

    assert!(closed, "{answer}");
    let reply = parse_raw(&answer);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.ids(), vec![1]);
}

/// A `GET /health` head of exactly `size` bytes, padded with one header; `end` says whether
/// it ends with the blank line (a head that is not finished yet at that size).
fn head_of(size: usize, end: bool) -> Vec<u8> {
    let start = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: ";
    let finish = if end { "\r\n\r\n" } else { "" };
    let pad = size - start.len() - finish.len();
    format!("{start}{}{finish}", "a".repeat(pad)).into_bytes()
}

#[test]
fn a_head_over_64_kib_is_a_bare_431_and_closed_and_one_of_64_kib_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("head.db"), &[]);
    let limit = 64 * 1024;

    let at_limit = parse_raw(&raw_exchange(server.port, &head_of(limit, true)));
    let started = Instant::now();
    let over = raw_exchange(server.port, &head_of(limit + 1, true));
    let over_unfinished = raw_exchange(server.port, &head_of(limit + 1, false));
    // Spread over many headers, far below the 100-header bound.
    let mut many = b"GET /health HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    for n in 0..40 {
        many.extend(format!("X-Pad-{n}: {}\r\n", "b".repeat(2_000)).into_bytes());
    }
    many.extend(b"\r\n");
    let spread = raw_exchange(server.port, &many);
    let long_target = format!(
        "GET /health?x={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "c".repeat(limit)
    );
    let target = raw_exchange(server.port, long_target.as_bytes());

    assert_eq!(at_limit.status, 200, "{}", at_limit.body);
    for (what, answer) in [
        ("one byte over", &over),
        ("one byte over, unfinished", &over_unfinished),
        ("80 KB in 40 headers", &spread),
    ] {
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "{what}: {}",
            answer.lines().next().unwrap_or("(nothing)")
        );
        assert!(answer.ends_with("\r\n\r\n"), "{what}: bare: {answer}");
    }
    assert!(
        target.starts_with("HTTP/1.1 431 ") || target.starts_with("HTTP/1.1 414 "),
        "{}",
        target.lines().next().unwrap_or("(nothing)")
    );
    // raw_exchange reads until the server closes: each was closed at once.
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn methods_are_case_sensitive_so_a_lowercase_get_is_refused_in_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("method.db"), &[]);
    let ask = |line: &str| {
        let raw = format!("{line} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        parse_raw(&raw_exchange(server.port, raw.as_bytes()))
    };

    let lower = ask("get /CUSTOMER/LIST/");
    let mixed = ask("Get /customer/list?id_client=1");
    let head = ask("head /CUSTOMER/LIST/");
    let unknown_path = ask("get /NOWHERE/");
    let upper = ask("GET /CUSTOMER/LIST/?id_client=1");

    for reply in [&lower, &mixed, &head] {
        reply.assert_error(405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
        assert!(!reply.body.contains("clcleunik"), "{}", reply.body);
    }
    unknown_path.assert_error(404);
    assert_eq!(upper.status, 200);
    assert_eq!(upper.ids(), vec![1]);
}

/// Stalled heads beyond the connection cap: the server, with a header timeout of a minute and
/// the open-files limit (soft and hard) at 256, serves 128 connections at once.
#[test]
fn at_the_connection_cap_the_oldest_stalled_head_gives_way_to_a_new_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        serve_under("ulimit -n 256"),
        &dir.path().join("cap.db"),
        &[("ROCKET_HEADER_TIMEOUT_SECS", "60")],
    );
    // A request in flight (its body stalled) is never the one to give way, oldest as it is.
    let mut in_flight = stalled_body(server.port);
    std::thread::sleep(Duration::from_millis(100));
    let mut stalled: Vec<TcpStream> = (0..300).map(|_| stalled_head(server.port)).collect();
    std::thread::sleep(Duration::from_millis(300));

    let (status, took) = timed_get(server.port, "/CUSTOMER/LIST/?id_client=1", PROMPTLY);

    assert_eq!(status, Some(200), "answered in time (took {took:?})");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        closed_within(&mut stalled[0], Duration::from_millis(500)).0,
        "the oldest stalled head was closed"
    );
    let newest = stalled.last_mut().unwrap();
    assert!(
        !closed_within(newest, Duration::from_millis(200)).0,
        "the newest is still waiting"
    );
    assert!(
        !closed_within(&mut in_flight, Duration::from_millis(200)).0,
        "the request in flight was left alone"
    );
}

/// As above, but the server's files run out before its connection cap: most of its 256 are
/// taken before it starts (inherited), so `accept` fails with EMFILE.
#[test]
fn when_accept_runs_out_of_files_the_oldest_stalled_head_gives_way_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        serve_under("ulimit -n 256 && for i in $(seq 150); do exec {fd}</dev/null; done"),
        &dir.path().join("emfile.db"),
        &[("ROCKET_HEADER_TIMEOUT_SECS", "60")],
    );
    let mut stalled: Vec<TcpStream> = (0..200).map(|_| stalled_head(server.port)).collect();
    std::thread::sleep(Duration::from_millis(500));

    let (status, took) = timed_get(server.port, "/CUSTOMER/LIST/?id_client=1", PROMPTLY);
    // With every file taken and nothing more to accept, the server must sit still.
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(server.pid()) - before;

    assert_eq!(status, Some(200), "answered in time (took {took:?})");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        closed_within(&mut stalled[0], Duration::from_millis(500)).0,
        "the oldest stalled head was closed"
    );
    assert!(spent < 20, "{spent} ticks of CPU in a second of waiting");
    let log = server.log();
    assert!(
        log.contains("Too many open files"),
        "accept did fail: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Out of files with every connection busy with a request (stalled bodies, which are never
/// closed to make room): `accept` keeps failing, and the server must wait, not spin or flood
/// its log.
#[test]
fn when_accept_runs_out_of_files_with_nothing_to_close_the_server_waits_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(
        serve_under("ulimit -n 256 && for i in $(seq 150); do exec {fd}</dev/null; done"),
        &dir.path().join("busy.db"),
        &[("ROCKET_HEADER_TIMEOUT_SECS", "60")],
    );
    let mut stalled: Vec<TcpStream> = (0..150).map(|_| stalled_body(server.port)).collect();
    std::thread::sleep(Duration::from_millis(500));

    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(server.pid()) - before;

    assert!(spent < 20, "{spent} ticks of CPU in a second of waiting");
    let log = server.log();
    let complaints = log.matches("Too many open files").count();
    assert_eq!(complaints, 1, "said once, not in a loop: {log}");
    assert!(
        !closed_within(&mut stalled[0], Duration::from_millis(200)).0,
        "the requests in flight were left alone"
    );
}
