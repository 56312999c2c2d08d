//! Login limits in front of a shop's login form: every login arrives from the shop's server,
//! so its address is not a person's. Failures never keep *another* customer out; a key created
//! with `--forwards-client-address` names the end user, and only that address is limited.

use std::path::Path;

use serde_json::json;

use crate::helpers::*;

/// Creates a key with the CLI, as an owner would, and returns it.
fn key(db: &Path, name: &str, flags: &[&str]) -> String {
    let output = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(db, crate::helpers::Start::Empty),
        )
        .args(["keys", "create", name])
        .args(flags)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A running server on a fresh database, and a key named `shop-backend` made with `flags`.
fn shop_server(flags: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[]);
    let shop = key(&db, "shop-backend", flags);
    (dir, db, server, shop)
}

fn login(server: &Server, key: &str, email: &str, password: &str, from: Option<&str>) -> u16 {
    let body = json!({"email": email, "password": password}).to_string();
    let mut headers = vec![("Content-Type", "application/json"), ("X-API-Key", key)];
    if let Some(address) = from {
        headers.push(("X-Forwarded-For", address));
    }
    server
        .request("POST", "/CUSTOMER/LOGIN/", &headers, &body)
        .status
}

/// Demo accounts other than jdoe, for failures spread over many customers.
fn other_emails() -> Vec<String> {
    demo_customers()
        .iter()
        .filter_map(|c| c["email"].as_str().map(str::to_owned))
        .filter(|email| email != "jdoe@example.com")
        .collect()
}

#[test]
fn failures_through_a_shops_server_never_lock_out_another_customer() {
    let (_dir, _db, server, shop) = shop_server(&[]);

    // Thirty wrong passwords for twenty other accounts, all through the shop's one address.
    for email in other_emails().iter().cycle().take(30) {
        let status = login(&server, &shop, email, "wrong guess", None);
        assert!(status == 401 || status == 429, "{status}");
    }
    // An X-Forwarded-For from a key that may not forward is ignored, not trusted.
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some("10.9.9.9")
        ),
        200
    );
    assert_eq!(
        login(&server, &shop, "jdoe@example.com", "password123", None),
        200
    );
}

#[test]
fn an_accounts_own_failures_still_lock_it_whatever_address_is_claimed() {
    let (_dir, _db, server, shop) = shop_server(&[]);

    for n in 0..10 {
        let forged = format!("192.0.2.{n}");
        let status = login(&server, &shop, "jdoe@example.com", "wrong", Some(&forged));
        assert_eq!(status, 401);
    }
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some("192.0.2.99")
        ),
        429
    );
}

#[test]
fn a_forwarding_key_limits_the_end_users_address_and_no_other() {
    let (_dir, db, server, shop) = shop_server(&["--forwards-client-address"]);
    let attacker = "198.51.100.7, 10.0.0.2";

    // One visitor tries ten accounts once each: the address limit, not any account's.
    for email in other_emails().iter().take(10) {
        assert_eq!(login(&server, &shop, email, "wrong", Some(attacker)), 401);
    }
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some(attacker)
        ),
        429,
        "the eleventh attempt from that visitor is refused before any check"
    );
    // Another visitor, and the shop's own calls without a forwarded address, get in.
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some("203.0.113.5")
        ),
        200
    );
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some("[2001:db8::5]:443")
        ),
        200
    );
    assert_eq!(
        login(&server, &shop, "jdoe@example.com", "password123", None),
        200
    );
    let listed = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("forwards client address"));
}

#[test]
fn wrong_current_passwords_through_a_shop_never_lock_out_another_customer() {
    let (_dir, _db, server, shop) = shop_server(&[]);
    for email in other_emails().iter().cycle().take(15) {
        let body = json!({"email": email, "currentPassword": "wrong", "newPassword": "lavande moulin 1987 rouge"});
        let reply = server.request(
            "POST",
            "/CUSTOMER/PASSWORD/",
            &[("Content-Type", "application/json"), ("X-API-Key", &shop)],
            &body.to_string(),
        );
        assert!(
            reply.status == 401 || reply.status == 429,
            "{}",
            reply.status
        );
    }
    assert_eq!(
        login(&server, &shop, "jdoe@example.com", "password123", None),
        200
    );
}

#[test]
fn one_visitor_is_one_counter_however_their_address_is_spelled() {
    let (_dir, _db, server, shop) = shop_server(&["--forwards-client-address"]);
    // An IPv4 address and its IPv4-mapped IPv6 spelling; addresses of one IPv6 /64.
    for (spellings, last) in [
        (
            ["198.51.100.7", "::ffff:198.51.100.7"],
            "[::ffff:198.51.100.7]:5555",
        ),
        (
            ["2001:db8:1:2::1", "2001:db8:1:2::ffff"],
            "2001:db8:1:2:abcd::9",
        ),
    ] {
        for (n, email) in other_emails().iter().take(10).enumerate() {
            let from = spellings[n % 2];
            assert_eq!(login(&server, &shop, email, "wrong", Some(from)), 401);
        }
        assert_eq!(
            login(
                &server,
                &shop,
                "jdoe@example.com",
                "password123",
                Some(last)
            ),
            429,
            "{last} is the same visitor"
        );
    }
    assert_eq!(
        login(
            &server,
            &shop,
            "jdoe@example.com",
            "password123",
            Some("2001:db8:1:3::1")
        ),
        200,
        "another /64 is another visitor"
    );
}

