//! Promises that must hold when clients attack in parallel, when the operator misconfigures,
//! when files are damaged or foreign, and when clients stall. Most drive the real binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::tools::run_expecting_failure;

/// Sends `bodies.len()` logins at once (each on its own connection, released together), each
/// with its own extra headers; returns the statuses.
fn parallel_logins(server: &Server, bodies: Vec<(String, Vec<(String, String)>)>) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(bodies.len()));
    let port = server.port;
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|(body, headers)| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut all = vec![("Content-Type", "application/json")];
                all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                barrier.wait();
                http(port, "POST", "/CUSTOMER/LOGIN/", &all, &body).status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn thirty_parallel_wrong_passwords_for_one_account_get_exactly_ten_checks() {
    // Each attempt from its own (proxied) address, so only the account limit applies.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("burst.db"),
        &[("ROCKET_IP_HEADER", "X-Real-IP")],
    );
    let key = create_key(&dir.path().join("burst.db"), "shop");
    let body = json!({"email": "jdoe@example.com", "password": "wrong"}).to_string();
    let attempts = (0..30)
        .map(|n| {
            let headers = vec![
                ("X-Real-IP".to_owned(), format!("10.1.0.{n}")),
                ("X-API-Key".to_owned(), key.clone()),
            ];
            (body.clone(), headers)
        })
        .collect();

    let statuses = parallel_logins(&server, attempts);

    assert_eq!(count(&statuses, 401), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 20, "{statuses:?}");
}

#[test]
fn a_hundred_parallel_failures_from_one_address_get_exactly_ten_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("burst.db"), &[]);
    // A shop back end naming one visitor's address for every attempt.
    let key = create_forwarding_key(&dir.path().join("burst.db"), "shop-backend");
    let attempts = (0..100)
        .map(|n| {
            let body = json!({"email": format!("guess{n}@example.com"), "password": "x"});
            let headers = vec![
                ("X-API-Key".to_owned(), key.clone()),
                ("X-Forwarded-For".to_owned(), "198.51.100.23".to_owned()),
            ];
            (body.to_string(), headers)
        })
        .collect();

    let statuses = parallel_logins(&server, attempts);

    assert_eq!(count(&statuses, 401), 10, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 90, "{statuses:?}");
}

#[test]
fn without_rocket_toml_the_safe_defaults_still_hold() {
    if !sqlite_only("seeding a new SQLite file") {
        return;
    }
    // Started from a folder with no Rocket.toml: nothing of the shipped file is read.
    let dir = tempfile::tempdir().unwrap();
    let mut command = binary();
    command.current_dir(dir.path()).arg("serve");
    let server = Server::spawn(command, &dir.path().join("bare.db"), &[]);
    let key = create_forwarding_key(&dir.path().join("bare.db"), "shop-backend");

    // X-Real-IP is not trusted by default (no ip_header): a client choosing its own for each
    // attempt is still the one visitor its shop names.
    let statuses: Vec<u16> = (0..11)
        .map(|n| {
            let address = format!("10.9.0.{n}");
            let body = json!({"email": format!("x{n}@example.com"), "password": "x"});
            let headers = [
                ("Content-Type", "application/json"),
                ("X-Real-IP", address.as_str()),
                ("X-API-Key", key.as_str()),
                ("X-Forwarded-For", "198.51.100.9"),
            ];
            server
                .request("POST", "/CUSTOMER/LOGIN/", &headers, &body.to_string())
                .status
        })
        .collect();
    let health = server.get("/health");

    assert_eq!(statuses[..10], [401; 10]);
    assert_eq!(statuses[10], 429, "{statuses:?}");
    assert_eq!(
        health.header("server"),
        None,
        "no Server header without ident"
    );
    let big = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(20 * 1024)
    );
    let reply = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json"), ("X-API-Key", &key)],
        &big,
    );
    reply.assert_error(413);
    // And no demo customers were put into a database that nobody asked to seed.
    let listed = server.request("GET", "/CUSTOMER/LIST/", &[("X-API-Key", &key)], "");
    assert_eq!(listed.customers().len(), 0);
}

#[test]
fn a_misspelled_setting_stops_start_up_naming_it_and_the_closest_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, "[default]\nredcat = [\"phone\"]\n").unwrap();

    let from_env = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_REDCAT", "[\"phone\"]")
        .output()
        .unwrap();
    let from_file = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_CONFIG", &file)
        .output()
        .unwrap();

    for output in [from_env, from_file] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("unknown setting \"redcat\""),
            "names the key: {stderr}"
        );
        assert!(
            stderr.contains("did you mean \"redact\"?"),
            "suggests the closest: {stderr}"
        );
    }
    assert!(!db.exists(), "nothing was created");
}

