//! The rule that must never break: no password, hash or API key in a response or a log line.
//! Drives the real binary through keys, logins, limits, legacy hashes and the tools, then
//! reads everything it logged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::tools::run;

/// The shipped Argon2 parameters, so logins cost what they cost in production.
const REAL_ARGON2: [(&str, &str); 2] = [
    ("ROCKET_ARGON2_MEMORY_KIB", "19456"),
    ("ROCKET_ARGON2_ITERATIONS", "2"),
];

fn login(server: &Server, key: &str, email: &str, password: &str) -> Reply {
    let body = json!({"email": email, "password": password}).to_string();
    server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json"), ("X-API-Key", key)],
        &body,
    )
}

/// Runs 8 threads logging in as demo customers `first..first + 8` (with right passwords, so
/// no limit kicks in) until `stop`.
fn login_storm(
    server: &Server,
    key: &str,
    first: usize,
    stop: &Arc<AtomicBool>,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<AtomicUsize>) {
    let done = Arc::new(AtomicUsize::new(0));
    let customers = demo_customers();
    let passwords = demo_passwords();
    let handles = (first..first + 8)
        .map(|thread| {
            let (port, key, stop, done) = (
                server.port,
                key.to_owned(),
                Arc::clone(stop),
                Arc::clone(&done),
            );
            let email = customers[thread]["email"].as_str().unwrap().to_owned();
            let password = passwords[thread].clone();
            std::thread::spawn(move || {
                let body = json!({"email": email, "password": password}).to_string();
                while !stop.load(Ordering::Relaxed) {
                    let reply = http(
                        port,
                        "POST",
                        "/CUSTOMER/LOGIN/",
                        &[("Content-Type", "application/json"), ("X-API-Key", &key)],
                        &body,
                    );
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (handles, done)
}

#[test]
fn list_requests_keep_answering_while_eight_logins_run_in_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("busy.db"), &REAL_ARGON2);
    let key =
        String::from_utf8(run(&dir.path().join("busy.db"), &["keys", "create", "k"], "").stdout)
            .unwrap();
    let key = key.trim();
    let stop = Arc::new(AtomicBool::new(false));

    let (storm, logins) = login_storm(&server, key, 0, &stop);
    std::thread::sleep(Duration::from_millis(300));
    let mut answered = 0;
    let started = Instant::now();
    let logins_before = logins.load(Ordering::Relaxed);
    // Each list answers within LIST_BOUND, and the first 20 within DEADLINE in all: lists
    // starved by the logins fail the test instead of merely slowing it (here each takes ~10 ms).
    const LIST_BOUND: Duration = Duration::from_secs(2);
    const DEADLINE: Duration = Duration::from_secs(10);
    let mut slowest = Duration::ZERO;
    while (answered < 20 || started.elapsed() < Duration::from_secs(2))
        && slowest <= LIST_BOUND
        && (answered >= 20 || started.elapsed() <= DEADLINE)
    {
        let asked = Instant::now();
        let reply = server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=3",
            &[("X-API-Key", key)],
            "",
        );
        slowest = slowest.max(asked.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.ids(), vec![3]);
        answered += 1;
    }
    let looped = started.elapsed();
    let logins_during = logins.load(Ordering::Relaxed) - logins_before;
    stop.store(true, Ordering::Relaxed);
    for handle in storm {
        handle.join().expect("login thread");
    }

    assert!(
        slowest <= LIST_BOUND,
        "a list took {slowest:?} during the logins (bound {LIST_BOUND:?})"
    );
    assert!(
        answered >= 20,
        "only {answered} lists answered in {looped:?} during the logins"
    );
    // Both kinds of work made progress at the same time: logins did not stop the lists,
    // and the lists did not stop the logins.
    assert!(
        logins_during > 0,
        "no login completed while {answered} lists were answered"
    );
}

#[test]
fn no_key_password_or_hash_reaches_the_log_or_a_response() {
    no_secret_reaches_the_log_or_a_response_at("normal");
}

#[test]
fn no_key_password_or_hash_reaches_the_log_at_debug_level_either() {
    // At debug, Rocket's and hyper's own output would print request headers.
    no_secret_reaches_the_log_or_a_response_at("debug");
}

fn no_secret_reaches_the_log_or_a_response_at(level: &str) {
    // Arrange: a real server with the shipped Argon2 cost, and a key made by the CLI.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut env = REAL_ARGON2.to_vec();
    env.push(("ROCKET_LOG_LEVEL", level));
    let server = Server::start(&db, &env);
    let created = run(&db, &["keys", "create", "webshop"], "");
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    // A second key, so that revoking the first leaves the server keyed (with none left, a
    // loopback server is open again, as the contract says).
    let spare = run(&db, &["keys", "create", "spare"], "");
    let spare = String::from_utf8(spare.stdout).unwrap().trim().to_owned();
    let passwords = demo_passwords();
    let mut replies = Vec::new();

    // Act: keys in every place, right and wrong; every demo login; failures up to the limit;
    // a bcrypt upgrade; a password change; a login storm; a revoked key.
    replies.push(server.get(&format!("/CUSTOMER/LIST/?apikey={key}&id_client=1")));
    replies.push(server.request("GET", "/customer/list", &[("X-API-Key", &key)], ""));
    replies.push(server.request(
        "GET",
        "/CUSTOMER/LIST",
        &[("Authorization", &format!("Bearer {key}"))],
        "",
    ));
    replies.push(server.get(&format!("/CUSTOMER/LIST/?apikey={key}x")));
    replies.push(server.get("/CUSTOMER/LIST/"));
    replies.push(server.get(&format!("/nope?apikey={key}")));
    for (customer, password) in demo_customers().iter().zip(&passwords) {
        let reply = login(&server, &key, customer["email"].as_str().unwrap(), password);
        assert_eq!(reply.status, 200, "{}", reply.body);
        replies.push(reply);
    }
    let bcrypt = bcrypt::hash("php-era-secret", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    run_sql(
        &db,
        &format!("UPDATE customer SET password_hash = '{bcrypt}' WHERE clcleunik = 4"),
    );
    let upgraded = login(&server, &key, "celine.lefevre@example.be", "php-era-secret");
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);
    replies.push(upgraded);
    let changed = run(&db, &["passwd", "5"], "Changed-Secret-55\n");
    assert!(changed.status.success());
    replies.push(login(
        &server,
        &key,
        "f.dhondt@example.be",
        "Changed-Secret-55",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    // Customers 4 and 5 changed password above; storm with others.
    let (storm, _) = login_storm(&server, &key, 10, &stop);
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    storm.into_iter().for_each(|h| h.join().unwrap());
    replies.push(login(&server, &key, "nobody@example.com", "password123"));
    for _ in 0..11 {
        replies.push(login(&server, &key, "jdoe@example.com", &passwords[1]));
    }
    assert_eq!(replies.last().unwrap().status, 429);
    assert!(run(&db, &["keys", "revoke", "webshop"], "")
        .status
        .success());
    replies.push(server.get(&format!("/CUSTOMER/LIST/?apikey={key}")));
    assert_eq!(replies.last().unwrap().status, 401);
    let log = server.stop();

    // Assert: the log recorded the traffic, with keys masked, and no secret anywhere.
    assert!(log.contains("GET /CUSTOMER/LIST/?apikey=***"), "{log}");
    assert!(log.contains("POST /CUSTOMER/LOGIN/ 200"), "{log}");
    assert!(log.contains("POST /CUSTOMER/LOGIN/ 429"), "{log}");
    if level == "debug" {
        assert!(
            log.contains("sent headers:"),
            "debug lines were written: {log}"
        );
        assert!(
            log.contains("x-api-key"),
            "header names, never values: {log}"
        );
    }
    let hashes: Vec<String> = stored_hashes(&db).into_iter().flatten().collect();
    let secrets: Vec<&str> = passwords
        .iter()
        .map(String::as_str)
        .chain([
            key.as_str(),
            &key[4..],
            &spare[4..],
            "php-era-secret",
            "Changed-Secret-55",
        ])
        .chain([bcrypt.as_str()])
        .chain(hashes.iter().map(String::as_str))
        .collect();
    for secret in &secrets {
        assert!(!log.contains(secret), "the log contains a secret");
    }
    assert!(!log.contains("$argon2"), "the log contains a hash");
    assert!(!log.contains("$2y$"), "the log contains a bcrypt hash");
    for reply in &replies {
        assert_json_content_type(reply);
        assert!(!reply.body.contains("$argon2"));
        assert!(!reply.body.contains("password"), "{}", reply.body);
        for secret in &secrets {
            assert!(!reply.body.contains(secret), "a response contains a secret");
        }
    }
}
