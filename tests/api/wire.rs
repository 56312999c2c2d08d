//! The wire format, pinned: every response shape of the contract, as a real server sends it
//! over a socket (memo and fast lane included), kept as one reviewed file per shape in
//! `tests/api/snapshots/`. A change to a status, a header, a message, a key's spelling or
//! order, or a byte of a body fails here and shows as a diff.
//!
//! After an intended change: `INSTA_UPDATE=always cargo test --test api wire`, then read the
//! diff of `tests/api/snapshots/` before committing it. On PostgreSQL the same files must
//! match: the contract promises the same bytes on both.

use serde_json::{json, Value};

use crate::helpers::*;

/// The values that differ on every run (tokens, expiry times), by the JSON key that holds
/// them in a body.
const VOLATILE_KEYS: [&str; 3] = ["token", "expires", "resetToken"];

/// Headers that differ on every run.
const VOLATILE_HEADERS: [&str; 2] = ["date", "retry-after"];

/// `reply` as the snapshot keeps it: the status, the headers in name order (their values
/// as sent, but for those that change on every run), a blank line, then the body byte for
/// byte, with each volatile value replaced by its key's name in brackets.
fn wire(reply: &Reply) -> String {
    let mut text = format!("{}\n", reply.status);
    for (name, value) in &reply.headers {
        let value = match VOLATILE_HEADERS.contains(&name.as_str()) {
            true => "[varies]",
            false => value.as_str(),
        };
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    let mut body = reply.body.clone();
    if let Ok(json) = serde_json::from_str::<Value>(&reply.body) {
        for key in VOLATILE_KEYS {
            if let Some(value) = json["result"][key].as_str() {
                assert!(!value.is_empty(), "{key} is empty in {}", reply.body);
                body = body.replace(&format!("\"{value}\""), &format!("\"[{key}]\""));
            }
        }
    }
    text.push_str(&seconds_to_wait(&body));
    text
}

/// `body` with the seconds of "Try again in N seconds" as `[N]`: they count down.
fn seconds_to_wait(body: &str) -> String {
    const SAID: &str = "Try again in ";
    let Some(at) = body.find(SAID).map(|at| at + SAID.len()) else {
        return body.to_owned();
    };
    let digits = body[at..].chars().take_while(char::is_ascii_digit).count();
    format!("{}[N]{}", &body[..at], &body[at + digits..])
}

/// Asserts `reply` equals the snapshot called `name`.
#[track_caller]
fn pinned(name: &str, reply: &Reply) {
    insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, wire(reply));
    });
}

