//! The HTTP endpoints, one file per group, each with its `routes()`; plus the plumbing that
//! makes paths match as old clients spell them and answers wrong methods with a 405.

pub mod customers;
pub mod health;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::Method;
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request};

use crate::error::ApiError;

/// The canonical paths that old clients spell in any case, with or without a trailing slash.
pub const LIST_PATH: &str = "/CUSTOMER/LIST";

/// Rewrites `/customer/list/`, `/Customer/List` and the like to the canonical path before
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
        let Some(canonical) = [LIST_PATH]
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
    allow: &'static str,
}

#[rocket::async_trait]
impl Handler for MethodNotAllowed {
    async fn handle<'r>(&self, request: &'r Request<'_>, _: Data<'r>) -> Outcome<'r> {
        Outcome::from(request, ApiError::MethodNotAllowed { allow: self.allow })
    }
}

/// Routes for `path` that answer 405 to every method not in `allowed`.
pub fn method_not_allowed(path: &str, allowed: &[Method], allow: &'static str) -> Vec<Route> {
    [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
        Method::Options,
    ]
    .into_iter()
    .filter(|method| !allowed.contains(method))
    .map(|method| {
        let mut route = Route::ranked(100, method, path, MethodNotAllowed { allow });
        route.name = Some("method not allowed".into());
        route
    })
    .collect()
}
