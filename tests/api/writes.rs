//! The writes real front-ends make (ADD, UPDATE, DELETE, PASSWORD), write keys, the audit
//! trail, and the list's compatibility with what front-ends send.

use std::sync::{Arc, Barrier};

use rocket::http::{ContentType, Header};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::tools::{run, run_expecting_failure};

/// A strong password for tests that need one accepted.
const STRONG: &str = "lavande moulin 1987 rouge";

impl TestApp {
    /// A request with a JSON body, sent exactly as given (method, path, query).
    pub fn send(&self, method: &str, uri: &str, body: &Value) -> Reply {
        let request = match method {
            "DELETE" => self.client.delete(uri.to_owned()),
            _ => self.client.post(uri.to_owned()),
        };
        Reply::from_local(
            request
                .header(ContentType::JSON)
                .body(body.to_string())
                .dispatch(),
        )
    }

    /// Every customer row as text, and the stored hashes: "nothing changed" means equal.
    pub fn snapshot(&self) -> (String, Vec<Option<String>>) {
        (self.get("/CUSTOMER/LIST/").body, stored_hashes(&self.db))
    }
}

fn keyed_app() -> (TestApp, String, String) {
    let app = spawn_app();
    let write = create_write_key(&app.db, "webshop");
    let read = create_key(&app.db, "catalogue");
    (app, write, read)
}

#[test]
fn the_account_page_calls_as_sent_update_and_delete_and_the_etag_follows() {
    let (app, key, _) = keyed_app();
    let before = app.get(&format!("/CUSTOMER/LIST/?apikey={key}&id_client=12"));
    let etag = before.header("etag").unwrap().to_owned();
    let body = json!({"id_client": "12", "firstName": "Zoé", "address": "Rue Neuve 4",
        "zipcode": "5000", "city": "Namur", "country": "BE", "phone": "+32 81 000000",
        "cellphone": "+32 475 000000"});

    let updated = app.send("POST", &format!("/customer/update/?apikey={key}"), &body);
    let after = app.get_with(
        &format!("/customer/list/?apikey={key}&id_client=12"),
        &[("If-None-Match", etag.clone())],
    );

    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["message"], "Customer updated");
    let customer = &updated.customers()[0];
    assert_eq!(customer["firstName"], "Zoé");
    assert_eq!(customer["city"], "Namur");
    assert_eq!(
        customer["lastName"],
        before.customers()[0]["lastName"],
        "others kept"
    );
    assert_eq!(after.status, 200, "the old ETag no longer matches");
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(after.customers()[0]["firstName"], "Zoé");

    let deleted = Reply::from_local(
        app.client
            .delete(format!("/CUSTOMER/DELETE/?apikey={key}&id_client=12"))
            .dispatch(),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(
        deleted.json(),
        json!({"success": "true", "message": "Customer deleted"})
    );
    let gone = app.get(&format!("/CUSTOMER/LIST/?apikey={key}&id_client=12"));
    assert!(gone.customers().is_empty());
    let total: usize = app
        .get(&format!("/CUSTOMER/LIST/?apikey={key}"))
        .header("x-total-count")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, demo_customers().len() - 1);
}

#[test]
fn delete_by_post_for_clients_that_cannot_send_delete() {
    let (app, key, _) = keyed_app();

    let by_query = Reply::from_local(
        app.client
            .post(format!("/CUSTOMER/DELETE?apikey={key}&id_client=3"))
            .dispatch(),
    );
    let by_body = app.send(
        "POST",
        &format!("/customer/delete/?apikey={key}"),
        &json!({"id_client": 4}),
    );

    assert_eq!(by_query.status, 200, "{}", by_query.body);
    assert_eq!(by_body.status, 200, "{}", by_body.body);
    assert!(
        app.get("/CUSTOMER/LIST/?id_client=3&apikey=".to_owned().as_str())
            .status
            != 500
    );
    let ids = app.get(&format!("/CUSTOMER/LIST/?apikey={key}")).ids();
    assert!(!ids.contains(&3) && !ids.contains(&4));
}