#[test]
fn a_burst_of_connections_does_not_grow_the_thread_pool() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("burst.db"), &[]);
    let barrier = Arc::new(Barrier::new(200));

    // Each with its own offset: every one is a cache miss, so every one needs the database.
    let threads: Vec<_> = (0..200)
        .map(|n| {
            let (barrier, port) = (Arc::clone(&barrier), server.port);
            std::thread::spawn(move || {
                barrier.wait();
                let path = format!("/CUSTOMER/LIST/?offset={n}&limit=3");
                http(port, "GET", &path, &[], "").status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 2 workers, one blocking thread per pooled connection (4 on 2 cores), a few others;
    // Rocket's own server let the blocking pool grow to 512 threads.
    assert!(threads <= 24, "{threads} threads after a burst of 200");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("slow.db"),
        &[("ROCKET_HEADER_TIMEOUT_SECS", "1")],
    );
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();

    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);

    let waited = started.elapsed();
    assert!(read.is_ok(), "the server closed the connection: {read:?}");
    assert!(
        waited < Duration::from_secs(5),
        "closed after the 1 s header timeout, not the test's 10 s: {waited:?}"
    );
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn stalled_connections_beyond_a_low_open_files_limit_do_not_lock_others_out() {
    // Started with a soft limit of 256 open files; 400 clients then open a connection and
    // never send a request. The server raises its limit at start-up and keeps serving.
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("bash");
    command.current_dir(root()).args([
        "-c",
        "ulimit -Sn 256 && exec \"$0\" serve",
        env!("CARGO_BIN_EXE_clientele"),
    ]);
    command
        .env("ROCKET_ARGON2_MEMORY_KIB", "64")
        .env("ROCKET_ARGON2_ITERATIONS", "1");
    let server = Server::spawn(command, &dir.path().join("stall.db"), &[]);
    let stalled: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let reply = server.get("/CUSTOMER/LIST/?id_client=1");

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.ids(), vec![1]);
    assert_eq!(stalled.len(), 400);
    let log = server.log();
    assert!(!log.contains("could not accept"), "{log}");
}

#[test]
fn health_reads_the_file_and_turns_503_when_it_is_overwritten() {
    if !sqlite_only("the database file") {
        return;
    }
    let app = spawn_app();
    assert_eq!(app.get("/health").status, 200);
    let size = std::fs::metadata(&app.db).unwrap().len() as usize;

    std::fs::write(&app.db, vec![0x5a; size]).unwrap();
    let health = app.get("/health");

    let message = health.assert_error(503);
    assert!(!message.contains(".db"), "no internals: {message}");
}

/// A SQLite file made by some other program, with a `customer` table of its own.
fn foreign_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, balance REAL);
         INSERT INTO customer (name, balance) VALUES ('ACME', 12.5);",
    )
    .unwrap();
}

#[test]
fn another_applications_database_is_refused_in_one_line_and_left_byte_identical() {
    if !sqlite_only("another application's SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("erp.sqlite");
    foreign_database(&plain);
    let marked = dir.path().join("marked.sqlite");
    foreign_database(&marked);
    rusqlite::Connection::open(&marked)
        .unwrap()
        .pragma_update(None, "application_id", 42)
        .unwrap();

    for db in [&plain, &marked] {
        let before = std::fs::read(db).unwrap();
        let serve = binary()
            .arg("serve")
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(db, crate::helpers::Start::Empty),
            )
            .output()
            .unwrap();
        let tool = run_expecting_failure(db, &["keys", "list"], "");

        for output in [serve, tool] {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains(db.to_str().unwrap()), "names it: {stderr}");
            assert!(stderr.contains("has not changed it"), "{stderr}");
            assert!(!stderr.contains("CREATE"), "no SQL: {stderr}");
        }
        assert_eq!(std::fs::read(db).unwrap(), before, "byte-identical");
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        assert!(!Path::new(&wal).exists(), "not switched to WAL");
    }
}

