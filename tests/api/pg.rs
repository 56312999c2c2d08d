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
    let url = crate::helpers::url_with_database(&admin, &name);
    Some(PgDb { url, admin, name })
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    // The owner sees the lock from any machine, and lifts it for every node.
    let email = demo["email"].as_str().unwrap();
    let shown = tool(&shop.pg.url, &["limits", email]);
    assert!(
        shown.contains("10 failed logins") && shown.contains("locked for"),
        "{shown}"
    );
    let totals = tool(&shop.pg.url, &["limits"]);
    assert!(totals.contains("1 locked now"), "{totals}");
    tool(&shop.pg.url, &["unlock", email]);
    assert!(tool(&shop.pg.url, &["limits", email]).contains("0 failed logins"));
    for server in [&a, &b] {
        let reply = server.request("POST", "/CUSTOMER/LOGIN/", &with_key(key), &right);
        assert_eq!(reply.status, 200, "after unlock: {}", reply.body);
    }
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

/// The exit status of `clientele serve` against `database`, and what it said.
fn serve_status(database: &str) -> (Option<i32>, String) {
    let output = binary()
        .env("ROCKET_DATABASE", database)
        .env("ROCKET_PORT", "0")
        .arg("serve")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    (output.status.code(), said)
}

#[test]
fn a_database_only_its_owner_can_fix_exits_78_and_one_that_may_come_up_exits_1() {
    let Some(pg) = pg_database() else { return };
    let password = url_password(&pg.url);
    // What only the owner can change: systemd must not restart it in a loop (78, EX_CONFIG).
    let foreign = pg_database().unwrap();
    postgres::Client::connect(&foreign.url, postgres::NoTls)
        .unwrap()
        .batch_execute("CREATE TABLE orders (id integer)")
        .unwrap();
    for (database, named) in [
        (
            pg.url.replace(&pg.name, "no_such_database"),
            "no_such_database",
        ),
        (
            pg.url
                .replacen(&format!(":{password}@"), ":not-the-password@", 1),
            "password",
        ),
        (foreign.url.clone(), "orders"),
        (format!("{}&sslmode=require", pg.url), "sslmode"),
    ] {
        let (status, said) = serve_status(&database);
        assert_eq!(status, Some(78), "{database}: {said}");
        assert!(said.contains(named), "{database}: {said}");
        assert!(!said.contains(&password), "{said}");
    }
    // A server that is not up (yet): worth a restart (1), and said so plainly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = format!("postgres://clientele:secret@127.0.0.1:{port}/shop");
    let (status, said) = serve_status(&down);
    assert_eq!(status, Some(1), "{said}");
    assert!(said.contains("cannot connect"), "{said}");
    assert!(!said.contains("secret"), "{said}");
}

// ---------------------------------------------------------------------------------------
// Imports, syncs and mirror mode on PostgreSQL.

/// `clientele ARGS` with `ROCKET_DATABASE=database` and `env`: its whole output, success or
/// not.
fn tool_output(database: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = binary();
    command.env("ROCKET_DATABASE", database).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// One number from the database, behind the tools' back.
fn sql_number(url: &str, sql: &str) -> i64 {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client.query_one(sql, &[]).unwrap().get(0)
}

/// The password in a test server's URL.
fn url_password(url: &str) -> String {
    let password = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('@').next())
        .and_then(|userinfo| userinfo.split(':').nth(1))
        .unwrap_or("")
        .to_owned();
    assert!(!password.is_empty(), "the test URL has a password");
    password
}

fn login(server: &Server, email: &str, password: &str) -> u16 {
    let body = json!({"email": email, "password": password}).to_string();
    server
        .request(
            "POST",
            "/CUSTOMER/LOGIN/",
            &[("Content-Type", "application/json")],
            &body,
        )
        .status
}

