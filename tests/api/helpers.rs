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
    let target = resolve(&db, Start::Adopted);
    let rocket = clientele::rocket(configure(test_figment(&target))).expect("app builds");
    let client = Client::tracked(rocket).expect("valid rocket");
    adopt_demo(&target);
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
    log: Arc<Mutex<String>>,
    /// Copies of the read ends of the server's stdout and stderr pipes, to see whether
    /// the reader threads have taken in everything the server has written so far.
    pipes: Vec<std::os::fd::OwnedFd>,
}

/// The bytes waiting unread in a pipe.
fn unread(pipe: &std::os::fd::OwnedFd) -> u64 {
    rustix::io::ioctl_fionread(pipe).unwrap_or(0)
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
        let db = &resolve(db, Start::Adopted);
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
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        use std::os::fd::AsFd;
        let pipes = vec![
            stdout.as_fd().try_clone_to_owned().unwrap(),
            stderr.as_fd().try_clone_to_owned().unwrap(),
        ];
        for stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let log = Arc::clone(&log);
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    // The line is in the log before the port is told, so a test that reads
                    // the log right after `start` sees the launch line.
                    {
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let launched = line.split("launched from http").nth(1);
                    if let Some(rest) = launched.map(|rest| rest.trim_start_matches('s')) {
                        // The port ends the text line; a JSON line closes its string.
                        let port = rest.rsplit(':').next().and_then(|p| {
                            p.trim()
                                .trim_end_matches(|c: char| !c.is_ascii_digit())
                                .parse::<u16>()
                                .ok()
                        });
                        let _ = port_tx.send(port);
                    }
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
        Server {
            child,
            port,
            log,
            pipes,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], "")
    }

    /// One HTTP/1.1 request over a fresh TCP connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        http(self.port, method, path, headers, body)
    }

    /// Everything the server has logged so far. A line written before an answer arrived is
    /// in it: this waits (a second at most) for the reader threads to take in what the
    /// server's pipes still hold, then a moment more for the last read to be stored.
    pub fn log(&self) -> String {
        let until = Instant::now() + Duration::from_secs(1);
        while self.pipes.iter().any(|pipe| unread(pipe) > 0) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(2));
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
    let host = format!("127.0.0.1:{port}");
    let request = request_text(method, path, &host, headers, body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_http(&raw, method == "HEAD")
}

/// One HTTP/1.1 request, closing the connection after it.
pub fn request_text(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request
}

pub fn parse_http(raw: &[u8], head: bool) -> Reply {
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
    if let Some(url) = postgres_url(db) {
        return postgres_dump(&url);
    }
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
    let options = clientele::apikey::KeyOptions {
        forwards_client_address: true,
    };
    create_key_with_options(db, name, clientele::apikey::Scope::Read, options)
}

fn create_key_with(db: &Path, name: &str, scope: clientele::apikey::Scope) -> String {
    create_key_with_options(db, name, scope, clientele::apikey::KeyOptions::default())
}

fn create_key_with_options(
    db: &Path,
    name: &str,
    scope: clientele::apikey::Scope,
    options: clientele::apikey::KeyOptions,
) -> String {
    let create = |conn: &mut dyn clientele::store::Backend| {
        clientele::apikey::create_with(conn, name, scope, options)
            .unwrap()
            .expose()
            .to_owned()
    };
    let key = match postgres_url(db) {
        Some(url) => with_store(Path::new(&url), create),
        None => create(&mut rusqlite::Connection::open(db).unwrap()),
    };
    settle();
    key
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
        run_sql(&self.db, sql);
    }

    /// The single number a query on the app's database answers (a count).
    pub fn sql_count(&self, sql: &str) -> i64 {
        query_count(&self.db, sql)
    }

    /// The stored hash of a customer.
    pub fn stored_hash(&self, id: i64) -> Option<String> {
        if let Some(url) = postgres_url(&self.db) {
            return postgres_client(&url)
                .query_one(
                    "SELECT password_hash FROM customer WHERE clcleunik = $1",
                    &[&id],
                )
                .unwrap()
                .get(0);
        }
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
    if let Some(url) = postgres_url(db) {
        return postgres_client(&url)
            .query("SELECT password_hash FROM customer ORDER BY clcleunik", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
    }
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
    if on_postgres() {
        resolve(db, Start::Demo);
        return;
    }
    quick_start_sqlite(db);
}

/// [`quick_start`], always on SQLite.
pub fn quick_start_sqlite(db: &Path) {
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

// --- The suite on PostgreSQL ----------------------------------------------------------------
//
// With `CLIENTELE_TEST_BACKEND=postgres` (and `CLIENTELE_TEST_POSTGRES`, the URL of a server
// whose role may create databases: `scripts/pg-test-server.sh` starts one), every test that
// asks for a *new* database gets a fresh PostgreSQL database instead of a SQLite file: the
// path it chose is mapped to the URL (see [`resolve`]) wherever the helpers pass it on (the
// app's figment, `ROCKET_DATABASE` of the binary and the tools, keys, SQL). A test that made
// a SQLite file itself (a damaged file, an old schema) keeps its file: what it checks is
// SQLite's. A test that checks something only SQLite has says so with [`sqlite_only`].

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("CLIENTELE_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// Returns `true` (the test goes on) unless the suite runs on PostgreSQL, where what the
/// test checks is SQLite's alone (the file itself, its WAL, its header).
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("SQLite only ({why}): skipped on PostgreSQL");
        return false;
    }
    true
}

/// How a new database starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Start {
    /// Empty: what a tool finds (it creates the tables).
    Empty,
    /// The demo customers, made the shop's own (the server's first start, then adopt_demo).
    Adopted,
    /// The demo customers as the quick start leaves them (still demo).
    Demo,
}