#[test]
fn a_database_from_before_the_application_id_is_still_recognised() {
    if !sqlite_only("SQLite's application id") {
        return;
    }
    let app = spawn_app();
    let db = app.db.clone();
    drop(app.client);
    // As clientele 0.1 left it: schema 2, no application id, no audit, no key scopes.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA application_id = 0; DROP TABLE audit;
         DROP TABLE login_failure; DROP TABLE login_unlock;
         DROP TRIGGER api_key_use_key_removed; DROP TABLE api_key_use;
         DROP TRIGGER answer_version_key_added; DROP TRIGGER answer_version_key_changed;
         DROP TRIGGER answer_version_key_removed; DROP TABLE answer_version;
         DROP TRIGGER customer_renumbered;
         DROP TRIGGER session_password_changed; DROP TRIGGER session_customer_deleted;
         DROP TABLE session; ALTER TABLE api_key DROP COLUMN scope;
         ALTER TABLE api_key DROP COLUMN forwards_client_address;
         DROP TRIGGER demo_customer_deleted;
         DROP TABLE demo_customer;
         DROP TRIGGER reset_token_customer_deleted; DROP TRIGGER reset_token_password_changed;
         DROP TABLE reset_token;
         DROP TRIGGER customer_id_high_insert; DROP TABLE customer_id_high;
         DROP TRIGGER customer_added; DROP TRIGGER customer_changed; DROP TRIGGER customer_deleted;
         DROP TABLE change_log; DROP TABLE tombstone; DROP INDEX customer_change;
         ALTER TABLE customer DROP COLUMN change_seq;
         DROP TRIGGER upstream_password_replaced; DROP TRIGGER upstream_password_deleted;
         DROP TABLE upstream_password; DROP INDEX customer_legacy_password;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);

    let again = spawn_app_on(app.dir, db.clone(), |f| f);

    assert_eq!(again.get("/health").status, 200);
    let id: i32 = rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .unwrap();
    assert_eq!(id, clientele::store::sqlite::APPLICATION_ID);
}

/// Reports nothing, but runs `on_first` at the first step.
struct OnFirstStep<F: Fn() + Sync>(F, std::sync::Once);

impl<F: Fn() + Sync> clientele::transfer::Progress for OnFirstStep<F> {
    fn phase(&self, _: &'static str, _: usize) {}
    fn step(&self) {
        self.1.call_once(&self.0);
    }
}

#[test]
fn start_up_hashing_keeps_a_password_changed_while_it_ran() {
    if !sqlite_only("calls the SQLite migration itself (PostgreSQL's: store/postgres/tests.rs)") {
        return;
    }
    let app = spawn_app();
    let db = app.db.clone();
    drop(app.client);
    app_sql(
        &db,
        "UPDATE customer SET password_hash = 'plain-' || clcleunik",
    );
    let hasher = clientele::auth::PasswordHasher::new(clientele::auth::Argon2Config {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    let changed = hasher
        .hash(&clientele::auth::Secret::new("set-by-passwd"))
        .unwrap();
    // While hashing runs, another process (`clientele passwd`) sets customer 3's password.
    let progress = OnFirstStep(
        || {
            rusqlite::Connection::open(&db)
                .unwrap()
                .execute(
                    "UPDATE customer SET password_hash = ?1 WHERE clcleunik = 3",
                    [&changed],
                )
                .unwrap();
        },
        std::sync::Once::new(),
    );
    let mut conn = rusqlite::Connection::open(&db).unwrap();

    let replaced =
        clientele::store::sqlite::hash_legacy_passwords(&mut conn, &hasher, &progress).unwrap();

    let hashes = stored_hashes(&db);
    assert_eq!(replaced, hashes.len() - 1);
    assert_eq!(hashes[2].as_deref(), Some(changed.as_str()), "passwd won");
    for hash in hashes.iter().flatten() {
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }
}

fn app_sql(db: &Path, sql: &str) {
    run_sql(db, sql);
}

#[test]
fn start_up_hashing_logs_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("legacy.db");
    quick_start(&db);
    app_sql(
        &db,
        "UPDATE customer SET password_hash = 'plain-' || clcleunik",
    );

    let server = Server::start(&db, &[]);

    let log = server.stop();
    assert!(
        log.contains("hashing legacy passwords: 25 to do; the port opens when done"),
        "{log}"
    );
    assert!(
        log.contains("hashing legacy passwords: 25 of 25 (100%)"),
        "{log}"
    );
    assert!(
        log.contains("hashed 25 legacy plain-text password(s)"),
        "{log}"
    );
    assert!(!log.contains("plain-1"), "{log}");
}

#[test]
fn http_1_1_without_host_is_a_400_and_http_1_0_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("host.db"), &[]);