#[test]
fn a_wrong_password_for_a_bcrypt_account_takes_as_long_as_one_for_an_unknown_account() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("php.db");
    quick_start(&db);
    // A shop coming from PHP: one customer still holds a bcrypt hash (cost 8 here, to keep
    // the suite quick; PHP writes 10 to 12, slower still).
    let hash = bcrypt::hash("from-php-2019", 8)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    run_sql(
        &db,
        &format!("UPDATE customer SET password_hash = '{hash}' WHERE clcleunik = 2"),
    );
    let server = Server::start(&db, &[]);
    let shop = key(&db, "shop", &[]);
    let bcrypt_email = demo_customers()[1]["email"].as_str().unwrap().to_owned();
    let timed = |email: &str| {
        let started = std::time::Instant::now();
        assert_eq!(login(&server, &shop, email, "wrong guess", None), 401);
        started.elapsed()
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // The very first probe too: the floor is set before any login.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for n in 0..7 {
        unknown.push(timed(&format!("nobody{n}@example.com")));
        known.push(timed(&bcrypt_email));
    }
    known.sort();
    unknown.sort();
    let (a, b) = (known[3], unknown[3]);
    assert!(
        a.max(b) <= a.min(b) * 2 + std::time::Duration::from_millis(5),
        "median {a:?} for the bcrypt account, {b:?} for unknown ones"
    );
    assert!(
        unknown[0] >= known[0] / 2,
        "even the first unknown probe waits: {unknown:?}"
    );
}

#[test]
fn behind_the_operators_proxy_a_shops_key_still_never_locks_out_another_customer() {
    // ip_header is set for the browsers' public key; the shop's back end comes through the
    // same proxy, with its own address in X-Real-IP for every visitor it logs in.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proxied.db");
    let server = Server::start(&db, &[("ROCKET_IP_HEADER", "X-Real-IP")]);
    let shop = key(&db, "shop-backend", &[]);
    let from_proxy = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password}).to_string();
        server
            .request(
                "POST",
                "/CUSTOMER/LOGIN/",
                &[
                    ("Content-Type", "application/json"),
                    ("X-API-Key", &shop),
                    ("X-Real-IP", "10.0.0.7"),
                ],
                &body,
            )
            .status
    };
    for email in other_emails().iter().take(12) {
        assert_eq!(from_proxy(email, "wrong"), 401);
    }
    assert_eq!(from_proxy("jdoe@example.com", "password123"), 200);
}

#[test]
fn a_proxy_that_does_not_set_ip_header_does_not_lock_every_visitor_out_together() {
    // ip_header names X-Real-IP, but requests come (from this machine) without it: each is
    // then limited per account only, and the log says the proxy is not setting the header.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(
        &db,
        &[
            ("ROCKET_IP_HEADER", "X-Real-IP"),
            ("ROCKET_LOGIN_MAX_FAILURES", "3"),
        ],
    );
    let public = key(&db, "web", &["--public"]);
    let attempt = |email: &str, visitor: Option<&str>| {
        let body = json!({"email": email, "password": "wrong"}).to_string();
        let mut headers = vec![("Content-Type", "application/json"), ("X-API-Key", &public)];
        if let Some(visitor) = visitor {
            headers.push(("X-Real-IP", visitor));
        }
        server
            .request("POST", "/CUSTOMER/LOGIN/", &headers, &body)
            .status
    };
    let emails = other_emails();

    let without: Vec<u16> = emails.iter().take(6).map(|e| attempt(e, None)).collect();
    assert_eq!(
        without,
        vec![401; 6],
        "one failure per account: none is limited"
    );
    assert!(
        server.log().contains("without a valid X-Real-IP header"),
        "{}",
        server.log()
    );

    // The control: with the header, one visitor's failures over accounts are limited.
    let with: Vec<u16> = emails[6..10]
        .iter()
        .map(|e| attempt(e, Some("203.0.113.9")))
        .collect();
    assert_eq!(with, vec![401, 401, 401, 429]);
}

/// Runs `clientele ARGS` on `db` and returns what it printed (standard output, then error).
fn tool(db: &Path, args: &[&str]) -> String {
    let output = crate::tools::run(db, args, "");
    String::from_utf8_lossy(&output.stdout).into_owned() + &stderr(&output)
}

