//! `clientele import`, `export` and `backup`, run as the real binary.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::helpers::*;
use crate::tools::{run, run_expecting_failure};

/// `n` plausible customers as the old API served them, passwords in plain text.
fn synthetic(n: usize) -> Vec<Map<String, Value>> {
    let cities = ["Liège", "Gent", "Namur", "Mons", "Brugge", "Lille"];
    let names = ["Lefèvre", "D'hondt", "Müller", "Garçon", "Peeters", "Noël"];
    (1..=n)
        .map(|i| {
            let value = json!({
                "clcleunik": i + 1000,
                "customerNumber": format!("K{i:05}"),
                "groupePrice": if i % 3 == 0 { "Pro" } else { "Détail" },
                "login": format!("user{i}"),
                "password": format!("pw-{i}-Zq8x"),
                "lastName": names[i % names.len()],
                "firstName": format!("Prénom{i}"),
                "address": format!("Rue de l'Église {i}"),
                "zipcode": format!("{}", 1000 + i % 9000),
                "city": cities[i % cities.len()],
                "country": "BE",
                "phone": format!("+32 2 {i:07}"),
                "cellphone": "",
                "email": format!("user{i}@example.be"),
                "denomination": if i % 4 == 0 { format!("Société {i} SRL") } else { String::new() },
                "tvaNumber": if i % 4 == 0 { format!("BE0{i:09}") } else { String::new() },
                "addedDate": format!("2023-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                "addHour": format!("{:02}:{:02}:{:02}", i % 24, i % 60, (i * 7) % 60),
                "language": (["FR", "NL", "EN"][i % 3]),
                "showPrice": i % 2 == 0,
                "webRemise": if i % 5 == 0 { json!(12.5) } else { json!(i % 20) },
                "megawinapp_login": format!("mw{i}"),
                "notification_accepted": if i % 2 == 0 { "1" } else { "0" },
            });
            value.as_object().unwrap().clone()
        })
        .collect()
}

fn envelope(customers: &[Map<String, Value>]) -> String {
    serde_json::to_string_pretty(&json!({
        "success": "true", "message": "Customers list", "result": {"customer": customers}
    }))
    .unwrap()
}

/// Every row and column of the customer table, as text: "the same content".
fn dump(db: &Path) -> Vec<Vec<String>> {
    if let Some(url) = postgres_url(db) {
        return postgres_client(&url)
            .query("SELECT t::text FROM customer t ORDER BY clcleunik", &[])
            .unwrap()
            .iter()
            .map(|row| vec![row.get::<_, String>(0)])
            .collect();
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT * FROM customer ORDER BY clcleunik")
        .unwrap();
    let columns = statement.column_count();
    statement
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn importing_a_saved_old_api_response_serves_it_hashes_it_and_keeps_logins() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let customers = synthetic(1000);
    let file = dir.path().join("old.json");
    std::fs::write(&file, envelope(&customers)).unwrap();

    let output = run(&db, &["import", file.to_str().unwrap()], "");

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1000 inserted"),
        "{}",
        stderr(&output)
    );
    let app = spawn_app_on(dir, db.clone(), |f| f);
    let served = app.get("/CUSTOMER/LIST/").customers();
    let expected: Vec<_> = customers
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.remove("password");
            c
        })
        .collect();
    assert_eq!(
        served, expected,
        "served exactly as in the file, minus the password"
    );
    let hashes: Vec<String> = stored_hashes(&db).into_iter().flatten().collect();
    assert_eq!(hashes.len(), 1000);
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
    for customer in &customers {
        let reply = app.login(
            customer["email"].as_str().unwrap(),
            customer["password"].as_str().unwrap(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Every password ends with the same tail (see `synthetic`): one pass over the file finds
    // any of them. (A pass per password over the file and its WAL, which hold a thousand
    // session rows by now, took a minute.)
    let tail = "-Zq8x";
    assert!(customers
        .iter()
        .all(|c| c["password"].as_str().unwrap().ends_with(tail)));
    assert!(!contains_bytes(&database_bytes(&db), tail.as_bytes()));
}

#[test]
fn a_semicolon_windows_1252_spreadsheet_keeps_its_accents() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let file = dir.path().join("export-excel.csv");
    let (text, _, _) = encoding_rs::WINDOWS_1252.encode(
        "clcleunik;lastName;firstName;city;address;webRemise\r\n\
         7;Lefèvre;Anaïs;Liège;Rue de l'Église 3;12,5\r\n\
         8;D'hondt;Noël;Gent;Place Saint-Jacques;0\r\n\
         9;Garçon;François;Mons;Quai d'Orléans;5\r\n",
    );
    std::fs::write(&file, &text).unwrap();
    assert!(
        std::str::from_utf8(&text).is_err(),
        "the file really is Windows-1252"
    );

    let output = run(&db, &["import", file.to_str().unwrap()], "");

    assert!(output.status.success(), "{}", stderr(&output));
    let app = spawn_app_on(dir, db, |f| f);
    let served = app.get("/CUSTOMER/LIST/").customers();
    let names: Vec<(&str, &str, &str)> = served
        .iter()
        .map(|c| {
            (
                c["lastName"].as_str().unwrap(),
                c["firstName"].as_str().unwrap(),
                c["city"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("Lefèvre", "Anaïs", "Liège"),
            ("D'hondt", "Noël", "Gent"),
            ("Garçon", "François", "Mons")
        ]
    );
    assert_eq!(served[0]["address"], "Rue de l'Église 3");
    assert_eq!(served[0]["webRemise"], 12.5);
}

#[test]
fn a_utf8_csv_with_a_bom_and_commas_imports_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let file = dir.path().join("list.csv");
    std::fs::write(
        &file,
        "\u{feff}email,clcleunik,lastName\n\"a@b.be\",3,\"Dupont, fils\"\n",
    )
    .unwrap();

    let output = run(&db, &["import", file.to_str().unwrap()], "");

    assert!(output.status.success(), "{}", stderr(&output));
    let app = spawn_app_on(dir, db, |f| f);
    let customers = app.get("/CUSTOMER/LIST/").customers();
    assert_eq!(customers[0]["lastName"], "Dupont, fils");
    assert_eq!(customers[0]["email"], "a@b.be");
}

#[test]
fn a_bad_row_stops_the_import_with_its_line_and_changes_nothing() {
    let app = spawn_app();
    let before = dump(&app.db);
    let mut csv = String::from("clcleunik,lastName,password\n");
    for row in 1..=1000 {
        let id = if row == 500 {
            "abc".to_owned()
        } else {
            (row + 5000).to_string()
        };
        csv.push_str(&format!("{id},Name{row},pw{row}\n"));
    }
    let file = app.dir.path().join("bad.csv");
    std::fs::write(&file, csv).unwrap();

    let output = run_expecting_failure(&app.db, &["import", file.to_str().unwrap()], "");

    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("bad.csv:501: clcleunik:"), "{message}");
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert_eq!(dump(&app.db), before);
}

#[test]
fn a_killed_import_leaves_the_database_exactly_as_before() {
    if !sqlite_only("watches the SQLite WAL to kill the import mid-write") {
        return;
    }
    let app = spawn_app();
    let before = dump(&app.db);
    let file = app.dir.path().join("big.csv");
    let mut csv = String::from("clcleunik,lastName,firstName,address,city,email\n");
    for row in 1..=120_000 {
        csv.push_str(&format!(
            "{},Name{row},First{row},Long street name number {row},City{row},user{row}@example.be\n",
            row + 100
        ));
    }
    std::fs::write(&file, csv).unwrap();
    let mut wal = app.db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let wal_before = std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut child = binary()
        .args(["import", file.to_str().unwrap()])
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&app.db, crate::helpers::Start::Empty),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Kill it once the write transaction is spilling pages into the WAL: mid-write.
    let writing = eventually(Duration::from_secs(120), || {
        std::fs::metadata(&wal).map_or(0, |m| m.len()) > wal_before + 2 * 1024 * 1024
    });
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(writing, "the import never started writing");
    assert!(
        still_running,
        "the import finished before it could be killed; make the file bigger"
    );
    assert_eq!(dump(&app.db), before);
    assert_eq!(
        app.get("/CUSTOMER/LIST/").customers().len(),
        demo_customers().len()
    );
}

