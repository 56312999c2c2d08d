//! `GET /CUSTOMER/CHANGES/`: a back office polling with `next` sees every change once.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::tools::run;

struct Poll {
    customers: Vec<serde_json::Map<String, Value>>,
    deleted: Vec<i64>,
    next: String,
}

fn poll(app: &TestApp, since: &str, limit: Option<u32>) -> Poll {
    let limit = limit.map_or(String::new(), |l| format!("&limit={l}"));
    let reply = app.get(&format!("/CUSTOMER/CHANGES/?since={since}{limit}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["success"], "true");
    assert_eq!(json["message"], "Changes");
    Poll {
        customers: reply.customers(),
        deleted: json["result"]["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .collect(),
        next: json["result"]["next"]
            .as_str()
            .expect("next is a string")
            .to_owned(),
    }
}

fn ids(poll: &Poll) -> Vec<i64> {
    poll.customers
        .iter()
        .map(|c| c["clcleunik"].as_i64().unwrap())
        .collect()
}

#[test]
fn one_poll_returns_exactly_what_changed_whoever_changed_it() {
    let app = spawn_app();
    let everything = poll(&app, "0", None);
    assert_eq!(everything.customers.len(), demo_customers().len());
    let token = everything.next;

    app.send(
        "POST",
        "/CUSTOMER/UPDATE/",
        &json!({"id_client": 3, "city": "Mons"}),
    );
    let added = app.send("POST", "/CUSTOMER/ADD/", &json!({"email": "feed@shop.be"}));
    app.send("DELETE", "/CUSTOMER/DELETE/?id_client=4", &json!({}));
    let import = run(&app.db, &["import", "-"], "clcleunik,city\n7,Gent\n");
    assert!(import.status.success());
    // A password alone is not part of what the feed reports.
    app.sql("UPDATE customer SET password_hash = NULL WHERE clcleunik = 9");

    let changes = poll(&app, &token, None);
    let again = poll(&app, &changes.next, None);

    let new_id = added.customers()[0]["clcleunik"].as_i64().unwrap();
    assert_eq!(ids(&changes), vec![3, new_id, 7], "in change order");
    assert_eq!(changes.deleted, vec![4]);
    assert_eq!(changes.customers[0]["city"], "Mons", "current state");
    assert_eq!(changes.customers[2]["city"], "Gent");
    assert!(changes
        .customers
        .iter()
        .all(|c| !c.contains_key("password")));
    assert!(again.customers.is_empty() && again.deleted.is_empty());
    assert_eq!(again.next, changes.next);
}

#[test]
fn paging_with_limit_2_visits_every_change_once() {
    let app = spawn_app();
    let start = poll(&app, "0", None).next;
    // Another process: one statement per change, as rows come and go one at a time.
    let mut sql = String::new();
    for id in 1000..1300 {
        sql.push_str(&format!(
            "INSERT INTO customer (clcleunik, lastName) VALUES ({id}, 'x');"
        ));
    }
    for id in 1000..1100 {
        sql.push_str(&format!(
            "UPDATE customer SET city = 'y' WHERE clcleunik = {id};"
        ));
    }
    sql.push_str("DELETE FROM customer WHERE clcleunik >= 1250;");
    app.sql(&sql);

    let mut seen = Vec::new();
    let mut deleted = Vec::new();
    let mut token = start;
    loop {
        let page = poll(&app, &token, Some(2));
        if page.customers.is_empty() && page.deleted.is_empty() {
            break;
        }
        assert!(page.customers.len() + page.deleted.len() <= 2);
        seen.extend(ids(&page));
        deleted.extend(page.deleted);
        token = page.next;
    }

    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no customer twice");
    assert_eq!(unique, (1000..1250).collect::<Vec<_>>());
    assert_eq!(deleted, (1250..1300).collect::<Vec<_>>());
}

#[test]
fn a_copy_kept_by_polling_during_concurrent_writes_ends_equal_to_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feed.db");
    let server = Server::start(&db, &[]);
    let port = server.port;
    // One writer, so what each write should answer is known: an id that exists is a 409 to
    // ADD and a 200 to UPDATE and DELETE; one that does not, a 201 and two 404s.
    let writer = std::thread::spawn(move || {
        let mut exists = std::collections::BTreeSet::new();
        let mut succeeded = 0;
        for n in 0..150 {
            let id = 2000 + n % 40;
            let body = json!({"clcleunik": id, "email": format!("w{n}@x.be")}).to_string();
            let headers = [("Content-Type", "application/json")];
            let (reply, expected) = match n % 3 {
                0 => (
                    http(port, "POST", "/CUSTOMER/ADD/", &headers, &body),
                    if exists.insert(id) { 201 } else { 409 },
                ),
                1 => {
                    let body = json!({"id_client": id, "city": format!("c{n}")}).to_string();
                    (
                        http(port, "POST", "/CUSTOMER/UPDATE/", &headers, &body),
                        if exists.contains(&id) { 200 } else { 404 },
                    )
                }
                _ => (
                    http(
                        port,
                        "DELETE",
                        &format!("/CUSTOMER/DELETE/?id_client={id}"),
                        &[],
                        "",
                    ),
                    if exists.remove(&id) { 200 } else { 404 },
                ),
            };
            assert_eq!(reply.status, expected, "write {n} on {id}: {}", reply.body);
            if reply.status < 300 {
                succeeded += 1;
            }
        }
        (succeeded, exists)
    });

    let mut copy: BTreeMap<i64, Value> = BTreeMap::new();
    let mut token = "0".to_owned();
    let mut finished = false;
    loop {
        let reply = server.get(&format!("/CUSTOMER/CHANGES/?since={token}&limit=7"));
        let json = reply.json();
        let result = &json["result"];
        for customer in result["customer"].as_array().unwrap() {
            copy.insert(customer["clcleunik"].as_i64().unwrap(), customer.clone());
        }
        for id in result["deleted"].as_array().unwrap() {
            copy.remove(&id.as_i64().unwrap());
        }
        let empty = result["customer"].as_array().unwrap().is_empty()
            && result["deleted"].as_array().unwrap().is_empty();
        token = result["next"].as_str().unwrap().to_owned();
        if finished && empty {
            break;
        }
        finished = writer.is_finished();
    }
    let (succeeded, exists) = writer.join().unwrap();

    let list = server.get("/CUSTOMER/LIST/").json();
    let expected: BTreeMap<i64, Value> = list["result"]["customer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["clcleunik"].as_i64().unwrap(), c.clone()))
        .collect();
    assert_eq!(copy, expected);
    assert!(succeeded >= 50, "only {succeeded} writes succeeded");
    let written: Vec<i64> = copy.keys().copied().filter(|id| *id >= 2000).collect();
    assert_eq!(written, exists.into_iter().collect::<Vec<_>>());
}

#[test]
fn a_malformed_token_is_a_400_and_an_expired_one_a_410() {
    let app = spawn_app();
    let token = poll(&app, "0", None).next;
    app.send("DELETE", "/CUSTOMER/DELETE/?id_client=5", &json!({}));
    // That deletion is older than what is kept (90 days): the next write prunes it.
    app.sql("UPDATE tombstone SET deleted_at = '2000-01-01T00:00:00.000Z'");
    app.send(
        "POST",
        "/CUSTOMER/UPDATE/",
        &json!({"id_client": 6, "city": "x"}),
    );

    let malformed = app.get("/CUSTOMER/CHANGES/?since=abc");
    let negative = app.get("/CUSTOMER/CHANGES/?since=-4");
    let expired = app.get(&format!("/CUSTOMER/CHANGES/?since={token}"));
    let future = app.get("/CUSTOMER/CHANGES/?since=999999999");
    let bad_limit = app.get("/CUSTOMER/CHANGES/?limit=0");

    assert!(malformed.assert_error(400).contains("since"));
    assert!(negative.assert_error(400).contains("since"));
    assert!(expired.assert_error(410).contains("since=0"));
    assert!(future.assert_error(410).contains("since=0"));
    assert!(bad_limit.assert_error(400).contains("limit"));
    assert_eq!(
        poll(&app, "0", None).customers.len(),
        demo_customers().len() - 1
    );
}

#[test]
fn the_feed_keeps_the_redaction_string_ids_and_the_key() {
    let app = spawn_app_with(|f| {
        f.merge(("redact", ["phone"]))
            .merge(("clcleunik_type", "string"))
    });
    let key = create_key(&app.db, "backoffice");

    let without = app.get("/CUSTOMER/CHANGES/");
    let with = app.get(&format!("/customer/changes?apikey={key}&limit=1"));

    without.assert_error(401);
    let customer = &with.customers()[0];
    assert_eq!(customer["clcleunik"], "1");
    assert!(!customer.contains_key("phone"));
    assert_eq!(with.json()["result"]["next"], "1");

    // Deleted ids come in clcleunik's type, so that a copy kept by id finds them.
    let since = app
        .get(&format!("/CUSTOMER/CHANGES/?apikey={key}&limit=10000"))
        .json()["result"]["next"]
        .clone();
    app.sql("DELETE FROM customer WHERE clcleunik = 7");
    let after = app.get(&format!(
        "/CUSTOMER/CHANGES/?apikey={key}&since={}",
        since.as_str().unwrap()
    ));
    assert_eq!(
        after.json()["result"]["deleted"],
        json!(["7"]),
        "{}",
        after.body
    );
}
