//! `/openapi.json` stays true to the server, and the page at `/` says what the server is.

use std::collections::BTreeSet;

use rocket::http::{ContentType, Header};
use serde_json::{json, Value};

use crate::helpers::*;

fn document() -> Value {
    serde_json::from_str(clientele::routes::docs::OPENAPI).unwrap()
}

/// `/CUSTOMER/LIST/` and `/CUSTOMER/LIST` are one path to the server.
fn normal(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

#[test]
fn every_mounted_route_is_documented_and_everything_documented_is_mounted() {
    let app = spawn_app();
    let mounted: BTreeSet<(String, String)> = app
        .client
        .rocket()
        .routes()
        .filter(|route| route.name.as_deref() != Some("fallback"))
        .map(|route| {
            (
                route.method.as_str().to_ascii_lowercase(),
                normal(route.uri.path()),
            )
        })
        .collect();
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), normal(path)))
        })
        .collect();

    assert_eq!(mounted, documented);
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn the_customer_schema_lists_exactly_the_fields_the_view_sends() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["Customer"];
    let properties: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let fields: Vec<&str> = clientele::customer::Field::ALL
        .iter()
        .map(|f| f.name())
        .collect();

    let mut sorted = properties.clone();
    sorted.sort_unstable();
    let mut expected = fields.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"].as_array().unwrap().len(), fields.len());
    assert!(!properties.contains(&"password"));
    // And a real customer from the list has exactly those keys.
    let served = spawn_app().get("/CUSTOMER/LIST/?id_client=1").customers()[0].clone();
    let keys: Vec<&str> = served.keys().map(String::as_str).collect();
    assert_eq!(keys, expected, "(both sorted)");
}

/// The schema a documented answer must match: `(method, path, status)` in the document.
fn response_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let mut response = operation["responses"][status.to_string()].clone();
    assert!(
        !response.is_null(),
        "{method} {path} does not document {status}"
    );
    if let Some(reference) = response["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        response = doc["components"]["responses"][name].clone();
    }
    response["content"]["application/json"]["schema"].clone()
}

fn assert_documented(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let schema = response_schema(doc, method, path, reply.status);
    if schema.is_null() {
        assert!(
            reply.body.is_empty(),
            "{method} {path} {}: {}",
            reply.status,
            reply.body
        );
        return;
    }
    let mut root = schema;
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).expect("a valid schema");
    let body = reply.json();
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {}: {errors:?}\n{}",
        reply.status,
        reply.body
    );
}

