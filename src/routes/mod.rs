//! The HTTP endpoints, one file per group, each with its `routes()`; plus the plumbing shared
//! by all of them: paths that match as old clients spell them, 405s with `Allow`, and CORS.

pub mod body;
pub mod changes;
pub mod customers;
pub mod docs;
pub mod health;
pub mod login;
pub mod metrics;
pub mod reset;
pub mod spool;
pub mod writes;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::{Header, Method, Status};
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request, Response};

use crate::error::{ApiError, JsonResponse};

/// The canonical paths that old clients spell in any case, with or without a trailing slash.
pub const LIST_PATH: &str = "/CUSTOMER/LIST";
pub const LOGIN_PATH: &str = "/CUSTOMER/LOGIN";
pub const LOGOUT_PATH: &str = "/CUSTOMER/LOGOUT";
pub const ADD_PATH: &str = "/CUSTOMER/ADD";
pub const UPDATE_PATH: &str = "/CUSTOMER/UPDATE";
pub const DELETE_PATH: &str = "/CUSTOMER/DELETE";
pub const PASSWORD_PATH: &str = "/CUSTOMER/PASSWORD";
pub const CHANGES_PATH: &str = "/CUSTOMER/CHANGES";
pub const RESET_PATH: &str = "/CUSTOMER/PASSWORD/RESET";

/// Every API path old clients may spell in any case.
const API_PATHS: [&str; 9] = [
    CHANGES_PATH,
    LIST_PATH,
    LOGIN_PATH,
    LOGOUT_PATH,
    ADD_PATH,
    UPDATE_PATH,
    DELETE_PATH,
    PASSWORD_PATH,
    RESET_PATH,
];

/// Rewrites `/customer/list/`, `/Customer/Login` and the like to the canonical path before
/// routing, keeping the query string.
pub struct CanonicalPaths;

#[rocket::async_trait]
impl Fairing for CanonicalPaths {
    fn info(&self) -> Info {
        Info {
            name: "Case-insensitive API paths",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        let path = request.uri().path();
        let path = path.as_str();
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let Some(canonical) = API_PATHS
            .into_iter()
            .find(|canonical| trimmed.eq_ignore_ascii_case(canonical))
        else {
            return;
        };
        if path == canonical {
            return;
        }
        let uri = match request.uri().query() {
            Some(query) => format!("{canonical}?{}", query.as_str()),
            None => canonical.to_owned(),
        };
        if let Ok(origin) = Origin::parse_owned(uri) {
            request.set_uri(origin);
        }
    }
}

/// Answers a method a path does not accept with a 405 and its `Allow` header.
#[derive(Clone)]
struct MethodNotAllowed {
    allow: String,
}

#[rocket::async_trait]
impl Handler for MethodNotAllowed {
    async fn handle<'r>(&self, request: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        let error = ApiError::MethodNotAllowed {
            allow: self.allow.clone(),
        };
        Outcome::from(request, error)
    }
}

/// Answers `OPTIONS` (a browser's CORS preflight) with `Allow`; [`Cors`] adds the CORS headers
/// when the origin is allowed. No API key: browsers never send one with a preflight.
#[derive(Clone)]
struct Preflight {
    allow: String,
}

#[rocket::async_trait]
impl Handler for Preflight {
    async fn handle<'r>(&self, request: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        let response = JsonResponse::message(Status::Ok, true, "ok")
            .with_header(Header::new("Allow", self.allow.clone()));
        Outcome::from(request, response)
    }
}

/// The routes every API path needs besides its handlers: `OPTIONS`, and a 405 for each method
/// not in `allowed`.
pub fn fallback_routes(path: &str, allowed: &[Method]) -> Vec<Route> {
    let allow = allowed
        .iter()
        .chain([&Method::Options])
        .map(|method| method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut routes = vec![Route::ranked(
        100,
        Method::Options,
        path,
        Preflight {
            allow: allow.clone(),
        },
    )];
    routes.extend(
        [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Patch,
            Method::Trace,
            Method::Connect,
        ]
        .into_iter()
        .filter(|method| !allowed.contains(method))
        .map(|method| {
            let handler = MethodNotAllowed {
                allow: allow.clone(),
            };
            Route::ranked(100, method, path, handler)
        }),
    );
    for route in &mut routes {
        route.name = Some("fallback".into());
    }
    routes
}

/// Cross-origin access for the browser origins listed in `cors_origins`, and no others.
pub struct Cors {
    pub origins: Vec<String>,
}

#[rocket::async_trait]
impl Fairing for Cors {
    fn info(&self) -> Info {
        Info {
            name: "CORS for configured origins",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        if self.origins.is_empty() {
            return;
        }
        // The answer depends on Origin, so caches must keep one copy per origin.
        response.adjoin_header(Header::new("Vary", "Origin"));
        let Some(origin) = request.headers().get_one("Origin") else {
            return;
        };
        if !self.origins.iter().any(|allowed| allowed == origin) {
            return;
        }
        response.set_header(Header::new(
            "Access-Control-Allow-Origin",
            origin.to_owned(),
        ));
        response.set_header(Header::new(
            "Access-Control-Expose-Headers",
            "X-Total-Count, ETag, Retry-After",
        ));
        if request.method() == Method::Options {
            response.set_header(Header::new(
                "Access-Control-Allow-Methods",
                "GET, HEAD, POST, DELETE, OPTIONS",
            ));
            response.set_header(Header::new(
                "Access-Control-Allow-Headers",
                "X-API-Key, Authorization, Content-Type, If-None-Match",
            ));
            response.set_header(Header::new("Access-Control-Max-Age", "600"));
        }
    }
}
