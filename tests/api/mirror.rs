//! Mirroring the old API: `clientele sync` and the server's periodic sync, against a fake old
//! API started inside the test (plain-text passwords, switchable to changed data, empty, 500,
//! garbage or stalled). Never the network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::tools::{run, run_expecting_failure};

/// The old API's key: it must never reach a log line.
pub const OLD_KEY: &str = "OLD-API-KEY-7f3a9c";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Serve,
    Fail500,
    Garbage,
    Stall,
    /// Writes take [`SLOW`] before they are answered (and done); reads answer at once.
    SlowWrites,
    /// The whole list takes [`SLOW`] to come; everything else answers at once.
    SlowList,
    /// Writes are done, but fetching one customer (`?id_client=N`) is a 500.
    FailRefetch,
    /// Writes are refused with a message that echoes the URL (with the key) and the body.
    EchoError,
    /// Everything is refused with a 200 `{"success":"false","message":"bad key"}`.
    RefuseOk,
}

/// How long the slow modes take.
pub const SLOW: Duration = Duration::from_secs(4);

/// A request the fake received: method, path with query, body.
pub type Received = (String, String, String);

struct State {
    customers: Vec<Value>,
    mode: Mode,
    received: Vec<Received>,
    /// Every request as it arrives (before any stall): method and target.
    arrived: Vec<(String, String)>,
}

/// The old API, as a thread serving HTTP/1.1 on a loopback port.
pub struct FakeOldApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

/// `n` customers as the old API holds them, plain-text passwords included.
pub fn old_customers(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            json!({"clcleunik": i, "customerNumber": format!("K{i}"), "groupePrice": "",
                "login": format!("erp{i}"), "password": format!("erp-password-{i}"),
                "lastName": format!("Name{i}"), "firstName": "", "address": "", "zipcode": "",
                "city": "Liège", "country": "BE", "phone": "", "cellphone": "",
                "email": format!("erp{i}@shop.be"), "denomination": "", "tvaNumber": "",
                "addedDate": "2020-01-01", "addHour": "10:00:00", "language": "FR",
                "showPrice": true, "webRemise": 0, "megawinapp_login": "",
                "notification_accepted": "1"})
        })
        .collect()
}

fn envelope(customers: &[Value]) -> String {
    json!({"success": "true", "message": "Customers list", "result": {"customer": customers}})
        .to_string()
}

