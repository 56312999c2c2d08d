//! What the front layer (`src/server.rs`) promises on a real socket against clients that
//! stall, send too much, or speak HTTP wrongly: stalled bodies are dropped within the bound,
//! heads stop at 64 KiB, methods are case-sensitive, and stalled heads give way to new
//! clients when every connection (or every file descriptor) is taken.

use std::time::{Duration, Instant};

use crate::helpers::*;

/// The most the tests below wait for anything the server should do at once.
const PROMPTLY: Duration = Duration::from_secs(3);

/// A `GET /health` head of exactly `size` bytes, padded with one header; `end` says whether
/// it ends with the blank line (a head that is not finished yet at that size).
fn head_of(size: usize, end: bool) -> Vec<u8> {
    let start = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
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
    let mut many = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for n in 0..40 {
        many.extend(format!("X-Pad-{n}: {}\r\n", "b".repeat(2_000)).into_bytes());
    }
    many.extend(b"\r\n");
    let spread = raw_exchange(server.port, &many);
    let long_target = format!(
        "GET /health?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
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
        let raw = format!("{line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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
