//! The server's log: every line starts with its UTC time; `log_format = "json"` writes one
//! JSON object per line for log shippers, masked like the text.

use std::time::Duration;

use crate::helpers::*;

/// Whether `text` starts with an RFC 3339 UTC time to the millisecond:
/// `2026-11-30T01:02:03.456Z`.
fn starts_with_a_utc_time(text: &str) -> bool {
    let Some(stamp) = text.get(..24) else {
        return false;
    };
    stamp.bytes().enumerate().all(|(at, byte)| match at {
        4 | 7 => byte == b'-',
        10 => byte == b'T',
        13 | 16 => byte == b':',
        19 => byte == b'.',
        23 => byte == b'Z',
        _ => byte.is_ascii_digit(),
    })
}

#[test]
fn every_log_line_starts_with_its_utc_time_and_the_launch_line_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log.db"), &[]);

    let reply = server.get("/CUSTOMER/LIST/?id_client=1&apikey=not-a-key-of-ours");
    // (The log is read from a pipe by another thread: it may lag behind the answer.)
    eventually(Duration::from_secs(5), || {
        server.log().contains("apikey=*** 200")
    });
    let log = server.stop();

    assert_eq!(reply.status, 200);
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        assert!(starts_with_a_utc_time(line), "no time first: {line:?}");
        assert_eq!(&line[24..25], " ", "{line:?}");
    }
    assert!(
        log.contains(" clientele launched from http://127.0.0.1:"),
        "{log}"
    );
    assert!(
        log.contains("GET /CUSTOMER/LIST/?id_client=1&apikey=*** 200"),
        "{log}"
    );
    assert!(!log.contains("not-a-key-of-ours"), "{log}");
}

#[test]
fn json_log_lines_are_one_object_each_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("json.db");
    let server = Server::start(&db, &[("ROCKET_LOG_FORMAT", "json")]);
    let key = create_key(&db, "shipper");

    let listed = server.get(&format!("/CUSTOMER/LIST/?id_client=1&apikey={key}"));
    let login = server.request(
        "POST",
        &format!("/CUSTOMER/LOGIN/?apikey={key}&password=hunter2"),
        &[("Content-Type", "application/json")],
        r#"{"email":"jdoe@example.com","password":"password123"}"#,
    );
    eventually(Duration::from_secs(5), || {
        server.log().contains("POST /CUSTOMER/LOGIN/")
    });
    let log = server.stop();

    assert_eq!(listed.status, 200, "{log}");
    assert_eq!(login.status, 200, "{log}");
    assert!(!log.contains(&key) && !log.contains(&key[4..12]), "{log}");
    assert!(
        !log.contains("hunter2") && !log.contains("password123"),
        "{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    for line in &lines {
        let object = line.as_object().unwrap();
        let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["level", "message", "target", "time"], "{line}");
        assert!(
            starts_with_a_utc_time(line["time"].as_str().unwrap()),
            "{line}"
        );
        assert!(
            ["error", "warn", "info", "debug", "trace"].contains(&line["level"].as_str().unwrap()),
            "{line}"
        );
    }
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let launch = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .contains("clientele launched from http://")
        })
        .expect("the launch line");
    assert_eq!(launch["level"], "info", "{launch}");
    assert!(
        messages.iter().any(
            |m| m.ends_with("GET /CUSTOMER/LIST/?id_client=1&apikey=*** 200")
                || m.contains("GET /CUSTOMER/LIST/?id_client=1&apikey=*** 200 ")
        ),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("POST /CUSTOMER/LOGIN/?apikey=***&password=*** 200")),
        "{messages:?}"
    );
}

#[test]
fn a_misspelled_log_format_stops_start_up_naming_the_setting_and_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .arg("serve")
        .env(
            "ROCKET_DATABASE",
            resolve(&dir.path().join("never.db"), Start::Empty),
        )
        .env("ROCKET_PORT", "0")
        .env("ROCKET_LOG_FORMAT", "jsn")
        .output()
        .unwrap();

    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(78), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(
        said.contains("log_format") && said.contains("\"jsn\""),
        "{said}"
    );
    assert!(
        said.contains("\"text\"") && said.contains("\"json\""),
        "{said}"
    );
    assert!(!dir.path().join("never.db").exists());
}

#[test]
fn a_refused_request_leaves_no_rocket_guard_warning_below_debug() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiet.db");
    let mut key = None;
    for level in ["critical", "normal"] {
        let server = Server::start(&db, &[("ROCKET_LOG_LEVEL", level)]);
        let key = key.get_or_insert_with(|| create_key(&db, "shop"));
        for _ in 0..3 {
            let refused = server.get("/CUSTOMER/LIST/?id_client=1&apikey=clt_not-a-key");
            assert_eq!(refused.status, 401);
        }
        let listed = server.get(&format!("/CUSTOMER/LIST/?id_client=1&apikey={key}"));
        assert_eq!(listed.status, 200);
        let log = server.stop();
        // A visitor sending bad keys must not fill the disk at the quietest level: not one
        // line per refused request, and never Rocket's routing details.
        assert!(!log.contains("Request guard"), "{level}: {log}");
        assert!(!log.contains(">>"), "{level}: {log}");
        if level == "critical" {
            assert!(!log.contains(" 401"), "{level}: {log}");
        } else {
            assert!(log.contains(" 401"), "{level}: {log}");
        }
    }
}

#[test]
fn a_request_target_of_invisible_characters_writes_them_out_and_no_error_line() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("bidi.db"), &[]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .write_all(
            "GET /x\u{202e}\u{2029}FORGED HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                .as_bytes(),
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 4"));
    let log = server.stop();
    assert!(
        !log.contains('\u{202e}') && !log.contains('\u{2029}'),
        "{log}"
    );
    // Any client may send that: at the default level it is a request line, not an error.
    assert!(!log.contains("error:"), "{log}");
    assert!(!log.contains("invalid request URI"), "{log}");
}
