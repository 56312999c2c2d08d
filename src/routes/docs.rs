//! What this server is, for a person and for tools: the page at `/` (with its script and
//! style, all embedded in the binary: no CDN, it works offline) and the OpenAPI document at
//! `/openapi.json`. None of them needs an API key, and none shows a customer: the page asks
//! the list endpoint, with the key the person pastes.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{get, Route, State};

use crate::apikey;
use crate::customer::{Field, View};
use crate::store::Store;

/// The API's description as kept in the repository (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");
const PAGE: &str = include_str!("../../static/index.html");
const SCRIPT: &str = include_str!("../../static/app.js");
const STYLE: &str = include_str!("../../static/style.css");

/// The page's policy: its own script and style only, requests to this server only, nothing
/// inline, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The OpenAPI document as this server answers: the customer schema without the fields
/// `redact` withholds, and `clcleunik` a string when `clcleunik_type = "string"`.
pub struct OpenApi(Vec<u8>);

impl OpenApi {
    pub fn for_view(view: View) -> OpenApi {
        let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let customer = &mut doc["components"]["schemas"]["Customer"];
        for field in Field::ALL
            .into_iter()
            .filter(|f| view.redaction.withholds(*f))
        {
            if let Some(properties) = customer["properties"].as_object_mut() {
                properties.remove(field.name());
            }
            if let Some(required) = customer["required"].as_array_mut() {
                required.retain(|name| name != field.name());
            }
        }
        if view.string_ids {
            customer["properties"]["clcleunik"] =
                serde_json::json!({"type": "string", "pattern": "^[0-9]+$"});
            // The changes feed's deleted ids follow clcleunik's type.
            doc["components"]["schemas"]["Changes"]["properties"]["result"]["properties"]
                ["deleted"]["items"] = serde_json::json!({"type": "string", "pattern": "^[0-9]+$"});
        }
        OpenApi(serde_json::to_vec(&doc).unwrap_or_default())
    }
}

/// An embedded file, or the rendered page.
struct Asset {
    content_type: ContentType,
    body: Vec<u8>,
    page: bool,
}

impl<'r> Responder<'r, 'static> for Asset {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            .status(Status::Ok)
            .header(self.content_type)
            .header(Header::new("Cache-Control", "no-cache"))
            .header(Header::new("Content-Length", self.body.len().to_string()));
        if self.page {
            builder
                .header(Header::new("Content-Security-Policy", CSP))
                .header(Header::new("Referrer-Policy", "no-referrer"));
        }
        builder.sized_body(self.body.len(), Cursor::new(self.body));
        Ok(builder.finalize())
    }
}

#[get("/openapi.json")]
fn get_openapi(doc: &State<OpenApi>) -> Asset {
    Asset {
        content_type: crate::error::json_content_type(),
        body: doc.0.clone(),
        page: false,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page, with what it can say without JavaScript filled in by the server.
#[get("/")]
async fn get_page(db: &State<Store>, access: &State<apikey::Access>) -> Asset {
    let healthy = db.check_health().await.is_ok();
    let counts = db
        .run(|conn| {
            let customers = conn.customer_count()?;
            Ok::<_, crate::store::Error>((customers, apikey::count(conn)?))
        })
        .await;
    let (count, access_text) = match counts {
        Ok((customers, keys)) => (
            customers.to_string(),
            if keys > 0 || !access.anonymous_when_keyless() {
                "required".to_owned()
            } else {
                "not required (no key exists yet)".to_owned()
            },
        ),
        Err(_) => ("unknown".to_owned(), "unknown".to_owned()),
    };
    let page = PAGE
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{health}}", if healthy { "ok" } else { "unavailable" })
        .replace("{{health_class}}", if healthy { "ok" } else { "bad" })
        .replace("{{count}}", &escape(&count))
        .replace("{{access}}", &escape(&access_text));
    Asset {
        content_type: ContentType::HTML,
        body: page.into_bytes(),
        page: true,
    }
}

#[get("/app.js")]
fn get_script() -> Asset {
    Asset {
        content_type: ContentType::JavaScript,
        body: SCRIPT.as_bytes().to_vec(),
        page: false,
    }
}

#[get("/style.css")]
fn get_style() -> Asset {
    Asset {
        content_type: ContentType::CSS,
        body: STYLE.as_bytes().to_vec(),
        page: false,
    }
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_openapi, get_page, get_script, get_style];
    for path in ["/", "/openapi.json", "/app.js", "/style.css"] {
        routes.extend(super::fallback_routes(path, &[Method::Get, Method::Head]));
    }
    routes
}