#[test]
fn every_refused_write_is_the_right_4xx_and_changes_nothing() {
    let (app, key, read) = keyed_app();
    let update = format!("/CUSTOMER/UPDATE/?apikey={key}");
    let before = app.snapshot();
    let cases: Vec<(u16, Reply, &str)> = vec![
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "addedDate": "2024-13-01"}),
            ),
            "addedDate",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "addHour": "25:00:00"}),
            ),
            "addHour",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": 1, "webRemise": 101})),
            "webRemise",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "showPrice": "maybe"}),
            ),
            "showPrice",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": 1, "city": "a\nb"})),
            "city",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "email": "x".repeat(255)}),
            ),
            "email",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "lastName": "x".repeat(1001)}),
            ),
            "lastName",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "email": "not-an-email"}),
            ),
            "email",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": 1, "city": ["a"]})),
            "city",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": 1, "nickname": "jo"})),
            "nickname",
        ),
        (
            400,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 1, "password": "Secret-123-xyz"}),
            ),
            "password",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": "abc", "city": "x"})),
            "id_client",
        ),
        (
            400,
            app.send("POST", &update, &json!({"city": "x"})),
            "id_client",
        ),
        (
            400,
            app.send(
                "POST",
                &format!("{update}&id_client=2"),
                &json!({"id_client": 1, "city": "x"}),
            ),
            "id_client",
        ),
        (
            400,
            app.send("POST", &update, &json!({"id_client": 1, "clcleunik": 2})),
            "clcleunik",
        ),
        (
            400,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={key}"),
                &json!({"login": "nomail"}),
            ),
            "email",
        ),
        (
            400,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={key}"),
                &json!({"email": "n@x.be", "password": "short"}),
            ),
            "too short",
        ),
        (
            400,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={key}"),
                &json!({"email": "n@x.be", "password": "password1234"}),
            ),
            "too easy",
        ),
        (
            403,
            app.send(
                "POST",
                &format!("/CUSTOMER/UPDATE/?apikey={read}"),
                &json!({"id_client": 1, "city": "x"}),
            ),
            "may only read",
        ),
        (
            403,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={read}"),
                &json!({"email": "n@x.be"}),
            ),
            "may only read",
        ),
        (
            403,
            app.send(
                "DELETE",
                &format!("/CUSTOMER/DELETE/?apikey={read}&id_client=1"),
                &json!({}),
            ),
            "may only read",
        ),
        (
            401,
            app.send(
                "POST",
                "/CUSTOMER/UPDATE/?apikey=clt_nope",
                &json!({"id_client": 1, "city": "x"}),
            ),
            "API key",
        ),
        (
            404,
            app.send("POST", &update, &json!({"id_client": 999, "city": "x"})),
            "No customer with id_client 999",
        ),
        (
            404,
            app.send(
                "DELETE",
                &format!("/CUSTOMER/DELETE/?apikey={key}&id_client=999"),
                &json!({}),
            ),
            "No customer with id_client 999",
        ),
        (
            409,
            app.send(
                "POST",
                &update,
                &json!({"id_client": 2, "email": "JDOE@example.com"}),
            ),
            "email",
        ),
        (
            409,
            app.send("POST", &update, &json!({"id_client": 2, "login": "jdoe"})),
            "login",
        ),
        (
            409,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={key}"),
                &json!({"email": "jdoe@example.com"}),
            ),
            "email",
        ),
        (
            409,
            app.send(
                "POST",
                &format!("/CUSTOMER/ADD/?apikey={key}"),
                &json!({"email": "n@x.be", "clcleunik": 1}),
            ),
            "clcleunik",
        ),
    ];
    let too_large = Reply::from_local(
        app.client
            .post(update.clone())
            .header(ContentType::JSON)
            .body(format!(
                "{{\"id_client\":1,\"city\":\"{}\"}}",
                "a".repeat(17 * 1024)
            ))
            .dispatch(),
    );
    let wrong_type = Reply::from_local(
        app.client
            .post(update)
            .header(ContentType::Plain)
            .body("id_client=1&city=x")
            .dispatch(),
    );

    for (status, reply, named) in &cases {
        let message = reply.assert_error(*status);
        assert!(
            message.contains(named),
            "{status} should name {named}: {message}"
        );
    }
    too_large.assert_error(413);
    wrong_type.assert_error(415);
    assert_eq!(app.snapshot(), before, "nothing changed");
    for reply in cases
        .iter()
        .map(|(_, r, _)| r)
        .chain([&too_large, &wrong_type])
    {
        assert!(!reply.body.contains("Secret-123-xyz") && !reply.body.contains("$argon2"));
    }
}

