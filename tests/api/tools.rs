//! The owner's command-line tools for keys and passwords, run as the real binary.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// Runs `clientele ARGS` on `db`, feeding `stdin`, and requires that it succeeds: a failed
/// `keys create` must not leave a keyless server and a passing test.
#[track_caller]
pub fn run(db: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let output = run_tool(db, args, stdin);
    assert!(
        output.status.success(),
        "clientele {} failed ({}): {}",
        args.join(" "),
        output.status,
        stderr(&output)
    );
    output
}

/// Runs `clientele ARGS` on `db`, feeding `stdin`, and requires that it fails (a non-zero
/// exit status).
#[track_caller]
pub fn run_expecting_failure(db: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let output = run_tool(db, args, stdin);
    assert!(
        !output.status.success(),
        "clientele {} succeeded, but should have failed: {}",
        args.join(" "),
        stderr(&output)
    );
    output
}

fn run_tool(db: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = binary()
        .args(args)
        .env("ROCKET_DATABASE", resolve(db, Start::Empty))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The tool may exit before reading its input (a bad argument): that is not our failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let output = child.wait_with_output().unwrap();
    settle();
    output
}

#[test]
fn keys_create_prints_the_key_once_and_list_never_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");

    let created = run(&db, &["keys", "create", "webshop"], "");
    let listed = run(&db, &["keys", "list"], "");
    let duplicate = run_expecting_failure(&db, &["keys", "create", "webshop"], "");

    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("clt_") && key.len() >= 40, "{key}");
    let listing = String::from_utf8_lossy(&listed.stdout).to_string()
        + &String::from_utf8_lossy(&listed.stderr);
    assert!(listing.contains("webshop"), "{listing}");
    assert!(!listing.contains(&key));
    assert!(!listing.contains(&key[4..12]));
    assert!(!duplicate.status.success());
    assert!(!contains_bytes(&database_bytes(&db), key.as_bytes()));
}

#[test]
fn keys_revoke_removes_it_and_names_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    run(&db, &["keys", "create", "old"], "");

    let revoked = run(&db, &["keys", "revoke", "old"], "");
    let again = run_expecting_failure(&db, &["keys", "revoke", "old"], "");

    assert!(revoked.status.success());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no key named \"old\""));
    assert!(
        String::from_utf8_lossy(&run(&db, &["keys", "list"], "").stdout)
            .trim()
            .is_empty()
    );
}

#[test]
fn passwd_sets_a_password_from_standard_input() {
    let app = spawn_app();

    let output = run(&app.db, &["passwd", "3"], "Nieuw-Wachtwoord 7\n");

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored = app.stored_hash(3).unwrap();
    assert!(stored.starts_with("$argon2id$"));
    assert_eq!(
        app.login("jan.peeters@example.be", "Nieuw-Wachtwoord 7")
            .status,
        200
    );
    app.login("jan.peeters@example.be", "Fietsen#88")
        .assert_error(401);
}

#[test]
fn passwd_refuses_an_unknown_customer_and_an_empty_password() {
    let app = spawn_app();
    let before = app.stored_hash(3);

    let unknown = run_expecting_failure(&app.db, &["passwd", "999"], "secret\n");
    let empty = run_expecting_failure(&app.db, &["passwd", "3"], "\n");

    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no customer with clcleunik 999"));
    assert!(!empty.status.success());
    assert_eq!(app.stored_hash(3), before);
}

#[test]
fn a_public_address_without_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();

    let output = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&dir.path().join("p.db"), crate::helpers::Start::Empty),
        )
        .env("ROCKET_ADDRESS", "0.0.0.0")
        .env("ROCKET_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keys create"), "{stderr}");
    assert!(stderr.contains("allow_anonymous"), "{stderr}");
}

#[test]
fn login_rate_measures_the_configured_parameters_on_the_login_workers_and_opens_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let output = binary()
        .args(["login-rate", "--seconds", "0.3"])
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_LOGIN_WORKERS", "2")
        .output()
        .unwrap();
    let refused = run_expecting_failure(&db, &["login-rate", "--seconds", "0"], "");
    let misspelled = binary()
        .args(["login-rate", "--seconds", "0.1"])
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .env("ROCKET_LOGIN_WORKER", "2")
        .output()
        .unwrap();

    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{}", stderr(&output));
    let rate: f64 = printed.split_whitespace().next().unwrap().parse().unwrap();
    assert!(rate > 0.0, "{printed}");
    assert!(printed.contains("on 2 login workers"), "{printed}");
    assert!(printed.contains("argon2_memory_kib = 64,"), "{printed}");
    assert!(printed.contains("argon2_iterations = 1,"), "{printed}");
    assert!(!db.exists());
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("seconds from 0.1 to 600"));
    // The same config checks as the server: a misspelled setting is named, not ignored.
    assert!(!misspelled.status.success());
    assert!(
        stderr(&misspelled).contains("login_workers"),
        "{}",
        stderr(&misspelled)
    );
}

/// The `keys list` line of key `name` on `db`.
fn listed_key(db: &std::path::Path, name: &str) -> String {
    let listed = String::from_utf8(run(db, &["keys", "list"], "").stdout).unwrap();
    listed
        .lines()
        .find(|line| line.starts_with(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
        .to_owned()
}

/// Sleeps into the next whole second of the wall clock.
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()) + 5_000_000,
    ));
}

