//! Tests of the PostgreSQL backend. Those that need a server run only when
//! `CLIENTELE_TEST_POSTGRES` holds the URL of one (a role that may create databases, e.g.
//! `postgres://clientele:clientele-pw@127.0.0.1:55432/clientele`); each makes a database of
//! its own, dropped at the end. Without it they say so and pass.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use postgres::NoTls;

use super::*;
use crate::customer::{CustomerList, Field, Redaction};
use crate::error::JsonResponse;

const RETENTION: Retention = Retention {
    audit_days: 365,
    changes_days: 90,
};

/// A database of the test's own on the test server, dropped (connections and all) when the
/// test ends.
struct TestDb {
    server: String,
    name: String,
    url: Secret,
    pg: Option<Pg>,
}

impl TestDb {
    /// A fresh, empty database opened by [`Pg::open`]; `None` (and a note) without a server.
    fn new(test: &str) -> Option<TestDb> {
        let mut db = TestDb::empty(test)?;
        let (pg, report) = Pg::open(&db.url, &hasher()).expect("open the test database");
        assert!(report.created, "a fresh database is created");
        db.pg = Some(pg);
        Some(db)
    }

    /// A fresh database, not opened.
    fn empty(test: &str) -> Option<TestDb> {
        let Some(server) = std::env::var("CLIENTELE_TEST_POSTGRES")
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            eprintln!(
                "note: {test} skipped: set CLIENTELE_TEST_POSTGRES to a PostgreSQL URL (a role \
                 that may create databases) to run it"
            );
            return None;
        };
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "clientele_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        admin(&server)
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create a test database");
        let url = Secret::new(with_database(&server, &name));
        Some(TestDb {
            server,
            name,
            url,
            pg: None,
        })
    }

    fn pg(&self) -> &Pg {
        self.pg.as_ref().expect("opened")
    }

    fn client(&self) -> PooledClient {
        self.pg().connection().expect("a pooled connection")
    }

    /// A plain connection to the test database, for checks behind the backend's back.
    fn raw(&self) -> postgres::Client {
        postgres::Client::connect(self.url.expose(), NoTls).expect("connect")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop(self.pg.take());
        if let Ok(mut admin) = postgres::Client::connect(&self.server, NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn admin(server: &str) -> postgres::Client {
    postgres::Client::connect(server, NoTls).expect("connect to CLIENTELE_TEST_POSTGRES")
}

/// `server` (a URL) naming the database `name` instead.
fn with_database(server: &str, name: &str) -> String {
    let (head, query) = match server.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = match head[authority_start..].find('/') {
        Some(slash) => &head[..authority_start + slash],
        None => head,
    };
    format!("{base}/{name}{query}")
}

fn hasher() -> PasswordHasher {
    PasswordHasher::new(crate::auth::Argon2Config {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    })
    .expect("test hasher")
}

fn every_field() -> FieldSet {
    let mut set = FieldSet::default();
    for field in Field::ALL {
        set.insert(field);
    }
    set
}

fn customer(id: i64, email: &str, login: &str) -> Customer {
    Customer {
        clcleunik: id,
        customer_number: format!("C{id}"),
        login: login.into(),
        last_name: "Peeters".into(),
        first_name: "Jo".into(),
        email: email.into(),
        added_date: "2024-02-29".into(),
        add_hour: "10:11:12".into(),
        language: "NL".into(),
        show_price: true,
        web_remise: 12.5,
        notification_accepted: false,
        ..Customer::default()
    }
}

fn add(client: &mut PooledClient, customer: Customer) -> Customer {
    client
        .insert(customer, every_field(), None, "test", RETENTION)
        .expect("insert")
}

fn ids(page: &Page) -> Vec<i64> {
    page.customers.iter().map(|c| c.clcleunik).collect()
}

fn filter(query: &str) -> ListFilter {
    ListFilter::parse(Some(query)).expect("a valid filter")
}

// ---------------------------------------------------------------------------------------
// Without a server.

#[test]
fn the_columns_are_the_wire_names_in_field_order() {
    let columns: Vec<String> = customers::COLUMNS
        .split(", ")
        .map(|column| column.trim().trim_matches('"').to_owned())
        .collect();
    let names: Vec<&str> = Field::ALL.iter().map(|field| field.name()).collect();
    assert_eq!(columns, names);
    // Quoted exactly where PostgreSQL would otherwise fold the case.
    for column in customers::COLUMNS.split(", ") {
        let bare = column.trim().trim_matches('"');
        assert_eq!(
            column.trim().starts_with('"'),
            bare.chars().any(|c| c.is_ascii_uppercase()),
            "{column}"
        );
    }
}

#[test]
fn redact_url_hides_every_password_form() {
    for (url, shown) in [
        (
            "postgres://clientele:s3cret@127.0.0.1:5432,127.0.0.1:5433/shop?target_session_attrs=read-write",
            "postgres://clientele:***@127.0.0.1:5432,127.0.0.1:5433/shop?target_session_attrs=read-write",
        ),
        (
            "postgresql://u:p%40ss@db/shop",
            "postgresql://u:***@db/shop",
        ),
        ("POSTGRES://u:pw@db/shop", "POSTGRES://u:***@db/shop"),
        ("postgres://u@db/shop", "postgres://u@db/shop"),
        ("postgres://db/shop", "postgres://db/shop"),
        (
            "postgres://db/shop?user=u&password=s3cret&sslmode=disable",
            "postgres://db/shop?user=u&password=***&sslmode=disable",
        ),
        (
            "postgres://db/shop?PASSWORD=s3cret",
            "postgres://db/shop?PASSWORD=***",
        ),
        (
            // A raw `@` in the password: everything before the last `@` is hidden.
            "postgres://u:p@ss:w@db/shop",
            "postgres://u:***@db/shop",
        ),
        (
            "host=db user=u password=s3cret dbname=shop",
            "host=db user=u password=*** dbname=shop",
        ),
        (
            "host=db password = 'se cr\\'et' dbname=shop",
            "host=db password = *** dbname=shop",
        ),
        ("password=s3cret", "password=***"),
        ("host=db mypassword=x", "host=db mypassword=x"),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
        assert!(!redact_url(url).contains("s3cret"), "{url}");
    }
}

#[test]
fn redact_url_never_panics() {
    let samples = [
        "postgres://u:pw@h/db?password=x&y",
        "host=h password='unterminated",
        "password=",
        "password",
        "postgres://",
        "postgres://@",
        "postgres://:@?password=&",
        "h\u{e9}ll\u{f6} password=\u{1F600}\u{1F600} x",
        "postgresql://\u{e9}:\u{e9}@\u{e9}/\u{e9}?password=\u{e9}",
    ];
    for sample in samples {
        for end in 0..=sample.len() {
            if let Some(prefix) = sample.get(..end) {
                let shown = redact_url(prefix);
                assert!(shown.len() <= prefix.len() + 8, "{prefix:?} -> {shown:?}");
            }
        }
    }
}

#[test]
fn a_url_that_does_not_parse_is_a_startup_error_without_its_password() {
    let url = Secret::new("postgres://u:hunter2@db:notaport/shop");
    let Err(error) = Pg::open(&url, &hasher()) else {
        panic!("a bad port must be refused");
    };
    let text = error.to_string();
    assert!(text.contains("postgres://u:***@db:notaport/shop"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn an_unreachable_server_is_refused_quickly_naming_the_url_without_its_password() {
    // Nothing listens on port 1 of the loopback address.
    let url = Secret::new("postgres://u:hunter2@127.0.0.1:1/shop");
    let started = Instant::now();
    let Err(error) = Pg::open(&url, &hasher()) else {
        panic!("nothing listens there");
    };
    let text = error.to_string();
    assert!(text.contains("postgres://u:***@127.0.0.1:1/shop"), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_migrations_mark_the_database_and_notify_on_every_cached_table() {
    let all = schema::MIGRATIONS.concat();
    assert!(all.contains(
        "INSERT INTO clientele_meta (id, application, schema_version) VALUES (1, 'clientele', 0)"
    ));
    for table in [
        "customer",
        "api_key",
        "session",
        "reset_token",
        "demo_customer",
    ] {
        assert!(
            all.contains(&format!("TRIGGER {table}_notify")),
            "{table} notifies"
        );
    }
}

// ---------------------------------------------------------------------------------------
// With a server.

#[test]
fn the_list_json_is_byte_identical_to_the_envelope_and_to_the_contract() {
    let Some(db) =
        TestDb::new("the_list_json_is_byte_identical_to_the_envelope_and_to_the_contract")
    else {
        return;
    };
    let mut client = db.client();
    add(&mut client, customer(7, "jo@shop.be", "jo"));
    let mut whole = customer(8, "An@Shop.be", "an");
    whole.web_remise = 10.0;
    whole.show_price = false;
    whole.notification_accepted = true;
    whole.city = "Li\u{e8}ge \"centre\" \\ \u{1F600}".into();
    add(&mut client, whole);

    let view = View::default();
    let (body, total) = client
        .list_json(&ListFilter::default(), view, None)
        .expect("list_json");
    let page = client.list(&ListFilter::default()).expect("list");
    let envelope = JsonResponse::success(
        "Customers list",
        CustomerList {
            customers: &page.customers,
            view,
        },
    );
    assert_eq!(total, 2);
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        String::from_utf8(envelope.body).unwrap()
    );
    let expected = concat!(
        r#"{"success":"true","message":"Customers list","result":{"customer":["#,
        r#"{"clcleunik":7,"customerNumber":"C7","groupePrice":"","login":"jo","lastName":"Peeters","firstName":"Jo","address":"","zipcode":"","city":"","country":"","phone":"","cellphone":"","email":"jo@shop.be","denomination":"","tvaNumber":"","addedDate":"2024-02-29","addHour":"10:11:12","language":"NL","showPrice":true,"webRemise":12.5,"megawinapp_login":"","notification_accepted":"0"},"#,
        r#"{"clcleunik":8,"customerNumber":"C8","groupePrice":"","login":"an","lastName":"Peeters","firstName":"Jo","address":"","zipcode":"","city":"Liège \"centre\" \\ 😀","country":"","phone":"","cellphone":"","email":"An@Shop.be","denomination":"","tvaNumber":"","addedDate":"2024-02-29","addHour":"10:11:12","language":"NL","showPrice":false,"webRemise":10,"megawinapp_login":"","notification_accepted":"1"}"#,
        r#"]}}"#
    );
    assert_eq!(String::from_utf8(body).unwrap(), expected);

    // Redaction and string ids go through the same view.
    let view = View {
        redaction: Redaction::from_names(&["phone", "webRemise"]).unwrap(),
        string_ids: true,
    };
    let (body, _) = client
        .list_json(&filter("id=7"), view, None)
        .expect("list_json");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(r#""clcleunik":"7""#), "{text}");
    assert!(
        !text.contains("\"phone\"") && !text.contains("webRemise"),
        "{text}"
    );
    assert!(!text.contains("password"), "{text}");
}

#[test]
fn the_streamed_list_is_the_same_bytes_in_pieces_and_a_reader_may_leave() {
    let Some(db) =
        TestDb::new("the_streamed_list_is_the_same_bytes_in_pieces_and_a_reader_may_leave")
    else {
        return;
    };
    let mut client = db.client();
    for id in 1..=1203 {
        add(
            &mut client,
            customer(id, &format!("c{id}@shop.be"), &format!("c{id}")),
        );
    }
    let totals = db.pg().totals();
    let (whole, total) = client
        .list_json(&ListFilter::default(), View::default(), Some(&totals))
        .expect("list_json");
    assert_eq!(total, 1203);

    let mut stream = db.pg().dedicated().expect("dedicated");
    let mut started = None;
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    stream
        .stream_list(
            &ListFilter::default(),
            View::default(),
            &totals,
            16 * 1024,
            &mut |total, seq| {
                started = Some((total, seq));
                true
            },
            &mut |piece| {
                pieces.push(piece);
                true
            },
        )
        .expect("stream_list");
    let seq = started.expect("start was called").1;
    assert_eq!(started, Some((1203, seq)));
    assert!(pieces.len() > 3, "{} pieces", pieces.len());
    assert_eq!(pieces.concat(), whole);
    assert_eq!(
        client
            .list_size(&filter("limit=10&offset=1200"), &totals)
            .unwrap(),
        (3, seq)
    );

    // A reader that leaves after the first piece: the work stops, the connection still works.
    let mut calls = 0;
    stream
        .stream_list(
            &ListFilter::default(),
            View::default(),
            &totals,
            16 * 1024,
            &mut |_, _| true,
            &mut |_| {
                calls += 1;
                false
            },
        )
        .expect("a reader leaving is not an error");
    assert_eq!(calls, 1);
    assert_eq!(stream.customer_count().unwrap(), 1203);
}

#[test]
fn filters_and_paging_answer_as_on_sqlite() {
    let Some(db) = TestDb::new("filters_and_paging_answer_as_on_sqlite") else {
        return;
    };
    let mut client = db.client();
    for id in 1..=10 {
        add(
            &mut client,
            customer(id, &format!("c{id}@shop.be"), &format!("login{id}")),
        );
    }
    add(&mut client, customer(11, "Mixed.Case@Shop.BE", "Login"));
    add(&mut client, customer(12, "\u{c9}lise@shop.be", "elise"));

    let page = client.list(&filter("after=4&limit=3")).unwrap();
    assert_eq!((ids(&page), page.total), (vec![5, 6, 7], 12));
    let page = client.list(&filter("limit=2&offset=9")).unwrap();
    assert_eq!((ids(&page), page.total), (vec![10, 11], 12));
    let page = client.list(&filter("offset=11")).unwrap();
    assert_eq!((ids(&page), page.total), (vec![12], 12));
    // The email ignoring ASCII case only, as SQLite's NOCASE.
    assert_eq!(
        ids(&client.list(&filter("email=mixed.case%40shop.be")).unwrap()),
        [11]
    );
    assert_eq!(
        ids(&client.list(&filter("email=MIXED.CASE%40SHOP.BE")).unwrap()),
        [11]
    );
    assert!(client
        .list(&filter("email=%C3%A9lise%40shop.be"))
        .unwrap()
        .customers
        .is_empty());
    assert_eq!(
        ids(&client.list(&filter("email=%C3%89lise%40shop.be")).unwrap()),
        [12]
    );
    // The login exactly.
    assert_eq!(ids(&client.list(&filter("login=Login")).unwrap()), [11]);
    assert!(client
        .list(&filter("login=login"))
        .unwrap()
        .customers
        .is_empty());
    let page = client.list(&filter("id=3&login=login3")).unwrap();
    assert_eq!((ids(&page), page.total), (vec![3], 1));
    let page = client.list(&filter("id=3&login=login4")).unwrap();
    assert_eq!((ids(&page), page.total), (vec![], 0));

    // Logins find the first by id; the email ignoring case. (Another program wrote a
    // second customer with the same email.)
    db.raw()
        .batch_execute(
            "INSERT INTO customer (clcleunik, email, login) VALUES (13, 'MIXED.case@shop.be', 'other')",
        )
        .unwrap();
    let (found, hash) = client
        .find_for_login(&Identifier::Email("mixed.CASE@shop.be".into()))
        .unwrap()
        .expect("found");
    assert_eq!((found.clcleunik, hash.is_none()), (11, true));
    assert!(client
        .find_for_login(&Identifier::Login("nobody".into()))
        .unwrap()
        .is_none());
    assert_eq!(
        client
            .find_for_login(&Identifier::Id(12))
            .unwrap()
            .map(|(c, _)| c.email),
        Some("\u{c9}lise@shop.be".to_owned())
    );

    // The email filter is answered by its index.
    let mut raw = db.raw();
    raw.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = raw
        .query(
            &format!(
                "EXPLAIN {}",
                customers::login_sql(&Identifier::Email(String::new()))
            ),
            &[&"x@y.be"],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(plan.join("\n").contains("customer_email"), "{plan:?}");
}

#[test]
fn writes_record_their_audit_rows_and_refuse_what_is_taken() {
    let Some(db) = TestDb::new("writes_record_their_audit_rows_and_refuse_what_is_taken") else {
        return;
    };
    let mut client = db.client();
    let mut fresh = customer(0, "new@shop.be", "new");
    fresh.added_date.clear();
    fresh.add_hour.clear();
    let stored = client
        .insert(
            fresh,
            every_field(),
            Some("$argon2id$fake".into()),
            "key-a",
            RETENTION,
        )
        .unwrap();
    assert_eq!(stored.clcleunik, 1);
    assert!(
        stored.added_date.len() == 10 && stored.add_hour.len() == 8,
        "{} {}",
        stored.added_date,
        stored.add_hour
    );
    assert_eq!(client.find(1).unwrap(), Some(stored));

    // Taken: the id, the email ignoring case, the login.
    assert!(matches!(
        client.insert(
            customer(1, "x@shop.be", "x"),
            every_field(),
            None,
            "t",
            RETENTION
        ),
        Err(WriteError::Taken(Field::Clcleunik))
    ));
    assert!(matches!(
        client.insert(
            customer(2, "NEW@shop.be", "x"),
            every_field(),
            None,
            "t",
            RETENTION
        ),
        Err(WriteError::Taken(Field::Email))
    ));
    assert!(matches!(
        client.insert(
            customer(2, "x@shop.be", "new"),
            every_field(),
            None,
            "t",
            RETENTION
        ),
        Err(WriteError::Taken(Field::Login))
    ));
    add(&mut client, customer(2, "two@shop.be", "two"));
    let mut change = Customer {
        email: "New@Shop.be".into(),
        ..Customer::default()
    };
    let mut present = FieldSet::default();
    present.insert(Field::Email);
    assert!(matches!(
        client.update(2, &change, present, "t", RETENTION),
        Err(WriteError::Taken(Field::Email))
    ));

    // An update writes and records only what differs.
    change.city = "Gent".into();
    change.email = "two@shop.be".into();
    present.insert(Field::City);
    let updated = client
        .update(2, &change, present, "key-b", RETENTION)
        .unwrap();
    assert_eq!(
        (updated.city.as_str(), updated.email.as_str()),
        ("Gent", "two@shop.be")
    );
    assert!(matches!(
        client.update(99, &change, present, "t", RETENTION),
        Err(WriteError::NotFound(99))
    ));
    assert!(client
        .set_password(
            2,
            "$argon2id$other",
            "cli",
            Action::PasswordReset,
            RETENTION
        )
        .unwrap());
    assert!(!client
        .set_password(
            98,
            "$argon2id$other",
            "cli",
            Action::PasswordReset,
            RETENTION
        )
        .unwrap());
    client.delete(2, "key-b", RETENTION).unwrap();
    assert!(matches!(
        client.delete(2, "key-b", RETENTION),
        Err(WriteError::NotFound(2))
    ));

    let trail = client
        .audit(crate::audit::Kind::Writes, None, None, 100)
        .unwrap();
    let lines: Vec<(String, String, Option<i64>, String)> = trail
        .iter()
        .map(|e| {
            (
                e.actor.clone(),
                e.action.clone(),
                e.customer,
                e.fields.clone(),
            )
        })
        .collect();
    let every = Field::ALL.map(Field::name).join(", ");
    assert_eq!(
        lines,
        vec![
            (
                "key-a".into(),
                "add".into(),
                Some(1),
                format!("{every}, password")
            ),
            ("test".into(), "add".into(), Some(2), every),
            ("key-b".into(), "update".into(), Some(2), "city".into()),
            (
                "cli".into(),
                "password-reset".into(),
                Some(2),
                "password".into()
            ),
            ("key-b".into(), "delete".into(), Some(2), String::new()),
        ]
    );
    assert!(trail
        .iter()
        .all(|e| e.at.len() == 24 && e.at.ends_with('Z')));
    assert_eq!(
        client
            .audit(crate::audit::Kind::Writes, Some(1), None, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        client
            .audit(crate::audit::Kind::Writes, None, Some("2000-01-01"), 2)
            .unwrap()
            .len(),
        2
    );
    assert!(client
        .audit(crate::audit::Kind::Writes, None, Some("2999-01-01"), 10)
        .unwrap()
        .is_empty());
    assert_eq!(client.customer_count().unwrap(), 1);
}

#[test]
fn a_new_id_is_never_a_deleted_one_and_after_the_largest_fills_the_first_gap() {
    let Some(db) =
        TestDb::new("a_new_id_is_never_a_deleted_one_and_after_the_largest_fills_the_first_gap")
    else {
        return;
    };
    let mut client = db.client();
    add(&mut client, customer(5, "", ""));
    client.delete(5, "t", RETENTION).unwrap();
    assert_eq!(add(&mut client, customer(0, "", "")).clcleunik, 6);
    add(&mut client, customer(1, "", ""));
    add(&mut client, customer(i64::MAX, "", ""));
    // Used: 1, 5 (deleted), 6 and 2^63-1: the first gap is 2.
    assert_eq!(add(&mut client, customer(0, "", "")).clcleunik, 2);
    assert_eq!(add(&mut client, customer(0, "", "")).clcleunik, 3);
}

#[test]
fn concurrent_writers_on_several_connections_number_their_changes_in_commit_order() {
    let Some(db) = TestDb::new(
        "concurrent_writers_on_several_connections_number_their_changes_in_commit_order",
    ) else {
        return;
    };
    // Two "nodes" on the same database.
    let (other, _) = Pg::open(&db.url, &hasher()).unwrap();
    let nodes = [db.pg().clone(), other];
    let writers = 6;
    let rounds = 25;
    let done = Arc::new(AtomicUsize::new(0));
    let poller = {
        let pg = nodes[0].clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut client = pg.connection().unwrap();
            let mut since = 0;
            let mut seen: Vec<i64> = Vec::new();
            let mut replica = std::collections::BTreeMap::new();
            loop {
                let finished = done.load(Ordering::SeqCst) == writers;
                loop {
                    let page = client.changes_since(since, 7).unwrap();
                    for c in &page.customers {
                        replica.insert(c.clcleunik, c.clone());
                    }
                    for id in &page.deleted {
                        replica.remove(id);
                    }
                    seen.push(page.next);
                    let more = page.next != since && page.customers.len() + page.deleted.len() == 7;
                    since = page.next;
                    if !more {
                        break;
                    }
                }
                if finished {
                    return (replica, seen);
                }
            }
        })
    };
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let pg = nodes[w % 2].clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut client = pg.connection().unwrap();
                for round in 0..rounds {
                    let id = i64::try_from(w * 1000 + round + 1).unwrap();
                    add(&mut client, customer(id, "", ""));
                    let change = Customer {
                        city: format!("city {round}"),
                        ..Customer::default()
                    };
                    let mut present = FieldSet::default();
                    present.insert(Field::City);
                    client.update(id, &change, present, "t", RETENTION).unwrap();
                    if round % 3 == 0 {
                        client.delete(id, "t", RETENTION).unwrap();
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let (replica, seen) = poller.join().unwrap();

    // The poller's copy is the database, exactly: no change was missed.
    let mut client = db.client();
    let truth: std::collections::BTreeMap<i64, Customer> = client
        .list(&ListFilter::default())
        .unwrap()
        .customers
        .into_iter()
        .map(|c| (c.clcleunik, c))
        .collect();
    assert_eq!(replica, truth);
    assert_eq!(truth.len(), writers * (rounds - rounds.div_ceil(3)));
    // Tokens only move forward, and every number was given once.
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let mut raw = db.raw();
    let duplicates: i64 = raw
        .query_one(
            "SELECT count(*) - count(DISTINCT seq) FROM \
             (SELECT change_seq AS seq FROM customer UNION ALL SELECT seq FROM tombstone) s",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(duplicates, 0);
    let last: i64 = raw
        .query_one("SELECT seq FROM change_log", &[])
        .unwrap()
        .get(0);
    // Each round took an insert, an update and, every third, a delete.
    assert_eq!(
        last,
        i64::try_from(writers * (2 * rounds + rounds.div_ceil(3))).unwrap()
    );
}

#[test]
fn the_changes_feed_refuses_tokens_from_the_future_and_from_before_the_kept_deletions() {
    let Some(db) = TestDb::new(
        "the_changes_feed_refuses_tokens_from_the_future_and_from_before_the_kept_deletions",
    ) else {
        return;
    };
    let mut client = db.client();
    add(&mut client, customer(1, "", ""));
    add(&mut client, customer(2, "", ""));
    client.delete(1, "t", RETENTION).unwrap();
    let page = client.changes_since(0, 100).unwrap();
    let changed: Vec<i64> = page.customers.iter().map(|c| c.clcleunik).collect();
    assert_eq!((changed, page.deleted, page.next), (vec![2], vec![1], 3));
    let page = client.changes_since(1, 1).unwrap();
    assert_eq!(
        (page.customers.len(), page.deleted.clone(), page.next),
        (1, vec![], 2)
    );
    assert!(matches!(
        client.changes_since(4, 10),
        Err(ApiError::Gone(_))
    ));

    // A deletion older than what is kept is pruned at the next write: older tokens are gone.
    db.raw()
        .batch_execute("UPDATE tombstone SET deleted_at = '2000-01-01T00:00:00.000Z'")
        .unwrap();
    add(&mut client, customer(3, "", ""));
    assert!(matches!(
        client.changes_since(2, 10),
        Err(ApiError::Gone(_))
    ));
    assert_eq!(client.changes_since(3, 10).unwrap().next, 4);
    assert_eq!(client.changes_since(0, 10).unwrap().customers.len(), 2);
}

#[test]
fn sessions_beyond_the_cap_end_the_oldest_and_a_new_password_ends_them_all() {
    let Some(db) =
        TestDb::new("sessions_beyond_the_cap_end_the_oldest_and_a_new_password_ends_them_all")
    else {
        return;
    };
    let mut client = db.client();
    client
        .insert(
            customer(1, "a@shop.be", "a"),
            every_field(),
            Some("$argon2id$one".into()),
            "t",
            RETENTION,
        )
        .unwrap();
    let digests: Vec<Vec<u8>> = (0u8..5).map(|n| vec![n; 32]).collect();
    for digest in &digests {
        let expires = client.open_session(digest, 1, 30, 3).unwrap();
        assert!(expires.len() == 20 && expires.ends_with('Z'), "{expires}");
        std::thread::sleep(Duration::from_millis(3));
    }
    let live: Vec<bool> = digests
        .iter()
        .map(|d| client.session(d).unwrap().is_some())
        .collect();
    assert_eq!(live, [false, false, true, true, true]);
    assert_eq!(
        client.session(&digests[4]).unwrap(),
        Some((digests[4].clone(), 1))
    );

    // The same password re-hashed keeps them; a new one ends them.
    assert!(client
        .replace_hash(1, "$argon2id$one", "$argon2id$two")
        .unwrap());
    assert!(!client
        .replace_hash(1, "$argon2id$one", "$argon2id$three")
        .unwrap());
    assert!(client.session(&digests[4]).unwrap().is_some());
    assert!(client.end_session(&digests[4]).unwrap());
    assert!(!client.end_session(&digests[4]).unwrap());
    assert!(client
        .set_password(1, "$argon2id$new", "t", Action::PasswordReset, RETENTION)
        .unwrap());
    assert!(client.session(&digests[3]).unwrap().is_none());

    // Expired sessions are not live, and the next login sweeps them.
    client.open_session(&[9; 32], 1, 30, 3).unwrap();
    let mut raw = db.raw();
    raw.batch_execute("UPDATE session SET expires = '2000-01-01T00:00:00Z'")
        .unwrap();
    assert!(client.session(&[9; 32]).unwrap().is_none());
    client.open_session(&[8; 32], 1, 30, 3).unwrap();
    let left: i64 = raw
        .query_one("SELECT count(*) FROM session", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}

#[test]
fn twelve_concurrent_spends_of_one_reset_token_let_exactly_one_through() {
    let Some(db) =
        TestDb::new("twelve_concurrent_spends_of_one_reset_token_let_exactly_one_through")
    else {
        return;
    };
    let mut client = db.client();
    add(&mut client, customer(4, "r@shop.be", "r"));
    let token = [7u8; 32];
    let expires = client.store_reset(&token, 4, 60, "key", RETENTION).unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
    assert_eq!(client.reset_holder(&token).unwrap(), Some(4));
    assert_eq!(client.reset_holder(&[6u8; 32]).unwrap(), None);

    let start = Arc::new(Barrier::new(12));
    // Half on this node (connections of their own: the pool is smaller than twelve), half
    // on others.
    let threads: Vec<_> = (0..12)
        .map(|n| {
            let pg = if n % 2 == 0 {
                db.pg().clone()
            } else {
                Pg::open(&db.url, &hasher()).unwrap().0
            };
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut client = pg.dedicated().unwrap();
                start.wait();
                client
                    .spend_reset(&token, &format!("$argon2id$by{n}"), "public", RETENTION)
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<Option<i64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Some(4)).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 11);
    assert_eq!(client.reset_holder(&token).unwrap(), None);
    let resets = client
        .audit(crate::audit::Kind::Writes, Some(4), None, 10)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "password-reset")
        .count();
    assert_eq!(resets, 1);

    // A newer token ends the older one.
    client
        .store_reset(&[1; 32], 4, 60, "key", RETENTION)
        .unwrap();
    client
        .store_reset(&[2; 32], 4, 60, "key", RETENTION)
        .unwrap();
    assert_eq!(client.reset_holder(&[1; 32]).unwrap(), None);
    assert_eq!(client.reset_holder(&[2; 32]).unwrap(), Some(4));
}

#[test]
fn keys_are_created_once_listed_oldest_first_and_revoked() {
    let Some(db) = TestDb::new("keys_are_created_once_listed_oldest_first_and_revoked") else {
        return;
    };
    let mut client = db.client();
    let forwarding = KeyOptions {
        forwards_client_address: true,
    };
    assert!(client
        .create_key("shop", &[1; 32], Scope::Write, forwarding)
        .unwrap());
    assert!(!client
        .create_key("shop", &[2; 32], Scope::Read, KeyOptions::default())
        .unwrap());
    assert!(client
        .create_key("Browser", &[3; 32], Scope::Public, KeyOptions::default())
        .unwrap());
    assert_eq!(client.key_count().unwrap(), 2);
    let listed = client.keys().unwrap();
    // Same second: by name, byte order ("B" before "s").
    assert_eq!(
        listed.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["Browser", "shop"]
    );
    assert!(listed[0].created_at.len() == 20 && listed[0].created_at.ends_with('Z'));
    assert_eq!(
        (listed[1].scope, listed[1].forwards_client_address),
        (Scope::Write, true)
    );
    let stored = client.stored_keys().unwrap();
    let shop = stored.iter().find(|k| k.name == "shop").unwrap();
    assert_eq!(
        (shop.digest.clone(), shop.scope),
        (vec![1; 32], Scope::Write)
    );
    assert!(client.revoke_key("shop").unwrap());
    assert!(!client.revoke_key("shop").unwrap());
    assert_eq!(client.key_count().unwrap(), 1);
}

#[test]
fn login_limits_are_shared_by_every_node() {
    let Some(db) = TestDb::new("login_limits_are_shared_by_every_node") else {
        return;
    };
    let (other, _) = Pg::open(&db.url, &hasher()).unwrap();
    let mut a = db.client();
    let mut b = other.connection().unwrap();
    let window = Duration::from_secs(60);
    let subjects = ["email:jo@shop.be", "ip:192.0.2.1"];
    a.limit_begin(&subjects, 3, window).unwrap().unwrap();
    b.limit_begin(&subjects, 3, window).unwrap().unwrap();
    let third = a.limit_begin(&subjects[..1], 3, window).unwrap().unwrap();
    let wait = b.limit_begin(&subjects, 3, window).unwrap().unwrap_err();
    assert!((59..=60).contains(&wait), "{wait}");
    // The refused attempt counted against nobody: the address alone still has one left.
    let fourth = b.limit_begin(&subjects[1..], 3, window).unwrap().unwrap();
    assert!(a.limit_begin(&subjects[1..], 3, window).unwrap().is_err());
    // A refund gives one back; a success forgives the account, not the address.
    a.limit_refund(fourth).unwrap();
    let fifth = b.limit_begin(&subjects[1..], 3, window).unwrap().unwrap();
    assert!(a.limit_begin(&subjects[1..], 3, window).unwrap().is_err());
    b.limit_succeeded(third, subjects[0]).unwrap();
    b.limit_begin(&subjects[..1], 3, window).unwrap().unwrap();
    assert!(a.limit_begin(&subjects[1..], 3, window).unwrap().is_err());
    b.limit_refund(fifth).unwrap();

    // A burst on several connections at once cannot slip past the check.
    let start = Arc::new(Barrier::new(10));
    let threads: Vec<_> = (0..10)
        .map(|n| {
            let pg = if n % 2 == 0 {
                db.pg().clone()
            } else {
                other.clone()
            };
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut client = pg.dedicated().unwrap();
                start.wait();
                client
                    .limit_begin(&["login:burst"], 4, window)
                    .unwrap()
                    .is_ok()
            })
        })
        .collect();
    let passed = threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .filter(|ok| *ok)
        .count();
    assert_eq!(passed, 4);

    // Only digests are stored; a short window lets attempts out again.
    let mut raw = db.raw();
    let plain: i64 = raw
        .query_one(
            "SELECT count(*) FROM login_failure WHERE position('jo@shop.be'::bytea IN subject) > 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(plain, 0);
    let short = Duration::from_millis(300);
    a.limit_begin(&["login:short"], 1, short).unwrap().unwrap();
    assert_eq!(a.limit_begin(&["login:short"], 1, short).unwrap(), Err(1));
    std::thread::sleep(Duration::from_millis(350));
    assert!(a.limit_begin(&["login:short"], 1, short).unwrap().is_ok());
}

#[test]
fn a_commit_through_one_node_moves_every_nodes_generation() {
    let Some(db) = TestDb::new("a_commit_through_one_node_moves_every_nodes_generation") else {
        return;
    };
    let (other, report) = Pg::open(&db.url, &hasher()).unwrap();
    assert!(!report.created && !other.created() && db.pg().created());
    let before_here = db.pg().generation().expect("watching");
    let before_there = other.generation().expect("watching");
    let mut client = db.client();
    add(&mut client, customer(1, "", ""));
    // This node sees its own commit at once.
    assert_ne!(db.pg().generation(), Some(before_here));
    // The other hears of it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while other.generation() == Some(before_there) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(other.generation(), Some(before_there));
    assert!(other.generation().is_some());

    // A program writing behind clientele's back is heard too (a key, by trigger).
    let before = other.generation();
    db.raw()
        .batch_execute(&format!(
            "INSERT INTO api_key (name, digest) VALUES ('raw', '\\x{}')",
            "ab".repeat(32)
        ))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while other.generation() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_ne!(other.generation(), before);
}

#[test]
fn connections_cut_by_the_server_are_replaced_and_the_watch_comes_back() {
    let Some(db) =
        TestDb::new("connections_cut_by_the_server_are_replaced_and_the_watch_comes_back")
    else {
        return;
    };
    {
        let mut clients: Vec<PooledClient> = (0..3).map(|_| db.client()).collect();
        for client in &mut clients {
            client.ping().unwrap();
        }
    }
    let before = db.pg().generation().expect("watching");
    // What a restart or a failover does to every connection.
    let mut admin = admin(&db.server);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // Every pooled connection was cut: the next requests still get working ones.
    for _ in 0..4 {
        let mut client = db.client();
        assert_eq!(client.customer_count().unwrap(), 0);
    }
    // The watch noticed, and is back with a new generation.
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.pg().generation().is_none_or(|g| g == before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = db.pg().generation();
    assert!(after.is_some_and(|g| g != before), "{before} -> {after:?}");
}

#[test]
fn errors_map_to_503_when_the_database_is_unavailable_and_500_otherwise() {
    let Some(db) =
        TestDb::new("errors_map_to_503_when_the_database_is_unavailable_and_500_otherwise")
    else {
        return;
    };
    let mut raw = db.raw();
    let read_only = raw
        .batch_execute("BEGIN READ ONLY; INSERT INTO demo_customer VALUES (1)")
        .unwrap_err();
    assert_eq!(
        api_error(read_only).status(),
        rocket::http::Status::ServiceUnavailable
    );
    raw.batch_execute("ROLLBACK").unwrap();
    let bug = raw
        .batch_execute("SELECT no_such_column FROM customer")
        .unwrap_err();
    let error = api_error(bug);
    assert_eq!(error.status(), rocket::http::Status::InternalServerError);
    let Err(refused) = postgres::Client::connect("postgres://u:p@127.0.0.1:1/x", NoTls) else {
        panic!("nothing listens on port 1");
    };
    assert_eq!(
        api_error(refused).status(),
        rocket::http::Status::ServiceUnavailable
    );
}

#[test]
fn a_database_holding_other_tables_is_refused_untouched() {
    let Some(db) = TestDb::empty("a_database_holding_other_tables_is_refused_untouched") else {
        return;
    };
    db.raw()
        .batch_execute("CREATE TABLE invoices (id int); CREATE TABLE orders (id int)")
        .unwrap();
    let Err(error) = Pg::open(&db.url, &hasher()) else {
        panic!("another application's database must be refused");
    };
    let text = error.to_string();
    assert!(text.contains("invoices, orders"), "{text}");
    assert!(text.contains(&redact_url(db.url.expose())), "{text}");
    if let Ok(config) = db.url.expose().parse::<postgres::Config>() {
        if let Some(password) = config.get_password() {
            assert!(
                !text.contains(std::str::from_utf8(password).unwrap()),
                "{text}"
            );
        }
    }
    let tables: i64 = db
        .raw()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 2);
}

#[test]
fn nodes_starting_together_create_the_schema_once_and_hash_legacy_passwords() {
    let Some(db) =
        TestDb::empty("nodes_starting_together_create_the_schema_once_and_hash_legacy_passwords")
    else {
        return;
    };
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                Pg::open(&url, &hasher()).map(|(_, report)| report.created)
            })
        })
        .collect();
    let created: Vec<bool> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");

    // A plain-text password left by another program is hashed at the next start.
    let mut raw = db.raw();
    raw.batch_execute(
        "INSERT INTO customer (clcleunik, password_hash) VALUES (1, 'plain'), (2, ''), \
         (3, '$2y$10$abcdefghijklmnopqrstuuNVGBGl0Wc0kCzUUG/ORg8m6qkzWbtHi')",
    )
    .unwrap();
    let (_, report) = Pg::open(&db.url, &hasher()).unwrap();
    assert_eq!((report.created, report.passwords_hashed), (false, 2));
    let stored: Vec<Option<String>> = raw
        .query("SELECT password_hash FROM customer ORDER BY clcleunik", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(stored[0]
        .as_deref()
        .is_some_and(|h| h.starts_with("$argon2id$")));
    assert_eq!(stored[1], None);
    assert!(stored[2].as_deref().is_some_and(|h| h.starts_with("$2y$")));
}

#[test]
fn work_runs_off_the_async_workers_and_connections_may_be_dropped_on_them() {
    let Some(db) =
        TestDb::new("work_runs_off_the_async_workers_and_connections_may_be_dropped_on_them")
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = db.pg().clone();
    let (count, demo) = runtime.block_on(async move {
        let count = pg.run(|backend| backend.customer_count()).await.unwrap();
        let demo = pg.run(|backend| backend.demo_left()).await.unwrap();
        // A dedicated connection, used off the runtime, then dropped on a worker.
        let mut dedicated = pg.dedicated().unwrap();
        let dedicated = tokio::task::spawn_blocking(move || {
            dedicated.ping().unwrap();
            dedicated
        })
        .await
        .unwrap();
        drop(dedicated);
        pg.check_health().await.unwrap();
        (count, demo)
    });
    assert_eq!((count, demo), (0, 0));
    // Opening from async code works too.
    let url = db.url.clone();
    let opened =
        runtime.block_on(async move { Pg::open(&url, &hasher()).map(|(pg, _)| pg.describe()) });
    assert_eq!(opened.unwrap(), redact_url(db.url.expose()));
}

#[test]
fn demo_customers_stay_demo_when_changed_and_are_forgotten_by_a_delete() {
    let Some(db) =
        TestDb::new("demo_customers_stay_demo_when_changed_and_are_forgotten_by_a_delete")
    else {
        return;
    };
    let mut client = db.client();
    for id in 1..=3 {
        add(&mut client, customer(id, "", ""));
    }
    db.raw()
        .batch_execute("INSERT INTO demo_customer SELECT clcleunik FROM customer")
        .unwrap();
    assert_eq!(client.demo_left().unwrap(), 3);
    let change = Customer {
        city: "Brugge".into(),
        ..Customer::default()
    };
    let mut present = FieldSet::default();
    present.insert(Field::City);
    client.update(1, &change, present, "t", RETENTION).unwrap();
    client.delete(2, "t", RETENTION).unwrap();
    // Changed, customer 1 is still a demo customer (the first import removes it); deleted,
    // customer 2 is forgotten.
    assert_eq!(client.demo_left().unwrap(), 2);
    assert_eq!(client.slowest_hash().unwrap(), None);
    client
        .set_password(3, "$2y$12$abc", "t", Action::PasswordReset, RETENTION)
        .unwrap();
    client
        .insert(
            customer(4, "", ""),
            every_field(),
            Some("$2b$10$x".into()),
            "t",
            RETENTION,
        )
        .unwrap();
    assert_eq!(
        client.slowest_hash().unwrap().as_deref(),
        Some("$2y$12$abc")
    );
}

/// Everything a client can see of a store after the same writes, as text: list bodies for
/// several filters, the changes feed, logins, keys, the audit trail (without times),
/// sessions and reset tokens.
fn observe(store: &crate::store::Store) -> Vec<String> {
    let mut conn = store.connection().expect("a connection");
    let backend: &mut dyn Backend = &mut *conn;
    let retention = RETENTION;
    let mut seen = Vec::new();

    // Writes.
    for (id, email, login) in [
        (3, "Zoe@Shop.be", "zoe"),
        (1, "ann@shop.be", "ann"),
        (2, "bob@shop.be", "Bob"),
        (0, "new@shop.be", "new"),
    ] {
        let mut c = customer(id, email, login);
        c.web_remise = 100.0 / 3.0;
        c.notification_accepted = id % 2 == 1;
        let stored = backend
            .insert(
                c,
                every_field(),
                Some(format!("$argon2id$h{id}")),
                "key-a",
                retention,
            )
            .expect("insert");
        seen.push(format!("inserted {}", stored.clcleunik));
    }
    seen.push(format!(
        "{:?}",
        backend
            .insert(
                customer(9, "ANN@shop.be", "x"),
                every_field(),
                None,
                "k",
                retention
            )
            .map(|c| c.clcleunik)
            .map_err(|e| e.to_string())
    ));
    let change = Customer {
        city: "Gent".into(),
        phone: "+32 9".into(),
        ..Customer::default()
    };
    let mut present = FieldSet::default();
    present.insert(Field::City);
    present.insert(Field::Phone);
    let updated = backend
        .update(2, &change, present, "key-b", retention)
        .unwrap();
    seen.push(format!("{updated:?}"));
    backend.delete(3, "key-b", retention).unwrap();
    seen.push(format!(
        "{:?}",
        backend.set_password(1, "$argon2id$new", "cli", Action::PasswordReset, retention)
    ));

    // Reads.
    for query in [
        "",
        "email=ANN%40SHOP.BE",
        "login=bob",
        "login=Bob",
        "limit=1&offset=1",
        "after=1",
        "id=2",
        "id=3",
    ] {
        let filter = filter(query);
        for view in [
            View::default(),
            View {
                redaction: Redaction::from_names(&["phone", "notification_accepted"]).unwrap(),
                string_ids: true,
            },
        ] {
            let (body, total) = backend.list_json(&filter, view, None).unwrap();
            seen.push(format!(
                "{query} {total} {}",
                String::from_utf8(body).unwrap()
            ));
        }
        let page = backend.list(&filter).unwrap();
        seen.push(format!("{:?} {}", ids(&page), page.total));
    }
    let page = backend.changes_since(0, 100).unwrap();
    seen.push(format!(
        "changes {:?} {:?} {}",
        page.customers
            .iter()
            .map(|c| c.clcleunik)
            .collect::<Vec<_>>(),
        page.deleted,
        page.next
    ));
    let page = backend.changes_since(2, 2).unwrap();
    seen.push(format!(
        "changes {:?} {:?} {}",
        page.customers
            .iter()
            .map(|c| c.clcleunik)
            .collect::<Vec<_>>(),
        page.deleted,
        page.next
    ));
    seen.push(format!(
        "{:?}",
        backend
            .changes_since(99, 1)
            .map(|p| p.next)
            .map_err(|e| e.to_string())
    ));
    for who in [
        Identifier::Email("ANN@SHOP.BE".into()),
        Identifier::Login("bob".into()),
        Identifier::Login("Bob".into()),
        Identifier::Id(4),
    ] {
        let found = backend.find_for_login(&who).unwrap();
        seen.push(format!(
            "{who:?} {:?}",
            found.map(|(c, hash)| (c.clcleunik, hash.map(|h| h.expose().to_owned())))
        ));
    }
    seen.push(format!("count {}", backend.customer_count().unwrap()));

    // Keys, sessions, reset tokens.
    backend
        .create_key("shop", &[1; 32], Scope::Write, KeyOptions::default())
        .unwrap();
    seen.push(format!(
        "{:?}",
        backend.create_key("shop", &[2; 32], Scope::Read, KeyOptions::default())
    ));
    backend
        .create_key("Browser", &[3; 32], Scope::Public, KeyOptions::default())
        .unwrap();
    seen.push(format!(
        "{:?}",
        backend
            .keys()
            .unwrap()
            .iter()
            .map(|k| (k.name.clone(), k.scope, k.forwards_client_address))
            .collect::<Vec<_>>()
    ));
    seen.push(format!(
        "{:?} {:?}",
        backend.revoke_key("shop"),
        backend.key_count()
    ));
    for n in 0u8..4 {
        backend.open_session(&[n; 32], 2, 30, 2).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    seen.push(format!(
        "{:?}",
        (0u8..4)
            .map(|n| backend.session(&[n; 32]).unwrap().map(|(_, id)| id))
            .collect::<Vec<_>>()
    ));
    backend
        .store_reset(&[7; 32], 2, 60, "key-a", retention)
        .unwrap();
    seen.push(format!("{:?}", backend.reset_holder(&[7; 32])));
    seen.push(format!(
        "{:?}",
        backend.spend_reset(&[7; 32], "$argon2id$r", "p", retention)
    ));
    seen.push(format!(
        "{:?}",
        backend.spend_reset(&[7; 32], "$argon2id$r", "p", retention)
    ));
    seen.push(format!(
        "{:?}",
        backend.session(&[3; 32]).map(|s| s.is_some())
    ));
    seen.push(format!("{:?}", backend.slowest_hash()));
    seen.push(format!("{:?}", backend.demo_left()));
    for entry in backend
        .audit(crate::audit::Kind::Writes, None, None, 100)
        .unwrap()
    {
        seen.push(format!(
            "audit {} {} {:?} {} {}",
            entry.actor, entry.action, entry.customer, entry.fields, entry.detail
        ));
    }
    seen
}

#[test]
fn the_same_writes_give_the_same_answers_on_sqlite_and_postgresql() {
    let Some(db) = TestDb::empty("the_same_writes_give_the_same_answers_on_sqlite_and_postgresql")
    else {
        return;
    };
    let folder = tempfile::tempdir().unwrap();
    let (sqlite, _) = crate::store::Store::open(
        &crate::store::Location::File(folder.path().join("shop.db")),
        &hasher(),
    )
    .unwrap();
    let (postgres, report) =
        crate::store::Store::open(&crate::store::Location::Postgres(db.url.clone()), &hasher())
            .unwrap();
    assert!(report.created && postgres.created());
    let on_sqlite = observe(&sqlite);
    let on_postgres = observe(&postgres);
    assert!(on_sqlite.len() > 40);
    for (line, (a, b)) in on_sqlite.iter().zip(&on_postgres).enumerate() {
        assert_eq!(a, b, "line {line} differs");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
    assert_eq!(
        postgres.describe(),
        redact_url(db.url.expose()),
        "the URL is shown without its password"
    );
}

#[test]
fn a_write_kept_waiting_for_the_lock_is_a_503_and_the_connection_stays_clean() {
    let Some(db) =
        TestDb::new("a_write_kept_waiting_for_the_lock_is_a_503_and_the_connection_stays_clean")
    else {
        return;
    };
    // Another program holds the customers' write lock (a long import, say).
    let mut import = db.raw();
    import
        .batch_execute("BEGIN; SELECT seq FROM change_log WHERE id = 1 FOR UPDATE")
        .unwrap();
    let mut client = db.client();
    let started = Instant::now();
    let Err(WriteError::Db(error)) =
        client.insert(customer(1, "", ""), every_field(), None, "t", RETENTION)
    else {
        panic!("the write cannot have the lock");
    };
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        ApiError::from(error).status(),
        rocket::http::Status::ServiceUnavailable
    );
    import.batch_execute("ROLLBACK").unwrap();
    // The same connection serves on: its failed transaction was rolled back (left open, it
    // would refuse every statement until the end of the transaction: 25P02).
    add(&mut client, customer(1, "", ""));
    assert_eq!(client.customer_count().unwrap(), 1);
    drop(client);
    assert_eq!(db.client().customer_count().unwrap(), 1);
}

#[test]
fn another_programs_writes_feed_the_changes_whatever_its_search_path() {
    let Some(db) = TestDb::new("another_programs_writes_feed_the_changes_whatever_its_search_path")
    else {
        return;
    };
    let mut raw = db.raw();
    let schema: String = raw
        .query_one("SELECT current_schema()", &[])
        .unwrap()
        .get(0);
    raw.batch_execute(&format!(
        "SET search_path = pg_catalog; \
         INSERT INTO \"{schema}\".customer (clcleunik, city) VALUES (50, 'Namur'); \
         UPDATE \"{schema}\".customer SET city = 'Mons' WHERE clcleunik = 50; \
         INSERT INTO \"{schema}\".customer (clcleunik) VALUES (51); \
         DELETE FROM \"{schema}\".customer WHERE clcleunik = 51;"
    ))
    .unwrap();
    let mut client = db.client();
    let page = client.changes_since(0, 10).unwrap();
    assert_eq!(page.customers.len(), 1);
    assert_eq!(page.customers[0].city, "Mons");
    assert_eq!((page.deleted, page.next), (vec![51], 4));
    // The id high-water mark moved too: 51 is never given again.
    assert_eq!(add(&mut client, customer(0, "", "")).clcleunik, 52);
}

#[test]
fn a_statement_writing_many_customers_numbers_them_at_linear_cost_and_in_order() {
    let Some(db) =
        TestDb::new("a_statement_writing_many_customers_numbers_them_at_linear_cost_and_in_order")
    else {
        return;
    };
    let mut raw = db.raw();
    // A setting a program left in its session must not pass for this transaction's count.
    raw.batch_execute("SET clientele.change_seq = '1:1000'")
        .unwrap();
    let started = Instant::now();
    raw.batch_execute(
        "INSERT INTO customer (clcleunik, email) \
         SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 30000) g; \
         UPDATE customer SET city = 'Namur' WHERE clcleunik % 3 = 0; \
         DELETE FROM customer WHERE clcleunik > 29000;",
    )
    .unwrap();
    let took = started.elapsed();
    // Minutes before (one new version of the counter's row per customer): seconds now.
    assert!(took < Duration::from_secs(30), "{took:?}");
    let row = raw
        .query_one(
            "SELECT (SELECT seq FROM change_log), (SELECT id FROM customer_id_high), \
                    (SELECT min(change_seq) FROM customer), (SELECT max(seq) FROM tombstone), \
                    (SELECT count(DISTINCT change_seq) FROM customer)",
            &[],
        )
        .unwrap();
    let (seq, high, first, last, distinct): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    // 30,000 inserts, 10,000 updates, 1,000 deletions: one number each, from 1 on.
    assert_eq!(seq, 41_000);
    assert_eq!(last, seq, "the tombstones took the last numbers");
    assert_eq!(first, 1);
    assert_eq!(distinct, 29_000);
    assert_eq!(high, 30_000);
    // The next transaction goes on from the number written back, through the backend too.
    let mut client = db.client();
    let page = client.changes_since(seq, 10).unwrap();
    assert_eq!(page.next, seq);
    let added = add(&mut client, customer(0, "next@example.com", "next"));
    assert_eq!(added.clcleunik, 30_001);
    let page = client.changes_since(seq, 10).unwrap();
    assert_eq!(ids_of(&page.customers), vec![30_001]);
    assert_eq!(page.next, seq + 1);
}

fn ids_of(customers: &[Customer]) -> Vec<i64> {
    customers.iter().map(|c| c.clcleunik).collect()
}

/// A stand-in for the mirror's keyed digests.
struct TestDigests;

impl crate::transfer::KnownPasswords for TestDigests {
    fn digest(&self, id: i64, password: &Secret) -> [u8; 32] {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(id.to_be_bytes());
        digest.update(password.expose().as_bytes());
        digest.finalize().into()
    }
}

/// Everything an import shows and leaves behind, as text, after the same imports: their
/// summaries and errors, the list, the changes feed, which hashes are stored, the demo
/// customers left, the audit trail (without times).
fn observe_imports(store: &crate::store::Store, mark_demo: &dyn Fn()) -> Vec<String> {
    use crate::transfer::{import, read::json_records, Options, Silent};
    let mut conn = store.connection().expect("a connection");
    let backend: &mut dyn Backend = &mut *conn;
    let hasher = hasher();
    let audit = Some(("cli", Action::Import, RETENTION));
    let mut seen = Vec::new();
    let run = |backend: &mut dyn Backend, text: &str, options: Options<'_>| {
        // Read as `clientele import` reads a file: a customer at a time, each bad value its
        // own error.
        let bytes = text.as_bytes().to_vec();
        let open = || Ok(json_records(std::io::Cursor::new(bytes.clone())));
        let outcome = import(backend, open, &hasher, options, &Silent).map_err(|e| match e {
            crate::transfer::ImportError::Records(errors) => format!("{errors:?}"),
            other => other.to_string(),
        });
        let mut lines = vec![format!("{outcome:?}")];
        let (body, total) = backend
            .list_json(&ListFilter::default(), View::default(), None)
            .unwrap();
        lines.push(format!("{total} {}", String::from_utf8(body).unwrap()));
        let page = backend.changes_since(0, 1000).map_err(|e| e.to_string());
        lines.push(format!("{page:?}"));
        for id in 1..=13 {
            let hash = backend
                .find_for_login(&crate::customer::Identifier::Id(id))
                .unwrap()
                .map(|(_, hash)| hash.map(|h| h.expose().chars().take(9).collect::<String>()));
            lines.push(format!("{id}: {hash:?}"));
        }
        lines.push(format!("demo {}", backend.demo_left().unwrap()));
        lines
    };
    let passwords = |ids: &[i64], prefix: &str| {
        let customers: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(
                    r#"{{"clcleunik":{id},"email":"c{id}@shop.be","city":"Namur","webRemise":"12,5","password":"{prefix}-{id}"}}"#
                )
            })
            .collect();
        format!("[{}]", customers.join(",\n"))
    };
    // The seeding's way: no audit row; then marked as demo customers.
    seen.extend(run(
        backend,
        &passwords(&[1, 2, 3, 4, 5], "demo"),
        Options::default(),
    ));
    mark_demo();
    // The shop's first import: the demo customers go first, a hash and an empty password
    // are stored as they are, plain text is hashed.
    let first = r#"[{"clcleunik":3,"email":"three@shop.be","password":"three-pw"},
        {"clcleunik":10,"email":"ten@shop.be","password":"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA"},
        {"clcleunik":11,"login":"eleven","password":""},
        {"clcleunik":12,"lastName":"Twelve"}]"#;
    let options = Options {
        audit,
        ..Options::default()
    };
    seen.extend(run(backend, first, options));
    // The same file again changes nothing (the plain password matches its hash).
    seen.extend(run(backend, first, options));
    // Two columns of a sheet change only those; --replace deletes the others, dry or not.
    let sheet = r#"[{"clcleunik":10,"city":"Gent"},{"clcleunik":13,"email":"13@shop.be"}]"#;
    let replace = Options {
        replace: true,
        audit,
        ..Options::default()
    };
    seen.extend(run(
        backend,
        sheet,
        Options {
            dry_run: true,
            ..replace
        },
    ));
    seen.extend(run(backend, sheet, replace));
    // A sync's way: digests remembered, then an unchanged password costs nothing.
    let sync = Options {
        replace: true,
        allow_empty: true,
        audit: Some(("sync", Action::Sync, RETENTION)),
        known: Some(&TestDigests),
        ..Options::default()
    };
    seen.extend(run(backend, &passwords(&[10, 13], "erp"), sync));
    seen.extend(run(backend, &passwords(&[10, 13], "erp"), sync));
    let mut changed = passwords(&[10, 13], "erp");
    changed = changed.replace("erp-13", "new-13");
    seen.extend(run(backend, &changed, sync));
    // Bad rows: every one reported, nothing written.
    let bad = r#"[{"clcleunik":10,"city":"X"},
        {"clcleunik":2,"addedDate":"2024-13-01"},
        {"clcleunik":10,"city":"Y"},
        {"clcleunik":"x"}]"#;
    seen.extend(run(backend, bad, replace));
    // An empty file with --replace is refused unless allowed.
    seen.extend(run(backend, "[]", replace));
    for entry in backend
        .audit(crate::audit::Kind::Writes, None, None, 100)
        .unwrap()
    {
        seen.push(format!(
            "audit {} {} {:?} {} {}",
            entry.actor, entry.action, entry.customer, entry.fields, entry.detail
        ));
    }
    seen
}

#[test]
fn the_same_imports_give_the_same_answers_on_sqlite_and_postgresql() {
    let Some(db) = TestDb::empty("the_same_imports_give_the_same_answers_on_sqlite_and_postgresql")
    else {
        return;
    };
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("shop.db");
    let (sqlite, _) =
        crate::store::Store::open(&crate::store::Location::File(file.clone()), &hasher()).unwrap();
    let (postgres, _) =
        crate::store::Store::open(&crate::store::Location::Postgres(db.url.clone()), &hasher())
            .unwrap();
    let on_sqlite = observe_imports(&sqlite, &|| {
        let conn = rusqlite::Connection::open(&file).unwrap();
        crate::store::sqlite::import::mark_all_as_demo(&conn).unwrap();
    });
    let on_postgres = observe_imports(&postgres, &|| {
        db.raw()
            .batch_execute("INSERT INTO demo_customer SELECT clcleunik FROM customer")
            .unwrap();
    });
    assert!(on_sqlite.len() > 100);
    for (line, (a, b)) in on_sqlite.iter().zip(&on_postgres).enumerate() {
        assert_eq!(a, b, "line {line} differs");
    }
    assert_eq!(on_sqlite.len(), on_postgres.len());
    let text = on_sqlite.join("\n");
    for expected in [
        "demo_removed: 5",
        "hashed: 1, inserted: 0, updated: 0, unchanged: 4",
        "hashed: 0, inserted: 0, updated: 0, unchanged: 2",
        "addedDate",
        "10 appears twice (first on line 1)",
        "--allow-empty",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
}

#[test]
fn the_sync_leader_and_the_shared_turn_are_one_node_at_a_time_and_go_back_on_every_path() {
    let Some(db) = TestDb::new(
        "the_sync_leader_and_the_shared_turn_are_one_node_at_a_time_and_go_back_on_every_path",
    ) else {
        return;
    };
    // Two nodes of one database, each with its own handle.
    let (other, _) = Pg::open(&db.url, &hasher()).expect("a second node");
    let nodes = [db.pg().clone(), other];
    let held = |raw: &mut postgres::Client| -> i64 {
        raw.query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut raw = db.raw();

    // The leader: whoever takes it first keeps it while its session lives.
    let mut a = nodes[0].advisory_lock(locks::SYNC_LEADER);
    let mut b = nodes[1].advisory_lock(locks::SYNC_LEADER);
    assert!(a.try_hold().unwrap());
    assert!(!b.try_hold().unwrap());
    assert!(a.try_hold().unwrap(), "still held, not taken twice");
    assert_eq!(held(&mut raw), 1);
    // The leader dies (its connection closes): the other takes over at its next try.
    drop(a);
    let took_over = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        b.try_hold().unwrap()
    });
    assert!(took_over);
    // A leader whose session was ended by the server notices, and tries again afresh.
    raw.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    )
    .unwrap();
    assert!(b.try_hold().unwrap(), "reconnected and took it again");
    drop(b);

    // The turn, waited for as a future on two nodes: one at a time, and given back by an
    // ended turn, an error's early return and a panic alike.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let turns = [nodes[0].turn_lock(), nodes[1].turn_lock()];
    runtime.block_on(async {
        let first = turns[0].acquire(None).await.unwrap().expect("free");
        let waited = Instant::now();
        let none = turns[1]
            .acquire(Some(Duration::from_millis(200)))
            .await
            .unwrap();
        assert!(none.is_none(), "held by the other node");
        assert!(waited.elapsed() >= Duration::from_millis(200));
        drop(first);
        let second = turns[1]
            .acquire(Some(Duration::from_secs(5)))
            .await
            .unwrap()
            .expect("given back when dropped");
        drop(second);
        let failing = turns[0].clone();
        let result: std::result::Result<(), Error> = async move {
            let _turn = failing.acquire(None).await?.expect("free");
            Err(Error::Data("a failure while holding the turn".into()))
        }
        .await;
        assert!(result.is_err());
        let panicking = turns[0].clone();
        let task = tokio::spawn(async move {
            let _turn = panicking.acquire(None).await.unwrap();
            panic!("a bug while holding the turn");
        });
        assert!(task.await.unwrap_err().is_panic());
        let after = turns[1]
            .acquire(Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(after.is_some(), "given back after an error and a panic");
    });
    // No pooled connection was used or kept holding anything.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(held(&mut raw), 0);
}