    let without = raw_exchange(
        server.port,
        b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let old = raw_exchange(server.port, b"GET /health HTTP/1.0\r\n\r\n");

    assert!(without.starts_with("HTTP/1.1 400"), "{without}");
    assert!(without.contains("application/json"), "{without}");
    assert!(without.contains("Host header"), "{without}");
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
}

#[test]
fn sigterm_while_a_large_list_streams_finishes_it_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    quick_start(&db);
    app_sql(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 30999)
         INSERT INTO customer (clcleunik, login, lastName, email, city, address)
         SELECT i, 'user' || i, 'Name' || i, 'user' || i || '@example.be', 'Liège',
                'Rue de la Station ' || i FROM n;",
    );
    // A 1 MiB cache: the 15 MB list is streamed from the database as it is sent.
    let mut server = Server::start(&db, &[("ROCKET_RESPONSE_CACHE_MIB", "1")]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /CUSTOMER/LIST/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut start = [0u8; 4096];
    stream.read_exact(&mut start).unwrap();

    let reader = std::thread::spawn(move || {
        // A slow client: the rest of the body is read only after the signal.
        std::thread::sleep(Duration::from_millis(200));
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest);
        (read.is_ok(), rest)
    });
    let exit = server.terminate(Duration::from_secs(15));
    let (complete, rest) = reader.join().unwrap();

    assert!(complete);
    let mut whole = start.to_vec();
    whole.extend(rest);
    let text = String::from_utf8(whole).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let body = dechunk(body);
    let json: serde_json::Value = serde_json::from_str(&body).expect("the whole body arrived");
    assert_eq!(json["result"]["customer"].as_array().unwrap().len(), 30_025);
    let exit = exit.expect("exited within the grace period");
    assert!(exit.success(), "{exit:?}");
}

/// A small tmpfs, unmounted when dropped: a disk that really fills up (real ENOSPC, through
/// the same file paths the server and the tools use).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Panics where mounting is refused: the test runs as root, here and in CI, and a test
    /// that skips itself quietly proves nothing.
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("`mount` runs");
        assert!(
            mounted.status.success(),
            "this test needs to mount a small tmpfs (run it as root, or with CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk { path, _dir: dir }
    }

    /// Fills every byte left with one file, writing until the disk refuses (ENOSPC).
    fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.path.join(name)).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // A partial last block: fill the few bytes that are left, one at a time.
        while let Ok(1..) = file.write(&[0u8]) {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_fails_an_import_and_a_write_cleanly_and_loses_nothing() {
    if !sqlite_only("a full disk under the SQLite file") {
        return;
    }
    let disk = SmallDisk::mount("1m");
    let db = disk.path.join("full.db");
    quick_start(&db);
    let server = Server::start(&db, &[]);
    let before = server.get("/CUSTOMER/LIST/").body;
    // No byte left: a write must grow the WAL (emptied at start-up), and cannot.
    disk.fill("filler");
    let mut csv = String::from("clcleunik,lastName,address\n");
    for id in 1000..6000 {
        csv.push_str(&format!("{id},Name{id},Rue de la Station {id}\n"));
    }
    let update_body = json!({"id_client": 1, "address": "x".repeat(900)}).to_string();
    let json_type = [("Content-Type", "application/json")];

    let import = run_expecting_failure(&db, &["import", "-"], &csv);
    let update = server.request("POST", "/CUSTOMER/UPDATE/", &json_type, &update_body);

    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(!import.status.success(), "{stderr}");
    assert!(stderr.contains("nothing imported"), "{stderr}");
    assert!(stderr.contains("full"), "says why: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let message = update.assert_error(503);
    assert!(!message.contains("disk"), "no internals: {message}");
    assert!(!message.contains("full.db"), "no internals: {message}");
    // Space back: the server answers exactly as before, and writes again.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    let after = server.get("/CUSTOMER/LIST/");
    assert_eq!(after.status, 200);
    assert_eq!(after.body, before, "nothing changed, nothing lost");
    assert_eq!(after.customers().len(), demo_customers().len());
    assert_eq!(server.get("/health").status, 200);
    let retried = server.request("POST", "/CUSTOMER/UPDATE/", &json_type, &update_body);
    assert_eq!(retried.status, 200, "{}", retried.body);
    drop(server);
}

#[test]
fn four_downloads_of_a_streamed_list_complete_over_real_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stream.db");
    quick_start(&db);
    app_sql(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 20999)
         INSERT INTO customer (clcleunik, login, lastName, email)
         SELECT i, 'user' || i, 'Name' || i, 'user' || i || '@example.be' FROM n;",
    );
    let server = Server::start(&db, &[("ROCKET_RESPONSE_CACHE_MIB", "1")]);
    let port = server.port;

    let downloads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http(port, "GET", "/CUSTOMER/LIST/", &[], "")))
        .collect();

    for download in downloads {
        let reply = download.join().unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("transfer-encoding"),
            Some("chunked"),
            "streamed"
        );
        assert_eq!(reply.header("x-total-count"), Some("20025"));
        assert_eq!(reply.customers().len(), 20_025);
    }
}
