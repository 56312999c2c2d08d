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
    let after = app.get_with("/CUSTOMER/LIST/?id_client=1", &[("If-None-Match", before)]);

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
    let conditional = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", etag)]);
    let head = Reply::from_local(app.client.head("/CUSTOMER/LIST/").dispatch());
    revoke_key(&app.db, "shop");
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

#[test]
fn gzip_refused_by_name_is_not_sent_even_when_a_wildcard_accepts_anything() {
    let app = spawn_app();

    let (_, _, refused, body) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[("Accept-Encoding", "gzip;q=0, *".into())],
    );
    let (_, _, wildcard, _) = get_raw(&app, "/CUSTOMER/LIST/", &[("Accept-Encoding", "*".into())]);

    assert_eq!(refused, None);
    assert!(body.starts_with(b"{"));
    assert_eq!(wildcard.as_deref(), Some("gzip"));
}

#[test]
fn a_304_for_a_gzip_client_carries_the_gzip_etag() {
    let app = spawn_app();
    let gzip = [("Accept-Encoding", "gzip".to_owned())];
    let (_, gz_etag, _, _) = get_raw(&app, "/CUSTOMER/LIST/", &gzip);
    let gz_etag = gz_etag.unwrap();

    let (status, etag, _, body) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[gzip[0].clone(), ("If-None-Match", gz_etag.clone())],
    );
    let (identity_status, identity_etag, _, _) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
        &[("If-None-Match", gz_etag.clone())],
    );

    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(etag.as_deref(), Some(gz_etag.as_str()));
    assert!(gz_etag.ends_with("-gzip\""), "{gz_etag}");
    assert_eq!(identity_status, 304, "weak comparison across encodings");
    assert_ne!(identity_etag.as_deref(), Some(gz_etag.as_str()));
}

#[test]
fn the_total_and_the_rows_agree_while_imports_commit() {
    if !sqlite_only("another process's transactions, in SQLite's dialect") {
        return;
    }
    let app = spawn_app();
    let db = app.db.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Another process adds and removes 20 customers, over and over, in transactions; when
    // stopped, it adds them a last time and leaves them.
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .unwrap();
            let add = "BEGIN IMMEDIATE;
                 WITH RECURSIVE n(i) AS (SELECT 500 UNION ALL SELECT i + 1 FROM n WHERE i < 519)
                 INSERT INTO customer (clcleunik, lastName) SELECT i, 'x' FROM n;
                 COMMIT;";
            let mut commits = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                conn.execute_batch(add).unwrap();
                conn.execute_batch("DELETE FROM customer WHERE clcleunik >= 500;")
                    .unwrap();
                commits += 2;
            }
            conn.execute_batch(add).unwrap();
            commits + 1
        })
    };
    let (before, with_them) = (demo_customers().len(), demo_customers().len() + 20);

    let mut checked = 0;
    let mut saw_them = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        let reply = app.get("/CUSTOMER/LIST/");
        let total: usize = reply.header("x-total-count").unwrap().parse().unwrap();
        assert_eq!(
            total,
            reply.customers().len(),
            "after {checked} agreeing answers"
        );
        assert!(
            total == before || total == with_them,
            "{total}: half a commit"
        );
        saw_them += usize::from(total == with_them);
        checked += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().unwrap();
    let last = app.get("/CUSTOMER/LIST/");

    assert!(commits > 10, "the writer ran alongside ({commits} commits)");
    // The reads were not all served from before the first commit: some saw the 20 rows.
    assert!(
        saw_them > 0,
        "none of {checked} reads saw the {commits} commits"
    );
    assert_eq!(
        last.header("x-total-count"),
        Some(with_them.to_string().as_str())
    );
    assert_eq!(last.customers().len(), with_them, "the last commit is seen");
}

#[test]
fn with_no_cache_budget_the_list_still_has_its_etag_and_304() {
    let app = spawn_app_with(|f| f.merge(("response_cache_mib", 0)));
    let first = app.get("/CUSTOMER/LIST/");
    let etag = first.header("etag").expect("an ETag").to_owned();

    let again = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", etag.clone())]);

    assert_eq!(first.customers().len(), demo_customers().len());
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
}

/// An app whose cache keeps at most 1 MiB, with 5,000 more customers than the demo: its
/// whole list (about 2.5 MB) is over half the budget, so it is streamed, never kept.
fn app_with_a_list_too_large_to_keep() -> TestApp {
    let app = spawn_app_with(|f| f.merge(("response_cache_mib", 1)));
    app.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 5999)
         INSERT INTO customer (clcleunik, login, lastName, email, city, address)
         SELECT i, 'user' || i, 'Name' || i, 'user' || i || '@example.be', 'Liège',
                'Rue de la Station ' || i FROM n;",
    );
    app
}

