//! `GET /health`: whether the database file is intact and answers, and, when mirroring the old
//! API, how old the last good sync is. Never needs an API key.

use rocket::http::{Method, Status};
use rocket::{get, Route, State};

use crate::error::{ApiError, JsonResponse};
use crate::store::Store;
use crate::sync::Mirroring;

#[get("/health")]
async fn get_health(
    db: &State<Store>,
    mirroring: &State<Mirroring>,
    metrics: &State<std::sync::Arc<crate::metrics::Metrics>>,
) -> JsonResponse {
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
                 restore it from a backup, then restart the server"
                    .to_owned()
            }
            other => {
                log::error!("health check failed: {other}");
                other.to_string()
            }
        };
        return JsonResponse::message(Status::ServiceUnavailable, false, &message);
    }
    let mut result = serde_json::Map::new();
    if let Some(backup) = crate::backup::report(metrics) {
        // Reported, not a 503: a failed copy does not stop the service (alert on it from
        // `clientele_backup_last_failed` in /metrics, or on `ok` here).
        result.insert("backup".into(), backup);
    }
    if let Some(mirror) = &mirroring.0 {
        let shared = mirror.shared_age(db).await;
        let report = mirror.report(shared);
        let stale = mirror.stale(shared);
        result.insert(
            "upstream".into(),
            serde_json::to_value(&report).unwrap_or_default(),
        );
        if stale {
            let message = match report.last_good_sync_age_secs {
                Some(age) => format!(
                    "The data is {age} s old: the last good sync from the old API is older \
                     than upstream_max_age_secs"
                ),
                None => "No good sync from the old API yet".to_owned(),
            };
            let body = serde_json::json!({
                "success": "false", "message": message, "result": result
            });
            return JsonResponse {
                status: Status::ServiceUnavailable,
                body: serde_json::to_vec(&body).unwrap_or_default(),
                headers: Vec::new(),
            };
        }
    }
    if result.is_empty() {
        return JsonResponse::message(Status::Ok, true, "ok");
    }
    JsonResponse::success("ok", serde_json::Value::Object(result))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_health];
    routes.extend(super::fallback_routes(
        "/health",
        &[Method::Get, Method::Head],
    ));
    routes
}
