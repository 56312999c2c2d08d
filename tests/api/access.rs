//! API keys, the anonymous mode, CORS and security headers.

use crate::helpers::*;

#[test]
fn with_a_key_the_list_needs_it_in_any_of_the_three_places() {
    let app = spawn_app();
    let key = create_key(&app.db, "webshop");

    let none = app.get("/CUSTOMER/LIST/?id_client=1");
    let wrong = app.get("/CUSTOMER/LIST/?id_client=1&apikey=clt_wrong");
    let wrong_header = app.get_with("/CUSTOMER/LIST/", &[("X-API-Key", format!("{key}x"))]);
    let query = app.get(&format!("/CUSTOMER/LIST/?apikey={key}&id_client=1"));
    let header = app.get_with("/CUSTOMER/LIST/?id_client=1", &[("X-API-Key", key.clone())]);
    let bearer = app.get_with(
        "/CUSTOMER/LIST/?id_client=1",
        &[("Authorization", format!("Bearer {key}"))],
    );

    for reply in [&none, &wrong, &wrong_header] {
        assert_eq!(reply.assert_error(401), "Missing or invalid API key");
    }
    for reply in [&query, &header, &bearer] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.ids(), vec![1]);
    }
}

#[test]
fn a_revoked_key_is_refused_at_once_and_other_keys_keep_working() {
    let app = spawn_app();
    let old = create_key(&app.db, "old");
    let new = create_key(&app.db, "new");
    assert_eq!(
        app.get(&format!("/CUSTOMER/LIST/?apikey={old}")).status,
        200
    );

    revoke_key(&app.db, "old");

    app.get(&format!("/CUSTOMER/LIST/?apikey={old}"))
        .assert_error(401);
    assert_eq!(
        app.get(&format!("/CUSTOMER/LIST/?apikey={new}")).status,
        200
    );
}

#[test]
fn without_any_key_a_loopback_server_is_open_and_health_never_needs_one() {
    let app = spawn_app();
    assert_eq!(app.get("/CUSTOMER/LIST/").status, 200);

    create_key(&app.db, "first");

    app.get("/CUSTOMER/LIST/").assert_error(401);
    assert_eq!(app.get("/health").status, 200);
}

#[test]
fn the_key_is_checked_before_the_parameters() {
    let app = spawn_app();
    create_key(&app.db, "k");

    app.get("/CUSTOMER/LIST/?id_client=abc").assert_error(401);
}

#[test]
fn keys_are_stored_only_as_digests() {
    let app = spawn_app();
    let key = create_key(&app.db, "webshop");
    assert_eq!(
        app.get(&format!("/CUSTOMER/LIST/?apikey={key}")).status,
        200
    );

    let bytes = database_bytes(&app.db);

    assert!(!contains_bytes(&bytes, key.as_bytes()));
    assert!(!contains_bytes(
        &bytes,
        key.trim_start_matches("clt_").as_bytes()
    ));
}

#[test]
fn cors_answers_preflights_for_configured_origins_only() {
    let app = spawn_app_with(|f| f.merge(("cors_origins", ["https://shop.example"])));
    let preflight = |origin: &str| {
        Reply::from_local(
            app.client
                .options("/CUSTOMER/LIST/")
                .header(rocket::http::Header::new("Origin", origin.to_owned()))
                .header(rocket::http::Header::new(
                    "Access-Control-Request-Method",
                    "GET",
                ))
                .dispatch(),
        )
    };

    let allowed = preflight("https://shop.example");
    let other = preflight("https://evil.example");
    let get = app.get_with(
        "/CUSTOMER/LIST/",
        &[("Origin", "https://shop.example".into())],
    );

    assert_eq!(allowed.status, 200);
    assert_json_content_type(&allowed);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(allowed
        .header("access-control-allow-headers")
        .unwrap()
        .contains("X-API-Key"));
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert!(get
        .header("access-control-expose-headers")
        .unwrap()
        .contains("X-Total-Count"));
}

#[test]
fn without_cors_origins_no_cross_origin_header_is_sent() {
    let app = spawn_app();

    let reply = app.get_with(
        "/CUSTOMER/LIST/",
        &[("Origin", "https://shop.example".into())],
    );

    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

#[test]
fn a_malformed_cors_origin_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let figment = test_figment(&dir.path().join("x.db")).merge(("cors_origins", ["shop.example/"]));

    let Err(error) = clientele::rocket(figment) else {
        panic!("start-up should be refused");
    };
    let error = error.to_string();

    assert!(error.contains("cors_origins"), "{error}");
}