#[test]
fn export_then_import_round_trips_every_field_and_keeps_passwords() {
    let app = spawn_app();
    let exported = run(&app.db, &["export"], "");
    assert!(exported.status.success());
    let exported = String::from_utf8(exported.stdout).unwrap();

    let other = tempfile::tempdir().unwrap();
    let copy = other.path().join("copy.db");
    let into_new = run(&copy, &["import", "-", "--format", "json"], &exported);
    let into_same = run(&app.db, &["import", "-"], &exported);

    assert!(into_new.status.success(), "{}", stderr(&into_new));
    assert_eq!(
        String::from_utf8(run(&copy, &["export"], "").stdout).unwrap(),
        exported
    );
    assert!(stderr(&into_same).contains(&format!(
        "0 inserted, 0 updated, 0 deleted, {} unchanged",
        demo_customers().len()
    )));
    assert_eq!(
        app.login("jdoe@example.com", "password123").status,
        200,
        "hashes kept"
    );
}

#[test]
fn export_never_contains_a_password_or_hash_in_any_format() {
    let app = spawn_app_with(|f| f.merge(("redact", ["phone"])));
    let mut outputs = Vec::new();
    for args in [
        vec!["export"],
        vec!["export", "--format", "csv"],
        vec!["export", "--all-fields"],
        vec!["export", "--format", "csv", "--all-fields"],
    ] {
        let output = binary()
            .args(&args)
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(&app.db, crate::helpers::Start::Empty),
            )
            .env("ROCKET_REDACT", "[\"phone\"]")
            .output()
            .unwrap();
        assert!(output.status.success());
        outputs.push((args, String::from_utf8(output.stdout).unwrap()));
    }

    for (args, text) in &outputs {
        assert!(!text.to_lowercase().contains("password"), "{args:?}");
        assert!(!text.contains("$argon2"), "{args:?}");
        for password in demo_passwords() {
            assert!(!text.contains(&password), "{args:?}");
        }
        let redacted = !args.contains(&"--all-fields");
        assert_eq!(
            !text.contains("555-1234"),
            redacted,
            "{args:?}: redact applies unless --all-fields"
        );
        assert!(text.contains("555-5678"), "{args:?}");
    }

    // To standard output, a note on standard error says so (the export itself unchanged).
    let piped = binary()
        .args(["export"])
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&app.db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_REDACT", "[\"phone\"]")
        .output()
        .unwrap();
    assert!(stderr(&piped).contains("without phone, withheld by `redact`"));
    assert!(serde_json::from_slice::<Value>(&piped.stdout).is_ok());

    // Written to a file, the summary says what `redact` left out, and how to include it.
    let file = app.dir.path().join("for-the-accountant.csv");
    for (all_fields, said_so) in [(false, true), (true, false)] {
        let mut args = vec!["export", "-o", file.to_str().unwrap()];
        if all_fields {
            args.push("--all-fields");
        }
        let output = binary()
            .args(&args)
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(&app.db, crate::helpers::Start::Empty),
            )
            .env("ROCKET_REDACT", "[\"phone\", \"tvaNumber\"]")
            .output()
            .unwrap();
        let summary = stderr(&output);
        assert!(output.status.success(), "{summary}");
        assert_eq!(
            summary.contains("without phone, tvaNumber, withheld by `redact`; --all-fields"),
            said_so,
            "{summary}"
        );
    }
}

