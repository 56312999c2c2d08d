//! "Forgot password": a write key starts a reset and gets a one-time token for the shop's own
//! email; the token, sent back with a new password, sets it once, within `reset_minutes`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::helpers::*;

const STRONG: &str = "lavande moulin 1987 rouge";
const OTHER: &str = "tulipe grenier 2031 vert";

fn app_with_keys() -> (TestApp, String, String) {
    let app = spawn_app();
    let write = create_write_key(&app.db, "webshop");
    let read = create_key(&app.db, "catalogue");
    (app, write, read)
}

fn start(app: &TestApp, key: &str, body: Value) -> Reply {
    app.send(
        "POST",
        &format!("/CUSTOMER/PASSWORD/RESET/?apikey={key}"),
        &body,
    )
}

fn spend(app: &TestApp, key: &str, token: &str, password: &str) -> Reply {
    app.send(
        "POST",
        &format!("/customer/password?apikey={key}"),
        &json!({"resetToken": token, "newPassword": password}),
    )
}

fn token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["result"]["resetToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn login(app: &TestApp, key: &str, password: &str) -> u16 {
    app.login_json(
        &json!({"email": "jdoe@example.com", "password": password}),
        Some(key),
    )
    .status
}

#[test]
fn a_reset_token_sets_the_password_once_and_the_old_one_stops_working() {
    let (app, write, read) = app_with_keys();

    let started = start(&app, &write, json!({"email": "JDOE@example.com"}));
    let token = token_of(&started);
    let expires = started.json()["result"]["expires"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("clr_") && token.len() > 40, "{token}");
    assert!(expires.ends_with('Z') && expires.contains('T'), "{expires}");

    // Any key may spend it: the token is the proof.
    let spent = spend(&app, &read, &token, STRONG);
    assert_eq!(spent.status, 200, "{}", spent.body);
    assert_eq!(spent.json()["message"], "Password changed");
    assert_eq!(login(&app, &read, STRONG), 200);
    assert_eq!(login(&app, &read, "password123"), 401);

    let again = spend(&app, &read, &token, OTHER);
    let message = again.assert_error(400);
    assert!(message.contains("cannot be used"), "{message}");
    assert_eq!(
        login(&app, &read, STRONG),
        200,
        "a used token changes nothing"
    );
}

#[test]
fn a_newer_reset_ends_the_older_token_and_a_weak_password_keeps_the_token_usable() {
    let (app, write, read) = app_with_keys();
    let first = token_of(&start(&app, &write, json!({"login": "jdoe"})));
    let second = token_of(&start(&app, &write, json!({"email": "jdoe@example.com"})));
    assert_ne!(first, second);

    spend(&app, &read, &first, STRONG).assert_error(400);
    let weak = spend(&app, &read, &second, "password");
    let message = weak.assert_error(400);
    assert!(
        message.contains("easy to guess") || message.contains("8 characters"),
        "{message}"
    );
    assert_eq!(spend(&app, &read, &second, STRONG).status, 200);
}