#[test]
fn every_answer_of_every_endpoint_matches_the_document() {
    let app = spawn_app();
    let write = create_write_key(&app.db, "docs-writer");
    let read = create_key(&app.db, "docs-reader");
    let doc = document();
    let post = |path: &str, key: &str, body: Value| {
        Reply::from_local(
            app.client
                .post(path.to_owned())
                .header(ContentType::JSON)
                .header(Header::new("X-API-Key", key.to_owned()))
                .body(body.to_string())
                .dispatch(),
        )
    };
    let get = |path: &str, key: &str| app.get_with(path, &[("X-API-Key", key.to_owned())]);
    let list = "/CUSTOMER/LIST/";
    let strong = "lavande moulin 1987 rouge";
    let etag = get(list, &read).header("etag").unwrap().to_owned();
    let logged_in = post(
        "/CUSTOMER/LOGIN/",
        &read,
        json!({"email": "marie.dubois@example.be", "password": "Lavande!2024"}),
    );
    let token = logged_in.json()["result"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let logout = || {
        Reply::from_local(
            app.client
                .post("/CUSTOMER/LOGOUT/")
                .header(Header::new("X-API-Key", read.clone()))
                .header(Header::new("Authorization", format!("Bearer {token}")))
                .dispatch(),
        )
    };
    let cases: Vec<(&str, &str, Reply)> = vec![
        ("post", "/CUSTOMER/LOGOUT/", logout()),
        ("post", "/CUSTOMER/LOGOUT/", logout()),
        ("get", list, get(list, &read)),
        ("get", list, get("/CUSTOMER/LIST/?limit=2&offset=1", &read)),
        ("get", list, get("/CUSTOMER/LIST/?id_client=abc", &read)),
        ("get", list, get(list, "clt_wrong")),
        (
            "get",
            list,
            app.get_with(
                list,
                &[("X-API-Key", read.clone()), ("If-None-Match", etag)],
            ),
        ),
        (
            "post",
            "/CUSTOMER/LOGIN/",
            post(
                "/CUSTOMER/LOGIN/",
                &read,
                json!({"email": "jdoe@example.com", "password": "password123"}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/LOGIN/",
            post(
                "/CUSTOMER/LOGIN/",
                &read,
                json!({"email": "jdoe@example.com", "password": "nope"}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/LOGIN/",
            post(
                "/CUSTOMER/LOGIN/",
                &read,
                json!({"email": "jdoe@example.com"}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/ADD/",
            post(
                "/CUSTOMER/ADD/",
                &write,
                json!({"email": "doc@shop.be", "password": strong}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/ADD/",
            post("/CUSTOMER/ADD/", &write, json!({"email": "doc@shop.be"})),
        ),
        (
            "post",
            "/CUSTOMER/ADD/",
            post("/CUSTOMER/ADD/", &read, json!({"email": "x@shop.be"})),
        ),
        (
            "post",
            "/CUSTOMER/UPDATE/",
            post(
                "/CUSTOMER/UPDATE/",
                &write,
                json!({"id_client": "2", "city": "Gent"}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/UPDATE/",
            post(
                "/CUSTOMER/UPDATE/",
                &write,
                json!({"id_client": 999, "city": "Gent"}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/UPDATE/",
            post(
                "/CUSTOMER/UPDATE/",
                &write,
                json!({"id_client": 2, "webRemise": 300}),
            ),
        ),
        (
            "delete",
            "/CUSTOMER/DELETE/",
            Reply::from_local(
                app.client
                    .delete("/CUSTOMER/DELETE/?id_client=3")
                    .header(Header::new("X-API-Key", write.clone()))
                    .dispatch(),
            ),
        ),
        (
            "post",
            "/CUSTOMER/DELETE/",
            post("/CUSTOMER/DELETE/", &write, json!({"id_client": 3})),
        ),
        (
            "post",
            "/CUSTOMER/PASSWORD/",
            post(
                "/CUSTOMER/PASSWORD/",
                &read,
                json!({"email": "jdoe@example.com", "currentPassword": "password123", "newPassword": strong}),
            ),
        ),
        (
            "post",
            "/CUSTOMER/PASSWORD/",
            post(
                "/CUSTOMER/PASSWORD/",
                &read,
                json!({"id_client": 4, "newPassword": strong}),
            ),
        ),
        (
            "get",
            "/CUSTOMER/CHANGES/",
            get("/CUSTOMER/CHANGES/?since=0&limit=3", &read),
        ),
        (
            "get",
            "/CUSTOMER/CHANGES/",
            get("/CUSTOMER/CHANGES/?since=x", &read),
        ),
        (
            "get",
            "/CUSTOMER/CHANGES/",
            get("/CUSTOMER/CHANGES/?since=99999999", &read),
        ),
        ("get", "/health", app.get("/health")),
        ("get", "/openapi.json", app.get("/openapi.json")),
    ];

    let statuses: BTreeSet<u16> = cases.iter().map(|(_, _, r)| r.status).collect();
    for (method, path, reply) in &cases {
        assert_documented(&doc, method, path, reply);
    }
    assert!(
        [200, 201, 304, 400, 401, 403, 404, 409, 410]
            .iter()
            .all(|s| statuses.contains(s)),
        "{statuses:?}"
    );
}

#[test]
fn the_served_document_follows_the_redaction_and_the_id_type() {
    let app = spawn_app_with(|f| {
        f.merge(("redact", ["phone"]))
            .merge(("clcleunik_type", "string"))
    });

    let doc = app.get("/openapi.json").json();

    let customer = &doc["components"]["schemas"]["Customer"];
    assert!(customer["properties"]["phone"].is_null());
    assert!(!customer["required"]
        .as_array()
        .unwrap()
        .contains(&json!("phone")));
    assert_eq!(customer["properties"]["clcleunik"]["type"], "string");
}

#[test]
fn the_page_says_what_the_server_is_without_javascript_and_fetches_nothing_elsewhere() {
    let app = spawn_app();

    let page = app.get("/");
    let script = app.get("/app.js");
    let style = app.get("/style.css");

    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")));
    assert!(
        page.body.contains(r#"<dd id="health" class="ok">ok</dd>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!(
        r#"<dd id="count">{}</dd>"#,
        demo_customers().len()
    )));
    assert!(page.body.contains("not required"));
    assert!(!page.body.contains("{{"), "every placeholder filled");
    for text in [&page.body, &script.body, &style.body] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "another host"
        );
        assert!(!text.contains("<script>"), "no inline script");
    }
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap()
        .contains("javascript"));
    assert!(script.body.contains("sessionStorage"));
    assert!(style
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    create_key(&app.db, "shop");
    assert!(app
        .get("/")
        .body
        .contains(r#"<dd id="access">required</dd>"#));
}