impl FakeOldApi {
    pub fn start(customers: Vec<Value>) -> FakeOldApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            customers,
            mode: Mode::Serve,
            received: Vec::new(),
            arrived: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FakeOldApi { port, state }
    }

    /// The list URL a shop would configure, with the old key.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/CUSTOMER/LIST/?apikey={OLD_KEY}",
            self.port
        )
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn edit(&self, change: impl FnOnce(&mut Vec<Value>)) {
        change(&mut self.state.lock().unwrap().customers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn arrived(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().arrived.clone()
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let body = String::from_utf8_lossy(&body).into_owned();
    let mode = {
        let mut state = state.lock().unwrap();
        state.arrived.push((method.clone(), target.clone()));
        state.mode
    };
    let whole_list = method == "GET" && query_id(&target).is_none();
    let (status, answer) = match mode {
        Mode::Stall => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Mode::Fail500 => (500, "<html>Internal Server Error</html>".to_owned()),
        Mode::Garbage => (200, "<html><body>maintenance</body></html>".to_owned()),
        Mode::RefuseOk => (200, r#"{"success":"false","message":"bad key"}"#.to_owned()),
        Mode::FailRefetch if method == "GET" && !whole_list => (
            500,
            r#"{"success":"false","message":"try later"}"#.to_owned(),
        ),
        Mode::EchoError if method != "GET" => (
            400,
            json!({"success": "false",
                "message": format!("cannot {method} http://127.0.0.1{target} with {body}")})
            .to_string(),
        ),
        Mode::SlowWrites if method != "GET" => {
            std::thread::sleep(SLOW);
            answer(state, &method, &target, &body)
        }
        Mode::SlowList if whole_list => {
            std::thread::sleep(SLOW);
            answer(state, &method, &target, &body)
        }
        _ => answer(state, &method, &target, &body),
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn query_id(target: &str) -> Option<i64> {
    target
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("id_client="))
        .and_then(|id| id.parse().ok())
}

fn answer(state: &Mutex<State>, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut state = state.lock().unwrap();
    if !target.contains(&format!("apikey={OLD_KEY}")) {
        return (401, r#"{"success":"false","message":"bad key"}"#.into());
    }
    state
        .received
        .push((method.to_owned(), target.to_owned(), body.to_owned()));
    let path = target.split('?').next().unwrap_or("");
    // A JSON object, or a form.
    let fields: serde_json::Map<String, Value> = serde_json::from_str(body).unwrap_or_else(|_| {
        form_urlencoded::parse(body.as_bytes())
            .map(|(name, value)| (name.into_owned(), json!(value)))
            .collect()
    });
    match (method, path) {
        ("GET", "/CUSTOMER/LIST/") => match query_id(target) {
            Some(id) => {
                let one: Vec<Value> = state
                    .customers
                    .iter()
                    .filter(|c| c["clcleunik"] == id)
                    .cloned()
                    .collect();
                (200, envelope(&one))
            }
            None => (200, envelope(&state.customers)),
        },
        ("POST", "/CUSTOMER/UPDATE/") => {
            let id: i64 = fields
                .get("id_client")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let Some(customer) = state.customers.iter_mut().find(|c| c["clcleunik"] == id) else {
                return (
                    404,
                    r#"{"success":"false","message":"no such customer"}"#.into(),
                );
            };
            for (name, value) in fields.iter().filter(|(n, _)| *n != "id_client") {
                customer[name] = value.clone();
            }
            (200, r#"{"success":"true","message":"updated"}"#.into())
        }
        ("POST", "/CUSTOMER/ADD/") => {
            let id = state.customers.len() as i64 + 100;
            let mut customer = old_customers(1)[0].clone();
            customer["clcleunik"] = json!(id);
            for (name, value) in &fields {
                customer[name] = value.clone();
            }
            state.customers.push(customer.clone());
            (
                200,
                json!({"success": "true", "message": "added",
                "result": {"customer": [{"clcleunik": id}]}})
                .to_string(),
            )
        }
        ("DELETE", "/CUSTOMER/DELETE/") => {
            let id = query_id(target).unwrap_or(0);
            state.customers.retain(|c| c["clcleunik"] != id);
            (200, r#"{"success":"true","message":"deleted"}"#.into())
        }
        _ => (404, r#"{"success":"false","message":"unknown"}"#.into()),
    }
}

/// A database with the schema and no customers (as a real shop's before its first sync).
fn empty_database() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mirror.db");
    crate::helpers::create_empty_database(&db);
    (dir, db)
}

#[test]
fn the_first_sync_equals_upstream_minus_passwords_and_every_password_logs_in() {
    let upstream = old_customers(30);
    let old = FakeOldApi::start(upstream.clone());
    let (dir, db) = empty_database();

    let first = run(&db, &["sync", &old.url()], "");
    let second = run(&db, &["sync", &old.url()], "");

    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("30 inserted"), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("30 password(s) hashed"),
        "{}",
        stderr(&first)
    );
    assert!(
        stderr(&second).contains("30 unchanged"),
        "{}",
        stderr(&second)
    );
    assert!(
        stderr(&second).contains(" 0 password(s) hashed"),
        "an unchanged upstream costs no Argon2: {}",
        stderr(&second)
    );
    for output in [&first, &second] {
        assert!(!stderr(output).contains(OLD_KEY), "{}", stderr(output));
    }
    let app = spawn_app_on(dir, db.clone(), |f| f.merge(("seed_demo", false)));
    let served = app.get("/CUSTOMER/LIST/").customers();
    let expected: Vec<_> = upstream
        .iter()
        .map(|c| {
            let mut c = c.as_object().unwrap().clone();
            c.remove("password");
            c
        })
        .collect();
    assert_eq!(served, expected);
    for customer in &upstream {
        let reply = app.login(
            customer["email"].as_str().unwrap(),
            customer["password"].as_str().unwrap(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // The key of the password digests lives beside the database, never in it.
    // (On PostgreSQL, in the file `upstream_key_file` names, relative to the working folder.)
    let key_file = match on_postgres() {
        true => root().join("data/upstream.key"),
        false => clientele::sync::SyncKey::path_for(&db),
    };
    let key = std::fs::read(key_file).unwrap();
    assert_eq!(key.len(), 32);
    assert!(!contains_bytes(&database_bytes(&db), &key));
}

#[test]
fn a_changed_password_upstream_is_hashed_at_the_next_sync_and_only_it() {
    let old = FakeOldApi::start(old_customers(10));
    let (dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());

    old.edit(|customers| customers[3]["password"] = json!("a-new-password-4"));
    let next = run(&db, &["sync", &old.url()], "");

    assert!(
        stderr(&next).contains(" 1 password(s) hashed"),
        "{}",
        stderr(&next)
    );
    let app = spawn_app_on(dir, db, |f| f.merge(("seed_demo", false)));
    assert_eq!(app.login("erp4@shop.be", "a-new-password-4").status, 200);
    app.login("erp4@shop.be", "erp-password-4")
        .assert_error(401);
}

#[test]
fn the_periodic_sync_brings_an_edit_an_addition_a_removal_and_a_new_password() {
    let old = FakeOldApi::start(old_customers(12));
    let (_dir, db) = empty_database();
    let server = Server::start(
        &db,
        &[
            ("ROCKET_UPSTREAM", &old.url()),
            ("ROCKET_UPSTREAM_EVERY_SECS", "1"),
        ],
    );
    assert!(eventually(Duration::from_secs(20), || server
        .get("/CUSTOMER/LIST/")
        .customers()
        .len()
        == 12));

    old.edit(|customers| {
        customers[0]["city"] = json!("Gent");
        customers.retain(|c| c["clcleunik"] != 5);
        let mut new = old_customers(13)[12].clone();
        new["clcleunik"] = json!(50);
        new["email"] = json!("new50@shop.be");
        customers.push(new);
        customers[1]["password"] = json!("changed-upstream-2");
    });

    let synced = eventually(Duration::from_secs(20), || {
        let list = server.get("/CUSTOMER/LIST/");
        let customers = list.customers();
        customers
            .iter()
            .any(|c| c["clcleunik"] == 1 && c["city"] == "Gent")
            && !customers.iter().any(|c| c["clcleunik"] == 5)
            && customers.iter().any(|c| c["clcleunik"] == 50)
    });
    assert!(synced, "{}", server.log());
    let login = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password}).to_string();
        server
            .request(
                "POST",
                "/CUSTOMER/LOGIN/",
                &[("Content-Type", "application/json")],
                &body,
            )
            .status
    };
    assert!(eventually(Duration::from_secs(10), || login(
        "erp2@shop.be",
        "changed-upstream-2"
    ) == 200));
    assert_eq!(login("new50@shop.be", "erp-password-13"), 200);
    let health = server.get("/health").json();
    assert_eq!(health["success"], "true");
    assert!(
        health["result"]["upstream"]["last_good_sync_age_secs"]
            .as_u64()
            .unwrap()
            < 10
    );
    let log = server.stop();
    assert!(log.contains("synced from http://127.0.0.1"), "{log}");
    assert!(!log.contains(OLD_KEY), "{log}");
    assert!(
        !log.contains("erp-password") && !log.contains("changed-upstream"),
        "{log}"
    );
}

#[test]
fn an_empty_or_much_smaller_upstream_is_refused_and_the_data_kept() {
    let old = FakeOldApi::start(old_customers(20));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());

    old.edit(Vec::clear);
    let empty = run_expecting_failure(&db, &["sync", &old.url()], "");
    old.edit(|customers| *customers = old_customers(2));
    let smaller = run_expecting_failure(&db, &["sync", &old.url()], "");

    for output in [&empty, &smaller] {
        assert!(!output.status.success());
        assert!(stderr(output).contains("refused"), "{}", stderr(output));
        assert!(
            stderr(output).contains("upstream_allow_mass_delete"),
            "{}",
            stderr(output)
        );
    }
    let count = |db: &std::path::Path| -> i64 { query_count(db, "SELECT count(*) FROM customer") };
    assert_eq!(count(&db), 20);
    let allowed = binary()
        .args(["sync", &old.url()])
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_UPSTREAM_ALLOW_MASS_DELETE", "true")
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(count(&db), 2);
}

#[test]
fn a_failing_upstream_leaves_the_last_good_data_served_at_once() {
    let old = FakeOldApi::start(old_customers(8));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let server = Server::start(
        &db,
        &[
            ("ROCKET_UPSTREAM", &old.url()),
            ("ROCKET_UPSTREAM_EVERY_SECS", "1"),
            ("ROCKET_UPSTREAM_TIMEOUT_SECS", "2"),
            // Where a library would print the URL it fetched, with the old key in it.
            ("ROCKET_LOG_LEVEL", "debug"),
        ],
    );

    for (mode, expected) in [
        (Mode::Fail500, "HTTP 500"),
        (Mode::Garbage, "not a customer list"),
        (Mode::Stall, "could not be reached"),
    ] {
        old.set_mode(mode);
        let failed = eventually(Duration::from_secs(20), || {
            let health = server.get("/health").json();
            health["result"]["upstream"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(expected))
        });
        assert!(failed, "{mode:?}: {}", server.log());
        let started = std::time::Instant::now();
        let list = server.get("/CUSTOMER/LIST/");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{mode:?} made the list wait"
        );
        assert_eq!(list.customers().len(), 8, "{mode:?}");
        assert_eq!(server.get("/health").status, 200, "the data is there");
    }
    // Nothing listens on a port just freed: the old API is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down_url = format!("http://127.0.0.1:{port}/CUSTOMER/LIST/?apikey={OLD_KEY}");
    let unreachable = run_expecting_failure(&db, &["sync", &down_url], "");
    assert!(!unreachable.status.success());
    assert!(
        stderr(&unreachable).contains("could not be reached"),
        "{}",
        stderr(&unreachable)
    );
    let log = server.stop();
    assert!(log.contains("still serving the last good data"), "{log}");
    assert!(!log.contains(OLD_KEY), "{log}");
    assert!(!stderr(&unreachable).contains(OLD_KEY));
}

#[test]
fn in_mirror_mode_writes_go_to_the_master_first() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let server = Server::start(
        &db,
        &[
            ("ROCKET_UPSTREAM", &old.url()),
            ("ROCKET_UPSTREAM_EVERY_SECS", "3600"),
        ],
    );
    let body = r#"{"id_client":"3","city":"Bruxelles","phone":"+32 2 000"}"#;
    let json = [("Content-Type", "application/json")];

    let updated = server.request("POST", "/customer/update/", &json, body);
    let added = server.request(
        "POST",
        "/CUSTOMER/ADD/",
        &json,
        r#"{"email":"counter@shop.be","lastName":"Comptoir"}"#,
    );
    let deleted = server.request("DELETE", "/CUSTOMER/DELETE/?id_client=4", &[], "");
    let password = server.request(
        "POST",
        "/CUSTOMER/PASSWORD/",
        &json,
        r#"{"id_client":"2","newPassword":"lavande moulin 1987 rouge"}"#,
    );

    assert_eq!(updated.status, 200, "{}", updated.body);
    let received = old.received();
    let update = received
        .iter()
        .find(|r| r.1.starts_with("/CUSTOMER/UPDATE/"))
        .unwrap();
    assert_eq!(update.0, "POST");
    assert_eq!(update.2, body, "the same body reached the master");
    assert!(update.1.contains(OLD_KEY), "with the old API's key");
    assert_eq!(updated.customers()[0]["city"], "Bruxelles");
    let three = server.get("/CUSTOMER/LIST/?id_client=3").customers();
    assert_eq!(
        three[0]["city"],
        "Bruxelles",
        "the next read shows it: {}",
        server.log()
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let new_id = added.customers()[0]["clcleunik"].as_i64().unwrap();
    assert_eq!(
        server
            .get(&format!("/CUSTOMER/LIST/?id_client={new_id}"))
            .customers()[0]["lastName"],
        "Comptoir"
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(server
        .get("/CUSTOMER/LIST/?id_client=4")
        .customers()
        .is_empty());
    assert!(received
        .iter()
        .any(|r| r.0 == "DELETE" && r.1.contains("id_client=4")));
    assert!(password.assert_error(409).contains("old API"));
    old.set_mode(Mode::Fail500);
    let refused = server.request(
        "POST",
        "/customer/update/",
        &json,
        r#"{"id_client":"1","city":"X"}"#,
    );
    refused.assert_error(503);
    assert_ne!(
        server.get("/CUSTOMER/LIST/?id_client=1").customers()[0]["city"],
        "X"
    );
    let log = server.stop();
    assert!(!log.contains(OLD_KEY), "{log}");
}

/// A server mirroring `old` (synced once already), syncing hourly unless told sooner.
fn mirror_server(old: &FakeOldApi, db: &std::path::Path, timeout_secs: &str) -> Server {
    Server::start(
        db,
        &[
            ("ROCKET_UPSTREAM", &old.url()),
            ("ROCKET_UPSTREAM_EVERY_SECS", "3600"),
            ("ROCKET_UPSTREAM_TIMEOUT_SECS", timeout_secs),
        ],
    )
}

/// Sends one request on a thread of its own; its answer (status and body) comes on the
/// channel, or never if the server does not answer.
fn send_later(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> std::sync::mpsc::Receiver<(u16, String)> {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let answer = raw_exchange(port, raw.as_bytes());
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        let _ = tx.send((status, body));
    });
    rx
}

/// A list read, `/health` and a login each answer within `limit` while writes wait.
fn assert_prompt(server: &Server, limit: Duration) {
    let port = server.port;
    let login = r#"{"email":"erp1@shop.be","password":"erp-password-1"}"#;
    for (what, method, path, body) in [
        ("list", "GET", "/CUSTOMER/LIST/?limit=5", ""),
        ("health", "GET", "/health", ""),
        ("login", "POST", "/CUSTOMER/LOGIN/", login),
    ] {
        let started = std::time::Instant::now();
        let answer = send_later(port, method, path, "application/json", body).recv_timeout(limit);
        let (status, body) =
            answer.unwrap_or_else(|_| panic!("{what} took more than {limit:?}: {}", server.log()));
        assert_eq!(status, 200, "{what}: {body}");
        assert!(started.elapsed() < limit);
    }
}

/// Every answer of `writes`, collected within `limit`: each a JSON envelope.
fn answers(
    writes: Vec<std::sync::mpsc::Receiver<(u16, String)>>,
    limit: Duration,
) -> Vec<(u16, Value)> {
    let deadline = std::time::Instant::now() + limit;
    writes
        .into_iter()
        .map(|rx| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (status, body) = rx.recv_timeout(left).expect("every write is answered");
            let json: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {body}"));
            (status, json)
        })
        .collect()
}

fn update_writes(server: &Server, n: usize) -> Vec<std::sync::mpsc::Receiver<(u16, String)>> {
    (0..n)
        .map(|i| {
            let body = format!(r#"{{"id_client":"2","city":"City {i}"}}"#);
            send_later(
                server.port,
                "POST",
                "/CUSTOMER/UPDATE/",
                "application/json",
                &body,
            )
        })
        .collect()
}

#[test]
fn writes_waiting_on_a_stalled_master_leave_reads_health_and_logins_prompt() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let server = mirror_server(&old, &db, "2");
    old.set_mode(Mode::SlowWrites);

    let writes = update_writes(&server, 40);
    assert!(eventually(Duration::from_secs(5), || old
        .arrived()
        .iter()
        .any(|(method, _)| method == "POST")));
    std::thread::sleep(Duration::from_millis(300));

    assert_prompt(&server, Duration::from_secs(2));
    let answers = answers(writes, Duration::from_secs(15));
    for (status, json) in &answers {
        assert!(*status == 200 || *status == 503, "{status} {json}");
        assert_eq!(
            json["success"],
            if *status == 200 { "true" } else { "false" }
        );
    }
    assert!(
        answers.iter().any(|(status, json)| *status == 503
            && json["message"].as_str().unwrap().contains("Try again")),
        "writes beyond the bound are told to try again: {answers:?}"
    );
    let log = server.stop();
    assert!(!log.contains(OLD_KEY), "{log}");
}

#[test]
fn writes_waiting_for_a_long_sync_leave_reads_health_and_logins_prompt() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    old.set_mode(Mode::SlowList);
    // Its first sync starts at once and waits SLOW for the list.
    let server = mirror_server(&old, &db, "10");
    assert!(eventually(Duration::from_secs(5), || old
        .arrived()
        .iter()
        .any(
            |(method, target)| method == "GET" && !target.contains("id_client")
        )));

    let writes = update_writes(&server, 40);
    std::thread::sleep(Duration::from_millis(300));

    assert_prompt(&server, Duration::from_secs(2));
    let answers = answers(writes, Duration::from_secs(15));
    assert!(
        answers.iter().any(|(status, _)| *status == 200),
        "waiting writes are done once the sync is over: {answers:?}"
    );
    assert!(answers
        .iter()
        .all(|(status, _)| [200, 503].contains(status)));
}

#[test]
fn a_write_the_master_took_but_that_could_not_be_fetched_back_is_not_called_undone() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let server = mirror_server(&old, &db, "5");
    old.set_mode(Mode::FailRefetch);
    let json = [("Content-Type", "application/json")];

    let updated = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &json,
        r#"{"id_client":"3","city":"Namur"}"#,
    );
    let three = server.get("/CUSTOMER/LIST/?id_client=3").customers();
    let added = server.request(
        "POST",
        "/CUSTOMER/ADD/",
        &json,
        r#"{"email":"late@shop.be","lastName":"Tardif"}"#,
    );

    for reply in [&updated, &added] {
        assert_eq!(reply.status, 202, "{}", reply.body);
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert_eq!(reply.json()["success"], "true", "{}", reply.body);
        assert!(!message.contains("nothing changed"), "{message}");
        assert!(message.contains("next sync"), "{message}");
    }
    assert_eq!(updated.customers()[0]["city"], "Namur");
    assert_eq!(three[0]["city"], "Namur", "no stale copy served as current");
    let adds = old
        .received()
        .iter()
        .filter(|r| r.1.starts_with("/CUSTOMER/ADD/"))
        .count();
    assert_eq!(adds, 1);
    // The sync it started brings the new customer without waiting an hour.
    assert!(eventually(Duration::from_secs(5), || server
        .get("/CUSTOMER/LIST/?email=late@shop.be")
        .customers()
        .len()
        == 1));
}