#[test]
fn registration_then_login_with_the_chosen_password() {
    let (app, key, _) = keyed_app();
    let form = format!(
        "email=nouveau%40shop.be&login=nouveau&firstName=Ana%C3%AFs&password={}",
        STRONG.replace(' ', "+")
    );

    let added = Reply::from_local(
        app.client
            .post(format!("/CUSTOMER/ADD/?apikey={key}"))
            .header(ContentType::Form)
            .body(form)
            .dispatch(),
    );

    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(added.json()["message"], "Customer added");
    let customer = &added.customers()[0];
    let id = customer["clcleunik"].as_i64().unwrap();
    assert_eq!(id, 26, "the next free id");
    assert_eq!(customer["firstName"], "Anaïs");
    assert_eq!(customer["addedDate"].as_str().unwrap().len(), 10);
    assert_eq!(customer["addHour"].as_str().unwrap().len(), 8);
    assert!(!added.body.contains(STRONG) && !added.body.contains("password"));
    let login = app.login_json(
        &json!({"email": "nouveau@shop.be", "password": STRONG}),
        Some(&key),
    );
    assert_eq!(login.ids(), vec![id]);
    assert!(app.stored_hash(id).unwrap().starts_with("$argon2id$"));
}

fn change_password(app: &TestApp, key: &str, body: Value) -> Reply {
    app.send("POST", &format!("/CUSTOMER/PASSWORD/?apikey={key}"), &body)
}

#[test]
fn a_password_change_takes_the_new_password_and_not_the_old() {
    let (app, _, read) = keyed_app();

    let wrong = change_password(
        &app,
        &read,
        json!({"email": "jdoe@example.com",
        "currentPassword": "not-it", "newPassword": STRONG}),
    );
    let weak = change_password(
        &app,
        &read,
        json!({"email": "jdoe@example.com",
        "currentPassword": "password123", "newPassword": "jdoe1234"}),
    );
    let changed = change_password(
        &app,
        &read,
        json!({"login": "jdoe",
        "currentPassword": "password123", "newPassword": STRONG}),
    );

    assert_eq!(wrong.assert_error(401), "Invalid credentials");
    assert!(weak.assert_error(400).contains("too easy to guess"));
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        changed.json(),
        json!({"success": "true", "message": "Password changed"})
    );
    let old = app.login_json(
        &json!({"email": "jdoe@example.com", "password": "password123"}),
        Some(&read),
    );
    let new = app.login_json(
        &json!({"email": "jdoe@example.com", "password": STRONG}),
        Some(&read),
    );
    old.assert_error(401);
    assert_eq!(new.status, 200);
}

#[test]
fn unknown_account_and_wrong_current_password_get_the_same_401() {
    let (app, _, read) = keyed_app();

    let unknown = change_password(
        &app,
        &read,
        json!({"email": "nobody@example.com",
        "currentPassword": "x", "newPassword": STRONG}),
    );
    let wrong = change_password(
        &app,
        &read,
        json!({"email": "jdoe@example.com",
        "currentPassword": "x", "newPassword": STRONG}),
    );

    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, wrong.body);
}

