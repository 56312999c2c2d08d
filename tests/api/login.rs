//! `POST /CUSTOMER/LOGIN/`: credentials checked on the server.

use serde_json::json;

use crate::helpers::*;

#[test]
fn every_demo_customer_logs_in_with_their_password_and_gets_no_password_back() {
    let app = spawn_app();

    for (customer, password) in demo_customers().iter().zip(demo_passwords()) {
        let email = customer["email"].as_str().unwrap();

        let reply = app.login(email, &password);

        assert_eq!(reply.status, 200, "{email}: {}", reply.body);
        assert_json_content_type(&reply);
        assert_eq!(reply.json()["message"], "Login successful");
        let served = reply.customers();
        assert_eq!(served.len(), 1);
        let mut expected = customer.clone();
        expected.remove("password");
        assert_eq!(served[0], expected);
        assert!(!reply.body.to_lowercase().contains("password"));
        assert!(!reply.body.contains(&password));
    }
}

#[test]
fn login_by_login_name_and_by_form_body_work_too() {
    let app = spawn_app();

    let by_login = app.login_json(&json!({"login": "jdoe", "password": "password123"}), None);
    let form = Reply::from_local(
        app.client
            .post("/customer/login")
            .header(rocket::http::ContentType::Form)
            .body("email=JDOE%40example.com&password=password123")
            .dispatch(),
    );

    assert_eq!(by_login.ids(), vec![1]);
    assert_eq!(form.ids(), vec![1], "{}", form.body);
}

