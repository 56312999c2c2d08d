//! `GET /health`: whether the database file is intact and answers, and, when mirroring the old
//! API, how old the last good sync is. Never needs an API key.

use rocket::http::{Method, Status};
use rocket::{get, Route, State};

use crate::error::{ApiError, JsonResponse};
use crate::store::Store;
use crate::sync::Mirroring;

#[get("/health")]
async fn get_health(db: &State<Store>, mirroring: &State<Mirroring>) -> JsonResponse {
    if let Err(error) = db.check_health().await {
        // The file itself is at fault: say so (the log names the file and what is wrong;
        // /health needs no key, so no path is sent).
        let message = match &error {
            ApiError::Unavailable(cause)
                if cause
                    .downcast_ref::<crate::store::sqlite::HeaderError>()
                    .is_some() =>
            {
                log::error!("health check failed: {cause}");
                "The database file is damaged, deleted or replaced (the server log says which): \
                 restore it, or restart the server"
                    .to_owned()
            }
            other => {
                log::error!("health check failed: {other}");
                other.to_string()
            }
        };
        return JsonResponse::message(Status::ServiceUnavailable, false, &message);
    }
    let Some(mirror) = &mirroring.0 else {
        return JsonResponse::message(Status::Ok, true, "ok");
    };
    // On PostgreSQL, from the audit trail every node shares (one node syncs for all), so
    // that each tells the same age.
    let shared = match mirror.shares_its_age() {
        true => db
            .run(|conn| conn.last_sync_age())
            .await
            .inspect_err(|error| log::warn!("the last sync's age could not be read: {error}"))
            .ok()
            .map(|age| age.map(|secs| u64::try_from(secs).unwrap_or(0))),
        false => None,
    };
    let report = mirror.report(shared);
    if mirror.stale(shared) {
        let message = match report.last_good_sync_age_secs {
            Some(age) => format!(
                "The data is {age} s old: the last good sync from the old API is older than \
                 upstream_max_age_secs"
            ),
            None => "No good sync from the old API yet".to_owned(),
        };
        let body = serde_json::json!({
            "success": "false", "message": message, "result": {"upstream": report}
        });
        return JsonResponse {
            status: Status::ServiceUnavailable,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            headers: Vec::new(),
        };
    }
    JsonResponse::success("ok", serde_json::json!({ "upstream": report }))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_health];
    routes.extend(super::fallback_routes(
        "/health",
        &[Method::Get, Method::Head],
    ));
    routes
}
