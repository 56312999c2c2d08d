//! The memo and the lane in front of the app, over the real socket: a commit ends exactly the
//! answers it changed (through this server: before its answer goes; by another program:
//! within the watch's bound), and the lane answers exactly as the app would.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use crate::tools::run;

/// How long another program's commit may take to be seen: the README's bound (a millisecond
/// or two) with room for a loaded test machine.
const WATCH_BOUND: Duration = Duration::from_millis(100);

/// The customers the demo database holds, read by these tests.
const CUSTOMERS: [i64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn city(reply: &Reply) -> String {
    reply.customers()[0]["city"].as_str().unwrap().to_owned()
}

/// The round number in a city named `City N` (-1 for any other).
fn round_of(city: &str) -> i64 {
    city.strip_prefix("City ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

fn update(server: &Server, key: &str, id: i64, city: &str) -> Reply {
    server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &[("X-API-Key", key), ("Content-Type", "application/json")],
        &format!(r#"{{"id_client":"{id}","city":"{city}"}}"#),
    )
}

fn lookup(port: u16, key: &str, id: i64) -> Reply {
    http(
        port,
        "GET",
        &format!("/CUSTOMER/LIST/?id_client={id}"),
        &[("X-API-Key", key)],
        "",
    )
}

/// How many lines of the log say `what`, once the log has caught up with `at_least`.
fn count_after(server: &Server, what: &str, at_least: usize) -> usize {
    eventually(Duration::from_secs(2), || {
        server.log().matches(what).count() >= at_least
    });
    server.log().matches(what).count()
}

/// Readers of eight customers at once, through the memo and the lane, while writers change
/// them: a read that starts after an update of its customer returned shows that update (or
/// a later one), for every customer, under both budgets.
fn every_read_after_a_write_shows_it(cache_mib: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    let server = Server::start(
        &db,
        &[
            ("ROCKET_LOG_LEVEL", "debug"),
            ("ROCKET_RESPONSE_CACHE_MIB", cache_mib),
        ],
    );
    let read = create_key(&db, "reader");
    let write = create_write_key(&db, "writer");
    let port = server.port;
    // The last round whose update of each customer has returned.
    let returned: Arc<Vec<AtomicU64>> =
        Arc::new(CUSTOMERS.iter().map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    for (slot, &id) in CUSTOMERS.iter().enumerate() {
        assert_eq!(update(&server, &write, id, "City 0").status, 200);
        returned[slot].store(0, Ordering::SeqCst);
    }

    let readers: Vec<_> = (0..4)
        .map(|reader| {
            let (stop, returned, read) = (Arc::clone(&stop), Arc::clone(&returned), read.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                let mut slot = reader;
                while !stop.load(Ordering::SeqCst) {
                    slot = (slot + 3) % CUSTOMERS.len();
                    let before = returned[slot].load(Ordering::SeqCst) as i64;
                    let reply = lookup(port, &read, CUSTOMERS[slot]);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    let seen = round_of(&city(&reply));
                    assert!(
                        seen >= before,
                        "customer {} read as round {seen} after round {before} returned",
                        CUSTOMERS[slot]
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let (returned, write) = (Arc::clone(&returned), write.clone());
            let server_port = port;
            std::thread::spawn(move || {
                for round in 1..=30u64 {
                    let slot = (writer * 5 + round as usize * 3) % CUSTOMERS.len();
                    // Writers never update the same customer at once: each takes its own half.
                    let slot = slot / 2 * 2 + writer;
                    let body = format!(
                        r#"{{"id_client":"{}","city":"City {}"}}"#,
                        CUSTOMERS[slot],
                        round * 2 + writer as u64
                    );
                    let updated = http(
                        server_port,
                        "POST",
                        "/CUSTOMER/UPDATE/",
                        &[
                            ("X-API-Key", write.as_str()),
                            ("Content-Type", "application/json"),
                        ],
                        &body,
                    );
                    assert_eq!(updated.status, 200, "{}", updated.body);
                    returned[slot].fetch_max(round * 2 + writer as u64, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(
        reads > 60,
        "the readers ran beside the writes ({reads} reads)"
    );
    // And once the writes are over, every customer reads as its last round.
    for (slot, &id) in CUSTOMERS.iter().enumerate() {
        let last = returned[slot].load(Ordering::SeqCst) as i64;
        assert_eq!(round_of(&city(&lookup(port, &read, id))), last);
    }
    let log = server.stop();
    assert!(
        log.contains("answered by the lane"),
        "the lane answered meanwhile"
    );
    if cache_mib != "0" {
        assert!(
            log.contains("answered from the memo"),
            "the memo answered meanwhile"
        );
    } else {
        assert!(
            !log.contains("answered from the memo"),
            "no memo without a budget"
        );
    }
}

#[test]
fn under_concurrent_reads_and_writes_of_many_customers_every_read_after_a_write_shows_it() {
    if !sqlite_only("the lane reads SQLite") {
        return;
    }
    every_read_after_a_write_shows_it("96");
}

#[test]
fn with_no_cache_the_lane_still_shows_every_write_to_the_next_read() {
    if !sqlite_only("the lane reads SQLite") {
        return;
    }
    every_read_after_a_write_shows_it("0");
}

#[test]
fn a_commit_ends_only_the_answers_it_changed() {
    if !sqlite_only("per-customer versions: on PostgreSQL any commit ends every answer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rows.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let read = create_key(&db, "reader");
    let write = create_write_key(&db, "writer");
    let port = server.port;
    const HIT: &str = "answered from the memo";

    let four = lookup(port, &read, 4);
    assert_eq!(lookup(port, &read, 4).body, four.body);
    let list = http(
        port,
        "GET",
        "/CUSTOMER/LIST/?limit=5",
        &[("X-API-Key", &read)],
        "",
    );
    http(
        port,
        "GET",
        "/CUSTOMER/LIST/?limit=5",
        &[("X-API-Key", &read)],
        "",
    );
    lookup(port, &read, 3);
    let hits = count_after(&server, HIT, 2);

    // Customer 3 changes: 4's answer is still given from the memo; 3's and the page are not.
    assert_eq!(update(&server, &write, 3, "Namur").status, 200);
    let four_again = lookup(port, &read, 4);
    assert_eq!(four_again.body, four.body);
    assert_eq!(
        count_after(&server, HIT, hits + 1),
        hits + 1,
        "4's answer survived"
    );
    assert_eq!(city(&lookup(port, &read, 3)), "Namur");
    let page = http(
        port,
        "GET",
        "/CUSTOMER/LIST/?limit=5",
        &[("X-API-Key", &read)],
        "",
    );
    assert_ne!(page.body, list.body, "the page holds customer 3");
    assert!(page.body.contains("Namur"));

    // A new key is a change to the keys: every answer is made again, then kept again.
    let front = create_key(&db, "front");
    run(&db, &["passwd", "2"], "lavande moulin deux rouge\n");
    std::thread::sleep(WATCH_BOUND);
    assert_eq!(lookup(port, &read, 4).body, four.body);
    let email = lookup(port, &read, 2).customers()[0]["email"].clone();
    let body = serde_json::json!({"email": email, "password": "lavande moulin deux rouge"});
    std::thread::sleep(Duration::from_millis(200));
    let hits = count_after(&server, HIT, 0);
    // A login (a new session, an audit row) changes no answer.
    let logged_in = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("X-API-Key", &front), ("Content-Type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    assert_eq!(lookup(port, &read, 4).body, four.body);
    assert_eq!(
        count_after(&server, HIT, hits + 1),
        hits + 1,
        "a login ended no answer; log:\n{}",
        server.log()
    );
    // Nor a failed one (an audit row, a failure written for `clientele limits`).
    let wrong = serde_json::json!({"email": email, "password": "not the password"});
    let failed = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("X-API-Key", &front), ("Content-Type", "application/json")],
        &wrong.to_string(),
    );
    assert_eq!(failed.status, 401, "{}", failed.body);
    assert_eq!(lookup(port, &read, 4).body, four.body);
    assert_eq!(
        count_after(&server, HIT, hits + 2),
        hits + 2,
        "a failed login ended no answer; log:\n{}",
        server.log()
    );

    // A key revoked ends every answer it was given, at once.
    run(&db, &["keys", "revoke", "reader"], "");
    std::thread::sleep(WATCH_BOUND);
    assert_eq!(lookup(port, &read, 4).status, 401);
    server.stop();
}

#[test]
fn another_programs_commits_are_seen_within_the_bound_while_readers_hammer() {
    if !sqlite_only("another program writing the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("foreign.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let read = create_key(&db, "reader");
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, read) = (Arc::clone(&stop), read.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    assert_eq!(lookup(port, &read, 5).status, 200);
                }
            })
        })
        .collect();
    for round in 0..10 {
        let city = format!("Foreign {round}");
        run_sql(
            &db,
            &format!("UPDATE customer SET city = '{city}' WHERE clcleunik = 5"),
        );
        std::thread::sleep(WATCH_BOUND);
        assert_eq!(self::city(&lookup(port, &read, 5)), city, "round {round}");
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().unwrap();
    }
    let log = server.stop();
    assert!(log.contains("answered from the memo"));
}

#[test]
fn the_lane_answers_another_customer_exactly_as_the_app_would() {
    if !sqlite_only("the lane reads SQLite") {
        return;
    }
    for cache_mib in ["96", "0"] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lane.db");
        let server = Server::start(
            &db,
            &[
                ("ROCKET_LOG_LEVEL", "debug"),
                ("ROCKET_RESPONSE_CACHE_MIB", cache_mib),
                ("ROCKET_CORS_ORIGINS", "[\"https://shop.example\"]"),
            ],
        );
        let key = create_key(&db, "reader");
        let port = server.port;
        for headers in [
            vec![("X-API-Key", key.as_str())],
            vec![
                ("X-API-Key", key.as_str()),
                ("Origin", "https://shop.example"),
            ],
        ] {
            let target = |id: i64| format!("/CUSTOMER/LIST/?id_client={id}");
            let raw = |id: i64, extra: &[(&str, &str)]| {
                let mut raw = format!(
                    "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                    target(id)
                );
                for (name, value) in headers.iter().chain(extra) {
                    raw.push_str(&format!("{name}: {value}\r\n"));
                }
                raw.push_str("\r\n");
                raw_exchange(port, raw.as_bytes())
                    .lines()
                    .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let lane_before = server.log().matches("answered by the lane").count();
            raw(1, &[]); // the app answers, and the shape is learned
            for id in [2, 6, 7] {
                let from_lane = raw(id, &[]);
                // Another shape (one more header) goes to the app.
                let from_app = raw(id, &[("X-Probe", "1")]);
                assert!(from_lane.starts_with("HTTP/1.1 200"), "{from_lane}");
                assert_eq!(from_lane, from_app, "customer {id}, {headers:?}");
            }
            assert!(
                count_after(&server, "answered by the lane", lane_before + 3) >= lane_before + 3,
                "{}",
                server.log()
            );
        }
        // Not for a customer that does not exist, a conditional request or gzip's sake.
        let missing = lookup(port, &key, 999_999);
        let probe = http(
            port,
            "GET",
            "/CUSTOMER/LIST/?id_client=999999",
            &[("X-API-Key", &key), ("X-Probe", "1")],
            "",
        );
        assert_eq!(missing.status, probe.status);
        assert_eq!(missing.body, probe.body);
        server.stop();
    }
}

/// The whole list, streamed (no cache budget), three times over the socket at one version,
/// then after a change: the third answer comes from the copy on disk, the same body and
/// headers as the streamed ones (but sized), and a change is never answered from an old copy.
#[test]
fn a_streamed_list_is_sent_from_its_copy_on_disk_and_never_after_a_change() {
    if !sqlite_only("the copies live beside the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spool.db");
    let server = Server::start(&db, &[("ROCKET_RESPONSE_CACHE_MIB", "0")]);
    let read = create_key(&db, "reader");
    let write = create_write_key(&db, "writer");
    let port = server.port;
    let copies = dir.path().join("spool.db.lists");
    for encoding in ["identity", "gzip"] {
        let get = || {
            let raw = {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                use std::io::{Read, Write};
                write!(
                    stream,
                    "GET /CUSTOMER/LIST/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                     X-API-Key: {read}\r\nAccept-Encoding: {encoding}\r\n\r\n"
                )
                .unwrap();
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).unwrap();
                raw
            };
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let mut body = raw[split + 4..].to_vec();
            if head.contains("transfer-encoding: chunked") {
                body = dechunk_bytes(&body);
            }
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_owned)
            };
            (
                header("etag"),
                header("x-total-count"),
                header("content-length"),
                body,
            )
        };
        let streamed = get();
        let second = get();
        let from_copy = get();
        assert_eq!(streamed.0, from_copy.0, "{encoding}");
        assert_eq!(streamed.1, from_copy.1);
        assert_eq!(streamed.3, second.3);
        assert_eq!(streamed.3, from_copy.3, "{encoding}: the copy is the body");
        assert_eq!(
            from_copy.2,
            Some(from_copy.3.len().to_string()),
            "sized from the file"
        );
        let files: Vec<_> = std::fs::read_dir(&copies).unwrap().flatten().collect();
        assert!(!files.is_empty());
        for file in &files {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(file.metadata().unwrap().permissions().mode() & 0o077, 0);
        }

        let city = format!("Copyville {encoding}");
        assert_eq!(update(&server, &write, 4, &city).status, 200);
        let changed = get();
        assert_ne!(changed.0, streamed.0, "a new version");
        let body = if encoding == "gzip" {
            let mut text = String::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(changed.3.as_slice())
                .read_to_string(&mut text)
                .unwrap();
            text
        } else {
            String::from_utf8(changed.3.clone()).unwrap()
        };
        assert!(body.contains(&city), "{encoding}: the change shows");
    }
    server.stop();
}

fn dechunk_bytes(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[end + 2 + size + 2..];
    }
    out
}

#[test]
fn a_customer_renumbered_by_another_program_is_gone_under_its_old_id() {
    if !sqlite_only("another program writing the SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("renumbered.db");
    let server = Server::start(&db, &[]);
    let read = create_key(&db, "reader");
    let port = server.port;
    let before = lookup(port, &read, 2);
    assert_eq!(lookup(port, &read, 2).body, before.body, "kept by the memo");
    let since = http(
        port,
        "GET",
        "/CUSTOMER/CHANGES/?since=0&limit=1000",
        &[("X-API-Key", &read)],
        "",
    );
    let cursor = since.json()["result"]["next"].as_str().unwrap().to_owned();
    run_sql(
        &db,
        "UPDATE customer SET clcleunik = 60 WHERE clcleunik = 2",
    );
    std::thread::sleep(WATCH_BOUND);
    let after = lookup(port, &read, 2);
    assert!(after.customers().is_empty(), "{}", after.body);
    assert_eq!(lookup(port, &read, 60).customers().len(), 1);
    let changes = http(
        port,
        "GET",
        &format!("/CUSTOMER/CHANGES/?since={cursor}"),
        &[("X-API-Key", &read)],
        "",
    );
    assert!(changes.body.contains("\"deleted\""), "{}", changes.body);
    let deleted = &changes.json()["result"]["deleted"];
    assert!(
        deleted
            .as_array()
            .unwrap()
            .iter()
            .any(|id| id.to_string().trim_matches('"') == "2"),
        "{}",
        changes.body
    );
    server.stop();
}

/// A HEAD, or a client that stops reading, never leaves a cut copy that later downloads get.
#[test]
fn a_head_or_a_download_cut_short_never_leaves_a_copy_that_is_sent() {
    if !sqlite_only("the copies live beside the SQLite file") {
        return;
    }
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cut.db");
    let server = Server::start(&db, &[("ROCKET_RESPONSE_CACHE_MIB", "0")]);
    let read = create_key(&db, "reader");
    let port = server.port;
    // Enough customers that a body is more than the sockets' buffers hold (about 18 MB).
    let rows: Vec<String> = (1000..41000)
        .map(|i| format!("({i}, 'user{i}@example.be', '{}')", "x".repeat(300)))
        .collect();
    run_sql(
        &db,
        &format!(
            "INSERT INTO customer (clcleunik, email, address) VALUES {}",
            rows.join(",")
        ),
    );
    std::thread::sleep(WATCH_BOUND);
    let whole = || http(port, "GET", "/CUSTOMER/LIST/", &[("X-API-Key", &read)], "").body;
    let first = whole();
    assert!(first.len() > 16_000_000, "{}", first.len());
    // Read a little of the next downloads, then hang up.
    for _ in 0..2 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET /CUSTOMER/LIST/ HTTP/1.1\r\nHost: x\r\nX-API-Key: {read}\r\n\r\n"
        )
        .unwrap();
        let mut some = [0u8; 4096];
        let _ = stream.read(&mut some).unwrap();
        // Stop reading while the server is still writing, then hang up.
        std::thread::sleep(Duration::from_millis(300));
        drop(stream);
        std::thread::sleep(Duration::from_millis(300));
    }
    for round in 0..4 {
        assert_eq!(
            whole(),
            first,
            "download {round} after the cut ones is whole"
        );
    }
    // A new version, then a HEAD as its second request.
    run_sql(
        &db,
        "UPDATE customer SET city = 'Headville' WHERE clcleunik = 1000",
    );
    std::thread::sleep(WATCH_BOUND);
    let changed = whole();
    let head = http(port, "HEAD", "/CUSTOMER/LIST/", &[("X-API-Key", &read)], "");
    assert_eq!(head.status, 200);
    for round in 0..3 {
        assert_eq!(whole(), changed, "download {round} after the HEAD is whole");
    }
    server.stop();
}
