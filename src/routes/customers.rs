//! `GET /CUSTOMER/LIST/`: the customer list, filtered and paged as the contract says.

use rocket::http::{Header, Method};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{get, Route, State};

use crate::apikey::ApiKey;
use crate::config::Config;
use crate::customer::{self, CustomerList, ListFilter};
use crate::db::Db;
use crate::error::{ApiError, JsonResponse};

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

#[get("/CUSTOMER/LIST")]
async fn get_customers(
    _key: ApiKey,
    filter: Result<ListFilter, ApiError>,
    db: &State<Db>,
    config: &State<Config>,
) -> Result<JsonResponse, ApiError> {
    let filter = filter?;
    let page = db.run(move |conn| customer::list(conn, &filter)).await?;
    let result = CustomerList {
        customers: &page.customers,
        redaction: config.redaction,
    };
    Ok(JsonResponse::success("Customers list", result)
        .with_header(Header::new("X-Total-Count", page.total.to_string())))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_customers];
    routes.extend(super::fallback_routes(
        super::LIST_PATH,
        &[Method::Get, Method::Head],
    ));
    routes
}
