//! Shared test scaffolding: every test gets its own temporary database and builds the app
//! exactly as `clientele serve` does, through `clientele::rocket`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocket::figment::Figment;
use rocket::http::Header;
use rocket::local::blocking::{Client, LocalResponse};
use serde_json::Value;
use tempfile::TempDir;

/// The package root, where `Rocket.toml` and `data/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo customers as shipped, password included: the source of truth the tests compare to.
pub fn demo_customers() -> Vec<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(root().join("data/demo-customers.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["result"]["customer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_object().unwrap().clone())
        .collect()
}

/// Every demo customer's plain-text password.
pub fn demo_passwords() -> Vec<String> {
    demo_customers()
        .iter()
        .map(|c| c["password"].as_str().unwrap().to_owned())
        .collect()
}

/// The config the tests run with: the shipped `Rocket.toml`, a database in `dir`, and cheap
/// Argon2 parameters so hashing the demo data takes milliseconds.
pub fn test_figment(db: &Path) -> Figment {
    clientele::figment()
        .merge(("database", db))
        .merge(("seed_demo", true))
        .merge(("argon2_memory_kib", 64))
        .merge(("argon2_iterations", 1))
        .merge(("log_level", "off"))
}

/// An app on its own fresh database.
pub struct TestApp {
    pub client: Client,
    pub dir: TempDir,
    pub db: PathBuf,
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(|figment| figment)
}

pub fn spawn_app_with(configure: impl FnOnce(Figment) -> Figment) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clientele.db");
    spawn_app_on(dir, db, configure)
}

/// An app on an existing database file (in `dir`).
pub fn spawn_app_on(
    dir: TempDir,
    db: PathBuf,
    configure: impl FnOnce(Figment) -> Figment,
) -> TestApp {
    let rocket = clientele::rocket(configure(test_figment(&db))).expect("app builds");
    let client = Client::tracked(rocket).expect("valid rocket");
    adopt_demo(&db);
    TestApp { client, dir, db }
}

/// Makes the demo customers the shop's own, as if it had entered them: most tests use them
/// as a shop's data, and a shop's first import removes demo customers (see `firstweek`).
pub fn adopt_demo(db: &Path) {
    // Never creates a file; a database of another application, or an old schema, has no
    // such table: nothing to do.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    if let Ok(conn) = rusqlite::Connection::open_with_flags(db, flags) {
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        let _ = conn.execute("DELETE FROM demo_customer", []);
    }
}

/// What a response said, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn from_local(response: LocalResponse<'_>) -> Reply {
        let status = response.status().code;
        let headers = response
            .headers()
            .iter()
            .map(|h| (h.name().as_str().to_ascii_lowercase(), h.value().to_owned()))
            .collect();
        let body = response.into_string().unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `customer` array of a success envelope.
    pub fn customers(&self) -> Vec<serde_json::Map<String, Value>> {
        let json = self.json();
        assert_eq!(json["success"], "true", "{}", self.body);
        json["result"]["customer"]
            .as_array()
            .unwrap_or_else(|| panic!("no customer array: {}", self.body))
            .iter()
            .map(|c| c.as_object().unwrap().clone())
            .collect()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.customers()
            .iter()
            .map(|c| c["clcleunik"].as_i64().unwrap())
            .collect()
    }

    /// Asserts the error envelope, the status and the JSON content type.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_json_content_type(self);
        let json = self.json();
        assert_eq!(json["success"], "false", "{}", self.body);
        let message = json["message"].as_str().expect("message is a string");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

pub fn assert_json_content_type(reply: &Reply) {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8"),
        "status {} body {}",
        reply.status,
        reply.body
    );
}

impl TestApp {
    pub fn get(&self, uri: &str) -> Reply {
        Reply::from_local(self.client.get(uri.to_owned()).dispatch())
    }

    pub fn get_with(&self, uri: &str, headers: &[(&'static str, String)]) -> Reply {
        let mut request = self.client.get(uri.to_owned());
        for (name, value) in headers {
            request = request.header(Header::new(*name, value.clone()));
        }
        Reply::from_local(request.dispatch())
    }
}

/// The compiled `clientele` binary running as a real server on a loopback port.
pub struct Server {
    child: Child,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
}

/// A tool's standard error, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clientele"));
    command
        .current_dir(root())
        .env("ROCKET_CLI_COLORS", "false")
        .env("ROCKET_ARGON2_MEMORY_KIB", "64")
        .env("ROCKET_ARGON2_ITERATIONS", "1");
    command
}

impl Server {
    /// Starts `clientele serve` on a free port with `db`, plus any extra environment.
    pub fn start(db: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = binary();
        command.arg("serve");
        Server::spawn(command, db, env)
    }