#[test]
fn a_list_too_large_to_keep_is_streamed_whole_and_never_kept() {
    if !sqlite_only("compares with the SQLite query run on the file") {
        return;
    }
    let app = app_with_a_list_too_large_to_keep();

    let (status, etag, encoding, body) = get_raw(&app, "/CUSTOMER/LIST/", &[]);
    let total = app
        .get("/CUSTOMER/LIST/")
        .header("x-total-count")
        .unwrap()
        .to_owned();

    assert_eq!(status, 200);
    assert_eq!(encoding, None);
    assert!(etag.unwrap().starts_with("\"s"), "a streamed list's tag");
    let conn = rusqlite::Connection::open(&app.db).unwrap();
    let (expected, count) = clientele::store::sqlite::customers::list_json(
        &conn,
        &clientele::customer::ListFilter::default(),
        clientele::customer::View::default(),
        None,
    )
    .unwrap();
    assert_eq!(count, 5025);
    assert_eq!(total, "5025");
    assert!(
        body == expected,
        "the very bytes the cached path would send"
    );
    let cache = app
        .client
        .rocket()
        .state::<clientele::cache::ResponseCache>()
        .unwrap();
    assert_eq!(cache.entries(), 0, "nothing of it kept");
    // Small answers are still cached.
    app.get("/CUSTOMER/LIST/?id_client=1000");
    assert_eq!(cache.entries(), 1);
}

#[test]
fn a_streamed_lists_etag_changes_exactly_when_its_content_does() {
    let app = app_with_a_list_too_large_to_keep();
    let first = app.get("/CUSTOMER/LIST/");
    let tag = first.header("etag").unwrap().to_owned();

    // A password is not in the list: the same content, the same tag, a 304 without a body.
    app.sql("UPDATE customer SET password_hash = NULL WHERE clcleunik = 1");
    let same = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", tag.clone())]);
    // A sent field changes: a new tag and the new body.
    app.sql("UPDATE customer SET city = 'Namur' WHERE clcleunik = 1500");
    let changed = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", tag.clone())]);
    let new_tag = changed.header("etag").unwrap().to_owned();
    let again = app.get_with("/CUSTOMER/LIST/", &[("If-None-Match", new_tag.clone())]);

    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    assert_eq!(same.header("etag"), Some(tag.as_str()));
    assert_eq!(changed.status, 200);
    assert_ne!(new_tag, tag);
    assert!(changed
        .customers()
        .iter()
        .any(|c| c["clcleunik"] == 1500 && c["city"] == "Namur"));
    assert_eq!(again.status, 304);
}

#[test]
fn a_streamed_list_is_gzipped_as_it_streams_with_its_own_etag() {
    let app = app_with_a_list_too_large_to_keep();

    let (_, plain_etag, _, plain) = get_raw(&app, "/CUSTOMER/LIST/", &[]);
    let (status, gz_etag, encoding, gz) = get_raw(
        &app,
        "/CUSTOMER/LIST/",
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
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(gz.len() < plain.len() / 4);
    assert_eq!(gunzip(&gz).as_bytes(), plain.as_slice());
    assert!(gz_etag.as_deref().unwrap().ends_with("-gzip\""));
    assert_ne!(gz_etag, plain_etag);
    assert_eq!(revalidated, 304);
    assert!(empty.is_empty());
}

/// A raw exchange's response without its `Date` line (hyper stamps each response).
fn without_date(raw: &str) -> String {
    raw.lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn raw_get(port: u16, target: &str, headers: &[(&str, &str)]) -> String {
    let mut raw = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    without_date(&raw_exchange(port, raw.as_bytes()))
}

#[test]
fn a_repeated_request_over_the_socket_is_answered_from_the_memo_exactly_as_the_app_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("memo.db"),
        &[
            ("ROCKET_LOG_LEVEL", "debug"),
            ("ROCKET_CORS_ORIGINS", "[\"https://shop.example\"]"),
        ],
    );
    let first = server.get("/CUSTOMER/LIST/?id_client=3");
    let etag = first.header("etag").unwrap().to_owned();
    let variants: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/CUSTOMER/LIST/?id_client=3", vec![]),
        ("/customer/list/?id_client=3", vec![]),
        (
            "/CUSTOMER/LIST/?id_client=3",
            vec![("Origin", "https://shop.example")],
        ),
        (
            "/CUSTOMER/LIST/?limit=10",
            vec![("Accept-Encoding", "gzip")],
        ),
        ("/CUSTOMER/LIST/?email=marie.dubois%40example.be", vec![]),
        (
            "/CUSTOMER/LIST/?id_client=3",
            vec![("If-None-Match", &etag)],
        ),
        ("/CUSTOMER/LIST/?id_client=99999", vec![]),
    ];

    let mut answers = Vec::new();
    for (target, headers) in &variants {
        let made = raw_get(server.port, target, headers);
        let again = raw_get(server.port, target, headers);
        answers.push((made, again));
    }
    let log = server.stop();

    for ((target, headers), (made, again)) in variants.iter().zip(&answers) {
        assert_eq!(made, again, "{target} {headers:?}");
    }
    assert!(answers[0].0.starts_with("HTTP/1.1 200"), "{}", answers[0].0);
    let cors = answers[2].0.to_ascii_lowercase();
    assert!(cors.contains("access-control-allow-origin: https://shop.example"));
    assert!(!answers[0].0.to_ascii_lowercase().contains("access-control"));
    assert!(answers[3]
        .0
        .to_ascii_lowercase()
        .contains("content-encoding: gzip"));
    assert!(answers[5].0.starts_with("HTTP/1.1 304"), "{}", answers[5].0);
    assert!(answers[6].0.starts_with("HTTP/1.1 200"), "{}", answers[6].0);
    let memo_hits = log.matches("answered from the memo").count();
    assert!(memo_hits >= variants.len(), "{memo_hits} hits; log:\n{log}");
}

