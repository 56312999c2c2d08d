//! Running it for a year: HTTPS from certificate files (reloaded without a restart), the
//! socket's bounds and the memo over TLS, `/metrics` (its counters, its labels, its access),
//! and backups on a schedule. ACME is checked against pebble by `scripts/acme-test.sh`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

use crate::helpers::*;

/// A self-signed certificate for `localhost`, written as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certs = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&certs, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (certs, key, made.cert.der().clone())
}

/// A TLS client that trusts `roots` only, speaking `versions`.
fn client(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    // Every connection a full handshake: a resumed session is not shown a certificate anew.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn tls_stream(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

/// One request over a fresh TLS connection; also the certificate the server presented and
/// the protocol version agreed.
fn https(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Reply, CertificateDer<'static>, rustls::ProtocolVersion) {
    let mut stream = tls_stream(port, config);
    let request = request_text(method, path, &format!("localhost:{port}"), headers, body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error to rustls; the bytes are all there.
    let _ = stream.read_to_end(&mut raw);
    let presented = stream.conn.peer_certificates().unwrap()[0].clone();
    let version = stream.conn.protocol_version().unwrap();
    (parse_http(&raw, method == "HEAD"), presented, version)
}

fn tls_env<'a>(certs: &'a Path, key: &'a Path) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ROCKET_TLS_CERTS", certs.to_str().unwrap()),
        ("ROCKET_TLS_KEY", key.to_str().unwrap()),
    ]
}

#[test]
fn https_serves_the_api_with_tls_1_3_and_1_2_and_tells_plain_http_to_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key, der) = certificate(dir.path(), "shop");
    let server = Server::start(&dir.path().join("c.db"), &tls_env(&certs, &key));
    assert!(
        server.log().contains("launched from https://"),
        "{}",
        server.log()
    );

    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let config = client(&[&der], &[version]);
        let (reply, presented, agreed) = https(
            server.port,
            &config,
            "GET",
            "/CUSTOMER/LIST/?id_client=1",
            &[],
            "",
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.ids(), vec![1]);
        assert_eq!(presented, der);
        assert_eq!(agreed, expected);
    }

    // Plain HTTP on the HTTPS port: a JSON 400 saying what to do, then the connection closes.
    let plain = server.get("/CUSTOMER/LIST/?id_client=1");
    let message = plain.assert_error(400);
    assert!(message.contains("https://"), "{message}");
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key, first) = certificate(dir.path(), "live");
    let server = Server::start(&dir.path().join("c.db"), &tls_env(&certs, &key));
    let (_, _, second) = certificate(dir.path(), "renewed");
    let config = client(&[&first, &second], &[&rustls::version::TLS13]);
    let presented = || https(server.port, &config, "GET", "/health", &[], "").1;
    assert_eq!(presented(), first);

    // A broken pair (the renewed certificate with the old key) keeps the old pair in use.
    std::fs::copy(dir.path().join("renewed.crt"), &certs).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(presented(), first, "a mismatched pair must not be served");
    assert!(
        eventually(Duration::from_secs(5), || server
            .log()
            .contains("could not be used")),
        "{}",
        server.log()
    );

    // The renewed key arrives too: from the next look on, the new certificate is served.
    std::fs::copy(dir.path().join("renewed.key"), &key).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || presented() == second),
        "{}",
        server.log()
    );
    assert!(server.log().contains("reloaded the certificate"));
    assert!(!server.log().contains("PRIVATE KEY"));
}

#[test]
fn over_tls_the_header_timeout_the_connection_cap_and_the_memo_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key, der) = certificate(dir.path(), "shop");
    let mut env = tls_env(&certs, &key);
    env.extend([
        ("ROCKET_HEADER_TIMEOUT_SECS", "1"),
        ("ROCKET_MAX_CONNECTIONS", "2"),
    ]);
    let server = Server::start(&dir.path().join("c.db"), &env);
    let config = client(&[&der], &[&rustls::version::TLS13]);

    // A client that never starts its handshake, and one that finishes it and then sends no
    // request: both are closed after the header timeout.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut idle = tls_stream(server.port, &config);
    while idle.conn.is_handshaking() {
        idle.conn.complete_io(&mut idle.sock).unwrap();
    }
    let started = Instant::now();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(silent.read(&mut byte), Ok(0) | Err(_)));
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(rest.is_empty() || String::from_utf8_lossy(&rest).contains("408"));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // Two connections waiting (the cap): a third client is still served, the one that has
    // waited longest giving way.
    let _first = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let _second = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (reply, _, _) = https(
        server.port,
        &config,
        "GET",
        "/CUSTOMER/LIST/?id_client=2",
        &[],
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The memo answers repeats over TLS as over plain HTTP.
    for _ in 0..5 {
        let (again, _, _) = https(
            server.port,
            &config,
            "GET",
            "/CUSTOMER/LIST/?id_client=2",
            &[],
            "",
        );
        assert_eq!(again.body, reply.body);
    }
    let (text, _, _) = https(server.port, &config, "GET", "/metrics", &[], "");
    assert!(
        sample(&text.body, "clientele_list_answers_total{by=\"memo\"}") >= 4.0,
        "{}",
        text.body
    );
}

