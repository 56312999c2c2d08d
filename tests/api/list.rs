//! `GET /CUSTOMER/LIST/`: shape, filters, paging, errors, paths and redaction.

use serde_json::{json, Value};

use crate::helpers::*;

const CONTRACT_KEYS: [&str; 22] = [
    "clcleunik",
    "customerNumber",
    "groupePrice",
    "login",
    "lastName",
    "firstName",
    "address",
    "zipcode",
    "city",
    "country",
    "phone",
    "cellphone",
    "email",
    "denomination",
    "tvaNumber",
    "addedDate",
    "addHour",
    "language",
    "showPrice",
    "webRemise",
    "megawinapp_login",
    "notification_accepted",
];

#[test]
fn list_serves_every_demo_customer_exactly_as_shipped_minus_the_password() {
    let app = spawn_app();

    let reply = app.get("/CUSTOMER/LIST/");

    assert_eq!(reply.status, 200);
    assert_json_content_type(&reply);
    let json = reply.json();
    assert_eq!(json["success"], Value::String("true".into()));
    assert_eq!(json["message"], "Customers list");
    let served = reply.customers();
    let mut expected = demo_customers();
    for customer in &mut expected {
        customer.remove("password");
    }
    assert_eq!(served, expected);
    assert_eq!(
        reply.header("x-total-count"),
        Some(expected.len().to_string().as_str())
    );
}

#[test]
fn every_customer_has_exactly_the_contract_keys_with_the_contract_types() {
    let app = spawn_app();

    let customers = app.get("/CUSTOMER/LIST/").customers();

    assert!(customers.len() >= 20);
    for customer in customers {
        let keys: Vec<&str> = customer.keys().map(String::as_str).collect();
        let mut expected = CONTRACT_KEYS.to_vec();
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        for (key, value) in &customer {
            match key.as_str() {
                "clcleunik" => assert!(value.as_i64().is_some_and(|id| id >= 1), "{value}"),
                "showPrice" => assert!(value.is_boolean(), "{value}"),
                "webRemise" => assert!(value.is_number(), "{value}"),
                "notification_accepted" => {
                    assert!(value == "1" || value == "0", "{value}");
                }
                _ => assert!(value.is_string(), "{key} is {value}"),
            }
        }
    }
}

