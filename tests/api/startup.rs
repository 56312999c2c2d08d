//! Start-up: creating, seeding, migrating and refusing bad configuration.

use crate::helpers::*;

/// Builds the app on `db` and returns the start-up error message.
fn startup_error(
    db: &std::path::Path,
    configure: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment,
) -> String {
    match clientele::rocket(configure(test_figment(db))) {
        Ok(_) => panic!("start-up should fail"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn legacy_plain_text_passwords_are_hashed_in_place_and_leave_no_trace() {
    if !sqlite_only("the SQLite file's free pages and WAL") {
        return;
    }
    // Arrange: a database as an old system left it, with plain-text passwords.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("legacy.db");
    drop(spawn_app_on(
        tempfile::tempdir().unwrap(),
        db.clone(),
        |f| f.merge(("seed_demo", true)),
    ));
    let passwords = demo_passwords();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        for (index, password) in passwords.iter().enumerate() {
            conn.execute(
                "UPDATE customer SET password_hash = ?1 WHERE clcleunik = ?2",
                rusqlite::params![password, index as i64 + 1],
            )
            .unwrap();
        }
        conn.execute(
            "UPDATE customer SET password_hash = '' WHERE clcleunik = 25",
            [],
        )
        .unwrap();
    }
    assert!(contains_bytes(
        &database_bytes(&db),
        passwords[1].as_bytes()
    ));

    // Act: start the server on it.
    let app = spawn_app_on(dir, db.clone(), |f| f);

    // Assert: served, every password hashed, no plain text left in the file or its WAL.
    assert_eq!(
        app.get("/CUSTOMER/LIST/").customers().len(),
        passwords.len()
    );
    let stored = stored_hashes(&db);
    for hash in &stored[..24] {
        assert!(
            hash.as_deref().unwrap().starts_with("$argon2id$"),
            "{hash:?}"
        );
    }
    assert_eq!(
        stored[24], None,
        "an empty legacy password means no password"
    );
    let bytes = database_bytes(&db);
    for password in &passwords {
        assert!(
            !contains_bytes(&bytes, password.as_bytes()),
            "{password} left in the file"
        );
    }
}

#[test]
fn a_new_database_is_seeded_only_when_asked() {
    if !sqlite_only("seeding a new SQLite file") {
        return;
    }
    let app = spawn_app_with(|f| f.merge(("seed_demo", false)));

    let reply = app.get("/CUSTOMER/LIST/");

    assert_eq!(reply.customers().len(), 0);
    assert_eq!(reply.header("x-total-count"), Some("0"));
}

#[test]
fn an_existing_database_is_not_seeded_again() {
    if !sqlite_only("seeding a SQLite file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    drop(spawn_app_on(
        tempfile::tempdir().unwrap(),
        db.clone(),
        |f| f,
    ));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM customer WHERE clcleunik > 1", [])
        .unwrap();

    let app = spawn_app_on(dir, db, |f| f);

    assert_eq!(app.get("/CUSTOMER/LIST/").ids(), vec![1]);
}

#[test]
fn demo_passwords_are_stored_only_as_argon2id_hashes() {
    let app = spawn_app();

    let hashes: Vec<String> = stored_hashes(&app.db).into_iter().flatten().collect();
    assert_eq!(hashes.len(), demo_passwords().len());
    assert!(hashes
        .iter()
        .all(|h| h.starts_with("$argon2id$v=19$m=64,t=1,p=1$")));
    let bytes = database_bytes(&app.db);
    for password in demo_passwords() {
        assert!(!contains_bytes(&bytes, password.as_bytes()));
    }
}

#[test]
fn an_unknown_redact_field_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();

    let message = startup_error(&dir.path().join("x.db"), |f| {
        f.merge(("redact", ["phone", "nope"]))
    });

    assert!(message.contains("`nope`"), "{message}");
    assert!(message.contains("redact"), "{message}");
}

#[test]
fn the_customer_key_cannot_be_redacted() {
    let dir = tempfile::tempdir().unwrap();

    let message = startup_error(&dir.path().join("x.db"), |f| {
        f.merge(("redact", ["clcleunik"]))
    });

    assert!(message.contains("clcleunik"), "{message}");
}

#[test]
fn a_file_that_is_not_a_database_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    std::fs::write(&db, "these are my notes, not a database ".repeat(100)).unwrap();

    let message = startup_error(&db, |f| f);

    assert!(message.contains("notes.db"), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
    assert!(message.contains("database"), "{message}");
}

#[test]
fn a_database_in_a_missing_folder_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("no-such-folder").join("shop.db");

    let message = startup_error(&db, |f| f);

    assert!(message.contains("no-such-folder"), "{message}");
    assert!(!db.exists());
}

#[test]
fn bad_argon2_parameters_stop_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();

    let message = startup_error(&dir.path().join("x.db"), |f| {
        f.merge(("argon2_iterations", 0))
    });

    assert!(message.contains("argon2_iterations"), "{message}");
}