#[test]
fn an_owner_reset_needs_a_write_key() {
    let (app, write, read) = keyed_app();
    let body = json!({"id_client": "2", "newPassword": STRONG});

    let refused = change_password(&app, &read, body.clone());
    let reset = change_password(&app, &write, body);

    assert_eq!(refused.assert_error(403), "This API key may only read");
    assert_eq!(reset.status, 200, "{}", reset.body);
    let login = app.login_json(
        &json!({"email": "marie.dubois@example.be", "password": STRONG}),
        Some(&read),
    );
    assert_eq!(login.status, 200);
}

#[test]
fn ten_wrong_current_passwords_then_429_sequentially() {
    let (app, _, read) = keyed_app();
    let wrong =
        json!({"email": "jdoe@example.com", "currentPassword": "no", "newPassword": STRONG});
    for _ in 0..10 {
        change_password(&app, &read, wrong.clone()).assert_error(401);
    }

    let right = change_password(
        &app,
        &read,
        json!({"email": "jdoe@example.com",
        "currentPassword": "password123", "newPassword": STRONG}),
    );
    let login = app.login_json(
        &json!({"email": "jdoe@example.com", "password": "password123"}),
        Some(&read),
    );

    right.assert_error(429);
    assert!(right.header("retry-after").is_some());
    login.assert_error(429);
}