#[test]
fn an_expired_or_wrong_token_is_refused_and_any_password_change_ends_tokens() {
    let (app, write, read) = app_with_keys();
    let expired = token_of(&start(&app, &write, json!({"email": "jdoe@example.com"})));
    app.sql("UPDATE reset_token SET expires = '2000-01-01T00:00:00Z'");
    spend(&app, &read, &expired, STRONG).assert_error(400);
    spend(&app, &read, "clr_not-a-real-token", STRONG).assert_error(400);
    spend(&app, &read, "", STRONG).assert_error(400);
    let mixed = app.send(
        "POST",
        &format!("/CUSTOMER/PASSWORD/?apikey={read}"),
        &json!({"resetToken": "clr_x", "email": "jdoe@example.com", "newPassword": STRONG}),
    );
    assert!(mixed.assert_error(400).contains("resetToken"));

    // The customer changes the password another way: the pending token stops working.
    let pending = token_of(&start(&app, &write, json!({"email": "jdoe@example.com"})));
    let changed = app.send(
        "POST",
        &format!("/CUSTOMER/PASSWORD/?apikey={read}"),
        &json!({"email": "jdoe@example.com", "currentPassword": "password123", "newPassword": OTHER}),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    spend(&app, &read, &pending, STRONG).assert_error(400);
    assert_eq!(login(&app, &read, OTHER), 200);
}

#[test]
fn only_a_write_key_starts_a_reset_and_an_unknown_account_is_a_404() {
    let (app, write, read) = app_with_keys();
    let by_read = start(&app, &read, json!({"email": "jdoe@example.com"}));
    assert_eq!(by_read.assert_error(403), "This API key may only read");
    let unknown = start(&app, &write, json!({"email": "nobody@example.com"}));
    unknown.assert_error(404);
    start(&app, &write, json!({})).assert_error(400);
    start(
        &app,
        &write,
        json!({"email": "jdoe@example.com", "extra": 1}),
    )
    .assert_error(400);
    start(&app, "wrong", json!({"email": "jdoe@example.com"})).assert_error(401);
    assert_eq!(app.sql_count("SELECT count(*) FROM reset_token"), 0);
}

#[test]
fn resets_are_limited_per_account_and_audited_without_the_token() {
    let (app, write, read) = app_with_keys();
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(token_of(&start(
            &app,
            &write,
            json!({"email": "jdoe@example.com"}),
        )));
    }
    let limited = start(&app, &write, json!({"email": "jdoe@example.com"}));
    limited.assert_error(429);
    assert!(limited.header("retry-after").is_some());
    // Another account is not held back.
    token_of(&start(&app, &write, json!({"login": "mdubois"})));
    let last = tokens.last().unwrap();
    assert_eq!(spend(&app, &read, last, STRONG).status, 200);

    let audit = crate::tools::run(&app.db, &["audit", "--customer", "1"], "");
    let trail = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        trail.contains("webshop  password-reset-request  customer 1"),
        "{trail}"
    );
    assert!(
        trail.contains("catalogue  password-reset  customer 1"),
        "{trail}"
    );
    let stored = database_bytes(&app.db);
    for token in &tokens {
        assert!(!trail.contains(token.as_str()));
        assert!(
            !contains_bytes(&stored, token.as_bytes()),
            "a token in the database file"
        );
    }
}