#[test]
fn a_value_of_the_wrong_type_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();

    let message = startup_error(&dir.path().join("x.db"), |f| {
        f.merge(("seed_demo", "perhaps"))
    });

    assert!(message.contains("seed_demo"), "{message}");
}

/// The schema version the database at `db` records.
fn schema_version(db: &std::path::Path) -> i64 {
    match postgres_url(db) {
        Some(_) => query_count(
            db,
            "SELECT schema_version::bigint FROM clientele_meta WHERE id = 1",
        ),
        None => rusqlite::Connection::open(db)
            .unwrap()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap(),
    }
}

#[test]
fn upgrading_an_older_database_copies_it_first_and_the_copy_is_the_previous_version() {
    if !sqlite_only("a SQLite file copied beside itself before its migration") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    quick_start_sqlite(&db);
    // As the previous release left it: schema 13, before failed logins and keys' last uses.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP TABLE login_failure; DROP TABLE login_unlock;
             DROP TRIGGER api_key_use_key_removed; DROP TABLE api_key_use;
             UPDATE customer SET city = 'Before' WHERE clcleunik = 1;
             PRAGMA user_version = 13;",
        )
        .unwrap();
    let latest = clientele::store::sqlite::SCHEMA_VERSION;
    let copy = dir.path().join(format!("shop.db.before-v{latest}"));

    // The first program of the new version to open it (a tool here) upgrades it.
    let first = crate::tools::run(&db, &["keys", "list"], "");
    let again = crate::tools::run(&db, &["keys", "list"], "");

    let said = stderr(&first);
    assert!(
        said.contains(&format!(
            "copied {} to {} before upgrading its schema from 13 to {latest}",
            db.display(),
            copy.display()
        )),
        "{said}"
    );
    assert_eq!(schema_version(&db), latest as i64);
    assert_eq!(
        schema_version(&copy),
        13,
        "the copy is the database as it was"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds password hashes");
    let copied = rusqlite::Connection::open(&copy).unwrap();
    let check: String = copied
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let city: String = copied
        .query_row("SELECT city FROM customer WHERE clcleunik = 1", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(city, "Before");
    let tables: i64 = copied
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('login_failure', 'api_key_use')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "nothing of the new schema in the copy");
    assert!(!stderr(&again).contains("copied"), "one copy per upgrade");
}

#[test]
fn an_older_binary_refuses_a_database_a_newer_version_migrated_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("newer.db");
    quick_start(&db);
    let newer = match postgres_url(&db) {
        Some(_) => {
            let newer = clientele::store::postgres::schema::SCHEMA_VERSION + 1;
            run_sql(
                &db,
                &format!("UPDATE clientele_meta SET schema_version = {newer}"),
            );
            newer
        }
        None => {
            let newer = clientele::store::sqlite::SCHEMA_VERSION + 1;
            run_sql(&db, &format!("PRAGMA user_version = {newer}"));
            newer
        }
    };

    let served = binary()
        .arg("serve")
        .env("ROCKET_DATABASE", resolve(&db, Start::Empty))
        .env("ROCKET_PORT", "0")
        .output()
        .unwrap();
    let tool = crate::tools::run_expecting_failure(&db, &["keys", "list"], "");

    let said = stderr(&served);
    // 78 on both backends: the owner must act, and systemd does not restart.
    assert_eq!(served.status.code(), Some(78), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains(&format!(
            "was written by a newer clientele (schema {newer};"
        )) && said.contains("was not changed")
            && said.contains("Upgrading"),
        "{said}"
    );
    assert!(
        stderr(&tool).contains("newer clientele"),
        "{}",
        stderr(&tool)
    );
    assert_eq!(schema_version(&db), newer as i64, "left as it was");
    assert_eq!(
        query_count(&db, "SELECT count(*) FROM customer"),
        demo_customers().len() as i64
    );
    let copies = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".before-v")
        })
        .count();
    assert_eq!(
        copies, 0,
        "no copy of a database this version does not migrate"
    );
}

#[test]
fn a_newer_backup_copy_is_refused_with_its_bytes_unchanged() {
    if !sqlite_only("the bytes of a SQLite file in rollback-journal mode") {
        return;
    }
    // A copy as `clientele backup` writes it (VACUUM INTO: a rollback-journal file), from a
    // newer version: refusing it must not switch it to WAL or touch its header.
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    quick_start(&live);
    let copy = dir.path().join("copy.db");
    let conn = rusqlite::Connection::open(&live).unwrap();
    conn.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    drop(conn);
    let newer = clientele::store::sqlite::SCHEMA_VERSION + 1;
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.pragma_update(None, "user_version", newer as i64)
        .unwrap();
    drop(conn);
    let before = std::fs::read(&copy).unwrap();

    let served = binary()
        .arg("serve")
        .env("ROCKET_DATABASE", &copy)
        .env("ROCKET_PORT", "0")
        .output()
        .unwrap();

    assert_eq!(served.status.code(), Some(78), "{}", stderr(&served));
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "the file's bytes changed"
    );
    assert!(!dir.path().join("copy.db-wal").exists());
}
