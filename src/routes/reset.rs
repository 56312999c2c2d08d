//! `POST /CUSTOMER/PASSWORD/RESET/`: starts a password reset ("forgot password"). With a write
//! key the answer carries the one-time `resetToken` for the shop to send in its own email;
//! the token is spent by `POST /CUSTOMER/PASSWORD/` with `resetToken` and `newPassword`.
//! Resets are limited per account (and per end-user address, where known) like logins.

use std::time::Instant;

use rocket::http::Method;
use rocket::{post, Route, State};
use serde::Serialize;

use super::body::Fields;
use crate::apikey::ApiKey;
use crate::config::Config;
use crate::customer::{self, Identifier};
use crate::db::Db;
use crate::error::{ApiError, JsonResponse};
use crate::ratelimit::FailureLimiter;
use crate::sync::Mirroring;

/// Counts reset requests per account and per end-user address: every request counts (a
/// reset is never a "success" that refunds), `login_max_failures` per `login_window_secs`.
pub struct ResetLimiter(FailureLimiter);

impl ResetLimiter {
    pub fn new(config: &Config) -> ResetLimiter {
        ResetLimiter(FailureLimiter::new(
            config.login_max_failures,
            config.login_window,
        ))
    }
}

/// The account a reset names: `email` (ignoring case) or `login`.
fn read_reset(fields: Fields) -> Result<Identifier, ApiError> {
    fields.check_unique()?;
    let mut identifier = None;
    for (name, value) in fields.0 {
        let text = || {
            value.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid {name}: expected a non-empty text"))
            })
        };
        match name.as_str() {
            "apikey" => {}
            "email" => identifier = Some(Identifier::Email(text()?)),
            "login" => identifier = Some(Identifier::Login(text()?)),
            _ => return Err(ApiError::bad_request(format!("Unknown field: {name}"))),
        }
    }
    identifier.ok_or_else(|| ApiError::bad_request("Missing field: email or login"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetResult<'a> {
    reset_token: &'a str,
    expires: &'a str,
}

#[post("/CUSTOMER/PASSWORD/RESET", data = "<body>")]
async fn post_reset(
    key: ApiKey,
    db: &State<Db>,
    config: &State<Config>,
    limiter: &State<ResetLimiter>,
    mirroring: &State<Mirroring>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    if mirroring.0.is_some() {
        return Err(ApiError::Conflict(
            "This server mirrors the old API: passwords are set there (in the ERP)".into(),
        ));
    }
    // Only a write key gets the token back (for the shop's own email).
    if !key.0.can_write() {
        return Err(ApiError::ReadOnlyKey);
    }
    let identifier = read_reset(body?)?;
    let lookup = identifier.clone();
    let found = db
        .run(move |conn| customer::find_for_login(conn, &lookup))
        .await?;
    let account = match &found {
        Some((customer, _)) => format!("reset:customer:{}", customer.clcleunik),
        None => format!("reset:{}", identifier.subject()),
    };
    let address = key.0.end_user.map(|ip| format!("reset:address:{ip}"));
    let mut subjects = vec![account.as_str()];
    subjects.extend(address.as_deref());
    // Counted for good: each reset request uses one of the window's allowance.
    let _counted = limiter
        .0
        .begin(&subjects, Instant::now())
        .map_err(|retry_after| ApiError::TooManyAttempts { retry_after })?;
    let (customer, _) =
        found.ok_or_else(|| ApiError::NotFound("No customer with that email or login".into()))?;
    let (id, minutes, actor, retention) = (
        customer.clcleunik,
        config.reset_minutes,
        key.0.actor().to_owned(),
        config.retention,
    );
    let issued = db
        .run(move |conn| crate::reset::issue(conn, id, minutes, &actor, retention))
        .await?;
    Ok(JsonResponse::success(
        "Password reset started",
        ResetResult {
            reset_token: issued.token.expose(),
            expires: &issued.expires,
        },
    ))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![post_reset];
    routes.extend(super::fallback_routes(super::RESET_PATH, &[Method::Post]));
    routes
}