static MAPPED: Mutex<Option<BTreeMap<PathBuf, PathBuf>>> = Mutex::new(None);
static TEMPLATES: Mutex<Option<BTreeMap<&'static str, String>>> = Mutex::new(None);
static NEXT_DATABASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The admin URL of the test server.
fn postgres_server() -> String {
    std::env::var("CLIENTELE_TEST_POSTGRES")
        .expect("CLIENTELE_TEST_BACKEND=postgres needs CLIENTELE_TEST_POSTGRES (a server URL)")
}

/// `url` naming database `name` (its query string kept).
pub fn url_with_database(url: &str, name: &str) -> String {
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

fn admin_sql(sql: &str) {
    let mut client = postgres::Client::connect(&postgres_server(), postgres::NoTls).unwrap();
    client.batch_execute(sql).unwrap();
}

/// The template database for `start`, made once per test run: the quick start's SQLite
/// database (adopted or not), moved with `copy-to`.
fn template(start: Start) -> Option<String> {
    let name = match start {
        Start::Empty => return None,
        Start::Adopted => "clientele_template_adopted",
        Start::Demo => "clientele_template_demo",
    };
    let mut templates = TEMPLATES.lock().unwrap_or_else(|p| p.into_inner());
    let templates = templates.get_or_insert_with(BTreeMap::new);
    if let Some(made) = templates.get(name) {
        return Some(made.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("template.db");
    quick_start_sqlite(&sqlite);
    if start == Start::Adopted {
        adopt_demo(&sqlite);
    }
    admin_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    admin_sql(&format!("CREATE DATABASE {name}"));
    let url = url_with_database(&postgres_server(), name);
    let output = binary()
        .env("ROCKET_DATABASE", &sqlite)
        .args(["copy-to", &url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "copy-to the template: {}",
        stderr(&output)
    );
    templates.insert(name, name.to_owned());
    Some(name.to_owned())
}

/// A new PostgreSQL database starting as `start`: its URL.
pub fn new_postgres_database(start: Start) -> String {
    let template = template(start);
    let name = format!(
        "clientele_t{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    // One copy at a time: PostgreSQL refuses a template that another copy is reading.
    static COPYING: Mutex<()> = Mutex::new(());
    let _copying = COPYING.lock().unwrap_or_else(|p| p.into_inner());
    match template {
        Some(template) => admin_sql(&format!("CREATE DATABASE {name} TEMPLATE {template}")),
        None => admin_sql(&format!("CREATE DATABASE {name}")),
    }
    url_with_database(&postgres_server(), &name)
}

/// Where the data of `db` lives: `db` itself, except on PostgreSQL, where a path that is
/// not a file yet stands for a new database (made as `start` says, the first time the path
/// is seen) and is given as its URL from then on.
pub fn resolve(db: &Path, start: Start) -> PathBuf {
    if !on_postgres() || db.as_os_str().is_empty() || db.to_string_lossy().starts_with("postgres") {
        return db.to_owned();
    }
    let mut mapped = MAPPED.lock().unwrap_or_else(|p| p.into_inner());
    let mapped = mapped.get_or_insert_with(BTreeMap::new);
    if let Some(url) = mapped.get(db) {
        return url.clone();
    }
    if db.exists() {
        return db.to_owned();
    }
    let url = PathBuf::from(new_postgres_database(start));
    mapped.insert(db.to_owned(), url.clone());
    url
}

/// The URL `db` stands for on PostgreSQL, if it was mapped.
pub fn postgres_url(db: &Path) -> Option<String> {
    let resolved = resolve_existing(db);
    let text = resolved.to_string_lossy();
    text.starts_with("postgres").then(|| text.into_owned())
}

/// [`resolve`], without making anything new.
fn resolve_existing(db: &Path) -> PathBuf {
    if db.to_string_lossy().starts_with("postgres") {
        return db.to_owned();
    }
    MAPPED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|mapped| mapped.get(db).cloned())
        .unwrap_or_else(|| db.to_owned())
}

/// A connection to the PostgreSQL database `url`.
pub fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// `sql` written for SQLite, as PostgreSQL reads it: the camelCase columns quoted (their
/// names are the wire names; unquoted, PostgreSQL would fold them to lower case).
pub fn for_postgres(sql: &str) -> String {
    let mut out = sql.to_owned();
    for column in [
        "customerNumber",
        "groupePrice",
        "lastName",
        "firstName",
        "tvaNumber",
        "addedDate",
        "addHour",
        "showPrice",
        "webRemise",
    ] {
        let quoted = format!("\"{column}\"");
        out = out.replace(&quoted, column).replace(column, &quoted);
    }
    out
}

/// Runs `sql` on the app's database, SQLite or PostgreSQL, as another process would.
pub fn run_sql(db: &Path, sql: &str) {
    match postgres_url(db) {
        Some(url) => {
            postgres_client(&url)
                .batch_execute(&for_postgres(sql))
                .unwrap();
            settle();
        }
        None => rusqlite::Connection::open(db)
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
    }
}

/// The single number a query answers, on SQLite or PostgreSQL.
pub fn query_count(db: &Path, sql: &str) -> i64 {
    match postgres_url(db) {
        Some(url) => {
            let row = postgres_client(&url)
                .query_one(&for_postgres(sql), &[])
                .unwrap();
            row.try_get::<_, i64>(0)
                .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                .or_else(|_| row.try_get::<_, bool>(0).map(i64::from))
                .unwrap()
        }
        None => rusqlite::Connection::open(db)
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap(),
    }
}

/// Every row of every table of the PostgreSQL database `url`, as text (bytea as hex): what
/// a search for a secret in "the database" reads on PostgreSQL.
fn postgres_dump(url: &str) -> Vec<u8> {
    let mut client = postgres_client(url);
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!tables.is_empty(), "{url} has no tables");
    let mut dump = Vec::new();
    for table in tables {
        for row in client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .unwrap()
        {
            dump.extend_from_slice(row.get::<_, String>(0).as_bytes());
            dump.push(b'\n');
        }
    }
    dump
}

/// On PostgreSQL, waits out what the README promises for another process's commit to reach
/// a running server (its notification): the tests' writes through another connection.
pub fn settle() {
    if on_postgres() {
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// SQL for "`seconds` from now" as the tables store times (RFC 3339, UTC, to the second or,
/// with `millis`, the millisecond), for the database `db` is.
pub fn time_from_now(db: &Path, seconds: f64, millis: bool) -> String {
    match (postgres_url(db).is_some(), millis) {
        (true, true) => format!("clientele_utc_ms(interval '{seconds} seconds')"),
        (true, false) => format!("clientele_utc_s(interval '{seconds} seconds')"),
        (false, true) => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{seconds:+} seconds')"),
        (false, false) => format!("strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '{seconds:+} seconds')"),
    }
}

/// Revokes a key directly in the app's database, as `clientele keys revoke` does.
pub fn revoke_key(db: &Path, name: &str) {
    let revoke = |conn: &mut dyn clientele::store::Backend| {
        clientele::apikey::revoke(conn, name).unwrap();
    };
    match postgres_url(db) {
        Some(url) => with_store(Path::new(&url), revoke),
        None => revoke(&mut rusqlite::Connection::open(db).unwrap()),
    }
    settle();
}

/// The whole numbers a query answers, one per row, on SQLite or PostgreSQL.
pub fn query_ids(db: &Path, sql: &str) -> Vec<i64> {
    match postgres_url(db) {
        Some(url) => postgres_client(&url)
            .query(&for_postgres(sql), &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect(),
        None => {
            let conn = rusqlite::Connection::open(db).unwrap();
            let mut statement = conn.prepare(sql).unwrap();
            let ids = statement
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            ids
        }
    }
}

/// The text a query answers (NULL: empty), on SQLite or PostgreSQL.
pub fn query_text(db: &Path, sql: &str) -> String {
    match postgres_url(db) {
        Some(url) => postgres_client(&url)
            .query_one(&for_postgres(sql), &[])
            .unwrap()
            .get::<_, Option<String>>(0)
            .unwrap_or_default(),
        None => rusqlite::Connection::open(db)
            .unwrap()
            .query_row(sql, [], |row| row.get::<_, Option<String>>(0))
            .unwrap()
            .unwrap_or_default(),
    }
}

/// How the tools name the database `db` in what they say: its path, or on PostgreSQL its URL
/// without the password.
pub fn shown_database(db: &Path) -> String {
    match postgres_url(db) {
        Some(url) => clientele::store::postgres::redact_url(&url),
        None => db.display().to_string(),
    }
}

/// Runs `work` on the store at `db`, opened as the tools open it.
pub fn with_store<T>(db: &Path, work: impl FnOnce(&mut dyn clientele::store::Backend) -> T) -> T {
    let hasher = clientele::auth::PasswordHasher::new(clientele::auth::Argon2Config {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    let location = clientele::store::Location::parse(&db.to_string_lossy());
    let (store, _) = clientele::store::Store::open(&location, &hasher).unwrap();
    let mut conn = store.connection().unwrap();
    work(&mut *conn)
}

/// Makes `db` a database with the schema and nothing in it, as an import of an empty list
/// does (the read-only tools refuse a database that does not exist).
pub fn create_empty_database(db: &Path) {
    let mut child = binary()
        .args(["import", "-", "--format", "json"])
        .env("ROCKET_DATABASE", resolve(db, Start::Empty))
        .env("ROCKET_SEED_DEMO", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"[]").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
