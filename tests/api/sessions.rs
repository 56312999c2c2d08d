//! Public keys and customer sessions: a key in browser code acts, through the session LOGIN
//! gives, for that one customer and nobody else; without a session it may only log in.

use std::time::Duration;

use rocket::http::{ContentType, Header, Method};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::tools::{run, run_expecting_failure};

const LOG_IN_FIRST: &str = "This API key is public: log in first";

/// Customer A (id 2) and customer B (id 3) of the demo data, with their passwords.
const A: (i64, &str, &str, &str) = (2, "marie.dubois@example.be", "mdubois", "Lavande!2024");
const B: (i64, &str, &str, &str) = (3, "jan.peeters@example.be", "jpeeters", "Fietsen#88");

/// An app with a public key, a read key and a write key.
struct Shop {
    app: TestApp,
    public: String,
    read: String,
    write: String,
}

fn shop_with(configure: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment) -> Shop {
    let app = spawn_app_with(configure);
    let public = create_public_key(&app.db, "browser");
    let read = create_key(&app.db, "backoffice");
    let write = create_write_key(&app.db, "erp");
    Shop {
        app,
        public,
        read,
        write,
    }
}

fn shop() -> Shop {
    shop_with(|figment| figment)
}

impl Shop {
    /// One request with `key` in `X-API-Key` and `token`, if any, as `Authorization: Bearer`.
    fn call(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .app
            .client
            .req(method, uri.to_owned())
            .header(Header::new("X-API-Key", key.to_owned()));
        if let Some(token) = token {
            request = request.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        if let Some(body) = body {
            request = request.header(ContentType::JSON).body(body.to_string());
        }
        Reply::from_local(request.dispatch())
    }

    fn list(&self, query: &str, token: Option<&str>) -> Reply {
        self.call(
            Method::Get,
            &format!("/CUSTOMER/LIST/{query}"),
            &self.public,
            token,
            None,
        )
    }

    fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::Post, path, &self.public, token, Some(body))
    }

    /// Logs `who` in through the public key and returns the session token.
    fn session(&self, who: (i64, &str, &str, &str)) -> String {
        let reply = self.post(
            "/CUSTOMER/LOGIN/",
            None,
            json!({"email": who.1, "password": who.3}),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        token_of(&reply)
    }

    /// Customer `id` as a write key reads it.
    fn customer(&self, id: i64) -> Vec<serde_json::Map<String, Value>> {
        self.call(
            Method::Get,
            &format!("/CUSTOMER/LIST/?id_client={id}"),
            &self.write,
            None,
            None,
        )
        .customers()
    }
}