#[test]
fn replace_deletes_the_customers_not_in_the_file_and_dry_run_writes_nothing() {
    let app = spawn_app();
    let before = dump(&app.db);
    let csv = "clcleunik,lastName\n1,Doe\n2,Dubois-Changed\n";

    let dry = run(&app.db, &["import", "-", "--replace", "--dry-run"], csv);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stderr(&dry).contains("dry run"));
    assert!(stderr(&dry).contains("23 deleted"), "{}", stderr(&dry));
    assert_eq!(dump(&app.db), before);

    let real = run(&app.db, &["import", "-", "--replace"], csv);
    assert!(real.status.success(), "{}", stderr(&real));
    assert_eq!(app.get("/CUSTOMER/LIST/").ids(), vec![1, 2]);
    assert_eq!(
        app.get("/CUSTOMER/LIST/?id_client=2").customers()[0]["lastName"],
        "Dubois-Changed"
    );
}

#[test]
fn imported_hashes_are_kept_and_an_empty_password_means_none() {
    let app = spawn_app();
    let bcrypt = bcrypt::hash("from-php", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    let csv = format!("clcleunik,password\n1,\n2,{bcrypt}\n");

    let output = run(&app.db, &["import", "-"], &csv);

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(app.stored_hash(1), None);
    assert_eq!(app.stored_hash(2), Some(bcrypt));
    app.login("jdoe@example.com", "password123")
        .assert_error(401);
    assert_eq!(app.login("marie.dubois@example.be", "from-php").status, 200);
}

#[test]
fn import_while_serving_keeps_answering_and_serves_the_new_data_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let server = Server::start(&db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port;
    // Each poll its own page (a cache miss, so it reads the database), timed: a list that
    // waits for the import to commit (here each takes milliseconds) fails the test.
    const POLL_BOUND: Duration = Duration::from_secs(2);
    let poller = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut answered, mut slowest) = (0, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let path = format!("/CUSTOMER/LIST/?limit=5&offset={answered}");
                assert_eq!(http(port, "GET", &path, &[], "").status, 200);
                slowest = slowest.max(asked.elapsed());
                answered += 1;
            }
            (answered, slowest)
        })
    };
    let customers = synthetic(3000);

    let output = run(&db, &["import", "-"], &envelope(&customers));
    let after = server.get("/CUSTOMER/LIST/?id_client=1001");
    stop.store(true, Ordering::Relaxed);

    assert!(output.status.success(), "{}", stderr(&output));
    let (answered, slowest) = poller.join().unwrap();
    assert!(answered > 0);
    assert!(
        slowest <= POLL_BOUND,
        "a list took {slowest:?} during the import (bound {POLL_BOUND:?})"
    );
    assert_eq!(after.ids(), vec![1001]);
    assert_eq!(
        server
            .get("/CUSTOMER/LIST/?limit=1")
            .header("x-total-count"),
        Some("3025")
    );
}

