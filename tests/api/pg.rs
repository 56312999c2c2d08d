//! The PostgreSQL backend, and several nodes on one database. These run when
//! `CLIENTELE_TEST_POSTGRES` holds the URL of a PostgreSQL server whose role may create
//! databases (`.ci/run` starts one with `scripts/pg-test-server.sh`); each test makes its own
//! database and drops it. Without the variable they say so and pass: `cargo test` alone
//! needs nothing but SQLite.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{binary, quick_start_sqlite, stderr, Reply, Server};

/// A fresh database on the test server, dropped when this goes.
pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A new empty database, or `None` (with a note) when no test server is configured.
pub fn pg_database() -> Option<PgDb> {
    let Some(admin) = std::env::var("CLIENTELE_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("CLIENTELE_TEST_POSTGRES is not set: the PostgreSQL test is skipped");
        return None;
    };
    let name = format!(
        "clientele_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("CLIENTELE_TEST_POSTGRES does not connect: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = with_database(&admin, &name);
    Some(PgDb { url, admin, name })
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `url` naming database `name` instead of its own (the query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// `clientele ARGS` with `ROCKET_DATABASE=database`, required to succeed: its stdout.
fn tool(database: &str, args: &[&str]) -> String {
    let output = binary()
        .env("ROCKET_DATABASE", database)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "clientele {} failed: {}",
        args.join(" "),
        stderr(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A shop on PostgreSQL: the quick start's demo customers, made the shop's own, moved with
/// `copy-to`; the SQLite file they came from (kept for comparison) and a write key made
/// before the move.
struct Shop {
    pg: PgDb,
    _dir: tempfile::TempDir,
    sqlite: std::path::PathBuf,
    write_key: String,
}

fn shop() -> Option<Shop> {
    let pg = pg_database()?;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("shop.db");
    quick_start_sqlite(&sqlite);
    crate::helpers::adopt_demo(&sqlite);
    let write_key = tool(
        sqlite.to_str().unwrap(),
        &["keys", "create", "shop", "--write"],
    )
    .trim()
    .to_owned();
    tool(sqlite.to_str().unwrap(), &["copy-to", &pg.url]);
    Some(Shop {
        pg,
        _dir: dir,
        sqlite,
        write_key,
    })
}

fn node(url: &str) -> Server {
    Server::start(Path::new(url), &[])
}

fn with_key(key: &str) -> [(&str, &str); 2] {
    [("X-API-Key", key), ("Content-Type", "application/json")]
}

/// Polls `check` until it holds or `bound` passes; how long it took.
fn within(bound: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() > bound {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The staleness bound the README states for another node's commits.
const OTHER_NODE_BOUND: Duration = Duration::from_secs(1);

#[test]
fn copy_to_moves_everything_and_the_same_keys_get_the_same_bytes() {
    let Some(shop) = shop() else { return };
    let key = shop.write_key.as_str();
    let sqlite_node = Server::start(&shop.sqlite, &[]);
    let pg_node = node(&shop.pg.url);
    for path in [
        "/CUSTOMER/LIST/",
        "/CUSTOMER/LIST/?id_client=3",
        "/CUSTOMER/LIST/?email=JOHN.DOE@EXAMPLE.COM",
        "/CUSTOMER/LIST/?limit=2&after=1",
        "/CUSTOMER/LIST/?limit=2&offset=3",
        "/CUSTOMER/CHANGES/?since=0",
    ] {
        let a = sqlite_node.request("GET", path, &with_key(key), "");
        let b = pg_node.request("GET", path, &with_key(key), "");
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert_eq!(b.status, a.status, "{path}: {}", b.body);
        assert_eq!(b.body, a.body, "{path}");
        assert_eq!(
            b.header("x-total-count"),
            a.header("x-total-count"),
            "{path}"
        );
    }
    // Hashes came too: a demo password logs in on PostgreSQL.
    let demo = &crate::helpers::demo_customers()[0];
    let login = json!({"email": demo["email"], "password": demo["password"]}).to_string();
    let reply = pg_node.request("POST", "/CUSTOMER/LOGIN/", &with_key(key), &login);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The audit trail came (the key's creation is not a write; the import of the seed is).
    let audit = tool(&shop.pg.url, &["audit"]);
    let sqlite_audit = tool(shop.sqlite.to_str().unwrap(), &["audit"]);
    assert_eq!(audit, sqlite_audit);
    // A second copy into a database that has customers is refused, and changes nothing.
    let output = binary()
        .env("ROCKET_DATABASE", &shop.sqlite)
        .args(["copy-to", &shop.pg.url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("not empty"), "{message}");
    assert!(!message.contains("clientele-pw"), "{message}");
}

#[test]
fn a_key_created_or_revoked_through_one_node_holds_on_the_other_at_once() {
    let Some(shop) = shop() else { return };
    let (a, b) = (node(&shop.pg.url), node(&shop.pg.url));
    // Both nodes have read their keys once.
    for server in [&a, &b] {
        let reply = server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=1",
            &with_key(&shop.write_key),
            "",
        );
        assert_eq!(reply.status, 200);
    }
    let new_key = tool(&shop.pg.url, &["keys", "create", "late"])
        .trim()
        .to_owned();
    for server in [&a, &b] {
        let reply = server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=1",
            &with_key(&new_key),
            "",
        );
        assert_eq!(reply.status, 200, "a new key works at once: {}", reply.body);
    }
    tool(&shop.pg.url, &["keys", "revoke", "late"]);
    for server in [&a, &b] {
        let refused = within(OTHER_NODE_BOUND, || {
            server
                .request(
                    "GET",
                    "/CUSTOMER/LIST/?id_client=1",
                    &with_key(&new_key),
                    "",
                )
                .status
                == 401
        });
        assert!(
            refused.is_some(),
            "a revoked key still works after {OTHER_NODE_BOUND:?}"
        );
    }
}

#[test]
fn a_write_through_one_node_is_seen_through_the_other_memo_included() {
    let Some(shop) = shop() else { return };
    let key = shop.write_key.as_str();
    let (a, b) = (node(&shop.pg.url), node(&shop.pg.url));
    let path = "/CUSTOMER/LIST/?id_client=2";
    let mut slowest = Duration::ZERO;
    for round in 0..20 {
        // B has the answer in its memo.
        assert_eq!(b.request("GET", path, &with_key(key), "").status, 200);
        assert_eq!(b.request("GET", path, &with_key(key), "").status, 200);
        let city = format!("City {round}");
        let update = json!({"clcleunik": 2, "city": city}).to_string();
        let reply = a.request("POST", "/CUSTOMER/UPDATE/", &with_key(key), &update);
        assert_eq!(reply.status, 200, "{}", reply.body);
        // A itself: at once.
        assert_eq!(
            a.request("GET", path, &with_key(key), "").customers()[0]["city"],
            city
        );
        let seen = within(OTHER_NODE_BOUND, || {
            b.request("GET", path, &with_key(key), "").customers()[0]["city"] == city
        })
        .unwrap_or_else(|| panic!("node B still serves the old city after {OTHER_NODE_BOUND:?}"));
        slowest = slowest.max(seen);
    }
    eprintln!("another node's write was seen within {slowest:?} at worst");
}

#[test]
fn ten_failed_logins_are_ten_whichever_nodes_they_hit() {
    let Some(shop) = shop() else { return };
    let (a, b) = (node(&shop.pg.url), node(&shop.pg.url));
    let key = shop.write_key.as_str();
    let demo = &crate::helpers::demo_customers()[1];
    let wrong = json!({"email": demo["email"], "password": "not the password"}).to_string();
    for attempt in 0..10 {
        let server = if attempt % 2 == 0 { &a } else { &b };
        let reply = server.request("POST", "/CUSTOMER/LOGIN/", &with_key(key), &wrong);
        assert_eq!(reply.status, 401, "attempt {attempt}: {}", reply.body);
    }
    let right = json!({"email": demo["email"], "password": demo["password"]}).to_string();
    for server in [&a, &b] {
        let reply: Reply = server.request("POST", "/CUSTOMER/LOGIN/", &with_key(key), &right);
        assert_eq!(reply.status, 429, "{}", reply.body);
        assert!(reply.header("retry-after").is_some());
    }
    // Another customer is not kept out.
    let other = &crate::helpers::demo_customers()[2];
    let login = json!({"email": other["email"], "password": other["password"]}).to_string();
    assert_eq!(
        b.request("POST", "/CUSTOMER/LOGIN/", &with_key(key), &login)
            .status,
        200
    );
}

#[test]
fn a_changes_token_from_one_node_goes_on_on_the_other_with_nothing_missed_or_repeated() {
    let Some(shop) = shop() else { return };
    let key = shop.write_key.as_str();
    let (a, b) = (node(&shop.pg.url), node(&shop.pg.url));
    let first = a.request("GET", "/CUSTOMER/CHANGES/?since=0", &with_key(key), "");
    assert_eq!(first.status, 200, "{}", first.body);
    let mut token: String = first.json()["result"]["next"].as_str().unwrap().to_owned();
    // Writers on both nodes at once.
    let writers: Vec<_> = (0..2)
        .map(|n| {
            let port = if n == 0 { a.port } else { b.port };
            let key = key.to_owned();
            std::thread::spawn(move || {
                let mut added = Vec::new();
                for i in 0..15 {
                    let email = format!("node{n}-{i}@example.com");
                    let body = json!({"email": email, "lastName": "Writer"}).to_string();
                    let reply = crate::helpers::http(
                        port,
                        "POST",
                        "/CUSTOMER/ADD/",
                        &[("X-API-Key", &key), ("Content-Type", "application/json")],
                        &body,
                    );
                    assert_eq!(reply.status, 201, "{}", reply.body);
                    added.push(
                        reply.json()["result"]["customer"][0]["clcleunik"]
                            .as_i64()
                            .unwrap(),
                    );
                }
                added
            })
        })
        .collect();
    let mut seen: Vec<i64> = Vec::new();
    let mut polls = 0;
    // Poll alternately through both nodes while the writers run, then until quiet.
    let mut added: Vec<i64> = Vec::new();
    let mut writers = Some(writers);
    loop {
        let server = if polls % 2 == 0 { &a } else { &b };
        polls += 1;
        let reply = server.request(
            "GET",
            &format!("/CUSTOMER/CHANGES/?since={token}&limit=7"),
            &with_key(key),
            "",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        for customer in json["result"]["customer"].as_array().unwrap() {
            seen.push(customer["clcleunik"].as_i64().unwrap());
        }
        token = json["result"]["next"].as_str().unwrap().to_owned();
        if writers
            .as_ref()
            .is_some_and(|w| w.iter().all(|t| t.is_finished()))
        {
            for writer in writers.take().unwrap() {
                added.extend(writer.join().unwrap());
            }
        }
        if writers.is_none() && seen.len() >= added.len() && !added.is_empty() {
            break;
        }
        assert!(
            polls < 2000,
            "the feed never caught up: saw {seen:?}, added {added:?}"
        );
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort_unstable();
    sorted_seen.dedup();
    assert_eq!(
        sorted_seen.len(),
        seen.len(),
        "a change was repeated: {seen:?}"
    );
    added.sort_unstable();
    assert_eq!(sorted_seen, added, "a change was missed");
}

#[test]
fn the_database_password_never_shows_in_a_log_or_an_error() {
    let Some(shop) = shop() else { return };
    let password = shop
        .pg
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .and_then(|userinfo| userinfo.split(':').nth(1))
        .unwrap_or("")
        .to_owned();
    assert!(!password.is_empty(), "the test URL has a password");
    // A wrong database name: refused at start, naming the URL without the password.
    let wrong = shop.pg.url.replace(&shop.pg.name, "no_such_database");
    let output = binary()
        .env("ROCKET_DATABASE", &wrong)
        .env("ROCKET_PORT", "0")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(text.contains("no_such_database"), "{text}");
    assert!(!text.contains(&password), "{text}");
    // A server at debug level, and the tools, say nothing of it either.
    let server = Server::start(Path::new(&shop.pg.url), &[("ROCKET_LOG_LEVEL", "debug")]);
    let _ = server.request(
        "GET",
        "/CUSTOMER/LIST/?id_client=1",
        &with_key(&shop.write_key),
        "",
    );
    let log = server.stop();
    assert!(log.contains("postgres://"), "{log}");
    assert!(!log.contains(&password), "{log}");
}