#[test]
fn an_update_with_the_id_in_the_query_reaches_the_master_with_it() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let server = mirror_server(&old, &db, "5");

    let json = server.request(
        "POST",
        "/CUSTOMER/UPDATE/?id_client=2",
        &[("Content-Type", "application/json")],
        r#"{"city":"Mons"}"#,
    );
    let form = server.request(
        "POST",
        "/CUSTOMER/UPDATE/?id_client=5",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "city=Arlon",
    );

    assert_eq!(json.status, 200, "{}", json.body);
    assert_eq!(form.status, 200, "{}", form.body);
    let received = old.received();
    let bodies: Vec<&str> = received
        .iter()
        .filter(|r| r.1.starts_with("/CUSTOMER/UPDATE/"))
        .map(|r| r.2.as_str())
        .collect();
    let sent: Value = serde_json::from_str(bodies[0]).unwrap();
    assert_eq!(sent["id_client"], "2", "{sent}");
    assert_eq!(sent["city"], "Mons");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(bodies[1].as_bytes())
        .into_owned()
        .collect();
    assert!(
        pairs.contains(&("id_client".into(), "5".into())),
        "{pairs:?}"
    );
    assert_eq!(
        server.get("/CUSTOMER/LIST/?id_client=5").customers()[0]["city"],
        "Arlon"
    );
}

