//! `GET /CUSTOMER/CHANGES/?since=TOKEN&limit=N`: what changed since a back office's last
//! poll, so that it can keep its own copy without downloading the whole list.

use rocket::http::Method;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{get, Route, State};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::apikey::ApiKey;
use crate::config::Config;
use crate::customer::{self, ChangesPage, CustomerList, View};
use crate::error::{ApiError, JsonResponse};
use crate::store::Store;

/// How many changes one answer holds when the client does not say.
const DEFAULT_LIMIT: u32 = 1000;

/// `since` (a token from a previous answer's `next`, or 0) and `limit`, checked.
pub struct ChangesQuery {
    since: i64,
    limit: u32,
}

impl ChangesQuery {
    fn parse(query: Option<&str>) -> Result<ChangesQuery, ApiError> {
        let mut parsed = ChangesQuery {
            since: 0,
            limit: DEFAULT_LIMIT,
        };
        let mut seen = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if name != "since" && name != "limit" {
                continue;
            }
            if seen.contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "Invalid {name}: given more than once"
                )));
            }
            let whole = value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<i64>().ok())
                .flatten()
                .filter(|_| !value.is_empty());
            match name.as_ref() {
                "since" => {
                    parsed.since = whole.ok_or_else(|| {
                        ApiError::bad_request(
                            "Invalid since: expected the token of a previous answer's next, or 0",
                        )
                    })?;
                }
                _ => {
                    parsed.limit = whole
                        .filter(|l| (1..=i64::from(customer::MAX_LIMIT)).contains(l))
                        .and_then(|l| u32::try_from(l).ok())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "Invalid limit: expected a whole number from 1 to {}",
                                customer::MAX_LIMIT
                            ))
                        })?;
                }
            }
            seen.push(name);
        }
        Ok(parsed)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ChangesQuery {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match ChangesQuery::parse(request.uri().query().map(|q| q.as_str())) {
            Ok(query) => Outcome::Success(query),
            Err(error) => Outcome::Error((error.status(), error)),
        }
    }
}

/// The `result` of a changes answer.
struct ChangesResult<'a> {
    page: &'a ChangesPage,
    view: View,
}

impl Serialize for ChangesResult<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let customers = CustomerList {
            customers: &self.page.customers,
            view: self.view,
        };
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("customer", &customers.array())?;
        // Deleted ids in the same type as `clcleunik` (`clcleunik_type`), so that a copy kept
        // by id finds them: `copy.delete(id)` with "12" finds nothing under 12.
        if self.view.string_ids {
            let ids: Vec<String> = self.page.deleted.iter().map(i64::to_string).collect();
            map.serialize_entry("deleted", &ids)?;
        } else {
            map.serialize_entry("deleted", &self.page.deleted)?;
        }
        map.serialize_entry("next", &self.page.next.to_string())?;
        map.end()
    }
}

#[get("/CUSTOMER/CHANGES")]
async fn get_changes(
    _key: ApiKey,
    query: Result<ChangesQuery, ApiError>,
    db: &State<Store>,
    config: &State<Config>,
) -> Result<JsonResponse, ApiError> {
    let ChangesQuery { since, limit } = query?;
    let page = db.run(move |conn| conn.changes_since(since, limit)).await?;
    Ok(JsonResponse::success(
        "Changes",
        ChangesResult {
            page: &page,
            view: config.view,
        },
    ))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_changes];
    routes.extend(super::fallback_routes(
        super::CHANGES_PATH,
        &[Method::Get, Method::Head],
    ));
    routes
}

#[cfg(test)]
mod tests {
    use super::ChangesQuery;

    #[test]
    fn tokens_and_limits_are_checked() {
        assert_eq!(ChangesQuery::parse(None).unwrap().since, 0);
        assert_eq!(
            ChangesQuery::parse(Some("since=42&limit=2")).unwrap().limit,
            2
        );
        for bad in [
            "since=abc",
            "since=-1",
            "since=",
            "limit=0",
            "limit=10001",
            "since=1&since=2",
        ] {
            assert!(ChangesQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