/// The value of one sample line (`name{labels} value`) in a `/metrics` text, or 0.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

fn metrics(server: &Server, key: &str) -> String {
    let reply = server.request("GET", "/metrics", &[("X-API-Key", key)], "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[test]
fn metrics_move_by_the_right_amounts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let server = Server::start(&db, &[]);
    let key = create_write_key(&db, "metrics");
    let before = metrics(&server, &key);
    let list = |series: &str| {
        format!("clientele_http_requests_total{{route=\"/CUSTOMER/LIST/\",status=\"{series}\"}}")
    };

    for _ in 0..5 {
        let reply = server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=3",
            &[("X-API-Key", &key)],
            "",
        );
        assert_eq!(reply.status, 200);
    }
    let nowhere = server.request("GET", "/CUSTOMER/NOWHERE/", &[("X-API-Key", &key)], "");
    assert_eq!(nowhere.status, 404);
    server.request("GET", "/CUSTOMER/LIST/", &[("X-API-Key", "wrong")], "");
    let login = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password}).to_string();
        let headers = [
            ("Content-Type", "application/json"),
            ("X-API-Key", key.as_str()),
        ];
        server
            .request("POST", "/CUSTOMER/LOGIN/", &headers, &body)
            .status
    };
    let (email, password) = (
        demo_customers()[0]["email"].as_str().unwrap().to_owned(),
        demo_passwords()[0].clone(),
    );
    assert_eq!(login(&email, &password), 200);
    assert_eq!(login(&email, "not the password"), 401);
    assert_eq!(login(&email, "not it either"), 401);
    let update = json!({"id_client": 4, "city": "Namur"}).to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-API-Key", key.as_str()),
    ];
    assert_eq!(
        server
            .request("POST", "/CUSTOMER/UPDATE/", &headers, &update)
            .status,
        200
    );
    // A browser's preflights of writes are requests, not writes.
    for path in ["/CUSTOMER/UPDATE/", "/CUSTOMER/ADD/", "/CUSTOMER/DELETE/"] {
        let preflight = server.request(
            "OPTIONS",
            path,
            &[("Access-Control-Request-Method", "POST")],
            "",
        );
        assert!(preflight.status < 300, "{path}: {}", preflight.status);
    }

    let after = metrics(&server, &key);
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(&list("200")), 5.0, "{after}");
    assert_eq!(
        moved("clientele_http_requests_total{route=\"other\",status=\"404\"}"),
        1.0
    );
    assert_eq!(moved(&list("401")), 1.0, "{after}");
    assert_eq!(moved("clientele_logins_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(moved("clientele_logins_total{outcome=\"failed\"}"), 2.0);
    assert_eq!(moved("clientele_writes_total{action=\"update\"}"), 1.0);
    assert_eq!(moved("clientele_writes_total{action=\"add\"}"), 0.0);
    assert_eq!(moved("clientele_writes_total{action=\"delete\"}"), 0.0);
    // The same request five times: the memo answered at least the repeats it kept.
    let answered: f64 = ["memo", "lane", "app"]
        .iter()
        .map(|by| moved(&format!("clientele_list_answers_total{{by=\"{by}\"}}")))
        .sum();
    assert_eq!(answered, 6.0, "{after}");
    assert!(
        moved("clientele_list_answers_total{by=\"memo\"}") >= 3.0,
        "{after}"
    );
    assert!(
        moved("clientele_http_request_duration_seconds_count{route=\"/CUSTOMER/LIST/\"}") >= 6.0
    );
    assert_eq!(
        sample(&after, "clientele_customers"),
        demo_customers().len() as f64
    );
    assert!(sample(&after, "clientele_database_bytes") > 0.0);
}

