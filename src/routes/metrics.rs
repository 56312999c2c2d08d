//! `GET /metrics`: the server's counters in Prometheus' text format ([`crate::metrics`]).
//! Needs a read or write key, as the list does; `metrics_address` serves the same text on a
//! listener of its own without one ([`crate::server`]).

use rocket::http::{ContentType, Method, Status};
use rocket::{get, Route, State};

use crate::apikey::ApiKey;
use crate::metrics::{Gauges, Metrics};
use crate::store::Store;
use crate::sync::Mirroring;

/// The content type Prometheus asks for and `promtool check metrics` reads.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The text, with Prometheus' content type, never cached.
struct MetricsText(String);

impl<'r> rocket::response::Responder<'r, 'static> for MetricsText {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        let content_type = ContentType::parse_flexible(CONTENT_TYPE).unwrap_or(ContentType::Plain);
        rocket::Response::build()
            .status(Status::Ok)
            .header(content_type)
            .raw_header("Cache-Control", "no-store")
            .sized_body(self.0.len(), std::io::Cursor::new(self.0))
            .ok()
    }
}

#[get("/metrics")]
async fn get_metrics(
    _key: ApiKey,
    db: &State<Store>,
    mirroring: &State<Mirroring>,
    metrics: &State<std::sync::Arc<Metrics>>,
) -> MetricsText {
    MetricsText(scrape(db, mirroring, metrics).await)
}

/// The whole text: the counters, and what is read now (customers, database size, the last
/// sync's age). A value that cannot be read is left out, and the log says why.
pub async fn scrape(db: &Store, mirroring: &Mirroring, metrics: &Metrics) -> String {
    let read = db
        .run(|conn| {
            let customers = conn.customer_count()?;
            let bytes = conn.database_bytes()?;
            Ok::<_, crate::store::Error>((customers, bytes))
        })
        .await
        .inspect_err(|error| log::warn!("metrics: the database could not be read: {error}"))
        .ok();
    let last_sync_age = match &mirroring.0 {
        Some(mirror) => {
            let shared = mirror.shared_age(db).await;
            mirror.report(shared).last_good_sync_age_secs
        }
        None => None,
    };
    metrics.render(&Gauges {
        customers: read.map(|(customers, _)| customers),
        database_bytes: read.map(|(_, bytes)| bytes),
        last_sync_age,
    })
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_metrics];
    routes.extend(super::fallback_routes(
        "/metrics",
        &[Method::Get, Method::Head],
    ));
    routes
}
