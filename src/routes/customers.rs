//! `GET /CUSTOMER/LIST/`: the customer list, filtered and paged as the contract says, served
//! from the response cache with `ETag` revalidation and gzip.

use std::io::Cursor;
use std::sync::Arc;

use rocket::http::{Header, Method, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::{get, Route, State};

use crate::apikey::ApiKey;
use crate::cache::{CachedList, ResponseCache};
use crate::config::Config;
use crate::customer::{self, ListFilter};
use crate::db::{self, Db};
use crate::error::{json_content_type, ApiError};

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ListFilter {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let query = request.uri().query().map(|query| query.as_str());
        match ListFilter::parse(query) {
            Ok(filter) => Outcome::Success(filter),
            Err(error) => Outcome::Error((error.status(), error)),
        }
    }
}

/// What the client can take: its cached `ETag`s and whether it accepts gzip.
pub struct Negotiation {
    if_none_match: Option<String>,
    gzip: bool,
    generation: Option<i64>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Negotiation {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = request.headers();
        Outcome::Success(Negotiation {
            if_none_match: headers.get_one("If-None-Match").map(str::to_owned),
            gzip: accepts_gzip(&headers.get("Accept-Encoding").collect::<Vec<_>>().join(",")),
            generation: db::request_generation(request),
        })
    }
}

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` with a weight above 0, or, when
/// gzip is not named, `*` with a weight above 0 (RFC 9110 §12.5.3: `gzip;q=0, *` refuses it).
fn accepts_gzip(value: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in value.split(',') {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let weight = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight);
        } else if name == "*" {
            any = Some(weight);
        }
    }
    gzip.or(any).is_some_and(|weight| weight > 0.0)
}

/// How much of a body goes to the connection at a time. Rocket's default, 4 KiB, costs a
/// task hand-off per 4 KiB and made the whole list 4x slower; each connection holds up to
/// about two chunks in flight, so larger ones cost memory (measured: bench/run.py).
const CHUNK: usize = 256 * 1024;

/// A list response from the cache: the full body or its gzip copy, or a 304 (no body).
pub struct ListResponse {
    entry: Arc<CachedList>,
    body: Option<Arc<[u8]>>,
    /// The representation is the gzip copy: its own `ETag`, on a 304 too.
    gzipped: bool,
}

impl<'r> Responder<'r, 'static> for ListResponse {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            // Browsers may keep it, but must ask again each time: a 304 costs almost nothing.
            .header(Header::new("Cache-Control", "private, no-cache"))
            .header(Header::new("Vary", "Accept-Encoding"));
        let etag = if self.gzipped {
            self.entry.gzip_etag()
        } else {
            self.entry.etag.clone()
        };
        match self.body {
            None => {
                builder
                    .status(Status::NotModified)
                    .header(Header::new("ETag", etag));
            }
            Some(bytes) => {
                if self.gzipped {
                    builder.header(Header::new("Content-Encoding", "gzip"));
                }
                // Rocket buffers each chunk at full size: never more than the body needs.
                let length = bytes.len();
                builder
                    .status(Status::Ok)
                    .header(json_content_type())
                    .header(Header::new("ETag", etag))
                    .header(Header::new("X-Total-Count", self.entry.total.to_string()))
                    // Stated here so that a HEAD answer, whose body is stripped, still has it.
                    .header(Header::new("Content-Length", length.to_string()))
                    .sized_body(length, Cursor::new(bytes))
                    // Hand large bodies to the connection in large pieces, not 4 KiB ones
                    // (after `sized_body`, which resets it).
                    .max_chunk_size(length.clamp(1, CHUNK));
            }
        }
        Ok(builder.finalize())
    }
}

#[get("/CUSTOMER/LIST")]
async fn get_customers(
    _key: ApiKey,
    filter: Result<ListFilter, ApiError>,
    negotiation: Negotiation,
    db: &State<Db>,
    config: &State<Config>,
    cache: &State<ResponseCache>,
) -> Result<ListResponse, ApiError> {
    let filter = filter?;
    let view = config.view;
    let entry = cache
        .get_or_build(negotiation.generation, &filter, || {
            let (db, filter) = (db.inner().clone(), filter.clone());
            async move {
                db.run(move |conn| {
                    let (body, total) = customer::list_json(conn, &filter, view)?;
                    Ok::<_, ApiError>(CachedList::new(body, total))
                })
                .await
            }
        })
        .await?;
    if negotiation
        .if_none_match
        .as_deref()
        .is_some_and(|tags| entry.matches(tags))
    {
        let gzipped = negotiation.gzip && entry.compressible();
        return Ok(ListResponse {
            entry,
            body: None,
            gzipped,
        });
    }
    let gzip = match negotiation.gzip {
        true => cache.gzip(negotiation.generation, &entry).await,
        false => None,
    };
    let (body, gzipped) = match gzip {
        Some(gzip) => (gzip, true),
        None => (Arc::clone(&entry.body), false),
    };
    Ok(ListResponse {
        entry,
        body: Some(body),
        gzipped,
    })
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_customers];
    routes.extend(super::fallback_routes(
        super::LIST_PATH,
        &[Method::Get, Method::Head],
    ));
    routes
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip("*, gzip;q=0"));
        assert!(accepts_gzip("gzip;q=0.5, *;q=0"));
        assert!(!accepts_gzip("*;q=0"));
        assert!(!accepts_gzip(""));
    }
}