#[test]
fn wrong_password_and_unknown_account_get_byte_identical_401s() {
    let app = spawn_app();

    let wrong = app.login("jdoe@example.com", "not-it");
    let unknown = app.login("nobody@example.com", "password123");
    let unknown_login = app.login_json(&json!({"login": "nobody", "password": "x"}), None);

    assert_eq!(wrong.assert_error(401), "Invalid credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, unknown_login.body);
    assert_eq!(
        wrong.headers.get("content-type"),
        unknown.headers.get("content-type")
    );
}

#[test]
fn login_uses_the_same_redaction_as_the_list() {
    let app = spawn_app_with(|f| f.merge(("redact", ["phone", "tvaNumber"])));

    let customer = &app.login("jdoe@example.com", "password123").customers()[0];

    assert!(!customer.contains_key("phone"));
    assert!(!customer.contains_key("tvaNumber"));
    assert_eq!(customer["email"], "jdoe@example.com");
}

#[test]
fn the_eleventh_failure_for_one_account_is_a_429_even_with_the_right_password() {
    let app = spawn_app_with(|f| f.merge(("login_window_secs", 2)));
    for attempt in 1..=10 {
        let reply = app.login("jdoe@example.com", "wrong");
        reply.assert_error(401);
        assert_eq!(reply.header("retry-after"), None, "attempt {attempt}");
    }

    let eleventh = app.login("jdoe@example.com", "wrong");
    let right = app.login("jdoe@example.com", "password123");
    let by_login = app.login_json(&json!({"login": "jdoe", "password": "password123"}), None);

    eleventh.assert_error(429);
    let retry: u64 = eleventh.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    right.assert_error(429);
    by_login.assert_error(429);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(app.login("jdoe@example.com", "password123").status, 200);
}

#[test]
fn failures_from_one_address_are_limited_across_accounts() {
    let app = spawn_app_with(|f| f.merge(("login_max_failures", 3)));
    // The shop's back end names each visitor's address (the socket's peer is its own).
    let key = create_forwarding_key(&app.db, "shop-backend");
    let from = |address: &str, email: &str| {
        let visitor = address.split(':').next().unwrap().to_owned();
        Reply::from_local(
            app.client
                .post("/CUSTOMER/LOGIN/")
                .remote("127.0.0.1:1000".parse().unwrap())
                .header(rocket::http::Header::new("X-API-Key", key.clone()))
                .header(rocket::http::Header::new("X-Forwarded-For", visitor))
                .header(rocket::http::ContentType::JSON)
                .body(json!({"email": email, "password": "wrong"}).to_string())
                .dispatch(),
        )
    };
    for n in 0..3 {
        from("10.0.0.1:1000", &format!("guess{n}@example.com")).assert_error(401);
    }

    from("10.0.0.1:1000", "fresh@example.com").assert_error(429);
    from("10.0.0.2:1000", "fresh@example.com").assert_error(401);
}

#[test]
fn a_bcrypt_hash_logs_in_and_is_replaced_by_argon2id() {
    let app = spawn_app();
    let bcrypt = bcrypt::hash("from-php", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    run_sql(
        &app.db,
        &format!("UPDATE customer SET password_hash = '{bcrypt}' WHERE clcleunik = 2"),
    );

    let reply = app.login("marie.dubois@example.be", "from-php");

    assert_eq!(reply.status, 200, "{}", reply.body);
    let stored = app.stored_hash(2).unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert_eq!(app.login("marie.dubois@example.be", "from-php").status, 200);
    app.login("marie.dubois@example.be", "wrong")
        .assert_error(401);
}

#[test]
fn a_hash_weaker_than_configured_is_rehashed_after_login() {
    let weak = spawn_app();
    let (dir, db) = (weak.dir, weak.db);
    drop(weak.client);
    let app = spawn_app_on(dir, db, |f| f.merge(("argon2_memory_kib", 128)));
    assert!(app.stored_hash(1).unwrap().contains("m=64,"));

    assert_eq!(app.login("jdoe@example.com", "password123").status, 200);

    let upgraded = app.stored_hash(1).unwrap();
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=128,t=1,p=1$"),
        "{upgraded}"
    );
    assert!(
        app.stored_hash(2).unwrap().contains("m=64,"),
        "others untouched"
    );
}

#[test]
fn bad_bodies_are_clear_errors() {
    let app = spawn_app();
    let post = |content_type: rocket::http::ContentType, body: String| {
        Reply::from_local(
            app.client
                .post("/CUSTOMER/LOGIN/")
                .header(content_type)
                .body(body)
                .dispatch(),
        )
    };

    let no_password = app.login_json(&json!({"email": "jdoe@example.com"}), None);
    let no_account = app.login_json(&json!({"password": "x"}), None);
    let not_json = post(rocket::http::ContentType::JSON, "{not json".into());
    let too_large = post(
        rocket::http::ContentType::JSON,
        format!("{{\"email\":\"{}\"}}", "a".repeat(17 * 1024)),
    );
    let plain = post(rocket::http::ContentType::Plain, "email=x".into());
    let get = app.get("/CUSTOMER/LOGIN/");

    assert!(no_password.assert_error(400).contains("password"));
    assert!(no_account.assert_error(400).contains("email or login"));
    // A list where text belongs is named as such, not as a missing field.
    for body in [
        json!({"email": "jdoe@example.com", "password": ["x"]}),
        json!({"email": {"a": 1}, "password": "x"}),
    ] {
        let message = app.login_json(&body, None).assert_error(400);
        assert!(
            message.contains("expected a single value"),
            "{body}: {message}"
        );
    }
    assert!(not_json.assert_error(400).contains("JSON"));
    too_large.assert_error(413);
    plain.assert_error(415);
    get.assert_error(405);
    assert_eq!(get.header("allow"), Some("POST, OPTIONS"));
}

#[test]
fn login_needs_the_api_key_when_keys_exist() {
    let app = spawn_app();
    let key = create_key(&app.db, "shop");
    let body = json!({"email": "jdoe@example.com", "password": "password123"});

    app.login_json(&body, None).assert_error(401);
    app.login_json(&body, Some("clt_wrong")).assert_error(401);
    assert_eq!(app.login_json(&body, Some(&key)).status, 200);
}

#[test]
fn a_customer_without_a_password_cannot_log_in() {
    let app = spawn_app();
    app.sql("UPDATE customer SET password_hash = NULL WHERE clcleunik = 1");

    app.login("jdoe@example.com", "password123")
        .assert_error(401);
    app.login("jdoe@example.com", "").assert_error(400);
}

/// `clientele audit ARGS` on `db`: the lines it printed.
fn audit_lines(db: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let output = crate::tools::run(db, &all, "");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn login_with(app: &TestApp, key: &str, from: &str, email: &str, password: &str) -> u16 {
    Reply::from_local(
        app.client
            .post("/CUSTOMER/LOGIN/")
            .header(rocket::http::ContentType::JSON)
            .header(rocket::http::Header::new("X-API-Key", key.to_owned()))
            .header(rocket::http::Header::new(
                "X-Forwarded-For",
                from.to_owned(),
            ))
            .body(json!({"email": email, "password": password}).to_string())
            .dispatch(),
    )
    .status
}

#[test]
fn each_login_attempt_is_in_the_audit_trail_without_a_password_or_the_unknown_email_typed() {
    let app = spawn_app();
    let shop = create_forwarding_key(&app.db, "shop");
    let write = create_write_key(&app.db, "office");

    let ok = login_with(
        &app,
        &shop,
        "198.51.100.7",
        "jdoe@example.com",
        "password123",
    );
    let wrong = login_with(
        &app,
        &shop,
        "198.51.100.8",
        "jdoe@example.com",
        "S3cret-guess",
    );
    let unknown = login_with(
        &app,
        &shop,
        "2001:db8:1:2::9",
        "nobody-typed-this@example.com",
        "S3cret-typed",
    );
    let updated = app
        .client
        .post("/CUSTOMER/UPDATE/")
        .header(rocket::http::ContentType::JSON)
        .header(rocket::http::Header::new("X-API-Key", write))
        .body(json!({"id_client": 2, "city": "Namur"}).to_string())
        .dispatch()
        .status()
        .code;

    assert_eq!((ok, wrong, unknown, updated), (200, 401, 401, 200));
    let logins = audit_lines(&app.db, &["--logins"]);
    assert_eq!(logins.len(), 3, "{logins:?}");
    assert!(
        logins[0].ends_with("  shop  login  customer 1  ok from 198.51.100.7"),
        "{logins:?}"
    );
    assert!(
        logins[1].ends_with("  shop  login  customer 1  failed from 198.51.100.8"),
        "{logins:?}"
    );
    assert!(
        logins[2].ends_with("  shop  login  failed: unknown account from 2001:db8:1:2::/64"),
        "{logins:?}"
    );
    let writes = audit_lines(&app.db, &[]);
    assert!(
        writes.iter().all(|line| !line.contains("  login  ")),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|line| line.contains("  office  update  customer 2")),
        "{writes:?}"
    );
    assert_eq!(
        audit_lines(&app.db, &["--logins", "--customer", "1"]).len(),
        2
    );
    assert_eq!(
        audit_lines(&app.db, &["--logins", "--limit", "1"]),
        logins[2..],
        "the newest"
    );
    assert!(audit_lines(&app.db, &["--logins", "--since", "2999-01-01"]).is_empty());
    let stored = database_bytes(&app.db);
    for secret in [
        "nobody-typed-this",
        "S3cret-typed",
        "S3cret-guess",
        "password123",
    ] {
        assert!(
            !contains_bytes(&stored, secret.as_bytes()),
            "{secret} is stored"
        );
    }
}

#[test]
fn a_flood_of_refused_logins_writes_one_limited_row_per_account_per_window() {
    let app = spawn_app();

    for _ in 0..10 {
        assert_eq!(app.login("jdoe@example.com", "wrong").status, 401);
    }
    for _ in 0..40 {
        app.login("jdoe@example.com", "password123")
            .assert_error(429);
    }

    let logins = audit_lines(&app.db, &["--logins", "--limit", "1000"]);
    assert_eq!(logins.len(), 11, "{logins:?}");
    assert_eq!(
        logins
            .iter()
            .filter(|l| l.contains("  anonymous  login  customer 1  failed"))
            .count(),
        10
    );
    assert!(
        logins[10].contains("  anonymous  login  customer 1  limited (")
            && logins[10].contains("further refused attempts in this window are not written"),
        "{logins:?}"
    );
    assert_eq!(
        app.sql_count("SELECT count(*) FROM audit WHERE action = 'login'"),
        11
    );
}