#[test]
fn metrics_need_a_read_or_write_key_unless_on_their_own_loopback_listener() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let server = Server::start(&db, &[("ROCKET_METRICS_ADDRESS", &address)]);
    let read = create_key(&db, "prometheus");
    let public = create_public_key(&db, "browser");

    server
        .request("GET", "/metrics", &[("X-API-Key", "wrong")], "")
        .assert_error(401);
    server
        .request("GET", "/metrics", &[("X-API-Key", &public)], "")
        .assert_error(403);
    let bearer = format!("Bearer {read}");
    let reply = server.request("GET", "/metrics", &[("Authorization", &bearer)], "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));

    // The listener of its own answers without a key, and nothing but /metrics.
    let own = http(port, "GET", "/metrics", &[], "");
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains("clientele_http_requests_total"));
    assert_eq!(http(port, "GET", "/CUSTOMER/LIST/", &[], "").status, 404);
    assert_eq!(http(port, "POST", "/metrics", &[], "").status, 405);
    // A page whose own name was rebound to 127.0.0.1 sends that name as Host: refused.
    let rebound = raw_exchange(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(!rebound.contains("clientele_"), "{rebound}");

    // Never on an address other machines reach: that is a configuration error.
    let refused = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            resolve(&dir.path().join("x.db"), Start::Empty),
        )
        .env("ROCKET_METRICS_ADDRESS", "0.0.0.0:9464")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(78));
    assert!(
        stderr(&refused).contains("metrics_address"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn no_metrics_label_ever_holds_a_key_an_email_a_login_or_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let server = Server::start(&db, &[]);
    let key = create_write_key(&db, "labels");
    let customer = &demo_customers()[1];
    let (email, login) = (
        customer["email"].as_str().unwrap(),
        customer["login"].as_str().unwrap(),
    );
    // Requests whose paths, queries and bodies carry all of them, on known and unknown routes.
    for path in [
        format!("/CUSTOMER/LIST/?id_client=123456&apikey={key}"),
        format!("/CUSTOMER/LIST/{email}?apikey={key}"),
        format!("/{login}/{key}"),
        format!("/CUSTOMER/LIST/?email={email}&login={login}"),
        "/customer/list/654321".to_owned(),
    ] {
        server.request("GET", &path, &[("X-API-Key", &key)], "");
    }
    let body = json!({"email": email, "password": "wrong"}).to_string();
    server.request("POST", "/CUSTOMER/LOGIN/", &[("X-API-Key", &key)], &body);

    let text = metrics(&server, &key);
    for secret in [key.as_str(), email, login, "123456", "654321"] {
        assert!(!text.contains(secret), "{secret} in /metrics:\n{text}");
    }
    // Every label value is one of a fixed set of words.
    let allowed: BTreeSet<String> = clientele::metrics::ROUTES
        .iter()
        .map(|route| route.to_string())
        .chain(["memo", "lane", "app", "ok", "failed", "limited", "+Inf"].map(String::from))
        .chain(["add", "update", "delete", "password", "password_reset"].map(String::from))
        .collect();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(labels) = line
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
        else {
            continue;
        };
        for pair in labels.0.split("\",") {
            let (name, value) = pair.split_once("=\"").unwrap();
            let value = value.trim_end_matches('"');
            let fine = match name {
                "status" => value
                    .parse::<u16>()
                    .is_ok_and(|code| (100..600).contains(&code)),
                "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
                "version" => value == env!("CARGO_PKG_VERSION"),
                _ => allowed.contains(value),
            };
            assert!(fine, "label {name}={value:?} in {line}");
        }
    }
}

