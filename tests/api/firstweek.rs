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
    for secret in secrets {
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