    /// Starts `command` (which must run `clientele serve`) on a free port with `db`.
    pub fn spawn(mut command: Command, db: &Path, env: &[(&str, &str)]) -> Server {
        command
            .env("ROCKET_DATABASE", db)
            .env("ROCKET_PORT", "0")
            .env("ROCKET_LOG_LEVEL", "normal")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = Arc::clone(&log);
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("launched from http://").nth(1) {
                        let port = rest
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().parse::<u16>().ok());
                        let _ = port_tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("server did not start; log:\n{}", log.lock().unwrap()));
        if !db.as_os_str().is_empty() {
            adopt_demo(db);
        }
        Server { child, port, log }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], "")
    }

    /// One HTTP/1.1 request over a fresh TCP connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        http(self.port, method, path, headers, body)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the server and returns everything it logged.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` bytes as they are and reads until the server closes (at most 10 s).
pub fn raw_exchange(port: u16, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A minimal HTTP/1.1 client over std's TcpStream: enough to prove the real socket works.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_http(&raw, method == "HEAD")
}

fn parse_http(raw: &[u8], head: bool) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head_part, rest) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head_part.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if head {
        rest.to_owned()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// Waits until `condition` holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Whether `needle` occurs anywhere in the bytes of `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The database file and its WAL (if there is one), concatenated, as they are on disk now.
/// A missing or empty database file fails the test: searching no bytes for a secret would
/// find none, and prove nothing.
pub fn database_bytes(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap_or_else(|e| panic!("reading {}: {e}", db.display()));
    assert!(!bytes.is_empty(), "{} is empty", db.display());
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::read(PathBuf::from(&wal)) {
        Ok(wal) => bytes.extend(wal),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("reading {}: {e}", wal.to_string_lossy()),
    }
    bytes
}

/// Creates a read-only API key directly in the app's database, as `clientele keys create`.
pub fn create_key(db: &Path, name: &str) -> String {
    create_key_with(db, name, clientele::apikey::Scope::Read)
}

/// Creates a write key, as `clientele keys create NAME --write` does.
pub fn create_write_key(db: &Path, name: &str) -> String {
    create_key_with(db, name, clientele::apikey::Scope::Write)
}

/// Creates a public key (browser code), as `clientele keys create NAME --public` does.
pub fn create_public_key(db: &Path, name: &str) -> String {
    create_key_with(db, name, clientele::apikey::Scope::Public)
}

/// Creates a read key that may name the end user's address in `X-Forwarded-For`, as
/// `clientele keys create NAME --forwards-client-address` does.
pub fn create_forwarding_key(db: &Path, name: &str) -> String {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let options = clientele::apikey::KeyOptions {
        forwards_client_address: true,
    };
    clientele::apikey::create_with(&mut conn, name, clientele::apikey::Scope::Read, options)
        .unwrap()
        .expose()
        .to_owned()
}

fn create_key_with(db: &Path, name: &str, scope: clientele::apikey::Scope) -> String {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    clientele::apikey::create(&mut conn, name, scope)
        .unwrap()
        .expose()
        .to_owned()
}

impl TestApp {
    /// `POST /CUSTOMER/LOGIN/` with a JSON body and optional key.
    pub fn login_json(&self, body: &Value, key: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post("/CUSTOMER/LOGIN/")
            .header(rocket::http::ContentType::JSON)
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header(Header::new("X-API-Key", key.to_owned()));
        }
        Reply::from_local(request.dispatch())
    }

    pub fn login(&self, email: &str, password: &str) -> Reply {
        self.login_json(
            &serde_json::json!({"email": email, "password": password}),
            None,
        )
    }

    /// Runs SQL on the app's database through another connection, as another process would.
    pub fn sql(&self, sql: &str) {
        rusqlite::Connection::open(&self.db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// The single number a query on the app's database answers (a count).
    pub fn sql_count(&self, sql: &str) -> i64 {
        rusqlite::Connection::open(&self.db)
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    }

    /// The stored hash of a customer.
    pub fn stored_hash(&self, id: i64) -> Option<String> {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.query_row(
            "SELECT password_hash FROM customer WHERE clcleunik = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }
}

/// Every customer's stored password hash (`None`: no password), in `clcleunik` order.
pub fn stored_hashes(db: &Path) -> Vec<Option<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT password_hash FROM customer ORDER BY clcleunik")
        .unwrap();
    let rows = statement.query_map([], |row| row.get(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// A response as [`raw_exchange`] returned it, parsed.
pub fn parse_raw(raw: &str) -> Reply {
    parse_http(raw.as_bytes(), false)
}

/// The quick start's database: the server's first start fills `db` with the demo customers
/// (not adopted, unlike `Server::start`), then stops.
pub fn quick_start(db: &Path) {
    let mut child = binary()
        .arg("serve")
        .env("ROCKET_DATABASE", db)
        .env("ROCKET_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let launched = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("launched from"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(launched, "the quick start's server did not start");
}