#[test]
fn backups_are_taken_on_schedule_private_and_pruned_and_a_failure_is_reported_not_fatal() {
    if !sqlite_only("scheduled backups copy a SQLite file (PostgreSQL refuses backup_dir)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    // The shop exists before its backups (start-up refuses to create a database beside
    // backups of one: it was deleted or mistyped).
    Server::start(&db, &[]).stop();
    let folder = dir.path().join("backups");
    std::fs::create_dir(&folder).unwrap();
    // Two old copies and a file of the owner's: with backup_keep = 2, the oldest copy goes.
    for name in [
        "clientele-20200101T000000Z.db",
        "clientele-20200102T000000Z.db",
        "notes.txt",
    ] {
        std::fs::write(folder.join(name), b"old").unwrap();
    }
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    for name in [
        "clientele-20200101T000000Z.db",
        "clientele-20200102T000000Z.db",
    ] {
        std::fs::File::options()
            .write(true)
            .open(folder.join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let env = [
        ("ROCKET_BACKUP_DIR", folder.to_str().unwrap()),
        ("ROCKET_BACKUP_KEEP", "2"),
    ];
    let server = Server::start(&db, &env);
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert!(
        eventually(Duration::from_secs(10), || names().len() == 3
            && !names()[1].starts_with("clientele-2020")),
        "{:?}\n{}",
        names(),
        server.log()
    );
    let names = names();
    assert_eq!(names[0], "clientele-20200102T000000Z.db");
    assert_eq!(names[2], "notes.txt");
    let copy = folder.join(&names[1]);
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let customers: i64 = conn
        .query_row("SELECT count(*) FROM customer", [], |row| row.get(0))
        .unwrap();
    assert_eq!(customers, demo_customers().len() as i64);
    let health = server.get("/health").json();
    assert_eq!(health["result"]["backup"]["ok"], true, "{health}");

    // A restart takes no extra copy, and knows when the last one was taken.
    drop(server);
    let server = Server::start(&db, &env);
    let health = server.get("/health").json();
    assert!(
        health["result"]["backup"]["last_good_backup_age_secs"]
            .as_u64()
            .is_some_and(|age| age < 60),
        "{health}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_dir(&folder).unwrap().count(),
        3,
        "{}",
        server.log()
    );
    drop(server);

    // A folder that cannot be made (a file stands there): logged, reported, still serving.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    // (Another folder: a new database beside the first one's backups would be refused.)
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let db2 = dir.path().join("other").join("d.db");
    let server = Server::start(&db2, &[("ROCKET_BACKUP_DIR", blocked.to_str().unwrap())]);
    assert!(eventually(Duration::from_secs(10), || server
        .log()
        .contains("the scheduled backup failed")));
    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json()["result"]["backup"]["ok"],
        false,
        "{}",
        health.body
    );
    // Why it failed is in the log, not in /health, which anyone may read: no path there.
    assert!(!health.body.contains("blocked"), "{}", health.body);
    assert!(server.log().contains(blocked.to_str().unwrap()));
    let key = create_key(&db2, "after");
    assert_eq!(
        server
            .request(
                "GET",
                "/CUSTOMER/LIST/?id_client=1",
                &[("X-API-Key", &key)],
                ""
            )
            .status,
        200
    );
    let text = metrics(&server, &key);
    assert_eq!(sample(&text, "clientele_backup_last_failed"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "clientele_backups_total{result=\"failed\"}"),
        1.0
    );
}

#[test]
fn https_and_backup_settings_that_cannot_work_stop_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, key, _) = certificate(dir.path(), "shop");
    let (_, other_key, _) = certificate(dir.path(), "other");
    let certs = certs.to_str().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("ROCKET_TLS_CERTS", certs)],
            "tls_certs and tls_key go together",
        ),
        (
            vec![
                ("ROCKET_TLS_CERTS", certs),
                ("ROCKET_TLS_KEY", other_key.to_str().unwrap()),
            ],
            "does not go with",
        ),
        (
            vec![
                ("ROCKET_TLS_CERTS", certs),
                ("ROCKET_TLS_KEY", key.to_str().unwrap()),
                ("ROCKET_ACME_DOMAINS", "[\"shop.example\"]"),
            ],
            "choose one",
        ),
        (
            vec![("ROCKET_ACME_DOMAINS", "[\"https://shop.example\"]")],
            "acme_domains",
        ),
        (
            vec![("ROCKET_ACME_DOMAINS", "[\"*.shop.example\"]")],
            "acme_domains",
        ),
        (
            vec![("ROCKET_ACME_DOMAINS", "[\"127.0.0.1\"]")],
            "IP address",
        ),
        (
            vec![("ROCKET_ACME_DOMAINS", "[\"shop..example\"]")],
            "host name",
        ),
        (
            vec![("ROCKET_ACME_DOMAINS", "[\"localhost\"]")],
            "host name",
        ),
        (vec![("ROCKET_ACME_DOMAINS", "[\"127.1\"]")], "host name"),
        (
            vec![("ROCKET_ACME_EMAIL", "me@shop.example")],
            "acme_domains is empty",
        ),
        (
            vec![
                ("ROCKET_TLS_CERTS", certs),
                ("ROCKET_TLS_KEY", "/nonexistent/key.pem"),
            ],
            "tls_key",
        ),
        (
            // The metrics listener on the server's own port (never bound: refused first).
            vec![
                ("ROCKET_PORT", "9163"),
                ("ROCKET_METRICS_ADDRESS", "127.0.0.1:9163"),
            ],
            "metrics_address",
        ),
        (
            vec![("ROCKET_BACKUP_DIR", "b"), ("ROCKET_BACKUP_KEEP", "0")],
            // PostgreSQL refuses the schedule itself, saying what to do instead.
            if on_postgres() {
                "pg_dump"
            } else {
                "backup_keep"
            },
        ),
    ];
    for (env, expected) in cases {
        let mut command = binary();
        command
            .arg("serve")
            .env(
                "ROCKET_DATABASE",
                resolve(&dir.path().join("x.db"), Start::Empty),
            )
            .env("ROCKET_PORT", "0");
        for (name, value) in &env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let said = stderr(&output);
        // A configuration mistake: 78, which the unit does not restart, and one line.
        assert_eq!(output.status.code(), Some(78), "{env:?}: {said}");
        assert_eq!(said.trim().lines().count(), 1, "{env:?}: {said}");
        assert!(said.contains(expected), "{env:?}: {said}");
        assert!(!said.contains("PRIVATE KEY"), "{said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

#[test]
fn a_server_that_cannot_start_says_why_in_the_log_format_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    for (format, json) in [("json", true), ("text", false)] {
        let output = binary()
            .arg("serve")
            .env(
                "ROCKET_DATABASE",
                resolve(&dir.path().join("x.db"), Start::Empty),
            )
            .env("ROCKET_LOG_FORMAT", format)
            .env("ROCKET_TLS_CERTS", "/nonexistent/cert.pem")
            .env("ROCKET_TLS_KEY", "/nonexistent/key.pem")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78));
        let said = stderr(&output);
        let line = said.trim();
        assert_eq!(line.lines().count(), 1, "{said}");
        if json {
            let object: serde_json::Value = serde_json::from_str(line).expect(line);
            assert_eq!(object["level"], "error");
            assert!(object["message"].as_str().unwrap().contains("tls_certs"));
            assert!(object["time"].as_str().unwrap().ends_with('Z'));
        } else {
            // `2026-11-30T01:02:03.456Z error: configuration: tls_certs: ...`
            let (time, rest) = line.split_once(' ').unwrap();
            assert!(time.ends_with('Z') && time.contains('T'), "{line}");
            assert!(
                rest.starts_with("error: ") && rest.contains("tls_certs"),
                "{line}"
            );
        }
    }
}