#[test]
fn a_deleted_customer_s_tokens_go_with_them() {
    let (app, write, read) = app_with_keys();
    let token = token_of(&start(&app, &write, json!({"email": "jdoe@example.com"})));
    let deleted = app.send(
        "DELETE",
        &format!("/CUSTOMER/DELETE/?apikey={write}&id_client=1"),
        &json!({}),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    spend(&app, &read, &token, STRONG).assert_error(400);
    assert_eq!(app.sql_count("SELECT count(*) FROM reset_token"), 0);
}

/// A minimal SMTP server on loopback that keeps every message it accepts, or refuses them.
struct FakeSmtp {
    port: u16,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeSmtp {
    fn start() -> FakeSmtp {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kept, refusing) = (Arc::clone(&messages), Arc::clone(&refuse));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (kept, refusing) = (Arc::clone(&kept), Arc::clone(&refusing));
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().unwrap();
                    let mut lines = BufReader::new(stream);
                    let _ = out.write_all(b"220 fake ESMTP\r\n");
                    let mut line = String::new();
                    while lines.read_line(&mut line).unwrap_or(0) > 0 {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 fake\r\n",
                            "DATA" => {
                                let _ = out.write_all(b"354 go on\r\n");
                                let mut message = String::new();
                                let mut part = String::new();
                                while lines.read_line(&mut part).unwrap_or(0) > 0 {
                                    if part == ".\r\n" {
                                        break;
                                    }
                                    message.push_str(&part);
                                    part.clear();
                                }
                                if refusing.load(std::sync::atomic::Ordering::SeqCst) {
                                    b"554 5.7.1 refused by policy\r\n"
                                } else {
                                    kept.lock().unwrap().push(message);
                                    b"250 queued\r\n"
                                }
                            }
                            "QUIT" => {
                                let _ = out.write_all(b"221 bye\r\n");
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = out.write_all(answer);
                        line.clear();
                    }
                });
            }
        });
        FakeSmtp {
            port,
            messages,
            refuse,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

/// A message body as written, from its quoted-printable form (`=3D`, soft line breaks).
fn quoted_printable_decoded(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mail_server(smtp: &FakeSmtp, db: &std::path::Path) -> Server {
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    Server::start(
        db,
        &[
            ("ROCKET_SMTP_URL", url.as_str()),
            ("ROCKET_SMTP_FROM", "Shop <noreply@shop.test>"),
            ("ROCKET_RESET_URL", "https://shop.test/reset?token={token}"),
            ("ROCKET_LOG_LEVEL", "debug"),
        ],
    )
}

fn public_key(db: &std::path::Path) -> String {
    let out = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(db, crate::helpers::Start::Empty),
        )
        .args(["keys", "create", "web", "--public"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn reset_over(server: &Server, key: &str, email: &str) -> Reply {
    server.request(
        "POST",
        "/CUSTOMER/PASSWORD/RESET/",
        &[("Content-Type", "application/json"), ("X-API-Key", key)],
        &json!({ "email": email }).to_string(),
    )
}

#[test]
fn a_public_key_gets_the_reset_link_emailed_and_the_same_answer_for_any_account() {
    let smtp = FakeSmtp::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = mail_server(&smtp, &db);
    let key = public_key(&db);

    let known = reset_over(&server, &key, "jdoe@example.com");
    let unknown = reset_over(&server, &key, "nobody@example.com");

    assert_eq!(known.status, 200, "{}", known.body);
    assert_eq!(
        known.body, unknown.body,
        "the same answer whether the account exists or not"
    );
    assert_eq!(
        known.json()["message"],
        "If that account exists, a reset message is on its way"
    );
    assert!(!known.body.contains("clr_"));
    assert!(eventually(std::time::Duration::from_secs(10), || !smtp
        .messages()
        .is_empty()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let messages = smtp.messages();
    assert_eq!(
        messages.len(),
        1,
        "one message, for the account that exists"
    );
    let message = &quoted_printable_decoded(&messages[0]);
    assert!(message.contains("jdoe@example.com") && message.contains("Reset your password"));
    let token: String = message
        .split("https://shop.test/reset?token=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert!(token.starts_with("clr_"), "{message}");

    // The browser follows the link: the token and a new password, with the public key alone.
    let spent = server.request(
        "POST",
        "/CUSTOMER/PASSWORD/",
        &[("Content-Type", "application/json"), ("X-API-Key", &key)],
        &json!({"resetToken": token, "newPassword": STRONG}).to_string(),
    );
    assert_eq!(spent.status, 200, "{}", spent.body);
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json"), ("X-API-Key", &key)],
        &json!({"email": "jdoe@example.com", "password": STRONG}).to_string(),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let log = server.stop();
    assert!(!log.contains(&token[4..]), "the token in the log:\n{log}");
    assert!(
        log.contains("password reset email sent for customer 1"),
        "{log}"
    );
}

#[test]
fn a_refused_reset_email_is_logged_without_the_token_and_changes_nothing() {
    let smtp = FakeSmtp::start();
    smtp.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = mail_server(&smtp, &db);
    let key = public_key(&db);

    assert_eq!(reset_over(&server, &key, "jdoe@example.com").status, 200);

    let mut log = String::new();
    assert!(eventually(std::time::Duration::from_secs(10), || {
        log = server.log();
        log.contains("was not sent")
    }));
    assert!(log.contains("refused by policy"), "{log}");
    let unmasked = log.split("clr_").skip(1).any(|after| {
        after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .count()
            >= 8
    });
    assert!(!unmasked, "a reset token in the log:\n{log}");
    let count = query_count(&db, "SELECT count(*) FROM reset_token");
    assert_eq!(count, 0, "no token stored for a message that was not sent");
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json"), ("X-API-Key", &key)],
        &json!({"email": "jdoe@example.com", "password": "password123"}).to_string(),
    );
    assert_eq!(login.status, 200, "the password is unchanged");
}

#[test]
fn a_public_reset_takes_about_the_same_time_whether_the_account_exists_or_not() {
    let smtp = FakeSmtp::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = mail_server(&smtp, &db);
    let key = public_key(&db);
    let emails: Vec<String> = demo_customers()
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_owned())
        .take(20)
        .collect();
    let time = |email: &str| {
        let started = std::time::Instant::now();
        let reply = reset_over(&server, &key, email);
        assert_eq!(reply.status, 200, "{}", reply.body);
        started.elapsed()
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for (n, email) in emails.iter().enumerate() {
        // Alternating, so that load on the machine falls on both alike.
        known.push(time(email));
        unknown.push(time(&format!("nobody{n}@example.com")));
    }
    known.sort();
    unknown.sort();
    let (a, b) = (known[known.len() / 2], unknown[unknown.len() / 2]);
    let (fast, slow) = (a.min(b), a.max(b));
    assert!(
        slow <= fast * 2 + std::time::Duration::from_millis(2),
        "median {a:?} for existing accounts, {b:?} for missing ones"
    );
}

#[test]
fn smtp_settings_go_together_and_the_reset_url_needs_its_token() {
    let dir = tempfile::tempdir().unwrap();
    for (env, expected) in [
        (
            vec![("ROCKET_SMTP_URL", "smtp://127.0.0.1:2525")],
            "go together",
        ),
        (
            vec![
                ("ROCKET_SMTP_URL", "smtp://127.0.0.1:2525"),
                ("ROCKET_SMTP_FROM", "Shop <noreply@shop.test>"),
                ("ROCKET_RESET_URL", "https://shop.test/reset"),
            ],
            "{token}",
        ),
        (
            vec![
                (
                    "ROCKET_SMTP_URL",
                    "smtp://user:SMTP-SECRET-1@127.0.0.1:2525",
                ),
                ("ROCKET_SMTP_FROM", "not an address"),
                ("ROCKET_RESET_URL", "https://shop.test/reset?token={token}"),
            ],
            "smtp_from",
        ),
    ] {
        let mut command = binary();
        command
            .arg("serve")
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(&dir.path().join("shop.db"), crate::helpers::Start::Empty),
            )
            .env("ROCKET_PORT", "0");
        for (name, value) in &env {
            command.env(name, value);
        }
        let out = command.output().unwrap();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{said}");
        assert!(said.contains(expected), "{expected}: {said}");
        assert!(!said.contains("SMTP-SECRET-1"), "{said}");
    }
}

#[test]
fn a_spent_reset_token_ends_every_session_of_its_customer() {
    let (app, write, read) = app_with_keys();
    let public = create_public_key(&app.db, "web");
    let session = app
        .login_json(
            &json!({"email": "jdoe@example.com", "password": "password123"}),
            Some(&public),
        )
        .json()["result"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = |app: &TestApp| {
        app.get_with(
            &format!("/CUSTOMER/LIST/?apikey={public}"),
            &[("Authorization", format!("Bearer {session}"))],
        )
        .status
    };
    assert_eq!(own(&app), 200);

    let token = token_of(&start(&app, &write, json!({"email": "jdoe@example.com"})));
    assert_eq!(spend(&app, &read, &token, STRONG).status, 200);

    assert_eq!(own(&app), 401, "the session ended with the reset");
}

#[test]
fn a_reset_token_spent_by_twelve_requests_at_once_works_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let server = Server::start(&db, &[]);
    let write = create_write_key(&db, "webshop");
    let started = server.request(
        "POST",
        "/CUSTOMER/PASSWORD/RESET/",
        &[("Content-Type", "application/json"), ("X-API-Key", &write)],
        &json!({"email": "jdoe@example.com"}).to_string(),
    );
    let token = token_of(&started);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
    let threads: Vec<_> = (0..12)
        .map(|n| {
            let (barrier, token, write, port) = (
                Arc::clone(&barrier),
                token.clone(),
                write.clone(),
                server.port,
            );
            std::thread::spawn(move || {
                let body = json!({"resetToken": token, "newPassword": format!("{STRONG} {n}")});
                barrier.wait();
                http(
                    port,
                    "POST",
                    "/CUSTOMER/PASSWORD/",
                    &[("Content-Type", "application/json"), ("X-API-Key", &write)],
                    &body.to_string(),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        11,
        "{statuses:?}"
    );
}
