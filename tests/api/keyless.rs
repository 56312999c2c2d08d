//! Serving without keys on loopback is for one person at one machine: no web page that person
//! visits may read through it (DNS rebinding: a foreign `Host`) or write through it (a
//! cross-site form: a foreign `Origin`). Over the real socket, as a browser would send them.

use serde_json::json;

use crate::helpers::*;

/// One request with exactly the head given (a `Host` of our choosing); the status and body.
fn raw(
    server: &Server,
    method: &str,
    path: &str,
    host: &str,
    extra: &str,
    body: &str,
) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_exchange(server.port, request.as_bytes());
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn first_name(server: &Server, id: i64) -> String {
    let reply = server.get(&format!("/CUSTOMER/LIST/?id_client={id}"));
    assert_eq!(reply.status, 200);
    reply.customers()[0]["firstName"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_keyless_server_answers_only_requests_addressed_to_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("demo.db"), &[]);
    let port = server.port;

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        format!("[::1]:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        let (status, _) = raw(&server, "GET", "/CUSTOMER/LIST/?id_client=1", &host, "", "");
        assert_eq!(status, 200, "Host: {host}");
    }
    for host in [
        format!("attacker.example:{port}"),
        "attacker.example".to_owned(),
        format!("localhost.attacker.example:{port}"),
        format!("10.0.0.5:{port}"),
    ] {
        let (status, body) = raw(&server, "GET", "/CUSTOMER/LIST/", &host, "", "");
        assert_eq!(status, 403, "Host: {host}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["success"], "false");
        assert!(
            body["message"].as_str().unwrap().contains("localhost"),
            "{body}"
        );
        assert!(!body.to_string().contains("jdoe"), "{body}");
    }
    // /health stays open: it says nothing about customers.
    let (status, _) = raw(&server, "GET", "/health", "attacker.example", "", "");
    assert_eq!(status, 200);
}

#[test]
fn a_keyless_server_refuses_writes_and_logins_from_other_sites_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("demo.db"),
        &[("ROCKET_CORS_ORIGINS", r#"["http://localhost:3000"]"#)],
    );
    let port = server.port;
    let host = format!("127.0.0.1:{port}");
    let form = "application/x-www-form-urlencoded";
    let before = first_name(&server, 1);

    // What a page on another site can send without a preflight: form posts.
    let evil =
        "Origin: https://attacker.example\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    for (path, body) in [
        ("/CUSTOMER/UPDATE/", "id_client=1&firstName=Hacked"),
        ("/CUSTOMER/DELETE/", "id_client=2"),
        ("/CUSTOMER/ADD/", "email=evil%40attacker.example"),
        (
            "/CUSTOMER/PASSWORD/",
            "id_client=1&newPassword=lavande+moulin+1987+rouge",
        ),
        (
            "/CUSTOMER/LOGIN/",
            "email=jdoe%40example.com&password=password123",
        ),
    ] {
        let (status, answer) = raw(&server, "POST", path, &host, evil, body);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer.contains("Origin"), "{answer}");
    }
    let (status, _) = raw(
        &server,
        "POST",
        "/CUSTOMER/UPDATE/",
        &host,
        "Origin: null\r\nContent-Type: application/x-www-form-urlencoded\r\n",
        "id_client=1&firstName=Hacked",
    );
    assert_eq!(
        status, 403,
        "an opaque origin (sandboxed frame, file:) is another site"
    );
    assert_eq!(first_name(&server, 1), before);
    assert_eq!(
        server.get("/CUSTOMER/LIST/?id_client=2").customers().len(),
        1
    );
    let total = server.get("/CUSTOMER/LIST/").customers().len();
    assert_eq!(total, demo_customers().len());

    // The server's own page, an origin in cors_origins, and tools that send no Origin write.
    let own = format!("Origin: http://127.0.0.1:{port}\r\nContent-Type: {form}\r\n");
    let (status, _) = raw(
        &server,
        "POST",
        "/CUSTOMER/UPDATE/",
        &host,
        &own,
        "id_client=1&firstName=Own",
    );
    assert_eq!(status, 200);
    let listed = format!("Origin: http://localhost:3000\r\nContent-Type: {form}\r\n");
    let (status, _) = raw(
        &server,
        "POST",
        "/CUSTOMER/UPDATE/",
        &host,
        &listed,
        "id_client=1&firstName=Listed",
    );
    assert_eq!(status, 200);
    let update = json!({"id_client": 1, "firstName": "Tool"}).to_string();
    let reply = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &[("Content-Type", "application/json")],
        &update,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(first_name(&server, 1), "Tool");
}

#[test]
fn with_a_key_any_host_is_served_to_the_key_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[]);
    let key = create_key(&db, "shop");
    let (status, _) = raw(
        &server,
        "GET",
        "/CUSTOMER/LIST/?id_client=1",
        "api.shop.example",
        &format!("X-API-Key: {key}\r\n"),
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = raw(
        &server,
        "GET",
        "/CUSTOMER/LIST/?id_client=1",
        "api.shop.example",
        "",
        "",
    );
    assert_eq!(status, 401);
}

#[test]
fn a_keyless_server_refuses_requests_through_a_proxy_and_look_alike_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("demo.db"), &[]);
    let port = server.port;
    let local = format!("127.0.0.1:{port}");

    // nginx's `proxy_pass http://127.0.0.1:8000` sends a loopback Host and the visitor's
    // address: that is the world, not one person at this machine.
    for proxied in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "X-Real-IP: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9\r\n",
    ] {
        let (status, body) = raw(
            &server,
            "POST",
            "/CUSTOMER/DELETE/?id_client=24",
            &local,
            proxied,
            "",
        );
        assert_eq!(status, 403, "{proxied}: {body}");
        assert!(body.contains("proxy"), "{body}");
    }
    for host in [
        "[::1].attacker.example",
        "[::1]@attacker.example",
        "[::1]:80x",
    ] {
        let (status, _) = raw(&server, "GET", "/CUSTOMER/LIST/", host, "", "");
        assert_eq!(status, 403, "Host: {host}");
    }
    let (status, _) = raw(
        &server,
        "GET",
        "/CUSTOMER/LIST/",
        &local,
        "Host: attacker.example\r\n",
        "",
    );
    assert_eq!(status, 403, "two Host headers");
    assert_eq!(
        server.get("/CUSTOMER/LIST/?id_client=24").customers().len(),
        1
    );
}

#[test]
fn failures_on_a_keyless_server_never_keep_another_customer_out() {
    // A shop front-end on the same machine calls without a key: every login comes from
    // 127.0.0.1, so only per-account limits apply.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("demo.db"), &[]);
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
    for n in 0..12 {
        let email = demo_customers()[1 + n % 20]["email"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(login(&email, "wrong"), 401);
    }
    assert_eq!(login("jdoe@example.com", "password123"), 200);
}