#[test]
fn limits_shows_a_lockout_made_through_the_running_server_and_unlock_ends_it_at_once() {
    let (_dir, db, server, shop) = shop_server(&[]);
    for _ in 0..10 {
        assert_eq!(
            login(&server, &shop, "jdoe@example.com", "wrong", None),
            401
        );
    }
    assert_eq!(
        login(&server, &shop, "jdoe@example.com", "password123", None),
        429,
        "locked, even with the right password"
    );

    let totals = tool(&db, &["limits"]);
    let shown = tool(&db, &["limits", "jdoe@example.com"]);
    let unlocked = tool(&db, &["unlock", "jdoe@example.com"]);
    let after = login(&server, &shop, "jdoe@example.com", "password123", None);
    let shown_after = tool(&db, &["limits", "1"]);

    assert!(
        totals.contains("1 account(s) or address(es) with failed logins")
            && totals.contains("1 locked now"),
        "{totals}"
    );
    assert!(
        shown.contains("customer 1: 10 failed logins in the last 300 s, locked for "),
        "{shown}"
    );
    assert!(
        shown.contains("customer 1: 0 failed password resets in the last 300 s, not locked"),
        "{shown}"
    );
    assert!(
        unlocked.contains("Cleared 10 failed attempt(s) of customer 1"),
        "{unlocked}"
    );
    assert_eq!(
        after, 200,
        "the right password logs in at once after unlock"
    );
    assert!(
        shown_after.contains("customer 1: 0 failed logins in the last 300 s, not locked"),
        "{shown_after}"
    );
}

#[test]
fn a_lockout_survives_a_restart_and_a_success_clears_the_accounts_failures() {
    let (_dir, db, server, shop) = shop_server(&[]);
    for _ in 0..10 {
        assert_eq!(
            login(&server, &shop, "jdoe@example.com", "wrong", None),
            401
        );
    }
    for _ in 0..3 {
        assert_eq!(
            login(&server, &shop, "jan.peeters@example.be", "wrong", None),
            401
        );
    }
    assert_eq!(
        login(&server, &shop, "jan.peeters@example.be", "Fietsen#88", None),
        200
    );
    drop(server);

    let restarted = Server::start(&db, &[]);

    assert_eq!(
        login(&restarted, &shop, "jdoe@example.com", "password123", None),
        429,
        "a restart keeps the lock"
    );
    let jan = tool(&db, &["limits", "jan.peeters@example.be"]);
    assert!(
        jan.contains(": 0 failed logins"),
        "a success forgave them: {jan}"
    );
}

#[test]
fn a_locked_address_trying_fresh_emails_writes_one_limited_row_not_one_per_email() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[("ROCKET_IP_HEADER", "X-Real-IP")]);
    let public = key(&db, "web", &["--public"]);
    let attempt = |n: usize| {
        let body = json!({"email": format!("guess{n}@example.com"), "password": "x"});
        let headers = [
            ("Content-Type", "application/json"),
            ("X-API-Key", public.as_str()),
            ("X-Real-IP", "203.0.113.9"),
        ];
        server
            .request("POST", "/CUSTOMER/LOGIN/", &headers, &body.to_string())
            .status
    };
    let statuses: Vec<u16> = (0..60).map(attempt).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 50);

    let limited = query_count(
        &db,
        "SELECT count(*) FROM audit WHERE action = 'login' AND detail LIKE 'limited%'",
    );
    assert_eq!(
        limited, 1,
        "one row for the address, not one per typed email"
    );
}

#[test]
fn what_a_visitor_typed_for_an_unknown_account_is_never_written_even_digested() {
    if !sqlite_only("the SQLite file's own login_failure table") {
        return;
    }
    let (_dir, db, server, shop) = shop_server(&[]);
    let typed = "Sup3r-Secret-typed-in-the-email-field";
    for _ in 0..3 {
        assert_eq!(login(&server, &shop, typed, "x", None), 401);
        assert_eq!(
            login(&server, &shop, "jdoe@example.com", "wrong", None),
            401
        );
    }
    // Still limited (in memory) like any account: the eleventh try is refused.
    for _ in 0..7 {
        login(&server, &shop, typed, "x", None);
    }
    assert_eq!(login(&server, &shop, typed, "x", None), 429);

    use sha2::Digest;
    let digest = |subject: &str| -> String {
        sha2::Sha256::digest(subject.as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    };
    let typed_rows = query_count(
        &db,
        &format!(
            "SELECT count(*) FROM login_failure WHERE subject = X'{}'",
            digest(&format!("login:{typed}"))
        ),
    );
    assert_eq!(typed_rows, 0, "the typed identifier's digest is not stored");
    // The real account's failures are (for `clientele limits` and a restart).
    let account_rows = query_count(
        &db,
        &format!(
            "SELECT count(*) FROM login_failure WHERE subject = X'{}'",
            digest("customer:1")
        ),
    );
    assert_eq!(account_rows, 3);
}
