//! The compiled binary, driven over a real TCP socket.

use crate::helpers::*;

#[test]
fn the_binary_serves_the_list_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.db");
    let server = Server::start(&db, &[]);

    let reply = server.get("/CUSTOMER/LIST/?id_client=1");
    let all = server.get("/customer/list");

    assert_eq!(reply.status, 200, "{}", server.log());
    assert_json_content_type(&reply);
    assert_eq!(reply.ids(), vec![1]);
    assert_eq!(reply.customers()[0]["email"], "jdoe@example.com");
    assert_eq!(all.customers().len(), demo_customers().len());
    let head = server.request("HEAD", "/CUSTOMER/LIST/", &[], "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn malformed_requests_get_the_json_envelope_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("m.db"), &[]);

    let bad_uri = server.get("/CUSTOMER/LIST/?id_client=%zz");
    let post = server.request(
        "POST",
        "/CUSTOMER/LIST/",
        &[("Content-Type", "application/json")],
        "{}",
    );

    assert_eq!(bad_uri.status, 400, "{}", bad_uri.body);
    assert_json_content_type(&bad_uri);
    assert_eq!(bad_uri.json()["success"], "false");
    post.assert_error(405);
    assert_eq!(
        server.get("/health").status,
        200,
        "the server still answers"
    );
}

#[test]
fn version_and_help_describe_the_tool() {
    let version = binary().arg("--version").output().unwrap();
    let help = binary().arg("--help").output().unwrap();

    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("serve"));
}

#[test]
fn a_bad_config_exits_non_zero_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();

    let output = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            crate::helpers::resolve(&dir.path().join("x.db"), crate::helpers::Start::Empty),
        )
        .env("ROCKET_REDACT", "[\"phone\", \"nope\"]")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`nope`"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