#[test]
fn at_log_level_debug_over_tls_no_key_or_private_key_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let (certs, key_file, der) = certificate(dir.path(), "shop");
    let mut env = tls_env(&certs, &key_file);
    env.push(("ROCKET_LOG_LEVEL", "debug"));
    let server = Server::start(&db, &env);
    let key = create_write_key(&db, "debugged");
    let config = client(&[&der], &[&rustls::version::TLS13]);
    let with_key = format!("/CUSTOMER/LIST/?id_client=1&apikey={key}");
    let body = json!({"email": "jdoe@example.com", "password": "password123"}).to_string();
    // Keys in the query, in headers, a login body, and /metrics: all over TLS, in parallel.
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let (config, with_key, key, body) = (
                Arc::clone(&config),
                with_key.clone(),
                key.clone(),
                body.clone(),
            );
            let port = server.port;
            std::thread::spawn(move || match n % 4 {
                0 => https(port, &config, "GET", &with_key, &[], "").0.status,
                1 => {
                    https(port, &config, "GET", "/metrics", &[("X-API-Key", &key)], "")
                        .0
                        .status
                }
                2 => {
                    let headers = [
                        ("X-API-Key", key.as_str()),
                        ("Content-Type", "application/json"),
                    ];
                    https(port, &config, "POST", "/CUSTOMER/LOGIN/", &headers, &body)
                        .0
                        .status
                }
                _ => {
                    https(
                        port,
                        &config,
                        "GET",
                        "/CUSTOMER/LIST/?id_client=2",
                        &[("Authorization", &format!("Bearer {key}"))],
                        "",
                    )
                    .0
                    .status
                }
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 200);
    }
    let log = server.stop();
    assert!(log.contains("GET /CUSTOMER/LIST/"), "{log}");
    let private = std::fs::read_to_string(&key_file).unwrap();
    let private_body = private.lines().nth(1).unwrap();
    for secret in [&key[4..], "password123", "PRIVATE KEY", private_body] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