#[test]
fn the_memo_follows_every_commit_and_never_answers_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("memo.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let read = create_key(&db, "reader");
    let write = create_write_key(&db, "writer");
    let city = |reply: &Reply| reply.customers()[0]["city"].clone();
    let get = |key: &str| {
        server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=3",
            &[("X-API-Key", key)],
            "",
        )
    };

    let first = get(&read);
    let memoized = get(&read);
    let wrong_key = get("clt_not-a-key-at-all-not-a-key-at-all-xx");
    let updated = server.request(
        "POST",
        "/CUSTOMER/UPDATE/",
        &[("X-API-Key", &write), ("Content-Type", "application/json")],
        r#"{"id_client":"3","city":"Namur"}"#,
    );
    let after_update = get(&read);
    let again = get(&read);
    // Another program's commits are seen within the watch's bound (README: a millisecond or
    // two; `freshness` tests it under load).
    run_sql(&db, "UPDATE customer SET city = 'Spa' WHERE clcleunik = 3");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after_commit = get(&read);
    let revoked = run(&db, &["keys", "revoke", "reader"], "");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let after_revoke = get(&read);
    let log = server.stop();

    assert_eq!(first.status, 200);
    assert_eq!(memoized.body, first.body);
    assert_eq!(wrong_key.status, 401);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(city(&after_update), "Namur");
    assert_eq!(again.body, after_update.body);
    assert_eq!(
        city(&after_commit),
        "Spa",
        "another process's commit shows within the bound"
    );
    assert!(revoked.status.success());
    assert_eq!(
        after_revoke.status, 401,
        "a revoked key is refused within the bound"
    );
    assert!(
        log.matches("answered from the memo").count() >= 2,
        "the repeated requests came from the memo; log:\n{log}"
    );
}

#[test]
fn under_concurrent_reads_every_write_shows_in_the_next_read_through_the_memo() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let read = create_key(&db, "reader");
    let write = create_write_key(&db, "writer");
    let port = server.port;
    let city_of = |reply: &Reply| reply.customers()[0]["city"].as_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Four readers ask for the same customer as fast as they can, so that the memo is
    // filled and consulted between every write.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, read) = (std::sync::Arc::clone(&stop), read.clone());
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let reply = http(
                        port,
                        "GET",
                        "/CUSTOMER/LIST/?id_client=3",
                        &[("X-API-Key", read.as_str())],
                        "",
                    );
                    statuses.push(reply.status);
                }
                statuses
            })
        })
        .collect();
    let mut seen = Vec::new();
    for round in 0..25 {
        let body = format!(r#"{{"id_client":"3","city":"City {round}"}}"#);
        let updated = server.request(
            "POST",
            "/CUSTOMER/UPDATE/",
            &[("X-API-Key", &write), ("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(updated.status, 200, "{}", updated.body);
        let next = server.request(
            "GET",
            "/CUSTOMER/LIST/?id_client=3",
            &[("X-API-Key", &read)],
            "",
        );
        seen.push(city_of(&next));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = readers
        .into_iter()
        .flat_map(|reader| reader.join().unwrap())
        .collect();
    let log = server.stop();

    let expected: Vec<String> = (0..25).map(|round| format!("City {round}")).collect();
    assert_eq!(seen, expected, "each read after a write shows that write");
    assert!(statuses.iter().all(|&status| status == 200));
    assert!(statuses.len() > 25, "the readers ran beside the writes");
    assert!(
        log.contains("answered from the memo"),
        "the memo was in use meanwhile"
    );
}