#[test]
fn backup_under_load_opens_passes_integrity_check_and_serves_the_same_customers() {
    if !sqlite_only("backups are SQLite files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let server = Server::start(&db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (stop, port) = (Arc::clone(&stop), server.port);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(http(port, "GET", "/CUSTOMER/LIST/", &[], "").status, 200);
                }
            })
        })
        .collect();
    let target = dir.path().join("backup.db");

    let output = run(&db, &["backup", target.to_str().unwrap()], "");
    let again = run_expecting_failure(&db, &["backup", target.to_str().unwrap()], "");
    stop.store(true, Ordering::Relaxed);
    loaders.into_iter().for_each(|l| l.join().unwrap());

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !again.status.success(),
        "refuses to overwrite without --force"
    );
    assert!(stderr(&again).contains("--force"));
    let check: String = rusqlite::Connection::open(&target)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let live = server.get("/CUSTOMER/LIST/").body;
    let restored = spawn_app_on(tempfile::tempdir().unwrap(), target.clone(), |f| f);
    assert_eq!(restored.get("/CUSTOMER/LIST/").body, live);
    assert!(
        run(&db, &["backup", "--force", target.to_str().unwrap()], "")
            .status
            .success()
    );
}

#[test]
fn bad_files_and_paths_are_one_clear_line_and_a_non_zero_exit() {
    if !sqlite_only("database paths that are files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let neither = dir.path().join("notes.txt");
    std::fs::write(&neither, "just some notes\nnothing else\n").unwrap();
    create_empty_database(&db);
    let cases: Vec<(Vec<String>, &Path, &str)> = vec![
        (
            vec!["import".into(), "/no/such/file.csv".into()],
            &db,
            "no such file",
        ),
        (
            vec!["import".into(), dir.path().to_str().unwrap().into()],
            &db,
            "is a folder",
        ),
        (
            vec!["import".into(), neither.to_str().unwrap().into()],
            &db,
            "not a customer file",
        ),
        (
            vec![
                "import".into(),
                "-".into(),
                "--format".into(),
                "json".into(),
            ],
            &db,
            "not a customer list",
        ),
        (
            vec!["export".into()],
            Path::new("/no/such/folder/x.db"),
            "does not exist",
        ),
        (
            vec!["backup".into(), "/no/such/folder/b.db".into()],
            &db,
            "b.db",
        ),
    ];

    for (args, database, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_expecting_failure(database, &args, "{\"nope\": 1}");
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?}");
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(!message.contains("panicked"), "{args:?}: {message}");
        assert_eq!(
            message
                .trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{args:?}: {message}"
        );
    }
    // Only the backup case opened (and so created, empty: tools never seed the demo) the
    // database: no failed import wrote to it.
    let stored: Vec<i64> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT clcleunik FROM customer ORDER BY clcleunik")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, Vec::<i64>::new());
}

