//! The response cache is never wrong: new data after any commit (even from another process),
//! no 304 for a stale ETag, and the same key checks and redaction as a fresh response.

use std::io::Read;

use rocket::http::Header;

use crate::helpers::*;
use crate::tools::run;

/// A GET with headers, keeping the raw body bytes (gzip is not text).
fn get_raw(
    app: &TestApp,
    uri: &str,
    headers: &[(&'static str, String)],
) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let mut request = app.client.get(uri.to_owned());
    for (name, value) in headers {
        request = request.header(Header::new(*name, value.clone()));
    }
    let response = request.dispatch();
    let status = response.status().code;
    let etag = response.headers().get_one("ETag").map(str::to_owned);
    let encoding = response
        .headers()
        .get_one("Content-Encoding")
        .map(str::to_owned);
    (
        status,
        etag,
        encoding,
        response.into_bytes().unwrap_or_default(),
    )
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn the_current_etag_gets_a_304_with_no_body() {
    let app = spawn_app();
    let first = app.get("/CUSTOMER/LIST/");
    let etag = first.header("etag").expect("an ETag").to_owned();

    let again = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", etag.clone())]);
    let weak = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", format!("W/{etag}"))]);
    let other_query = app.get_with(
        "/CUSTOMER/LIST/?id_client=1",
        &[("If-None-Match", etag.clone())],
    );

    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "{etag}"
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(weak.status, 304);
    assert_eq!(other_query.status, 200, "another query has another ETag");
    assert_ne!(other_query.header("etag"), Some(etag.as_str()));
}

#[test]
fn a_change_through_another_connection_shows_at_once_and_a_stale_etag_gets_the_new_body() {
    let app = spawn_app();
    let before = app.get("/CUSTOMER/LIST/?id_client=2");
    let old_etag = before.header("etag").unwrap().to_owned();

    app.sql("UPDATE customer SET city = 'Waterloo' WHERE clcleunik = 2");
    let after = app.get_with(
        "/CUSTOMER/LIST/?id_client=2",
        &[("If-None-Match", old_etag.clone())],
    );

    assert_eq!(after.status, 200, "a stale ETag never gets a 304");
    assert_eq!(after.customers()[0]["city"], "Waterloo");
    assert_ne!(after.header("etag"), Some(old_etag.as_str()));
}

#[test]
fn an_unchanged_body_keeps_its_etag_across_unrelated_commits() {
    let app = spawn_app();
    let before = app
        .get("/CUSTOMER/LIST/?id_client=1")
        .header("etag")
        .unwrap()
        .to_owned();

    app.sql("UPDATE customer SET city = 'Elsewhere' WHERE clcleunik = 9");
    let after = app.get_with(
        "/CUSTOMER/LIST/?id_client=1",
        &[("If-None-Match", before.clone())],
    );

    assert_eq!(
        after.status, 304,
        "the ETag follows the body, not the database"
    );
}

#[test]
fn after_clientele_import_from_another_process_the_next_response_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let server = Server::start(&db, &[]);
    let before = server.get("/CUSTOMER/LIST/");
    let etag = before.header("etag").unwrap().to_owned();
    assert_eq!(
        server
            .request("GET", "/CUSTOMER/LIST/", &[("If-None-Match", &etag)], "")
            .status,
        304
    );

    let output = run(
        &db,
        &["import", "-"],
        "clcleunik;lastName\n500;Nouveau\n3;Peeters-Renamed\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = server.request("GET", "/CUSTOMER/LIST/", &[("If-None-Match", &etag)], "");

    assert_eq!(after.status, 200);
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    assert_eq!(after.header("x-total-count"), Some("26"));
    let customers = after.customers();
    assert_eq!(customers.last().unwrap()["lastName"], "Nouveau");
    assert_eq!(customers[2]["lastName"], "Peeters-Renamed");
}

#[test]
fn a_cached_response_is_never_served_without_a_valid_key() {
    let app = spawn_app();
    let key = create_key(&app.db, "shop");
    let spare = create_key(&app.db, "spare");
    let warm = app.get(&format!("/CUSTOMER/LIST/?apikey={key}"));
    assert_eq!(warm.status, 200);
    let etag = warm.header("etag").unwrap().to_owned();

    let no_key = app.get("/CUSTOMER/LIST/");
    let wrong = app.get("/CUSTOMER/LIST/?apikey=clt_nope");
    let conditional = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", etag.clone())]);
    let head = Reply::from_local(app.client.head("/CUSTOMER/LIST/").dispatch());
    clientele::apikey::revoke(&rusqlite::Connection::open(&app.db).unwrap(), "shop").unwrap();
    let revoked = app.get(&format!("/CUSTOMER/LIST/?apikey={key}"));
    let still_valid = app.get(&format!("/CUSTOMER/LIST/?apikey={spare}"));

    no_key.assert_error(401);
    wrong.assert_error(401);
    conditional.assert_error(401);
    assert_eq!(head.status, 401);
    revoked.assert_error(401);
    assert_eq!(still_valid.body, warm.body);
}

#[test]
fn cached_and_compressed_responses_keep_the_redaction() {
    let app = spawn_app_with(|f| f.merge(("redact", ["phone", "email"])));
    let gzip = [("Accept-Encoding", "gzip".to_owned())];

    let first = app.get("/CUSTOMER/LIST/");
    let cached = app.get("/CUSTOMER/LIST/");
    let (_, _, encoding, compressed) = get_raw(&app, "/CUSTOMER/LIST/", &gzip);

    assert_eq!(first.body, cached.body);
    assert_eq!(encoding.as_deref(), Some("gzip"));
    let text = gunzip(&compressed);
    assert_eq!(text, first.body);
    for body in [&first.body, &text] {
        assert!(!body.contains("\"phone\""));
        assert!(!body.contains("\"email\""));
        assert!(!body.contains("jdoe@example.com"));
    }
}

#[test]
fn gzip_is_sent_only_when_accepted_and_has_its_own_etag() {
    let app = spawn_app();

    let (status, plain_etag, plain_encoding, plain) = get_raw(&app, "/CUSTOMER/LIST/", &[]);
    let (_, gz_etag, gz_encoding, gz) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[("Accept-Encoding", "br, gzip;q=0.8".into())],
    );
    let (_, _, refused, _) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[("Accept-Encoding", "gzip;q=0".into())],
    );
    let (small_status, _, small_encoding, _) = get_raw(
        &app,
        "/CUSTOMER/LIST/?id_client=99999",
        &[("Accept-Encoding", "gzip".into())],
    );
    let (revalidated, _, _, empty) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[
            ("Accept-Encoding", "gzip".into()),
            ("If-None-Match", gz_etag.clone().unwrap()),
        ],
    );

    assert_eq!(status, 200);
    assert_eq!(plain_encoding, None);
    assert_eq!(gz_encoding.as_deref(), Some("gzip"));
    assert!(gz.len() < plain.len() / 2);
    assert_eq!(gunzip(&gz).as_bytes(), plain.as_slice());
    assert_ne!(plain_etag, gz_etag);
    assert_eq!(refused, None);
    assert_eq!(
        (small_status, small_encoding),
        (200, None),
        "tiny bodies are sent as they are"
    );
    assert_eq!(revalidated, 304);
    assert!(empty.is_empty());
}

#[test]
fn paging_and_filters_are_cached_separately() {
    let app = spawn_app();

    let a = app.get("/CUSTOMER/LIST/?limit=2");
    let b = app.get("/CUSTOMER/LIST/?limit=2&offset=2");
    let c = app.get("/CUSTOMER/LIST/?limit=2&_=cachebuster");

    assert_eq!(a.ids(), vec![1, 2]);
    assert_eq!(b.ids(), vec![3, 4]);
    assert_eq!(c.body, a.body);
    assert_eq!(b.header("x-total-count"), Some("25"));
}