#[test]
fn keys_never_cross_between_clientele_and_the_master() {
    let old = FakeOldApi::start(old_customers(6));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let ours = create_write_key(&db, "shop");
    let server = mirror_server(&old, &db, "5");
    let path = format!("/CUSTOMER/UPDATE/?apikey={ours}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let json = [("Content-Type", "application/json")];

    let accepted = server.request(
        "POST",
        &path,
        &form,
        &format!("apikey={ours}&id_client=3&city=Wavre"),
    );
    let accepted_json = server.request(
        "POST",
        &path,
        &json,
        &format!(r#"{{"apikey":"{ours}","id_client":"4","city":"Ath"}}"#),
    );
    old.set_mode(Mode::EchoError);
    let refused = server.request(
        "POST",
        &path,
        &form,
        &format!("apikey={ours}&id_client=3&city=Spa"),
    );

    // A master that echoes the body echoes a registration's password too.
    let refused_add = server.request(
        "POST",
        &format!("/CUSTOMER/ADD/?apikey={ours}"),
        &json,
        r#"{"email":"echo@shop.be","password":"Echoed-Pass-93x"}"#,
    );

    // In the spellings a client may send it: its own percent-encoding, JSON escapes.
    let refused_form = server.request(
        "POST",
        &format!("/CUSTOMER/ADD/?apikey={ours}"),
        &form,
        "email=echo2%40shop.be&password=Brand%2Dnew%2DSecret%2D99",
    );
    let refused_escaped = server.request(
        "POST",
        &format!("/CUSTOMER/ADD/?apikey={ours}"),
        &json,
        r#"{"email":"echo3@shop.be","password":"Brand \"quoted\" Secret 11"}"#,
    );
    for (reply, spellings) in [
        (
            &refused_form,
            ["Brand%2Dnew%2DSecret%2D99", "Brand-new-Secret-99"],
        ),
        (
            &refused_escaped,
            [
                r#"Brand \"quoted\" Secret 11"#,
                r#"Brand "quoted" Secret 11"#,
            ],
        ),
    ] {
        reply.assert_error(400);
        for spelling in spellings {
            assert!(!reply.body.contains(spelling), "{}", reply.body);
        }
    }

    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted_json.status, 200, "{}", accepted_json.body);
    let message = refused.assert_error(400);
    assert!(message.contains("cannot POST"), "{message}");
    refused_add.assert_error(400);
    assert!(
        !refused_add.body.contains("Echoed-Pass"),
        "{}",
        refused_add.body
    );
    for reply in [&accepted, &accepted_json, &refused, &refused_add] {
        assert!(!reply.body.contains(OLD_KEY), "{}", reply.body);
        assert!(!reply.body.contains(&ours), "{}", reply.body);
    }
    let received = old.received();
    assert!(received.len() >= 2);
    for (_, target, body) in &received {
        assert!(!body.contains(&ours), "our key reached the master: {body}");
        assert!(!target.contains(&ours), "{target}");
    }
    let log = server.stop();
    assert!(!log.contains(OLD_KEY), "{log}");
    assert!(!log.contains(&ours), "{log}");
    assert!(!log.contains("Echoed-Pass"), "{log}");
    for spelling in ["Brand%2Dnew%2DSecret%2D99", "Brand-new-Secret-99", "quoted"] {
        assert!(!log.contains(spelling), "{spelling} in the log: {log}");
    }
}

#[test]
fn health_says_which_field_of_the_old_list_is_bad_without_its_value() {
    let mut customers = old_customers(5);
    customers[2]["webRemise"] = json!("SECRET-REMISE-5c1");
    let old = FakeOldApi::start(customers);
    let (_dir, db) = empty_database();
    let server = mirror_server(&old, &db, "5");

    let mut health = Value::Null;
    assert!(eventually(Duration::from_secs(10), || {
        health = server.get("/health").json();
        health["result"]["upstream"]["last_error"].is_string()
    }));

    let error = health["result"]["upstream"]["last_error"].as_str().unwrap();
    assert!(error.contains("webRemise"), "{error}");
    assert!(!health.to_string().contains("SECRET-REMISE"), "{health}");
    let log = server.stop();
    assert!(log.contains("webRemise"), "{log}");
    assert!(!log.contains("erp-password"), "{log}");
}

#[test]
fn a_master_that_refuses_the_list_is_reported_as_refusing_with_its_message() {
    let old = FakeOldApi::start(old_customers(3));
    let (_dir, db) = empty_database();
    let wrong_key = format!(
        "http://127.0.0.1:{}/CUSTOMER/LIST/?apikey=WRONG-9d2e",
        old.port
    );

    let refused_401 = run_expecting_failure(&db, &["sync", &wrong_key], "");
    old.set_mode(Mode::RefuseOk);
    let refused_200 = run_expecting_failure(&db, &["sync", &old.url()], "");

    for output in [&refused_401, &refused_200] {
        let text = stderr(output);
        assert!(!output.status.success());
        assert!(text.contains("the old API refused"), "{text}");
        assert!(text.contains("bad key"), "{text}");
        assert!(!text.contains("missing field"), "{text}");
        assert!(
            !text.contains(OLD_KEY) && !text.contains("WRONG-9d2e"),
            "{text}"
        );
    }
}

#[test]
fn the_first_sync_into_the_quick_starts_demo_database_replaces_the_demo_customers() {
    let old = FakeOldApi::start(old_customers(3));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quick.db");
    // The quick start's database: the demo customers, not yet adopted by anyone.
    quick_start(&db);

    let synced = run(&db, &["sync", &old.url()], "");

    let said = stderr(&synced);
    assert!(said.contains("3 inserted"), "{said}");
    assert!(said.contains("removed the 25 demo customers"), "{said}");
    let ids = query_ids(&db, "SELECT clcleunik FROM customer ORDER BY clcleunik");
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "not refused as a mass delete, no demo kept"
    );
}