#[test]
fn thirty_parallel_wrong_current_passwords_get_exactly_ten_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("pw.db"),
        &[("ROCKET_IP_HEADER", "X-Real-IP")],
    );
    let key = create_key(&dir.path().join("pw.db"), "shop");
    let barrier = Arc::new(Barrier::new(30));
    let body = json!({"email": "jdoe@example.com", "currentPassword": "no", "newPassword": STRONG})
        .to_string();

    let threads: Vec<_> = (0..30)
        .map(|n| {
            let (barrier, body, port) = (Arc::clone(&barrier), body.clone(), server.port);
            let key = key.clone();
            std::thread::spawn(move || {
                let address = format!("10.2.0.{n}");
                barrier.wait();
                let headers = [
                    ("Content-Type", "application/json"),
                    ("X-Real-IP", address.as_str()),
                    ("X-API-Key", key.as_str()),
                ];
                http(port, "POST", "/CUSTOMER/PASSWORD/", &headers, &body).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
}

#[test]
fn front_end_compatibility_id_alias_unencoded_plus_and_string_ids() {
    let app = spawn_app_with(|f| f.merge(("clcleunik_type", "string")));
    app.send(
        "POST",
        "/CUSTOMER/UPDATE/",
        &json!({"id_client": 7, "email": "a+b@shop.be"}),
    );

    let by_id = app.get("/CUSTOMER/LIST/?id=5");
    // An unencoded `+` in a query string reads as a space.
    let by_space = app.get("/CUSTOMER/LIST/?email=a+b@shop.be");
    let encoded = app.get("/CUSTOMER/LIST/?email=a%2Bb%40shop.be");
    let login = app.login("jdoe@example.com", "password123");
    let update = app.send(
        "POST",
        "/CUSTOMER/UPDATE/",
        &json!({"id_client": "5", "city": "Gent"}),
    );

    let ids = |reply: &Reply| -> Vec<Value> {
        reply
            .customers()
            .iter()
            .map(|c| c["clcleunik"].clone())
            .collect()
    };
    assert_eq!(ids(&by_id), vec![json!("5")]);
    assert_eq!(by_id.customers().len(), 1);
    assert_eq!(ids(&by_space), vec![json!("7")]);
    assert_eq!(ids(&encoded), vec![json!("7")]);
    assert_eq!(ids(&login), vec![json!("1")]);
    assert_eq!(ids(&update), vec![json!("5")]);
    assert!(by_id.body.contains(r#""clcleunik":"5""#));
    let numbers = spawn_app();
    assert_eq!(numbers.get("/CUSTOMER/LIST/?id=5").ids(), vec![5]);
}

#[test]
fn cors_preflights_cover_the_write_paths() {
    let app = spawn_app_with(|f| f.merge(("cors_origins", ["https://shop.example"])));

    for path in [
        "/customer/update/",
        "/CUSTOMER/DELETE",
        "/CUSTOMER/ADD/",
        "/CUSTOMER/PASSWORD/",
    ] {
        let reply = Reply::from_local(
            app.client
                .options(path)
                .header(Header::new("Origin", "https://shop.example"))
                .header(Header::new("Access-Control-Request-Method", "POST"))
                .dispatch(),
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://shop.example")
        );
        assert!(reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("DELETE"));
        assert!(reply.header("allow").unwrap().contains("POST"), "{path}");
    }
}

#[test]
fn the_audit_trail_names_the_key_and_never_holds_a_password() {
    let (app, key, read) = keyed_app();
    app.send(
        "POST",
        &format!("/CUSTOMER/UPDATE/?apikey={key}"),
        &json!({"id_client": 3, "city": "Mons", "phone": "1"}),
    );
    app.send(
        "POST",
        &format!("/CUSTOMER/ADD/?apikey={key}"),
        &json!({"email": "z@z.be", "password": STRONG}),
    );
    app.send(
        "DELETE",
        &format!("/CUSTOMER/DELETE/?apikey={key}&id_client=4"),
        &json!({}),
    );
    change_password(
        &app,
        &read,
        json!({"id_client": 1, "currentPassword": "password123", "newPassword": STRONG}),
    );
    let passwd = run(&app.db, &["passwd", "2"], "another strong pass 4521\n");
    assert!(
        passwd.status.success(),
        "{}",
        String::from_utf8_lossy(&passwd.stderr)
    );
    let import = run(&app.db, &["import", "-"], "clcleunik,city\n3,Liège\n");
    assert!(import.status.success());

    let all = run(&app.db, &["audit"], "");
    let three = run(&app.db, &["audit", "--customer", "3"], "");
    let limited = run(&app.db, &["audit", "--limit", "2"], "");
    let since = run(&app.db, &["audit", "--since", "2999-01-01"], "");

    let all = String::from_utf8(all.stdout).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 6, "{all}");
    assert!(
        lines[0].contains("webshop  update  customer 3  fields: city, phone"),
        "{all}"
    );
    assert!(lines[1].contains("webshop  add  customer 26"), "{all}");
    assert!(lines[1].contains("password"), "the field's name: {all}");
    assert!(lines[2].contains("webshop  delete  customer 4"), "{all}");
    assert!(
        lines[3].contains("catalogue  password  customer 1  fields: password"),
        "{all}"
    );
    assert!(
        lines[4].contains("cli  password-reset  customer 2"),
        "{all}"
    );
    assert!(
        lines[5].contains("cli  import") && lines[5].contains("1 updated"),
        "{all}"
    );
    let three = String::from_utf8(three.stdout).unwrap();
    assert_eq!(three.lines().count(), 1, "{three}");
    assert_eq!(
        String::from_utf8(limited.stdout).unwrap().lines().count(),
        2
    );
    assert!(String::from_utf8(since.stdout).unwrap().is_empty());
    for secret in [STRONG, "another strong pass 4521", "password123", "$argon2"] {
        assert!(!all.contains(secret), "{all}");
    }
    let rows = query_text(
        &app.db,
        "SELECT string_agg(fields || detail, '|') FROM audit",
    );
    assert!(
        !rows.contains(STRONG) && !rows.contains("$argon2"),
        "{rows}"
    );
}

#[test]
fn passwd_refuses_a_weak_password_and_changes_nothing() {
    let app = spawn_app();
    let before = app.stored_hash(1);

    let weak = run_expecting_failure(&app.db, &["passwd", "1"], "password\n");

    assert!(!weak.status.success());
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(
        stderr.contains("too easy to guess") || stderr.contains("too short"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert_eq!(app.stored_hash(1), before);
}

#[test]
fn keys_are_read_only_unless_created_with_write_and_list_shows_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");

    let reader = run(&db, &["keys", "create", "reader"], "");
    let writer = run(&db, &["keys", "create", "writer", "--write"], "");
    let listed = String::from_utf8(run(&db, &["keys", "list"], "").stdout).unwrap();

    assert!(reader.status.success() && writer.status.success());
    assert!(
        listed.lines().any(|l| l.starts_with("reader\tread\t")),
        "{listed}"
    );
    assert!(
        listed.lines().any(|l| l.starts_with("writer\twrite\t")),
        "{listed}"
    );
}

#[test]
fn concurrent_writes_and_an_import_from_another_process_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let server = Server::start(&db, &[]);
    let mut csv = String::from("clcleunik,lastName\n");
    for id in 5000..8000 {
        csv.push_str(&format!("{id},Imported\n"));
    }
    let barrier = Arc::new(Barrier::new(21));

    let writers: Vec<_> = (1..=20)
        .map(|id| {
            let (barrier, port) = (Arc::clone(&barrier), server.port);
            std::thread::spawn(move || {
                barrier.wait();
                let body = json!({"id_client": id, "city": format!("City{id}")}).to_string();
                let headers = [("Content-Type", "application/json")];
                http(port, "POST", "/CUSTOMER/UPDATE/", &headers, &body).status
            })
        })
        .collect();
    barrier.wait();
    let import = run(&db, &["import", "-"], &csv);
    let statuses: Vec<u16> = writers.into_iter().map(|t| t.join().unwrap()).collect();

    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let list = server.get("/CUSTOMER/LIST/");
    let customers = list.customers();
    assert_eq!(customers.len(), demo_customers().len() + 3000);
    for id in 1..=20 {
        let customer = customers.iter().find(|c| c["clcleunik"] == id).unwrap();
        assert_eq!(customer["city"], format!("City{id}"));
    }
}

#[test]
fn no_write_leaves_a_password_or_hash_in_a_response_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wlog.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let key = String::from_utf8(run(&db, &["keys", "create", "w", "--write"], "").stdout).unwrap();
    let key = key.trim();
    let json = |body: Value| body.to_string();
    let headers = [("Content-Type", "application/json"), ("X-API-Key", key)];
    let mut replies = vec![
        server.request("POST", &format!("/CUSTOMER/ADD/?apikey={key}"), &[("Content-Type", "application/json")],
            &json(json!({"email": "log@shop.be", "password": STRONG}))),
        server.request("POST", "/CUSTOMER/UPDATE/", &headers, &json(json!({"id_client": 1, "password": STRONG}))),
        server.request("POST", "/CUSTOMER/PASSWORD/", &headers,
            &json(json!({"email": "jdoe@example.com", "currentPassword": "password123", "newPassword": STRONG}))),
        server.request("POST", "/CUSTOMER/PASSWORD/", &headers,
            &json(json!({"email": "jdoe@example.com", "currentPassword": "wrong-one", "newPassword": STRONG}))),
        server.request("POST", "/CUSTOMER/PASSWORD/", &headers,
            &json(json!({"id_client": 2, "newPassword": "weakweak"}))),
    ];
    replies.push(server.request("DELETE", "/CUSTOMER/DELETE/?id_client=3", &headers, ""));
    let log = server.stop();

    assert_eq!(
        replies.iter().map(|r| r.status).collect::<Vec<_>>(),
        [201, 400, 200, 401, 400, 200]
    );
    let hashes: Vec<String> = stored_hashes(&db).into_iter().flatten().collect();
    for text in replies
        .iter()
        .map(|r| r.body.as_str())
        .chain([log.as_str()])
    {
        for secret in [
            STRONG,
            "password123",
            "wrong-one",
            "weakweak",
            key,
            "$argon2",
        ]
        .into_iter()
        .chain(hashes.iter().map(String::as_str))
        {
            assert!(!text.contains(secret), "a secret in: {text}");
        }
    }
    assert!(log.contains("POST /CUSTOMER/PASSWORD/ 200"), "{log}");
}