#[test]
fn import_on_postgresql_replaces_dry_runs_and_reports_every_bad_row_writing_nothing() {
    let Some(pg) = pg_database() else { return };
    let url = pg.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let sheet = dir.path().join("sheet.csv");
    std::fs::write(
        &sheet,
        "clcleunik;email;city;webRemise;password\n1;ann@shop.be;Namur;12,5;ann-password-1\n\
         2;bob@shop.be;Gent;0;bob-password-2\n3;cy@shop.be;Mons;5;\n",
    )
    .unwrap();
    let sheet = sheet.to_str().unwrap();

    let first = tool_output(url, &[], &["import", sheet]);
    let said = stderr(&first);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("3 inserted, 0 updated, 0 deleted"), "{said}");
    assert!(
        !said.contains("ann-password") && !said.contains("clientele-pw"),
        "{said}"
    );
    assert_eq!(
        sql_number(
            url,
            "SELECT count(*) FROM customer WHERE password_hash LIKE '$argon2id$%'"
        ),
        2,
        "plain passwords are hashed, an empty one is none"
    );
    // The same file again: nothing changes (a plain password that matches keeps its hash).
    let again = stderr(&tool_output(url, &[], &["import", sheet]));
    assert!(
        again.contains("0 inserted, 0 updated, 0 deleted, 3 unchanged"),
        "{again}"
    );
    let server = node(url);
    assert_eq!(login(&server, "ann@shop.be", "ann-password-1"), 200);
    assert_eq!(login(&server, "cy@shop.be", "anything at all"), 401);

    // Two keys of the old API's JSON: --replace --dry-run says what it would do and does
    // nothing; --replace does it, in one transaction numbered by the triggers.
    let json = dir.path().join("old.json");
    std::fs::write(
        &json,
        r#"{"success":"true","result":{"customer":[{"clcleunik":2,"city":"Liège"},
            {"clcleunik":40,"email":"new@shop.be","password":"new-password-40"}]}}"#,
    )
    .unwrap();
    let json = json.to_str().unwrap();
    let seq_before = sql_number(url, "SELECT seq FROM change_log");
    let dry = stderr(&tool_output(
        url,
        &[],
        &["import", json, "--replace", "--dry-run"],
    ));
    assert!(dry.contains("dry run, nothing written"), "{dry}");
    assert!(dry.contains("1 inserted, 1 updated, 2 deleted"), "{dry}");
    assert_eq!(sql_number(url, "SELECT count(*) FROM customer"), 3);
    assert_eq!(sql_number(url, "SELECT seq FROM change_log"), seq_before);
    let replaced = stderr(&tool_output(url, &[], &["import", json, "--replace"]));
    assert!(
        replaced.contains("1 inserted, 1 updated, 2 deleted, 0 unchanged"),
        "{replaced}"
    );
    let list = server.get("/CUSTOMER/LIST/");
    assert_eq!(list.ids(), vec![2, 40], "{}", list.body);
    assert_eq!(list.customers()[0]["city"], "Liège");
    assert_eq!(
        list.customers()[0]["email"],
        "bob@shop.be",
        "a column not sent is kept"
    );
    let changes = server.get(&format!("/CUSTOMER/CHANGES/?since={seq_before}"));
    let result = &changes.json()["result"];
    assert_eq!(result["deleted"], json!([1, 3]), "{}", changes.body);
    assert_eq!(result["next"], json!((seq_before + 4).to_string()));
    assert_eq!(login(&server, "new@shop.be", "new-password-40"), 200);
    assert_eq!(login(&server, "bob@shop.be", "bob-password-2"), 200);

    // Every bad row reported with its line, and nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "clcleunik,email,addedDate\n2,b@shop.be,2024-01-01\n50,x@shop.be,2024-13-01\n\
         2,c@shop.be,2024-01-01\n51,y@shop.be,2024-02-30\n",
    )
    .unwrap();
    let audit_before = tool(url, &["audit"]);
    let refused = tool_output(url, &[], &["import", bad.to_str().unwrap(), "--replace"]);
    let said = stderr(&refused);
    assert!(!refused.status.success());
    for expected in [
        "bad.csv:3: addedDate",
        "bad.csv:4: clcleunik: 2 appears twice (first on line 2)",
        "bad.csv:5: addedDate",
        "3 bad values",
        "nothing imported",
    ] {
        assert!(said.contains(expected), "{expected} missing from:\n{said}");
    }
    assert_eq!(server.get("/CUSTOMER/LIST/").ids(), vec![2, 40]);
    assert_eq!(tool(url, &["audit"]), audit_before, "no audit row either");
    // An empty file would delete everyone: refused unless --allow-empty.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "clcleunik,email\n").unwrap();
    let refused = tool_output(url, &[], &["import", empty.to_str().unwrap(), "--replace"]);
    assert!(
        stderr(&refused).contains("--allow-empty"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(sql_number(url, "SELECT count(*) FROM customer"), 2);
    let log = server.stop();
    assert!(!log.contains("password-"), "{log}");
}

#[test]
fn remove_demo_and_the_first_import_take_the_demo_customers_out_on_postgresql() {
    for first_step in ["remove-demo", "import"] {
        let Some(pg) = pg_database() else { return };
        let url = pg.url.as_str();
        let dir = tempfile::tempdir().unwrap();
        // The quick start's demo customers, still marked as such, moved onto PostgreSQL.
        let sqlite = dir.path().join("shop.db");
        quick_start_sqlite(&sqlite);
        tool(sqlite.to_str().unwrap(), &["copy-to", url]);
        assert_eq!(sql_number(url, "SELECT count(*) FROM demo_customer"), 25);
        let output = match first_step {
            "remove-demo" => tool_output(url, &[], &["remove-demo"]),
            _ => {
                let file = dir.path().join("mine.csv");
                std::fs::write(&file, "clcleunik,email\n1,mine@shop.be\n").unwrap();
                tool_output(url, &[], &["import", file.to_str().unwrap()])
            }
        };
        let said = stderr(&output);
        assert!(output.status.success(), "{said}");
        match first_step {
            "remove-demo" => assert!(said.contains("removed 25 demo customer(s)"), "{said}"),
            _ => assert!(
                said.contains("removed the 25 demo customers first"),
                "{said}"
            ),
        }
        assert_eq!(sql_number(url, "SELECT count(*) FROM demo_customer"), 0);
        let left = sql_number(url, "SELECT count(*) FROM customer");
        assert_eq!(left, if first_step == "import" { 1 } else { 0 });
        let audit = tool(url, &["audit"]);
        assert!(audit.contains("25 demo customers removed"), "{audit}");
        // Nothing left to remove: a second run says so and changes nothing.
        let again = stderr(&tool_output(url, &[], &["remove-demo"]));
        assert!(again.contains("removed 0 demo customer(s)"), "{again}");
    }
}

#[test]
fn backup_on_postgresql_refuses_and_says_what_to_run_without_the_password() {
    let Some(pg) = pg_database() else { return };
    let output = tool_output(&pg.url, &[], &["backup", "/tmp/shop backup.dump"]);
    let said = stderr(&output);
    assert!(!output.status.success());
    assert!(
        said.contains("pg_dump --format=custom --file='/tmp/shop backup.dump' 'postgres://"),
        "{said}"
    );
    assert!(said.contains(&format!("/{}", pg.name)), "{said}");
    assert!(
        said.contains("pg_restore --no-owner --dbname='postgres://"),
        "{said}"
    );
    assert!(!said.contains(&url_password(&pg.url)), "{said}");
    for command in said
        .lines()
        .filter(|line| line.trim_start().starts_with("pg_"))
    {
        assert!(
            !command.contains("***"),
            "no password at all in a command to run: {command}"
        );
    }
}

#[test]
fn sync_on_postgresql_hashes_only_what_changed_guards_mass_deletes_and_survives_another_key() {
    use crate::mirror::{old_customers, FakeOldApi, OLD_KEY};
    let Some(pg) = pg_database() else { return };
    let url = pg.url.as_str();
    let old = FakeOldApi::start(old_customers(30));
    let dir = tempfile::tempdir().unwrap();
    let key_a = dir.path().join("upstream.key");
    let key_b = dir.path().join("another.key");
    let sync = |key: &std::path::Path| {
        let env = [("ROCKET_UPSTREAM_KEY_FILE", key.to_str().unwrap())];
        let output = tool_output(url, &env, &["sync", &old.url()]);
        let said = stderr(&output);
        assert!(!said.contains(OLD_KEY), "{said}");
        assert!(!said.contains("erp-password"), "{said}");
        (output.status.success(), said)
    };

    let (ok, first) = sync(&key_a);
    assert!(ok, "{first}");
    assert!(first.contains("30 inserted"), "{first}");
    assert!(first.contains("30 password(s) hashed"), "{first}");
    let (_, second) = sync(&key_a);
    assert!(second.contains("30 unchanged"), "{second}");
    assert!(
        second.contains(" 0 password(s) hashed"),
        "unchanged costs no Argon2: {second}"
    );
    // The key file: made at the path the setting names, readable by its owner alone.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&key_a).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        sql_number(url, "SELECT count(*) FROM upstream_password"),
        30
    );

    // One changed password: hashed, and only it.
    old.edit(|customers| customers[3]["password"] = json!("a-new-password-4"));
    let (_, changed) = sync(&key_a);
    assert!(changed.contains(" 1 password(s) hashed"), "{changed}");

    // A node with another key file: it finds no digest it knows, hashes each password again
    // (the same passwords, new hashes) and keeps digests under its own key. Not a failure:
    // everyone still logs in, and its next sync costs nothing again.
    let (ok, other) = sync(&key_b);
    assert!(ok, "{other}");
    assert!(other.contains("30 password(s) hashed"), "{other}");
    assert!(
        other.contains("0 inserted, 30 updated, 0 deleted"),
        "{other}"
    );
    let (_, again) = sync(&key_b);
    assert!(again.contains(" 0 password(s) hashed"), "{again}");
    let server = node(url);
    assert_eq!(login(&server, "erp4@shop.be", "a-new-password-4"), 200);
    assert_eq!(login(&server, "erp7@shop.be", "erp-password-7"), 200);
    assert_eq!(login(&server, "erp4@shop.be", "erp-password-4"), 401);

    // An empty list, or one that would delete most customers: refused, nothing changed.
    for shrink in [0, 2] {
        old.edit(|customers| customers.truncate(shrink));
        let (ok, refused) = sync(&key_b);
        assert!(!ok && refused.contains("refused"), "{refused}");
        assert!(refused.contains("upstream_allow_mass_delete"), "{refused}");
        assert_eq!(sql_number(url, "SELECT count(*) FROM customer"), 30);
    }
    let allowed = tool_output(
        url,
        &[
            ("ROCKET_UPSTREAM_KEY_FILE", key_b.to_str().unwrap()),
            ("ROCKET_UPSTREAM_ALLOW_MASS_DELETE", "true"),
        ],
        &["sync", &old.url()],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(sql_number(url, "SELECT count(*) FROM customer"), 0);
    let audit = tool(url, &["audit"]);
    assert!(audit.contains("sync  sync"), "{audit}");
    assert!(!audit.contains(OLD_KEY), "{audit}");
}

/// A node mirroring `old`, syncing every second, with the key file `key`.
fn mirror_node(url: &str, old: &crate::mirror::FakeOldApi, key: &Path) -> Server {
    Server::start(
        Path::new(url),
        &[
            ("ROCKET_UPSTREAM", &old.url()),
            ("ROCKET_UPSTREAM_EVERY_SECS", "1"),
            ("ROCKET_UPSTREAM_TIMEOUT_SECS", "10"),
            ("ROCKET_UPSTREAM_KEY_FILE", key.to_str().unwrap()),
        ],
    )
}

fn health_age(server: &Server) -> Option<u64> {
    server.get("/health").json()["result"]["upstream"]["last_good_sync_age_secs"].as_u64()
}

#[test]
fn two_nodes_mirror_one_old_api_one_leads_writes_go_once_and_both_tell_the_same_age() {
    use crate::mirror::{old_customers, FakeOldApi, Mode, OLD_KEY};
    let Some(pg) = pg_database() else { return };
    let url = pg.url.as_str();
    let old = FakeOldApi::start(old_customers(6));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("upstream.key");
    let a = mirror_node(url, &old, &key);
    let b = mirror_node(url, &old, &key);
    for server in [&a, &b] {
        let synced = crate::helpers::eventually(Duration::from_secs(20), || {
            server.get("/CUSTOMER/LIST/").customers().len() == 6
        });
        assert!(synced, "{}", server.log());
    }

    // One leader, which alone runs the periodic syncs; the other stands by.
    let leads = |server: &Server| server.log().contains("this node leads the syncs");
    assert!(crate::helpers::eventually(Duration::from_secs(10), || {
        leads(&a) || leads(&b)
    }));
    let (leader, standby) = if leads(&a) { (a, b) } else { (b, a) };
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || standby
            .log()
            .contains("another node leads the syncs")),
        "{}",
        standby.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let synced_lines = |server: &Server| server.log().matches("synced from").count();
    assert!(synced_lines(&leader) >= 2, "{}", leader.log());
    assert_eq!(synced_lines(&standby), 0, "{}", standby.log());

    // A write through either node reaches the master once, and both nodes serve it.
    let json = [("Content-Type", "application/json")];
    for (n, server) in [&standby, &leader].into_iter().enumerate() {
        let city = format!("City {n}");
        let body = json!({"id_client": "3", "city": city}).to_string();
        let reply = server.request("POST", "/CUSTOMER/UPDATE/", &json, &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let updates = old
            .received()
            .iter()
            .filter(|r| r.0 == "POST" && r.1.starts_with("/CUSTOMER/UPDATE/"))
            .count();
        assert_eq!(updates, n + 1, "each write is forwarded once");
        for other in [&leader, &standby] {
            let seen = within(OTHER_NODE_BOUND, || {
                other.get("/CUSTOMER/LIST/?id_client=3").customers()[0]["city"] == city
            });
            assert!(seen.is_some(), "{}", other.log());
        }
    }
    let reply = standby.request("DELETE", "/CUSTOMER/DELETE/?id_client=4", &[], "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let deletes = old.received().iter().filter(|r| r.0 == "DELETE").count();
    assert_eq!(deletes, 1);
    for server in [&leader, &standby] {
        assert!(within(OTHER_NODE_BOUND, || server
            .get("/CUSTOMER/LIST/?id_client=4")
            .customers()
            .is_empty())
        .is_some());
    }

    // A sync that fetched before a write does not commit after it, whatever node each runs
    // on: while the leader's sync waits for a slow list, the standby's write waits its turn.
    old.set_mode(Mode::SlowList);
    let fetches = |old: &FakeOldApi| {
        old.arrived()
            .iter()
            .filter(|(method, target)| method == "GET" && !target.contains("id_client="))
            .count()
    };
    let before = fetches(&old);
    assert!(crate::helpers::eventually(Duration::from_secs(10), || {
        fetches(&old) > before
    }));
    let started = Instant::now();
    let body = json!({"id_client": "2", "city": "Waited"}).to_string();
    let reply = standby.request("POST", "/CUSTOMER/UPDATE/", &json, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the write went while another node's sync held the turn"
    );
    old.set_mode(Mode::Serve);
    std::thread::sleep(Duration::from_secs(2));
    for server in [&leader, &standby] {
        assert_eq!(
            server.get("/CUSTOMER/LIST/?id_client=2").customers()[0]["city"],
            "Waited"
        );
    }

    // Both nodes tell the same age of the last good sync, from the shared audit trail,
    // though only the leader syncs: with the old API failing, it grows alike on both.
    old.set_mode(Mode::Fail500);
    std::thread::sleep(Duration::from_secs(3));
    let (x, y) = (health_age(&leader), health_age(&standby));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x >= 2, "{x}");
    assert!(x.abs_diff(y) <= 1, "leader says {x} s, standby {y} s");
    let error = leader.get("/health").json()["result"]["upstream"]["last_error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("HTTP 500")),
        "{error}"
    );

    // The leader stops: its session ends, and the other node takes over at its next tick.
    old.set_mode(Mode::Serve);
    let leader_log = leader.stop();
    assert!(
        crate::helpers::eventually(Duration::from_secs(15), || synced_lines(&standby) > 0),
        "{}",
        standby.log()
    );
    assert!(standby.log().contains("this node leads the syncs"));
    assert!(health_age(&standby).is_some_and(|age| age <= 2));
    let standby_log = standby.stop();
    for log in [&leader_log, &standby_log] {
        assert!(!log.contains(OLD_KEY), "{log}");
        assert!(!log.contains("erp-password"), "{log}");
        assert!(!log.contains(&url_password(url)), "{log}");
    }
}

#[test]
fn a_list_download_cut_by_the_database_ends_in_an_error_never_a_clean_end() {
    use std::io::{Read, Write};
    let Some(shop) = shop() else { return };
    let mut client = postgres::Client::connect(&shop.pg.url, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "INSERT INTO customer (clcleunik, \"lastName\", city)
             SELECT g, 'Customer ' || g, 'A city with a long enough name ' || g
             FROM generate_series(1000, 40999) g",
        )
        .unwrap();
    // A small cache budget: the whole list is streamed, from a cursor, as the client reads.
    let node = Server::start(
        Path::new(&shop.pg.url),
        &[("ROCKET_RESPONSE_CACHE_MIB", "1")],
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /CUSTOMER/LIST/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {}\r\n\r\n",
        shop.write_key
    )
    .unwrap();
    // Read the head and a little of the body, then stop reading: the server's producer
    // waits on its cursor, mid-list.
    let mut received = vec![0u8; 64 * 1024];
    let first = stream.read(&mut received).unwrap();
    received.truncate(first);
    let head = String::from_utf8_lossy(&received);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    std::thread::sleep(Duration::from_millis(500));
    // The database goes away under it (a failover would do the same).
    let ended: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND query LIKE 'FETCH%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 1, "no list cursor was open");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    received.extend(rest);
    // Chunked encoding ends a complete body with a zero-size chunk: a cut one must not.
    assert!(
        !received.ends_with(b"0\r\n\r\n"),
        "a list cut short was ended as if it were whole ({} bytes)",
        received.len()
    );
    assert!(node.stop().contains("streaming a list failed"));
}

#[test]
fn a_tool_on_an_empty_postgresql_database_says_it_made_the_tables_not_the_database() {
    let Some(pg) = pg_database() else { return };
    let output = binary()
        .env("ROCKET_DATABASE", &pg.url)
        .args(["keys", "list"])
        .output()
        .unwrap();
    let said = stderr(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("had no clientele tables: created them"),
        "{said}"
    );
    assert!(!said.contains("did not exist"), "{said}");
    assert!(!said.contains("clientele-pw"), "{said}");
}