#[test]
fn columns_missing_from_a_file_keep_their_stored_values() {
    let app = spawn_app();
    let before = app.get("/CUSTOMER/LIST/?id_client=3").customers()[0].clone();

    let output = run(
        &app.db,
        &["import", "-"],
        "clcleunik;city\n3;Antwerpen-Zuid\n999;Ieper\n",
    );

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1 inserted, 1 updated"),
        "{}",
        stderr(&output)
    );
    let after = app.get("/CUSTOMER/LIST/?id_client=3").customers()[0].clone();
    let mut expected = before;
    expected.insert("city".into(), "Antwerpen-Zuid".into());
    assert_eq!(after, expected);
    assert_eq!(
        app.login("jan.peeters@example.be", "Fietsen#88").status,
        200
    );
    let new = &app.get("/CUSTOMER/LIST/?id_client=999").customers()[0];
    assert_eq!(new["city"], "Ieper");
    assert_eq!(new["lastName"], "");
}

#[test]
fn a_crlf_file_reports_the_line_of_the_bad_row() {
    let app = spawn_app();
    let before = dump(&app.db);
    let file = app.dir.path().join("excel.csv");
    std::fs::write(&file, "clcleunik,lastName\r\n901,a\r\n902,b\r\nabc,c\r\n").unwrap();

    let output = run_expecting_failure(&app.db, &["import", file.to_str().unwrap()], "");

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("excel.csv:4: clcleunik:"),
        "{}",
        stderr(&output)
    );
    assert_eq!(dump(&app.db), before);
}

#[test]
fn excels_unicode_text_utf16_with_a_bom_and_tabs_imports() {
    let app = spawn_app();
    let file = app.dir.path().join("unicode.txt");
    let text = "clcleunik\tlastName\tcity\r\n7\tLefèvre\tLiège\r\n31\tNoël\tGent\r\n";
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&file, bytes).unwrap();

    let output = run(&app.db, &["import", file.to_str().unwrap()], "");

    assert!(output.status.success(), "{}", stderr(&output));
    let seven = &app.get("/CUSTOMER/LIST/?id_client=7").customers()[0];
    assert_eq!(seven["lastName"], "Lefèvre");
    assert_eq!(seven["city"], "Liège");
    assert_eq!(
        app.get("/CUSTOMER/LIST/?id_client=31").customers()[0]["lastName"],
        "Noël"
    );
}

