//! "Forgot password": a write key starts a reset and gets a one-time token for the shop's own
//! email; the token, sent back with a new password, sets it once, within `reset_minutes`.

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