/// A customer session in mirror mode: its own record's change goes to the master and is
/// stored back without ending the session (the master's copy brings the same password); a
/// change to another customer is refused here and never reaches the master.
#[test]
fn in_mirror_mode_a_session_writes_its_own_customer_through_the_master_and_stays_open() {
    let old = FakeOldApi::start(old_customers(4));
    let (_dir, db) = empty_database();
    assert!(run(&db, &["sync", &old.url()], "").status.success());
    let created = run(&db, &["keys", "create", "pages", "--public"], "");
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let server = mirror_server(&old, &db, "10");
    let json_type = ("Content-Type", "application/json");
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[json_type, ("X-API-Key", &key)],
        r#"{"login":"erp2","password":"erp-password-2"}"#,
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let bearer = format!(
        "Bearer {}",
        login.json()["result"]["token"].as_str().unwrap()
    );
    let session = [json_type, ("X-API-Key", &key), ("Authorization", &bearer)];

    let foreign = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &session,
        r#"{"id_client":"3","city":"X"}"#,
    );
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let shop_field = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &session,
        r#"{"id_client":"2","webRemise":50}"#,
    );
    assert_eq!(shop_field.status, 403, "{}", shop_field.body);
    assert!(old
        .received()
        .iter()
        .all(|r| !r.1.starts_with("/CUSTOMER/UPDATE/")));

    let own = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &session,
        r#"{"id_client":"2","city":"Namur"}"#,
    );
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(old
        .received()
        .iter()
        .any(|r| r.1.starts_with("/CUSTOMER/UPDATE/") && r.2.contains("Namur")));
    let mine = server.request("GET", "/CUSTOMER/LIST/", &session, "");
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.customers().len(), 1);
    assert_eq!(mine.customers()[0]["clcleunik"], 2);
    server.stop();
}