#[test]
fn the_wire_keeps_the_contract_key_order() {
    let app = spawn_app();

    let body = app.get("/CUSTOMER/LIST/?id_client=1").body;

    let positions: Vec<usize> = CONTRACT_KEYS
        .iter()
        .map(|key| body.find(&format!("\"{key}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
}

#[test]
fn customers_come_in_ascending_key_order() {
    let app = spawn_app();
    // Inserted out of order and with gaps, after the demo customers.
    let inserted = [230, 205, 917, 31, 466, 27, 1000, 100];
    for id in inserted {
        app.sql(&format!(
            "INSERT INTO customer (clcleunik, login, lastName, email)
             VALUES ({id}, 'user{id}', 'Name{id}', 'user{id}@example.be');"
        ));
    }
    let mut expected: Vec<i64> = (1..=25).chain(inserted).collect();
    expected.sort_unstable();

    let ids = app.get("/CUSTOMER/LIST/").ids();
    let paged = app.get("/CUSTOMER/LIST/?offset=20&limit=6").ids();

    assert_eq!(ids, expected);
    assert_eq!(paged, expected[20..26]);
    if !sqlite_only("the store's own query on a SQLite connection") {
        return;
    }
    // SQLite reads a rowid table in key order whatever the insertion order, so the wire alone
    // cannot tell an `ORDER BY` from none. With `reverse_unordered_selects`, SQLite returns
    // whatever is not ordered backwards: the store's own list query must still ascend.
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    conn.pragma_update(None, "reverse_unordered_selects", true)
        .unwrap();
    let filter = clientele::customer::ListFilter::default();
    let page = clientele::store::sqlite::customers::list(&conn, &filter).unwrap();
    let listed: Vec<i64> = page.customers.iter().map(|c| c.clcleunik).collect();
    assert_eq!(listed, expected, "the store's list query orders by the key");
    let paging = clientele::customer::ListFilter {
        limit: Some(6),
        offset: 20,
        ..filter
    };
    let page = clientele::store::sqlite::customers::list(&conn, &paging).unwrap();
    let listed: Vec<i64> = page.customers.iter().map(|c| c.clcleunik).collect();
    assert_eq!(listed, expected[20..26]);
}

#[test]
fn filters_and_paging_return_the_right_customers_and_total() {
    let app = spawn_app();
    let all = demo_customers();
    let cases: [(&str, Vec<i64>, usize); 7] = [
        ("?id_client=1", vec![1], 1),
        ("?clcleunik=1", vec![1], 1),
        ("?email=JDOE@EXAMPLE.COM", vec![1], 1),
        ("?login=jdoe", vec![1], 1),
        ("?id_client=999999", vec![], 0),
        ("?limit=5&offset=20", (21..=25).collect(), all.len()),
        ("?id_client=1&clcleunik=1&login=jdoe", vec![1], 1),
    ];

    for (query, ids, total) in cases {
        let reply = app.get(&format!("/CUSTOMER/LIST/{query}"));

        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        assert_eq!(reply.ids(), ids, "{query}");
        assert_eq!(
            reply.header("x-total-count"),
            Some(total.to_string().as_str()),
            "{query}"
        );
    }
}

#[test]
fn login_filter_is_exact_and_filters_combine_with_and() {
    let app = spawn_app();

    assert_eq!(
        app.get("/CUSTOMER/LIST/?login=JDOE").ids(),
        Vec::<i64>::new()
    );
    assert_eq!(
        app.get("/CUSTOMER/LIST/?login=jdoe&id_client=2").ids(),
        Vec::<i64>::new()
    );
    let offset_only = app.get("/CUSTOMER/LIST/?offset=23");
    assert_eq!(offset_only.ids(), vec![24, 25]);
    assert_eq!(offset_only.header("x-total-count"), Some("25"));
}

#[test]
fn unknown_parameters_are_ignored() {
    let app = spawn_app();

    let reply = app.get("/CUSTOMER/LIST/?id_client=1&_=123456&apikey=whatever&foo");

    assert_eq!(reply.ids(), vec![1]);
}

#[test]
fn bad_parameters_are_a_400_naming_the_parameter_and_change_nothing() {
    let app = spawn_app();
    let before = app.get("/CUSTOMER/LIST/").body;
    let cases = [
        ("id_client=abc", "id_client"),
        ("id_client=", "id_client"),
        ("id_client=0", "id_client"),
        ("id_client=-1", "id_client"),
        ("id_client=99999999999999999999", "id_client"),
        ("id_client=1.5", "id_client"),
        ("id_client=1&id_client=2", "id_client"),
        ("id_client=1&id_client=1", "id_client"),
        ("id_client=1&clcleunik=2", "clcleunik"),
        ("clcleunik=x", "clcleunik"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("email=", "email"),
        ("login=", "login"),
    ];

    for (query, parameter) in cases {
        let reply = app.get(&format!("/CUSTOMER/LIST/?{query}"));

        let message = reply.assert_error(400);
        assert!(message.contains(parameter), "{query}: {message}");
    }
    let too_long = format!("/CUSTOMER/LIST/?email={}", "a".repeat(255));
    assert!(app.get(&too_long).assert_error(400).contains("email"));
    assert_eq!(app.get("/CUSTOMER/LIST/").body, before);
}

#[test]
fn paths_match_in_any_case_with_or_without_the_trailing_slash() {
    let app = spawn_app();
    let canonical = app.get("/CUSTOMER/LIST/?id_client=2");

    for path in [
        "/customer/list",
        "/CUSTOMER/LIST",
        "/Customer/List/",
        "/customer/LIST/",
    ] {
        let reply = app.get(&format!("{path}?id_client=2"));

        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, canonical.body, "{path}");
        assert_eq!(reply.header("x-total-count"), Some("1"));
    }
}

#[test]
fn wrong_methods_are_a_405_with_allow_and_unknown_paths_a_404() {
    let app = spawn_app();

    for path in ["/CUSTOMER/LIST/", "/customer/list"] {
        let reply = Reply::from_local(app.client.post(path).dispatch());
        reply.assert_error(405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
        let reply = Reply::from_local(app.client.delete(path).dispatch());
        reply.assert_error(405);
    }
    app.get("/nope").assert_error(404);
    app.get("/CUSTOMER/LIST/extra").assert_error(404);
    app.get("/CUSTOMER").assert_error(404);
}

#[test]
fn head_answers_like_get_without_a_body() {
    let app = spawn_app();

    let reply = Reply::from_local(app.client.head("/CUSTOMER/LIST/?id_client=1").dispatch());

    assert_eq!(reply.status, 200);
    assert_json_content_type(&reply);
    assert_eq!(reply.header("x-total-count"), Some("1"));
    assert!(reply.body.is_empty());
}

#[test]
fn customer_responses_stay_out_of_shared_caches_and_are_not_sniffable() {
    let app = spawn_app();

    let list = app.get("/CUSTOMER/LIST/");
    let login = app.login("jdoe@example.com", "password123");
    let error = app.get("/CUSTOMER/LIST/?id_client=x");

    // The list may be kept by the browser but must be revalidated (it has an ETag).
    assert_eq!(list.header("cache-control"), Some("private, no-cache"));
    assert_eq!(login.header("cache-control"), Some("no-store"));
    assert_eq!(error.header("cache-control"), Some("no-store"));
    for reply in [&list, &login, &error] {
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
}

#[test]
fn redacted_fields_are_left_out_of_every_customer() {
    let app = spawn_app_with(|figment| figment.merge(("redact", ["phone", "email"])));

    let customers = app.get("/CUSTOMER/LIST/").customers();

    assert_eq!(customers.len(), demo_customers().len());
    for customer in customers {
        assert!(!customer.contains_key("phone"));
        assert!(!customer.contains_key("email"));
        assert!(customer.contains_key("cellphone"));
        assert_eq!(customer.len(), 20);
    }
    // Filtering by a withheld field still works; it is only never shown.
    assert_eq!(
        app.get("/CUSTOMER/LIST/?email=jdoe@example.com").ids(),
        vec![1]
    );
}

#[test]
fn health_answers_ok_when_the_database_answers() {
    let app = spawn_app();

    let reply = app.get("/health");

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"success": "true", "message": "ok"})
    );
}

#[test]
fn no_response_anywhere_contains_password_material() {
    let app = spawn_app();
    let passwords = demo_passwords();
    let hashes: Vec<String> = stored_hashes(&app.db).into_iter().flatten().collect();
    assert_eq!(hashes.len(), passwords.len());
    let mut replies = Vec::new();
    for uri in [
        "/CUSTOMER/LIST/",
        "/customer/list?limit=3",
        "/CUSTOMER/LIST/?id_client=1",
        "/CUSTOMER/LIST/?email=jdoe@example.com",
        "/CUSTOMER/LIST/?login=jdoe",
        "/CUSTOMER/LIST/?id_client=abc",
        "/CUSTOMER/LIST/?limit=0",
        "/health",
        "/nope",
    ] {
        replies.push(app.get(uri));
    }
    replies.push(Reply::from_local(
        app.client.post("/CUSTOMER/LIST/").dispatch(),
    ));
    replies.push(Reply::from_local(app.client.put("/health").dispatch()));

    for reply in &replies {
        assert_json_content_type(reply);
        let body = reply.body.to_lowercase();
        assert!(!body.contains("password"), "{}", reply.body);
        assert!(!body.contains("$argon2"), "{}", reply.body);
        for secret in passwords.iter().chain(&hashes) {
            assert!(!reply.body.contains(secret.as_str()), "{}", reply.body);
        }
    }
}

#[test]
fn an_unreadable_store_is_a_503_on_health_and_no_internals_anywhere() {
    if !sqlite_only("an unreadable database file") {
        return;
    }
    let app = spawn_app();
    assert_eq!(app.get("/health").status, 200);
    app.sql("DROP TABLE customer;");

    let health = app.get("/health");
    let list = app.get("/CUSTOMER/LIST/?id_client=1");

    health.assert_error(503);
    let message = list.assert_error(500);
    for reply in [&health, &list] {
        let body = reply.body.to_lowercase();
        assert!(!body.contains("sql"), "{}", reply.body);
        assert!(!body.contains("no such table"), "{}", reply.body);
        assert!(!body.contains(".db"), "{}", reply.body);
    }
    assert!(message.contains("server log"), "{message}");
}

#[test]
fn lookups_and_start_up_use_an_index_never_a_scan() {
    if !sqlite_only("SQLite's query plans (PostgreSQL's are checked in store/postgres/tests.rs)") {
        return;
    }
    use clientele::customer::{Field, Identifier, ListFilter};
    let app = spawn_app();
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    // The plan of a statement as the server has it, its parameters bound to NULL (SQLite
    // plans the same whatever their values).
    let plan = |sql: &str| -> String {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let rows = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        rows.join("; ")
    };
    let filter = |configure: fn(&mut ListFilter)| {
        let mut filter = ListFilter::default();
        configure(&mut filter);
        filter
    };
    let by_id = filter(|f| f.id = Some(5));
    let by_email = filter(|f| f.email = Some("a@b.be".into()));
    let by_login = filter(|f| f.login = Some("jdoe".into()));
    let after = filter(|f| f.after = Some(10));
    // The statements the server runs (see customer::store), taken from it.
    let statements = [
        (
            clientele::store::sqlite::customers::rows_sql(&by_id),
            "INTEGER PRIMARY KEY",
        ),
        (
            clientele::store::sqlite::customers::count_sql(&by_id),
            "INTEGER PRIMARY KEY",
        ),
        (
            clientele::store::sqlite::customers::rows_sql(&by_email),
            "customer_email",
        ),
        (
            clientele::store::sqlite::customers::count_sql(&by_email),
            "customer_email",
        ),
        (
            clientele::store::sqlite::customers::rows_sql(&by_login),
            "customer_login",
        ),
        (
            clientele::store::sqlite::customers::count_sql(&by_login),
            "customer_login",
        ),
        (
            clientele::store::sqlite::customers::rows_sql(&after),
            "INTEGER PRIMARY KEY",
        ),
        (
            clientele::store::sqlite::customers::login_sql(&Identifier::Email(String::new())),
            "customer_email",
        ),
        (
            clientele::store::sqlite::customers::login_sql(&Identifier::Login(String::new())),
            "customer_login",
        ),
        (
            clientele::store::sqlite::customers::login_sql(&Identifier::Id(0)),
            "INTEGER PRIMARY KEY",
        ),
        (
            clientele::store::sqlite::customers::taken_sql(Field::Email),
            "customer_email",
        ),
        (
            clientele::store::sqlite::customers::taken_sql(Field::Login),
            "customer_login",
        ),
        (
            clientele::store::sqlite::customers::CHANGES_SQL.to_owned(),
            "customer_change",
        ),
    ];
    for (sql, index) in statements {
        let plan = plan(&sql);
        assert!(plan.contains(index), "{sql}: {plan}");
        assert!(!plan.contains("SCAN customer"), "{sql}: {plan}");
    }
    // Start-up's search for plain-text passwords reads only its partial index (empty once
    // they are hashed), not every customer.
    let startup = plan(clientele::store::sqlite::LEGACY_PASSWORDS_QUERY);
    assert!(
        startup.contains("USING INDEX customer_legacy_password")
            || startup.contains("USING COVERING INDEX customer_legacy_password"),
        "{startup}"
    );
    let mirror = plan(clientele::sync::LAST_SYNC_AGE_QUERY);
    assert!(mirror.contains("INDEX audit_sync"), "{mirror}");
    assert!(!mirror.contains("SCAN audit"), "{mirror}");
}

#[test]
fn after_walks_every_customer_once_in_pages_with_the_full_total() {
    let app = spawn_app();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = app.get(&format!("/CUSTOMER/LIST/?after={after}&limit=7"));
        assert_eq!(
            page.header("x-total-count"),
            Some("25"),
            "the total ignores the cursor"
        );
        let ids = page.ids();
        if ids.is_empty() {
            break;
        }
        after = *ids.last().unwrap();
        seen.extend(ids);
    }
    let all = app.get("/CUSTOMER/LIST/").ids();
    assert_eq!(seen, all);
    app.get("/CUSTOMER/LIST/?after=x").assert_error(400);
}

#[test]
fn a_nul_character_in_a_filter_or_a_login_matches_nobody_and_is_never_a_500() {
    // PostgreSQL text cannot hold a NUL: sent to it as a parameter, it is an encoding error.
    // No stored email or login has one (the field rules refuse control characters), so on
    // either backend it is a filter that matches nobody.
    let app = spawn_app();
    for path in [
        "/CUSTOMER/LIST/?email=jdoe%40example.com%00",
        "/CUSTOMER/LIST/?login=jdoe%00",
        "/CUSTOMER/LIST/?email=a%00b&login=c%00d",
    ] {
        let reply = app.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert!(reply.customers().is_empty(), "{path}: {}", reply.body);
        assert_eq!(reply.header("x-total-count"), Some("0"), "{path}");
    }
    for body in [
        json!({"email": "jdoe@example.com\u{0}", "password": "password123"}),
        json!({"login": "jdoe\u{0}", "password": "password123"}),
    ] {
        app.login_json(&body, None).assert_error(401);
    }
    // And nothing was counted as a failure against the real account.
    assert_eq!(app.login("jdoe@example.com", "password123").status, 200);
}
