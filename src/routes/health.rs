//! `GET /health`: whether the database file is intact and answers. Never needs an API key.

use rocket::http::{Method, Status};
use rocket::{get, Route, State};

use crate::db::Db;
use crate::error::JsonResponse;

#[get("/health")]
async fn get_health(db: &State<Db>) -> JsonResponse {
    match db.check_health().await {
        Ok(()) => JsonResponse::message(Status::Ok, true, "ok"),
        Err(error) => {
            log::error!("health check failed: {error}");
            JsonResponse::message(Status::ServiceUnavailable, false, &error.to_string())
        }
    }
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_health];
    routes.extend(super::fallback_routes(
        "/health",
        &[Method::Get, Method::Head],
    ));
    routes
}