fn keyed<'a>(key: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("X-API-Key", key)];
    headers.extend_from_slice(extra);
    headers
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn every_response_shape_of_the_contract_is_byte_for_byte_as_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wire.db");
    let server = Server::start(
        &db,
        &[("ROCKET_CORS_ORIGINS", "[\"https://shop.example\"]")],
    );
    let read = create_key(&db, "backoffice");
    let write = create_write_key(&db, "erp");
    let public = create_public_key(&db, "browser");
    let customers = demo_customers();
    let passwords = demo_passwords();
    let email = customers[0]["email"].as_str().unwrap().to_owned();
    let password = passwords[0].clone();
    let get = |path: &str, key: &str| server.request("GET", path, &keyed(key, &[]), "");
    let send = |method: &str, path: &str, key: &str, body: &Value| {
        server.request(method, path, &keyed(key, &[JSON]), &body.to_string())
    };

    // The list: one customer (twice: the second from the memo, the same bytes), a page, a
    // filter that matches nothing, HEAD, and what is refused.
    pinned("list_one", &get("/CUSTOMER/LIST/?id_client=1", &read));
    pinned("list_one", &get("/CUSTOMER/LIST/?id_client=1", &read));
    pinned("list_page", &get("/CUSTOMER/LIST/?limit=2&offset=3", &read));
    pinned(
        "list_no_match",
        &get("/CUSTOMER/LIST/?email=nobody@example.com", &read),
    );
    pinned(
        "list_head",
        &server.request(
            "HEAD",
            "/CUSTOMER/LIST/?id_client=2",
            &keyed(&read, &[]),
            "",
        ),
    );
    pinned(
        "list_bad_parameter",
        &get("/customer/list?id_client=abc", &read),
    );
    pinned("list_no_key", &server.get("/CUSTOMER/LIST/?id_client=1"));
    pinned(
        "list_wrong_method",
        &server.request("PUT", "/CUSTOMER/LIST/", &keyed(&read, &[]), ""),
    );
    pinned("unknown_path", &get("/CUSTOMER/NOPE/", &read));
    pinned("health", &server.get("/health"));

    // Logging in: right, wrong, a field missing, a form body.
    pinned(
        "login_ok",
        &send(
            "POST",
            "/CUSTOMER/LOGIN/",
            &read,
            &json!({"email": email, "password": password}),
        ),
    );
    pinned(
        "login_wrong_password",
        &send(
            "POST",
            "/CUSTOMER/LOGIN/",
            &read,
            &json!({"email": email, "password": "not the password"}),
        ),
    );
    pinned(
        "login_missing_password",
        &send("POST", "/CUSTOMER/LOGIN/", &read, &json!({"email": email})),
    );
    pinned(
        "login_wrong_body_type",
        &server.request(
            "POST",
            "/CUSTOMER/LOGIN/",
            &keyed(&read, &[("Content-Type", "text/plain")]),
            "email=x",
        ),
    );

    // Too many failures for one account: 429 with Retry-After (its seconds vary).
    let limited = (0..20)
        .map(|_| {
            send(
                "POST",
                "/CUSTOMER/LOGIN/",
                &read,
                &json!({"login": "mdubois", "password": "not the password"}),
            )
        })
        .find(|reply| reply.status == 429)
        .expect("the account is limited");
    assert!(limited.headers.contains_key("retry-after"));
    pinned("login_limited", &limited);
    pinned(
        "login_body_too_large",
        &server.request(
            "POST",
            "/CUSTOMER/LOGIN/",
            &keyed(&read, &[JSON]),
            &format!("{{\"email\":\"{}\"}}", "a".repeat(20_000)),
        ),
    );

    // Writes: an update, refused ones, a registration, a conflict, a password change, a
    // deletion and a deletion of no one.
    pinned(
        "update_ok",
        &send(
            "POST",
            "/CUSTOMER/UPDATE/",
            &write,
            &json!({"id_client": "2", "firstName": "Zoé", "city": "Liège"}),
        ),
    );
    pinned(
        "update_with_a_read_key",
        &send(
            "POST",
            "/CUSTOMER/UPDATE/",
            &read,
            &json!({"id_client": 2, "city": "Gent"}),
        ),
    );
    pinned(
        "update_unknown_field",
        &send(
            "POST",
            "/CUSTOMER/UPDATE/",
            &write,
            &json!({"id_client": 2, "colour": "red"}),
        ),
    );
    pinned(
        "update_bad_value",
        &send(
            "POST",
            "/CUSTOMER/UPDATE/",
            &write,
            &json!({"id_client": 2, "addedDate": "2026-13-01"}),
        ),
    );
    pinned(
        "update_no_such_customer",
        &send(
            "POST",
            "/CUSTOMER/UPDATE/",
            &write,
            &json!({"id_client": 9999, "city": "Gent"}),
        ),
    );
    let new_customer = json!({
        "email": "new.customer@shop.example", "login": "newcustomer",
        "firstName": "Ana", "lastName": "Silva", "password": "correct horse battery",
        "addedDate": "2026-11-30", "addHour": "10:11:12", "showPrice": true, "webRemise": 12.5
    });
    pinned(
        "add_ok",
        &send("POST", "/CUSTOMER/ADD/", &write, &new_customer),
    );
    pinned(
        "add_email_taken",
        &send("POST", "/CUSTOMER/ADD/", &write, &new_customer),
    );
    pinned(
        "password_changed",
        &send(
            "POST",
            "/CUSTOMER/PASSWORD/",
            &read,
            &json!({"login": "newcustomer", "currentPassword": "correct horse battery",
                    "newPassword": "a much longer passphrase"}),
        ),
    );
    pinned(
        "password_too_short",
        &send(
            "POST",
            "/CUSTOMER/PASSWORD/",
            &write,
            &json!({"login": "newcustomer", "newPassword": "short"}),
        ),
    );
    pinned(
        "delete_ok",
        &server.request(
            "DELETE",
            "/CUSTOMER/DELETE/?id_client=26",
            &keyed(&write, &[]),
            "",
        ),
    );
    pinned(
        "delete_no_such_customer",
        &server.request(
            "DELETE",
            "/CUSTOMER/DELETE/?id_client=26",
            &keyed(&write, &[]),
            "",
        ),
    );

    // The changes feed: what changed since the start, a page at a time.
    pinned("changes", &get("/CUSTOMER/CHANGES/?since=0&limit=2", &read));

    // A public key: refused without a session, then a session's own customer and its end.
    pinned("public_without_session", &get("/CUSTOMER/LIST/", &public));
    let login = send(
        "POST",
        "/CUSTOMER/LOGIN/",
        &public,
        &json!({"email": email, "password": password}),
    );
    let token = login.json()["result"]["token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let session = |method: &str, path: &str| {
        server.request(
            method,
            path,
            &keyed(&public, &[("Authorization", &bearer)]),
            "",
        )
    };
    pinned("session_list", &session("GET", "/CUSTOMER/LIST/"));
    pinned(
        "session_other_customer",
        &session("GET", "/CUSTOMER/LIST/?id_client=3"),
    );
    pinned(
        "preflight",
        &server.request(
            "OPTIONS",
            "/CUSTOMER/UPDATE/",
            &[
                ("Origin", "https://shop.example"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, x-api-key, content-type",
                ),
            ],
            "",
        ),
    );
    pinned("logout", &session("POST", "/CUSTOMER/LOGOUT/"));
    pinned("session_ended", &session("GET", "/CUSTOMER/LIST/"));

    // A password reset started by the shop, and a token that cannot be used.
    pinned(
        "reset_started",
        &send(
            "POST",
            "/CUSTOMER/PASSWORD/RESET/",
            &write,
            &json!({"email": email}),
        ),
    );
    pinned(
        "reset_bad_token",
        &send(
            "POST",
            "/CUSTOMER/PASSWORD/",
            &read,
            &json!({"resetToken": "clr_not-a-token", "newPassword": "a much longer passphrase"}),
        ),
    );
}