fn token_of(reply: &Reply) -> String {
    let json = reply.json();
    let token = json["result"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {}", reply.body));
    token.to_owned()
}

/// Asserts a 403 whose message contains `words`.
#[track_caller]
fn assert_forbidden(reply: &Reply, words: &str) {
    let message = reply.assert_error(403);
    assert!(message.contains(words), "{message:?} lacks {words:?}");
}

#[test]
fn login_gives_a_session_token_and_its_expiry_with_any_key_or_none() {
    let shop = shop();
    let before = shop.app.get("/health");
    assert_eq!(before.status, 200);

    for key in [&shop.public, &shop.read, &shop.write] {
        let reply = shop.call(
            Method::Post,
            "/CUSTOMER/LOGIN/",
            key,
            None,
            Some(json!({"login": A.2, "password": A.3})),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        assert_eq!(reply.ids(), [A.0]);
        let token = json["result"]["token"].as_str().unwrap();
        assert!(token.starts_with("cls_") && token.len() == 47, "{token}");
        let expires = json["result"]["expires"].as_str().unwrap();
        // RFC 3339 UTC, about 30 days (the default session_days) from now.
        assert!(
            expires.len() == 20 && expires.ends_with('Z') && &expires[10..11] == "T",
            "{expires}"
        );
        let days = days_from_now(expires);
        assert!((29..=30).contains(&days), "{expires}: {days} days");
    }

    // Keyless loopback serving: a token too.
    let keyless = spawn_app_with(|f| f.merge(("session_days", 2)));
    let reply = keyless.login(A.1, A.3);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(token_of(&reply).starts_with("cls_"));
    let days = days_from_now(reply.json()["result"]["expires"].as_str().unwrap());
    assert!((1..=2).contains(&days), "{days}");
}

/// Whole days between now and an RFC 3339 UTC time, as SQLite counts them.
fn days_from_now(when: &str) -> i64 {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.query_row(
        "SELECT CAST(julianday(?1) - julianday('now') AS INTEGER)",
        [when],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn a_public_key_without_a_session_may_only_log_in() {
    let shop = shop();
    let public = &shop.public;
    let refused = [
        shop.list("", None),
        shop.list("?id_client=2", None),
        shop.list(&format!("?email={}", A.1), None),
        shop.call(Method::Head, "/CUSTOMER/LIST/", public, None, None),
        shop.call(Method::Get, "/customer/changes", public, None, None),
        shop.post("/CUSTOMER/UPDATE/", None, json!({"id_client": 2, "city": "X"})),
        shop.post("/CUSTOMER/DELETE/", None, json!({"id_client": 2})),
        shop.call(
            Method::Delete,
            "/CUSTOMER/DELETE/?id_client=2",
            public,
            None,
            None,
        ),
        shop.post(
            "/CUSTOMER/PASSWORD/",
            None,
            json!({"email": A.1, "currentPassword": A.3, "newPassword": "lavande moulin 1987 rouge"}),
        ),
        shop.post(
            "/CUSTOMER/ADD/",
            None,
            json!({"email": "new@shop.be", "password": "lavande moulin 1987 rouge"}),
        ),
    ];
    for reply in &refused {
        if reply.body.is_empty() {
            // HEAD: the status says it.
            assert_eq!(reply.status, 403);
            continue;
        }
        assert_eq!(reply.assert_error(403), LOG_IN_FIRST);
    }
    // Through ?apikey= too, the way old front-ends send it.
    let by_query = shop.app.get(&format!("/customer/list?apikey={public}"));
    assert_eq!(by_query.assert_error(403), LOG_IN_FIRST);
    // Nothing changed.
    assert_eq!(shop.customer(2)[0]["city"], "Bruxelles");
    // Logging in is allowed.
    assert!(shop.session(A).starts_with("cls_"));
    // A public key sent as a Bearer value is still a key, not a session.
    let bearer_key = Reply::from_local(
        shop.app
            .client
            .get("/CUSTOMER/LIST/")
            .header(Header::new("Authorization", format!("Bearer {public}")))
            .dispatch(),
    );
    assert_eq!(bearer_key.assert_error(403), LOG_IN_FIRST);
}

#[test]
fn a_session_reads_only_its_own_customer_whatever_the_filter_or_page() {
    let shop = shop();
    let token = shop.session(A);
    let session = Some(token.as_str());

    let all = shop.list("", session);
    assert_eq!(all.ids(), [A.0]);
    assert_eq!(all.header("x-total-count"), Some("1"));
    for own in [
        "?id_client=2".to_owned(),
        "?clcleunik=2&id=2".to_owned(),
        format!("?email={}", A.1.to_uppercase()),
        format!("?login={}", A.2),
        "?limit=5".to_owned(),
        "?limit=1&offset=0".to_owned(),
        "?after=1".to_owned(),
    ] {
        assert_eq!(shop.list(&own, session).ids(), [A.0], "{own}");
    }
    // Paging past the one customer finds nothing, never the next one.
    for past in [
        "?offset=1",
        "?limit=3&offset=1",
        "?after=2",
        "?after=2&limit=10",
    ] {
        assert_eq!(shop.list(past, session).ids(), Vec::<i64>::new(), "{past}");
    }
    for (foreign, name) in [
        ("?id_client=3".to_owned(), "id_client"),
        ("?id=1".to_owned(), "id_client"),
        (format!("?email={}", B.1), "email"),
        (format!("?login={}", B.2), "login"),
        ("?email=nobody@shop.be".to_owned(), "email"),
        (format!("?id_client=2&email={}", B.1), "email"),
        ("?id_client=3&limit=10&offset=0".to_owned(), "id_client"),
    ] {
        let reply = shop.list(&foreign, session);
        assert_forbidden(&reply, name);
        assert!(!reply.body.contains(B.1), "{}", reply.body);
    }
    // Bad input is still a 400 naming the parameter.
    assert!(shop
        .list("?id_client=abc", session)
        .assert_error(400)
        .contains("id_client"));

    // The changes feed is never open to a public key.
    let changes = shop.call(
        Method::Get,
        "/CUSTOMER/CHANGES/?since=0",
        &shop.public,
        session,
        None,
    );
    assert_eq!(changes.status, 403, "{}", changes.body);
    assert!(!changes.body.contains(B.1));
}

#[test]
fn a_session_changes_and_deletes_only_its_own_customer_and_only_its_own_fields() {
    let shop = shop();
    let token = shop.session(A);
    let session = Some(token.as_str());
    let b_before = shop.customer(B.0);
    let b_hash = shop.app.stored_hash(B.0);

    // Another customer, by body, by query, by string id: 403, nothing changes.
    for body in [
        json!({"id_client": B.0, "city": "Gent"}),
        json!({"id_client": "3", "city": "Gent"}),
        json!({"clcleunik": 3, "city": "Gent"}),
    ] {
        assert_forbidden(
            &shop.post("/CUSTOMER/UPDATE/", session, body),
            "own customer",
        );
    }
    assert_forbidden(
        &shop.post(
            "/CUSTOMER/UPDATE/?id_client=3",
            session,
            json!({"city": "Gent"}),
        ),
        "own customer",
    );
    assert_forbidden(
        &shop.post("/CUSTOMER/DELETE/", session, json!({"id_client": B.0})),
        "own customer",
    );
    assert_forbidden(
        &shop.call(
            Method::Delete,
            "/CUSTOMER/DELETE/?id_client=3",
            &shop.public,
            session,
            None,
        ),
        "own customer",
    );
    for who in [
        json!({"id_client": B.0}),
        json!({"email": B.1}),
        json!({"login": B.2}),
    ] {
        let mut body = who.clone();
        body["currentPassword"] = json!(B.3);
        body["newPassword"] = json!("lavande moulin 1987 rouge");
        assert_forbidden(
            &shop.post("/CUSTOMER/PASSWORD/", session, body),
            "own customer",
        );
    }
    assert_eq!(shop.app.stored_hash(B.0), b_hash);
    assert_eq!(shop.customer(B.0), b_before);
    assert_eq!(
        shop.post(
            "/CUSTOMER/LOGIN/",
            None,
            json!({"email": B.1, "password": B.3})
        )
        .status,
        200,
        "B's password is unchanged"
    );

    // The shop's fields: 403 naming the field; the rest of the body is not applied either.
    let a_before = shop.customer(A.0);
    for (field, value) in [
        ("customerNumber", json!("C999")),
        ("groupePrice", json!("VIP")),
        ("showPrice", json!(true)),
        ("webRemise", json!(50)),
        ("megawinapp_login", json!("x")),
        ("addedDate", json!("2020-01-01")),
        ("addHour", json!("10:00:00")),
    ] {
        let mut body = json!({"id_client": A.0, "city": "Hacked"});
        body[field] = value;
        assert_forbidden(&shop.post("/CUSTOMER/UPDATE/", session, body), field);
    }
    assert_eq!(shop.customer(A.0), a_before);

    // The customer's own fields change.
    let own = json!({
        "id_client": "2", "firstName": "Marie-Anne", "lastName": "Dubois", "address": "Rue 1",
        "zipcode": "1000", "city": "Namur", "country": "BE", "phone": "02", "cellphone": "04",
        "email": "marie.new@example.be", "login": "marie2", "denomination": "MD sprl",
        "tvaNumber": "BE0123", "language": "FR", "notification_accepted": "0"
    });
    let updated = shop.post("/CUSTOMER/UPDATE/", session, own);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.customers()[0]["city"], "Namur");
    assert_eq!(
        shop.list("", session).customers()[0]["email"],
        "marie.new@example.be"
    );
    // The new email filters to the customer; the old one is someone else's now (nobody's).
    assert_eq!(
        shop.list("?email=marie.new@example.be", session).ids(),
        [A.0]
    );

    // Without currentPassword, a session cannot set a password.
    assert_forbidden(
        &shop.post(
            "/CUSTOMER/PASSWORD/",
            session,
            json!({"id_client": A.0, "newPassword": "lavande moulin 1987 rouge"}),
        ),
        "currentPassword",
    );

    // Deleting itself: 200, and the session ends with the customer.
    let deleted = shop.post("/CUSTOMER/DELETE/", session, json!({"id_client": A.0}));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(shop
        .list("", session)
        .assert_error(401)
        .contains("log in again"));
    // Even when the id is given to someone new, the old session is over.
    let reused = shop.call(
        Method::Post,
        "/CUSTOMER/ADD/",
        &shop.write,
        None,
        Some(json!({"clcleunik": A.0, "email": "someone.else@example.be"})),
    );
    assert_eq!(reused.status, 201, "{}", reused.body);
    assert_eq!(shop.list("", session).assert_error(401), session_message());
    assert_eq!(shop.customer(B.0), b_before);
}

#[test]
fn logout_ends_only_that_session() {
    let shop = shop();
    let (phone, laptop, other) = (shop.session(A), shop.session(A), shop.session(B));

    let out = shop.post("/customer/logout", Some(&phone), json!({}));
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        out.json(),
        json!({"success": "true", "message": "Logged out"})
    );
    assert_eq!(
        shop.list("", Some(&phone)).assert_error(401),
        session_message()
    );
    assert_eq!(shop.list("", Some(&laptop)).ids(), [A.0]);
    assert_eq!(shop.list("", Some(&other)).ids(), [B.0]);
    // Again: it is gone.
    assert_eq!(
        shop.post("/CUSTOMER/LOGOUT/", Some(&phone), json!({}))
            .assert_error(401),
        session_message()
    );
    // With a read key (the key in X-API-Key, the session in Authorization), no trailing slash.
    let out = shop.call(
        Method::Post,
        "/CUSTOMER/LOGOUT",
        &shop.read,
        Some(&laptop),
        None,
    );
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(shop.list("", Some(&laptop)).status, 401);
    assert_eq!(shop.list("", Some(&other)).ids(), [B.0]);
    // Without a session: 401 saying what to send; a wrong key: 401 as ever.
    assert!(shop
        .post("/CUSTOMER/LOGOUT/", None, json!({}))
        .assert_error(401)
        .contains("Authorization: Bearer"));
    assert_eq!(
        shop.call(
            Method::Post,
            "/CUSTOMER/LOGOUT/",
            "clt_wrong",
            Some(&other),
            None
        )
        .assert_error(401),
        "Missing or invalid API key"
    );
    assert_eq!(shop.list("", Some(&other)).ids(), [B.0]);
}

fn session_message() -> String {
    "The customer session is invalid or has expired: log in again".to_owned()
}

#[test]
fn a_password_change_ends_every_session_of_that_customer_and_no_other() {
    let shop = shop();
    let (a1, a2, b) = (shop.session(A), shop.session(A), shop.session(B));
    let new = "lavande moulin 1987 rouge";
    // Customer 1 shares A's email (old data has such pairs): the session still changes A's
    // password, never customer 1's, although a lookup by email would find customer 1 first.
    shop.app.sql(&format!(
        "UPDATE customer SET email = '{}' WHERE clcleunik = 1",
        A.1
    ));
    let (first, a_hash) = (shop.app.stored_hash(1), shop.app.stored_hash(A.0));

    // Through the session, proving the current password.
    let changed = shop.post(
        "/CUSTOMER/PASSWORD/",
        Some(&a1),
        json!({"email": A.1, "currentPassword": A.3, "newPassword": new}),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(shop.app.stored_hash(1), first);
    assert_ne!(shop.app.stored_hash(A.0), a_hash);
    for ended in [&a1, &a2] {
        assert_eq!(
            shop.list("", Some(ended)).assert_error(401),
            session_message()
        );
    }
    assert_eq!(shop.list("", Some(&b)).ids(), [B.0]);

    // An owner's reset with the write key ends the new sessions too.
    let a3 = shop.post(
        "/CUSTOMER/LOGIN/",
        None,
        json!({"login": A.2, "password": new}),
    );
    let a3 = token_of(&a3);
    assert_eq!(shop.list("", Some(&a3)).ids(), [A.0]);
    let reset = shop.call(
        Method::Post,
        "/CUSTOMER/PASSWORD/",
        &shop.write,
        None,
        Some(json!({"id_client": A.0, "newPassword": "moulin lavande 2024 bleu"})),
    );
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(shop.list("", Some(&a3)).status, 401);

    // Another process writing the hash (`clientele passwd`, an import): the trigger ends them.
    let b_hash = shop.app.stored_hash(B.0).unwrap();
    shop.app.sql(&format!(
        "UPDATE customer SET password_hash = '{}' WHERE clcleunik = {}",
        shop.app.stored_hash(A.0).unwrap(),
        B.0
    ));
    assert_eq!(shop.list("", Some(&b)).status, 401);
    assert_ne!(b_hash, shop.app.stored_hash(B.0).unwrap());
}

#[test]
fn expired_tampered_unknown_and_foreign_tokens_are_401() {
    let shop = shop();
    let expiring = shop.session(A);
    // Expired: its time set in the past, as `session_days` would after that many days.
    shop.app.sql(&format!(
        "UPDATE session SET expires = {}",
        time_from_now(&shop.app.db, -1.0, false)
    ));
    assert_eq!(
        shop.list("", Some(&expiring)).assert_error(401),
        session_message()
    );
    // (A login sweeps expired sessions out of the table.)
    let token = shop.session(A);
    assert_eq!(shop.list("", Some(&token)).ids(), [A.0]);

    let mut tampered = token;
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let foreign = {
        let other = shop_with(|f| f);
        other.session(A)
    };
    for bad in [
        tampered.as_str(),
        foreign.as_str(),
        "cls_",
        "cls_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "cls_\u{e9}t\u{e9}",
    ] {
        for reply in [
            shop.list("", Some(bad)),
            shop.post(
                "/CUSTOMER/UPDATE/",
                Some(bad),
                json!({"id_client": 2, "city": "X"}),
            ),
            shop.post("/CUSTOMER/LOGOUT/", Some(bad), json!({})),
        ] {
            assert_eq!(reply.assert_error(401), session_message(), "{bad}");
        }
    }
    // Logging in again with a stale token in the header works: LOGIN looks at no session.
    let again = shop.post(
        "/CUSTOMER/LOGIN/",
        Some(&tampered),
        json!({"email": A.1, "password": A.3}),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(shop.customer(A.0)[0]["city"], "Bruxelles");
}

#[test]
fn read_and_write_keys_ignore_sessions_but_may_log_them_out() {
    let shop = shop();
    let token = shop.session(A);
    for key in [&shop.read, &shop.write] {
        for bearer in [Some(token.as_str()), Some("cls_unknown"), None] {
            let reply = shop.call(Method::Get, "/CUSTOMER/LIST/", key, bearer, None);
            assert_eq!(reply.ids().len(), 25, "{bearer:?}");
            let changes = shop.call(Method::Get, "/CUSTOMER/CHANGES/", key, bearer, None);
            assert_eq!(changes.status, 200, "{}", changes.body);
        }
    }
    // A write key with A's session still writes B (it is the shop's key).
    let reply = shop.call(
        Method::Post,
        "/CUSTOMER/UPDATE/",
        &shop.write,
        Some(&token),
        Some(json!({"id_client": B.0, "webRemise": 5})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A read key may still not write, session or not.
    let reply = shop.call(
        Method::Post,
        "/CUSTOMER/UPDATE/",
        &shop.read,
        Some(&token),
        Some(json!({"id_client": A.0, "city": "X"})),
    );
    assert_eq!(reply.assert_error(403), "This API key may only read");

    // Keyless loopback: LOGIN gives a session, LOGOUT ends it, the list stays whole.
    let keyless = spawn_app();
    let token = token_of(&keyless.login(A.1, A.3));
    let list = keyless.get_with(
        "/CUSTOMER/LIST/",
        &[("Authorization", format!("Bearer {token}"))],
    );
    assert_eq!(list.ids().len(), 25);
    let out = Reply::from_local(
        keyless
            .client
            .post("/CUSTOMER/LOGOUT/")
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .dispatch(),
    );
    assert_eq!(out.status, 200, "{}", out.body);
}

#[test]
fn public_registration_is_off_unless_the_owner_allows_it_and_never_picks_an_id() {
    let strong = "lavande moulin 1987 rouge";
    let closed = shop();
    let body = json!({"email": "new@shop.be", "password": strong, "firstName": "Nina"});
    assert_eq!(
        closed
            .post("/CUSTOMER/ADD/", None, body.clone())
            .assert_error(403),
        LOG_IN_FIRST
    );

    let open = shop_with(|f| f.merge(("public_registration", true)));
    for (extra, name) in [
        (json!({"clcleunik": 500}), "clcleunik"),
        (json!({"id_client": "500"}), "clcleunik"),
        (json!({"webRemise": 100}), "webRemise"),
        (json!({"customerNumber": "C1"}), "customerNumber"),
    ] {
        let mut sent = body.clone();
        for (k, v) in extra.as_object().unwrap() {
            sent[k] = v.clone();
        }
        assert_forbidden(&open.post("/CUSTOMER/ADD/", None, sent), name);
    }
    assert_eq!(open.customer(500), Vec::new());
    let added = open.post("/CUSTOMER/ADD/", None, body);
    assert_eq!(added.status, 201, "{}", added.body);
    let id = added.ids()[0];
    assert_eq!(id, 26);
    // The new customer logs in and sees themselves only.
    let token = open.session((id, "new@shop.be", "", strong));
    assert_eq!(open.list("", Some(&token)).ids(), [id]);
    // A read key still may not add.
    let read = open.call(
        Method::Post,
        "/CUSTOMER/ADD/",
        &open.read,
        None,
        Some(json!({"email": "r@shop.be"})),
    );
    assert_eq!(read.assert_error(403), "This API key may only read");
}

#[test]
fn public_keys_are_made_and_listed_by_the_cli_and_old_keys_survive_the_migration() {
    if !sqlite_only("a SQLite schema migration") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    // A database as the previous version left it: schema 9, keys whose CHECK knows no 'public'.
    let read = {
        let app = spawn_app_on(tempfile::tempdir().unwrap(), db.clone(), |f| f);
        let read = create_key(&app.db, "old-reader");
        let conn = rusqlite::Connection::open(&app.db).unwrap();
        conn.execute_batch(
            "DROP TABLE login_failure; DROP TABLE login_unlock;
             DROP TRIGGER api_key_use_key_removed; DROP TABLE api_key_use;
             DROP TRIGGER session_password_changed; DROP TRIGGER session_customer_deleted;
             DROP TABLE session; DROP TABLE answer_version; DROP TRIGGER customer_renumbered;
             DROP TRIGGER reset_token_customer_deleted; DROP TRIGGER reset_token_password_changed;
             DROP TABLE reset_token;
             DROP TRIGGER customer_id_high_insert; DROP TABLE customer_id_high;
             CREATE TABLE old_key AS SELECT * FROM api_key; DROP TABLE api_key;
             CREATE TABLE api_key (name TEXT PRIMARY KEY,
                 digest BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
                 created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
                 scope TEXT NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'write')),
                 forwards_client_address INTEGER NOT NULL DEFAULT 0);
             INSERT INTO api_key SELECT name, digest, '2024-05-01T10:00:00Z', scope, 0 FROM old_key;
             INSERT INTO api_key VALUES ('old-backend', zeroblob(32), '2024-05-02T10:00:00Z', 'write', 1);
             DROP TABLE old_key; PRAGMA user_version = 9;",
        )
        .unwrap();
        let public = conn.execute(
            "INSERT INTO api_key (name, digest, scope) VALUES ('p', randomblob(32), 'public')",
            [],
        );
        assert!(public.is_err(), "schema 9 refuses a public key");
        read
    };

    let created = run(&db, &["keys", "create", "webshop", "--public"], "");
    let public = String::from_utf8(created.stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(public.starts_with("clt_"), "{public}");
    assert!(stderr(&created).contains("public"), "{}", stderr(&created));
    run_expecting_failure(&db, &["keys", "create", "x", "--public", "--write"], "");
    run_expecting_failure(
        &db,
        &[
            "keys",
            "create",
            "y",
            "--public",
            "--forwards-client-address",
        ],
        "",
    );
    let listed = String::from_utf8(run(&db, &["keys", "list"], "").stdout).unwrap();
    assert!(
        listed.contains("old-reader\tread\tcreated 2024-05-01T10:00:00Z"),
        "{listed}"
    );
    assert!(
        listed
            .contains("old-backend\twrite\tcreated 2024-05-02T10:00:00Z\tlast used never\tforwards client address"),
        "{listed}"
    );
    assert!(listed.contains("webshop\tpublic\tcreated "), "{listed}");

    let app = spawn_app_on(dir, db, |f| f);
    assert_eq!(
        app.get_with("/CUSTOMER/LIST/", &[("X-API-Key", read)])
            .ids()
            .len(),
        25
    );
    assert_eq!(
        app.get_with("/CUSTOMER/LIST/", &[("X-API-Key", public)])
            .assert_error(403),
        LOG_IN_FIRST
    );
}

#[test]
fn a_stronger_rehash_at_login_keeps_the_customers_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let (public, token) = {
        let app = spawn_app_on(tempfile::tempdir().unwrap(), db.clone(), |f| f);
        let public = create_public_key(&app.db, "browser");
        let shop = Shop {
            public: public.clone(),
            read: String::new(),
            write: String::new(),
            app,
        };
        (public, shop.session(A))
    };
    let before = stored_hashes(&db)[1].clone().unwrap();
    // The owner raised the cost: the next login re-hashes A's password.
    let app = spawn_app_on(dir, db.clone(), |f| f.merge(("argon2_iterations", 2)));
    let shop = Shop {
        public,
        read: String::new(),
        write: String::new(),
        app,
    };
    let second = shop.session(A);
    assert_ne!(stored_hashes(&db)[1].clone().unwrap(), before, "re-hashed");
    assert_eq!(shop.list("", Some(&token)).ids(), [A.0]);
    assert_eq!(shop.list("", Some(&second)).ids(), [A.0]);
}

/// Over a real socket, at `log_level = debug`: a session reaches its own customer only, its
/// answers are never kept by the front layer's memo (an expired session is refused at once,
/// with no commit in between), a logout takes effect on the next request, and the token is
/// in no log line, no other response and not in the database file.
#[test]
fn over_a_socket_a_session_is_held_to_its_customer_and_its_token_leaks_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.db");
    let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", "debug")]);
    let created = run(&db, &["keys", "create", "webshop", "--public"], "");
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let json_type = ("Content-Type", "application/json");

    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[json_type, ("X-API-Key", &key)],
        &json!({"email": A.1, "password": A.3}).to_string(),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let token = token_of(&login);
    let bearer = format!("Bearer {token}");
    let mut answers = Vec::new();
    let mut ask = |method: &str, path: &str, body: &str| {
        let reply = server.request(
            method,
            path,
            &[json_type, ("X-API-Key", &key), ("Authorization", &bearer)],
            body,
        );
        answers.push(format!("{:?}{}", reply.headers, reply.body));
        reply
    };

    // Twice each: a second answer could come from the memo.
    for _ in 0..2 {
        assert_eq!(ask("GET", "/CUSTOMER/LIST/", "").ids(), [A.0]);
        assert_eq!(ask("GET", "/customer/list?id_client=2", "").ids(), [A.0]);
        assert_eq!(ask("GET", "/CUSTOMER/LIST/?id_client=3", "").status, 403);
        assert_eq!(
            ask("GET", &format!("/CUSTOMER/LIST/?email={}", B.1), "").status,
            403
        );
        assert_eq!(
            ask("GET", "/CUSTOMER/LIST/?limit=2&offset=1", "").ids(),
            Vec::<i64>::new()
        );
        assert_eq!(ask("GET", "/CUSTOMER/CHANGES/?since=0", "").status, 403);
    }
    let update = ask("POST", "/CUSTOMER/UPDATE/", r#"{"id_client":3,"city":"X"}"#);
    assert_eq!(update.status, 403, "{}", update.body);
    let delete = ask("DELETE", "/CUSTOMER/DELETE/?id_client=3", "");
    assert_eq!(delete.status, 403, "{}", delete.body);
    let update = ask(
        "POST",
        "/CUSTOMER/UPDATE/",
        r#"{"id_client":2,"city":"Liege"}"#,
    );
    assert_eq!(update.status, 200, "{}", update.body);

    // Expiry without any commit after it: the memo must not answer for the session.
    run_sql(
        &db,
        &format!(
            "UPDATE session SET expires = {}",
            time_from_now(&db, 2.0, false)
        ),
    );
    assert_eq!(ask("GET", "/CUSTOMER/LIST/?id_client=2", "").ids(), [A.0]);
    assert_eq!(ask("GET", "/CUSTOMER/LIST/?id_client=2", "").ids(), [A.0]);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(ask("GET", "/CUSTOMER/LIST/?id_client=2", "").status, 401);

    // A fresh session; logout; the very next request is refused.
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[json_type, ("X-API-Key", &key)],
        &json!({"login": A.2, "password": A.3}).to_string(),
    );
    let second = token_of(&login);
    let second_bearer = format!("Bearer {second}");
    let with_second = [
        ("X-API-Key", key.as_str()),
        ("Authorization", second_bearer.as_str()),
    ];
    for _ in 0..2 {
        let reply = server.request("GET", "/CUSTOMER/LIST/", &with_second, "");
        assert_eq!(reply.ids(), [A.0]);
        answers.push(format!("{:?}{}", reply.headers, reply.body));
    }
    let out = server.request("POST", "/CUSTOMER/LOGOUT/", &with_second, "");
    assert_eq!(out.status, 200, "{}", out.body);
    answers.push(format!("{:?}{}", out.headers, out.body));
    let after = server.request("GET", "/CUSTOMER/LIST/", &with_second, "");
    assert_eq!(after.status, 401, "{}", after.body);
    answers.push(format!("{:?}{}", after.headers, after.body));

    let bytes = database_bytes(&db);
    let log = server.stop();
    assert!(log.contains("sent headers"), "debug lines are in: {log}");
    for secret in [&token, &second] {
        let bare = secret.strip_prefix("cls_").unwrap();
        assert!(!log.contains(bare), "token in the log:\n{log}");
        assert!(
            !contains_bytes(&bytes, bare.as_bytes()),
            "token in the database file"
        );
        for answer in &answers {
            assert!(!answer.contains(bare), "token in an answer: {answer}");
        }
    }
}

#[test]
fn browsers_on_an_allowed_origin_may_send_the_key_and_the_session_to_logout() {
    let shop = shop_with(|f| f.merge(("cors_origins", ["https://shop.example"])));
    let preflight = Reply::from_local(
        shop.app
            .client
            .options("/customer/logout/")
            .header(Header::new("Origin", "https://shop.example"))
            .header(Header::new("Access-Control-Request-Method", "POST"))
            .dispatch(),
    );
    assert_eq!(preflight.status, 200, "{}", preflight.body);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(
        allowed.contains("Authorization") && allowed.contains("X-API-Key"),
        "{allowed}"
    );
    assert!(preflight.header("allow").unwrap().contains("POST"));
}

#[test]
fn session_days_out_of_range_stops_start_up_naming_it() {
    for days in [0, 3651] {
        let dir = tempfile::tempdir().unwrap();
        let figment = test_figment(&dir.path().join("shop.db")).merge(("session_days", days));
        let Err(error) = clientele::rocket(figment) else {
            panic!("session_days = {days} was accepted");
        };
        let error = error.to_string();
        assert!(error.contains("session_days"), "{error}");
    }
}

#[test]
fn public_key_logins_count_the_visitors_address_unless_it_is_a_local_proxy() {
    let shop = shop_with(|f| f.merge(("login_max_failures", 3)));
    let login_from = |peer: &str, email: &str, password: &str| {
        Reply::from_local(
            shop.app
                .client
                .post("/CUSTOMER/LOGIN/")
                .remote(peer.parse().unwrap())
                .header(ContentType::JSON)
                .header(Header::new("X-API-Key", shop.public.clone()))
                .body(json!({"email": email, "password": password}).to_string())
                .dispatch(),
        )
    };
    let customers = demo_customers();
    let email = |i: usize| customers[i]["email"].as_str().unwrap().to_owned();
    // One visitor tries three accounts, once each: the address is over its limit.
    for i in 5..8 {
        assert_eq!(
            login_from("203.0.113.7:5000", &email(i), "wrong").status,
            401
        );
    }
    assert_eq!(login_from("203.0.113.7:5000", A.1, A.3).status, 429);
    // Another visitor is not kept out.
    assert_eq!(login_from("198.51.100.2:5000", A.1, A.3).status, 200);
    // Behind a proxy on this machine (no ip_header), every visitor has its address: only
    // per-account limits apply.
    for i in 10..14 {
        assert_eq!(login_from("127.0.0.1:6000", &email(i), "wrong").status, 401);
    }
    assert_eq!(login_from("127.0.0.1:6000", B.1, B.3).status, 200);
}

#[test]
fn a_session_that_expires_without_any_commit_is_refused_within_the_memos_second() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("expiry.db");
    let server = Server::start(&db, &[]);
    let out = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .args(["keys", "create", "web", "--public"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let login = server.request(
        "POST",
        "/CUSTOMER/LOGIN/",
        &[("Content-Type", "application/json"), ("X-API-Key", &public)],
        &serde_json::json!({"email": "jdoe@example.com", "password": "password123"}).to_string(),
    );
    let token = login.json()["result"]["token"].as_str().unwrap().to_owned();
    // The session now ends 1.5 s from now (this commit is the last one).
    run_sql(
        &db,
        &format!(
            "UPDATE session SET expires = {}",
            time_from_now(&db, 1.5, true)
        ),
    );
    let bearer = format!("Bearer {token}");
    let ask = || {
        server
            .request(
                "GET",
                "/CUSTOMER/LIST/",
                &[("X-API-Key", &public), ("Authorization", &bearer)],
                "",
            )
            .status
    };
    // Answered, and the answer kept by the memo, again and again before the expiry.
    for _ in 0..20 {
        assert_eq!(ask(), 200);
    }
    std::thread::sleep(std::time::Duration::from_millis(1500 + 1000 + 200));
    assert_eq!(ask(), 401, "at most the memo's second after the expiry");
}

#[test]
fn a_customer_keeps_at_most_fifty_sessions_and_the_newest_always_works() {
    let app = spawn_app();
    let mut tokens = Vec::new();
    for _ in 0..60 {
        let reply = app.login("jdoe@example.com", "password123");
        assert_eq!(reply.status, 200, "{}", reply.body);
        tokens.push(reply.json()["result"]["token"].as_str().unwrap().to_owned());
    }
    let last = tokens.last().unwrap().clone();
    let kept = query_count(&app.db, "SELECT count(*) FROM session WHERE customer = 1");
    assert_eq!(kept, clientele::session::MAX_PER_CUSTOMER);
    let public = create_public_key(&app.db, "web");
    let own = app.get_with(
        &format!("/CUSTOMER/LIST/?apikey={public}"),
        &[("Authorization", format!("Bearer {last}"))],
    );
    assert_eq!(own.status, 200, "{}", own.body);
    // The ten oldest ended, the fifty newest live, though all were made within a second.
    let alive: Vec<bool> = tokens
        .iter()
        .map(|token| {
            app.get_with(
                &format!("/CUSTOMER/LIST/?apikey={public}"),
                &[("Authorization", format!("Bearer {token}"))],
            )
            .status
                == 200
        })
        .collect();
    assert_eq!(alive[..10], [false; 10], "{alive:?}");
    assert_eq!(alive[10..], [true; 50], "{alive:?}");
}

#[test]
fn registrations_through_a_public_key_are_limited_per_visitor() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reg.db");
    let server = Server::start(
        &db,
        &[
            ("ROCKET_PUBLIC_REGISTRATION", "true"),
            ("ROCKET_IP_HEADER", "X-Real-IP"),
        ],
    );
    let out = binary()
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&db, crate::helpers::Start::Empty),
        )
        .args(["keys", "create", "web", "--public"])
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let register = |email: &str, visitor: &str| {
        server
            .request(
                "POST",
                "/CUSTOMER/ADD/",
                &[
                    ("Content-Type", "application/json"),
                    ("X-API-Key", &public),
                    ("X-Real-IP", visitor),
                ],
                &serde_json::json!({"email": email}).to_string(),
            )
            .status
    };
    // Probing which emails are taken (409) or registering: ten a window per visitor.
    for n in 0..10 {
        let status = register(&format!("probe{n}@example.com"), "203.0.113.77");
        assert_eq!(status, 201);
    }
    assert_eq!(register("jdoe@example.com", "203.0.113.77"), 429);
    assert_eq!(
        register("jdoe@example.com", "203.0.113.78"),
        409,
        "another visitor"
    );
}

#[test]
fn no_browser_call_is_an_unlimited_test_of_which_emails_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("probe.db");
    let server = Server::start(
        &db,
        &[
            ("ROCKET_PUBLIC_REGISTRATION", "true"),
            ("ROCKET_IP_HEADER", "X-Real-IP"),
        ],
    );
    let public = create_public_key(&db, "web");
    let call = |path: &str, token: Option<&str>, visitor: Option<&str>, body: Value| {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("X-API-Key", public.as_str()),
        ];
        if let Some(visitor) = visitor {
            headers.push(("X-Real-IP", visitor));
        }
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer.as_str()));
        }
        server.request("POST", path, &headers, &body.to_string())
    };

    // Registrations whose visitor has no known address (the header missing): one allowance
    // they all share, not none.
    let statuses: Vec<u16> = (0..12)
        .map(|n| {
            let email = if n % 2 == 0 {
                "jdoe@example.com".to_owned()
            } else {
                format!("new{n}@example.com")
            };
            call("/CUSTOMER/ADD/", None, None, json!({"email": email})).status
        })
        .collect();
    assert!(
        statuses.contains(&409) && statuses.contains(&201),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    // A session changing its own email or login: a 409 says another customer has it, so
    // such changes are counted per customer (whatever the visitor's address) and per
    // visitor.
    let registered = call(
        "/CUSTOMER/ADD/",
        None,
        Some("198.51.100.7"),
        json!({"email": "mallory@evil.example", "password": "Mallory pass 2026!"}),
    );
    assert_eq!(registered.status, 201, "{}", registered.body);
    let me = registered.customers()[0]["clcleunik"].as_i64().unwrap();
    let login = call(
        "/CUSTOMER/LOGIN/",
        None,
        Some("198.51.100.7"),
        json!({"email": "mallory@evil.example", "password": "Mallory pass 2026!"}),
    );
    let token = login.json()["result"]["token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    for n in 0..12 {
        let (email, visitor) = match n % 2 {
            0 => (
                "jdoe@example.com".to_owned(),
                format!("198.51.100.{}", 10 + n),
            ),
            _ => (
                format!("nobody{n}@example.com"),
                format!("198.51.100.{}", 10 + n),
            ),
        };
        let reply = call(
            "/CUSTOMER/UPDATE/",
            Some(&token),
            Some(&visitor),
            json!({"id_client": me, "email": email}),
        );
        statuses.push(reply.status);
    }
    assert!(
        statuses.contains(&409) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    // Other changes of the customer's own are not counted.
    let renamed = call(
        "/CUSTOMER/UPDATE/",
        Some(&token),
        Some("198.51.100.7"),
        json!({"id_client": me, "firstName": "Mal"}),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
}