#[test]
fn replacing_with_an_empty_file_needs_allow_empty() {
    let app = spawn_app();
    let before = dump(&app.db);

    let header_only = run_expecting_failure(
        &app.db,
        &["import", "-", "--replace"],
        "clcleunik,lastName\n",
    );
    let empty_json = run_expecting_failure(
        &app.db,
        &["import", "-", "--replace", "--format", "json"],
        r#"{"success":"true","result":{"customer":[]}}"#,
    );

    for output in [&header_only, &empty_json] {
        assert!(!output.status.success());
        assert!(
            stderr(output).contains("--allow-empty"),
            "{}",
            stderr(output)
        );
    }
    assert_eq!(dump(&app.db), before);
    let allowed = run(
        &app.db,
        &["import", "-", "--replace", "--allow-empty"],
        "clcleunik,lastName\n",
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(dump(&app.db).is_empty());
}

#[test]
fn importing_into_a_new_file_says_so_and_a_dry_run_or_a_failure_leaves_no_file() {
    if !sqlite_only("a new SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let csv = "clcleunik;lastName\n7;Peeters\n";

    let dry = run(&db, &["import", "-", "--dry-run"], csv);
    let dry_left = db.exists();
    let failed =
        run_expecting_failure(&db, &["import", "-"], "clcleunik;lastName\nseven;Peeters\n");
    let failed_left = db.exists();
    let made = run(&db, &["import", "-"], csv);

    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(!dry_left, "a dry run writes nothing, not even a new file");
    assert!(!failed.status.success());
    assert!(!failed_left, "a failed import into a new file leaves none");
    for output in [&dry, &failed] {
        assert!(!stderr(output).contains("created"), "{}", stderr(output));
    }
    assert!(made.status.success(), "{}", stderr(&made));
    let told = stderr(&made);
    assert!(told.contains("imported into the new database"), "{told}");
    assert!(told.contains("1 inserted"), "{told}");
    assert!(db.exists());
}

/// The JSON export of `db`, as the customers it lists.
fn exported_customers(db: &Path) -> Vec<Value> {
    let exported = run(db, &["export"], "");
    let json: Value = serde_json::from_slice(&exported.stdout).unwrap();
    json["result"]["customer"].as_array().unwrap().clone()
}

#[test]
fn a_csv_export_for_a_european_excel_uses_semicolons_and_windows_1252_and_imports_back() {
    let app = spawn_app();
    run_sql(
        &app.db,
        "UPDATE customer SET firstName = 'Zoé', lastName = 'Lefèvre; Garçon', \
         city = 'Liège', address = 'Rue de l''Église 3 € 12,5' WHERE clcleunik = 2",
    );
    let file = app.dir.path().join("excel.csv");
    let file_arg = file.to_str().unwrap();

    run(
        &app.db,
        &[
            "export",
            "--format",
            "csv",
            "--delimiter",
            ";",
            "--encoding",
            "windows-1252",
            "-o",
            file_arg,
        ],
        "",
    );
    let copy = app.dir.path().join("copy.db");
    let imported = run(
        &copy,
        &[
            "import",
            file_arg,
            "--delimiter",
            ";",
            "--encoding",
            "windows-1252",
        ],
        "",
    );

    let bytes = std::fs::read(&file).unwrap();
    assert!(std::str::from_utf8(&bytes).is_err(), "not UTF-8");
    assert!(bytes.starts_with(b"clcleunik;customerNumber;groupePrice;login;"));
    assert!(
        contains_bytes(&bytes, b";Zo\xe9;"),
        "é is the one byte 0xE9"
    );
    assert!(!contains_bytes(&bytes, "é".as_bytes()), "no UTF-8 é");
    assert!(
        contains_bytes(&bytes, b";\"Lef\xe8vre; Gar\xe7on\";"),
        "a value holding the separator is quoted"
    );
    assert!(
        contains_bytes(&bytes, b"Rue de l'\xc9glise 3 \x80 12,5"),
        "€ is 0x80"
    );
    assert!(stderr(&imported).contains(&format!("{} inserted", demo_customers().len())));
    assert_eq!(exported_customers(&copy), exported_customers(&app.db));
    let zoe = &exported_customers(&copy)[1];
    assert_eq!(zoe["firstName"], "Zoé");
    assert_eq!(zoe["lastName"], "Lefèvre; Garçon");
}

#[test]
fn a_csv_export_takes_a_tab_and_stays_utf8_with_commas_by_default() {
    let app = spawn_app();
    run_sql(
        &app.db,
        "UPDATE customer SET city = 'Liège' WHERE clcleunik = 1",
    );

    let default = run(&app.db, &["export", "--format", "csv"], "");
    let tabbed = run(
        &app.db,
        &["export", "--format", "csv", "--delimiter", "tab"],
        "",
    );

    let default = String::from_utf8(default.stdout).expect("UTF-8 by default");
    assert!(
        default.starts_with("clcleunik,customerNumber,"),
        "{default}"
    );
    assert!(default.contains(",Liège,"), "{default}");
    let tabbed = String::from_utf8(tabbed.stdout).unwrap();
    assert!(
        tabbed.starts_with("clcleunik\tcustomerNumber\t"),
        "{tabbed}"
    );
    assert!(tabbed.contains("\tLiège\t"), "{tabbed}");
}

#[test]
fn a_value_windows_1252_cannot_hold_stops_the_export_naming_the_customer_and_field() {
    let app = spawn_app();
    run_sql(
        &app.db,
        "UPDATE customer SET city = 'Αθήνα' WHERE clcleunik = 3",
    );
    let file = app.dir.path().join("never.csv");

    let refused = run_expecting_failure(
        &app.db,
        &[
            "export",
            "--format",
            "csv",
            "--encoding",
            "windows-1252",
            "-o",
            file.to_str().unwrap(),
        ],
        "",
    );
    let to_stdout = run_expecting_failure(
        &app.db,
        &["export", "--format", "csv", "--encoding", "windows-1252"],
        "",
    );

    let said = stderr(&refused);
    assert!(
        said.contains("customer 3") && said.contains("field city"),
        "{said}"
    );
    assert!(
        said.contains("Windows-1252") && said.contains("nothing was exported"),
        "{said}"
    );
    assert!(!file.exists(), "nothing written");
    assert!(!app.dir.path().join("never.csv.partial").exists());
    assert!(
        to_stdout.stdout.is_empty(),
        "nothing written to standard output"
    );
}

#[test]
fn json_exports_refuse_a_delimiter_or_an_encoding() {
    let app = spawn_app();

    let json_file = app.dir.path().join("customers.json");
    for args in [
        vec![
            "export",
            "--delimiter",
            ";",
            "-o",
            json_file.to_str().unwrap(),
        ],
        vec!["export", "--format", "json", "--encoding", "windows-1252"],
        vec!["export", "--format", "csv", "--encoding", "auto"],
    ] {
        let refused = run_expecting_failure(&app.db, &args, "");
        let said = stderr(&refused);
        assert!(said.contains("--encoding"), "{args:?}: {said}");
        assert!(said.contains("nothing was exported"), "{args:?}: {said}");
        assert!(refused.stdout.is_empty(), "{args:?}");
    }
    assert!(!json_file.exists());
}

#[test]
fn an_export_without_format_follows_the_file_name_and_the_csv_options() {
    let app = spawn_app();
    let written = |name: &str, extra: &[&str]| {
        let file = app.dir.path().join(name);
        let mut args = vec!["export", "-o", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&app.db, &args, "");
        std::fs::read_to_string(&file).unwrap()
    };

    // A spreadsheet's file name gets CSV, never JSON a spreadsheet would not open.
    for name in ["customers.csv", "CUSTOMERS.CSV", "customers.txt"] {
        let text = written(name, &[]);
        assert!(
            text.starts_with("clcleunik,customerNumber,"),
            "{name}: {text}"
        );
    }
    let tabbed = written("customers.tsv", &[]);
    assert!(
        tabbed.starts_with("clcleunik\tcustomerNumber\t"),
        "{tabbed}"
    );
    let semicolons = written("customers.tsv", &["--delimiter", ";"]);
    assert!(
        semicolons.starts_with("clcleunik;customerNumber;"),
        "{semicolons}"
    );

    // Anything else is JSON, the envelope import reads back; an explicit --format wins.
    for (name, extra) in [
        ("customers.json", &[][..]),
        ("customers", &[][..]),
        ("customers.csv", &["--format", "json"][..]),
    ] {
        let text = written(name, extra);
        let envelope: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(envelope["result"]["customer"].as_array().unwrap().len(), 25);
    }

    // A CSV-only option to standard output means CSV too.
    let piped = run(&app.db, &["export", "--delimiter", ";"], "");
    let piped = String::from_utf8(piped.stdout).unwrap();
    assert!(piped.starts_with("clcleunik;customerNumber;"), "{piped}");
}

/// The counts of an import's summary line: inserted, updated, deleted, unchanged.
fn counts(output: &std::process::Output) -> String {
    let text = stderr(output);
    let start = text
        .find(" inserted")
        .and_then(|end| text[..end].rfind(": "));
    let end = text.find(" unchanged");
    match (start, end) {
        (Some(start), Some(end)) => text[start + 2..end + " unchanged".len()].to_owned(),
        _ => panic!("no summary line: {text}"),
    }
}

#[test]
fn a_dry_run_counts_password_changes_exactly_as_the_import_then_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let bcrypt = bcrypt::hash("from-php", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    // 102 has no password; the others have one: typed (hashed here), or an old bcrypt hash.
    let first = format!(
        "clcleunik;email;password\n\
         102;zweite@example.be;\n\
         103;dritte@example.be;Gleiche-Sonnenblume-33\n\
         104;vierte@example.be;Erste-Sonnenblume-44\n\
         105;fuenfte@example.be;{bcrypt}\n\
         106;sechste@example.be;Alte-Sonnenblume-66\n"
    );
    run(&db, &["import", "-"], &first);
    let before = dump(&db);
    // 102 gets one, 104 loses hers, 106 gets another; 103 (the same plain text) and 105 (the
    // same hash) keep theirs.
    let second = format!(
        "clcleunik;email;password\n\
         102;zweite@example.be;Andere-Sonnenblume-77\n\
         103;dritte@example.be;Gleiche-Sonnenblume-33\n\
         104;vierte@example.be;\n\
         105;fuenfte@example.be;{bcrypt}\n\
         106;sechste@example.be;Neue-Sonnenblume-66\n"
    );

    let dry = run(&db, &["import", "-", "--dry-run"], &second);
    assert_eq!(dump(&db), before, "a dry run writes nothing");
    let real = run(&db, &["import", "-"], &second);

    assert_eq!(
        counts(&dry),
        "0 inserted, 3 updated, 0 deleted, 2 unchanged"
    );
    assert_eq!(counts(&real), counts(&dry), "{}", stderr(&real));
    let hashes = stored_hashes(&db);
    assert!(hashes[0]
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$")));
    assert_eq!(hashes[2], None, "104's password cleared");
    assert_eq!(hashes[3], Some(bcrypt), "105's hash kept as it was");
    // The import's audit entry counts the password-only changes as updates.
    let audit = run(&db, &["audit"], "");
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("5 rows: 0 inserted, 3 updated, 0 deleted, 2 unchanged"),
        "{audit}"
    );
    // Done: the same file again changes nothing, and the dry run says so.
    let again = run(&db, &["import", "-", "--dry-run"], &second);
    assert_eq!(
        counts(&again),
        "0 inserted, 0 updated, 0 deleted, 5 unchanged"
    );
}

#[test]
fn a_key_given_twice_in_a_json_customer_or_envelope_is_refused_and_nothing_written() {
    let app = spawn_app();
    let before = dump(&app.db);
    let refused = [
        (
            "[{\"clcleunik\":1,\"clcleunik\":2,\"email\":\"a@x.com\"}]",
            ":1: clcleunik: given more than once",
        ),
        (
            "[\n{\"clcleunik\":7},\n{\"clcleunik\":8,\"city\":\"Gent\",\n\"city\":\"Liège\"}]",
            ":3: city: given more than once",
        ),
        (
            "{\"result\":{\"customer\":[{\"clcleunik\":7}]},\n\"result\":{\"customer\":[]}}",
            ":2: result: given more than once",
        ),
        (
            "{\"result\":{\"customer\":[{\"clcleunik\":7}],\n\"customer\":[{\"clcleunik\":8}]}}",
            ":2: customer: given more than once",
        ),
    ];
    for (text, expected) in refused {
        let file = app.dir.path().join("twice.json");
        std::fs::write(&file, text).unwrap();

        let output = run_expecting_failure(&app.db, &["import", file.to_str().unwrap()], "");

        let message = stderr(&output);
        assert!(
            message.contains(&format!("twice.json{expected}")),
            "{text}: {message}"
        );
        assert_eq!(message.trim().lines().count(), 1, "{message}");
        assert_eq!(dump(&app.db), before, "{text}");
    }
}

#[test]
fn every_bad_value_of_every_row_is_reported_in_one_run() {
    let app = spawn_app();
    let before = dump(&app.db);
    let file = app.dir.path().join("sheet.csv");
    std::fs::write(
        &file,
        "clcleunik;email;addedDate;webRemise;showPrice\n\
         301;a@x.be;14/03/2023;10%;OUI\n\
         302;b@x.be;2023-03-14;10;1\n\
         303;c@x.be;2023-13-01;5;peut-être\n",
    )
    .unwrap();

    let output = run_expecting_failure(&app.db, &["import", file.to_str().unwrap()], "");

    let message = stderr(&output);
    let lines: Vec<&str> = message.trim().lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "five bad values and the count line: {message}"
    );
    for expected in [
        "sheet.csv:2: addedDate: ",
        "sheet.csv:2: webRemise: ",
        "sheet.csv:2: showPrice: ",
        "sheet.csv:4: addedDate: ",
        "sheet.csv:4: showPrice: ",
    ] {
        assert!(
            lines.iter().any(|line| line.contains(expected)),
            "{expected} missing: {message}"
        );
    }
    assert!(
        lines[5].contains("5 bad values; nothing imported"),
        "{message}"
    );
    assert_eq!(dump(&app.db), before);

    // Still at most 20, with word that there may be more.
    let mut sheet = String::from("clcleunik;addedDate;webRemise;showPrice\n");
    for row in 0..10 {
        sheet.push_str(&format!("{};14/03/2023;10%;OUI\n", 400 + row));
    }
    let output = run_expecting_failure(&app.db, &["import", "-", "--format", "csv"], &sheet);
    let message = stderr(&output);
    assert_eq!(message.trim().lines().count(), 21, "{message}");
    assert!(
        message.contains("20 bad values (the first ones"),
        "{message}"
    );
    assert_eq!(dump(&app.db), before);
}