#[test]
fn a_revoked_keys_last_use_never_lands_on_the_key_created_after_it() {
    if !sqlite_only("SQLite gives a deleted key's rowid to the next key") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("uses.db");
    let mut server = Server::start(&db, &[]);
    let alpha = String::from_utf8(run(&db, &["keys", "create", "alpha"], "").stdout).unwrap();
    next_second();
    let reply = server.request(
        "GET",
        "/CUSTOMER/CHANGES/?since=0&limit=1",
        &[("X-API-Key", alpha.trim())],
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    run(&db, &["keys", "revoke", "alpha"], "");
    run(&db, &["keys", "create", "beta"], "");
    assert!(server.terminate(Duration::from_secs(10)).is_some());

    assert_eq!(last_used(&listed_key(&db, "beta")), "never");
}

/// The time after "last used " in a `keys list` line, or "never".
fn last_used(line: &str) -> &str {
    line.split('\t')
        .find_map(|column| column.strip_prefix("last used "))
        .unwrap_or_else(|| panic!("no last use in {line:?}"))
}

#[test]
fn keys_list_shows_when_a_server_last_accepted_each_key_and_never_for_an_unused_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("uses.db");
    let mut server = Server::start(&db, &[]);
    let used = String::from_utf8(run(&db, &["keys", "create", "webshop"], "").stdout).unwrap();
    run(&db, &["keys", "create", "spare", "--write"], "");
    // A use in the second a key was created is not written (see `keys::record_uses`).
    next_second();
    let before = clientele::clock::now_utc_millis();

    let reply = server.request(
        "GET",
        "/CUSTOMER/CHANGES/?since=0&limit=1",
        &[("X-API-Key", used.trim())],
        "",
    );
    let not_yet = listed_key(&db, "webshop");
    assert!(
        server.terminate(Duration::from_secs(10)).is_some(),
        "stopped"
    );
    let after = clientele::clock::now_utc_millis();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        last_used(&not_yet),
        "never",
        "written at most once a minute"
    );
    let webshop = listed_key(&db, "webshop");
    let when = last_used(&webshop);
    assert!(
        before.as_str() <= when && when <= after.as_str(),
        "{before} <= {when} <= {after}"
    );
    assert!(webshop.starts_with("webshop\tread\tcreated "), "{webshop}");
    assert_eq!(last_used(&listed_key(&db, "spare")), "never");
}

#[test]
fn a_key_answered_only_from_the_memo_or_the_lane_still_counts_as_used() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("memo-uses.db");
    let mut server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let memo_key = String::from_utf8(run(&db, &["keys", "create", "memo"], "").stdout).unwrap();
    let lane_key = String::from_utf8(run(&db, &["keys", "create", "lane"], "").stdout).unwrap();
    let get = |path: &str, key: &str| {
        let reply = server.request("GET", path, &[("X-API-Key", key.trim())], "");
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    // The app answers (and counts) each key once...
    get("/CUSTOMER/LIST/?id_client=1", &memo_key);
    get("/CUSTOMER/LIST/?id_client=1", &lane_key);
    std::thread::sleep(Duration::from_millis(1100));
    // ...then, more than a second later, only the memo and the lane answer them.
    let later = clientele::clock::now_utc_millis();
    get("/CUSTOMER/LIST/?id_client=1", &memo_key);
    get("/CUSTOMER/LIST/?id_client=2", &lane_key);
    assert!(
        server.terminate(Duration::from_secs(10)).is_some(),
        "stopped"
    );

    // (The log is read from a pipe by another thread: it may lag behind the answers.)
    let said = |what: &str| eventually(Duration::from_secs(5), || server.log().contains(what));
    assert!(said("answered from the memo"), "{}", server.log());
    if !on_postgres() {
        assert!(said("answered by the lane"), "{}", server.log());
    }
    for name in ["memo", "lane"] {
        let line = listed_key(&db, name);
        assert!(
            last_used(&line) >= later.as_str(),
            "{name}: the answer given without the app counted: {line} (after {later})"
        );
    }
}

#[test]
fn a_key_pasted_as_a_key_name_is_refused_and_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("names.db");
    let key = String::from_utf8(run(&db, &["keys", "create", "webshop"], "").stdout).unwrap();
    let key = key.trim();
    for name in [key, &key.to_uppercase(), &format!("{key} extra")] {
        let output = run_expecting_failure(&db, &["keys", "create", name], "");
        let said = String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output);
        assert!(!said.contains(&key[4..]), "{said}");
        assert!(said.contains("may not start with"), "{said}");
    }
    let listed = String::from_utf8(run(&db, &["keys", "list"], "").stdout).unwrap();
    assert!(!listed.contains(&key[4..]), "{listed}");
}

#[test]
fn a_number_that_is_one_customers_id_and_anothers_login_must_be_said_which() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("who.db");
    quick_start(&db);
    run_sql(&db, "UPDATE customer SET login = '3' WHERE clcleunik = 6");

    let ambiguous = run_expecting_failure(&db, &["limits", "3"], "");
    let said = stderr(&ambiguous);
    assert!(said.contains("id:3") && said.contains("login:3"), "{said}");
    assert!(
        said.contains("customer 3") && said.contains("customer 6"),
        "{said}"
    );
    run_expecting_failure(&db, &["unlock", "3"], "");

    let by_login = run(&db, &["limits", "login:3"], "");
    let listed = String::from_utf8_lossy(&by_login.stdout);
    assert!(listed.contains("customer 6:"), "{listed}");
    let by_id = run(&db, &["limits", "id:3"], "");
    assert!(String::from_utf8_lossy(&by_id.stdout).contains("customer 3:"));
    // A number that is only an id is still read as one.
    let plain = run(&db, &["limits", "4"], "");
    assert!(String::from_utf8_lossy(&plain.stdout).contains("customer 4:"));
}
