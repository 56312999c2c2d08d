//! `POST /CUSTOMER/PASSWORD/RESET/`: starts a password reset ("forgot password"). With a write
//! key the answer carries the one-time `resetToken` for the shop to send in its own email;
//! the token is spent by `POST /CUSTOMER/PASSWORD/` with `resetToken` and `newPassword`.
//! Resets are limited per account (and per end-user address, where known) like logins.

use std::sync::Arc;

use rocket::http::{Method, Status};
use rocket::{post, Route, State};
use serde::Serialize;

use super::body::Fields;
use crate::apikey::{AnyKey, Caller, Scope};
use crate::config::Config;
use crate::customer::{self, Identifier};
use crate::error::{ApiError, JsonResponse};
use crate::mail::Mailer;
use crate::ratelimit::Limits;
use crate::store::Store;
use crate::sync::Mirroring;

/// Counts reset requests per account and per end-user address: every request counts (a
/// reset is never a "success" that refunds), `login_max_failures` per `login_window_secs`.
pub struct ResetLimiter(Limits);

impl ResetLimiter {
    pub fn new(config: &Config, store: &Store) -> ResetLimiter {
        ResetLimiter(Limits::new(
            store,
            config.login_max_failures,
            config.login_window,
        ))
    }

    /// Counts one attempt against each of `subjects` for good; 429 once an allowance is used.
    pub async fn count(&self, subjects: &[&str]) -> Result<(), ApiError> {
        let attempt = self.0.begin(subjects).await?;
        self.0.failed(attempt).await;
        Ok(())
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

/// The reset emails' sender, when the owner configured SMTP.
pub struct Mailing(pub Option<Arc<Mailer>>);

/// The one answer a public key gets, whether the account exists or not.
const ON_ITS_WAY: &str = "If that account exists, a reset message is on its way";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResetResult<'a> {
    reset_token: &'a str,
    expires: &'a str,
}

#[post("/CUSTOMER/PASSWORD/RESET", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn post_reset(
    key: AnyKey,
    db: &State<Store>,
    config: &State<Config>,
    limiter: &State<ResetLimiter>,
    mirroring: &State<Mirroring>,
    mailing: &State<Mailing>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let caller = key.0;
    if mirroring.0.is_some() {
        return Err(ApiError::Conflict(
            "This server mirrors the old API: passwords are set there (in the ERP)".into(),
        ));
    }
    // A write key gets the token back (for the shop's own email); a public key gets it
    // emailed; a read key may not start a reset.
    let public = caller.scope == Scope::Public;
    if !public && !caller.can_write() {
        return Err(ApiError::ReadOnlyKey);
    }
    let mailer = match (public, &mailing.0) {
        (true, None) => {
            return Err(ApiError::NotSetUp(
                "Password reset by email is not set up on this server (smtp_url, smtp_from, \
                 reset_url)"
                    .into(),
            ))
        }
        (true, Some(mailer)) => Some(Arc::clone(mailer)),
        (false, _) => None,
    };
    let identifier = read_reset(body?)?;
    let lookup = identifier.clone();
    let found = db.run(move |conn| conn.find_for_login(&lookup)).await?;
    let account = match &found {
        Some((customer, _)) => format!("reset:customer:{}", customer.clcleunik),
        None => format!("reset:{}", identifier.subject()),
    };
    let address = caller.end_user.map(|ip| format!("reset:address:{ip}"));
    let mut subjects = vec![account.as_str()];
    subjects.extend(address.as_deref());
    // Counted for good: each reset request uses one of the window's allowance (known and
    // unknown accounts alike, so that a 429 tells nothing either).
    limiter.count(&subjects).await?;
    if let Some(mailer) = mailer {
        if let Some((customer, _)) = found {
            let (db, minutes, retention) = ((*db).clone(), config.reset_minutes, config.retention);
            rocket::tokio::spawn(email_reset(
                db, mailer, caller, customer, minutes, retention,
            ));
        }
        return Ok(JsonResponse::message(Status::Ok, true, ON_ITS_WAY));
    }
    let (customer, _) =
        found.ok_or_else(|| ApiError::NotFound("No customer with that email or login".into()))?;
    let (id, minutes, actor, retention) = (
        customer.clcleunik,
        config.reset_minutes,
        caller.actor().to_owned(),
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

/// After a public key's answer: emails a fresh token to `customer`, then stores it (so that a
/// message the SMTP server refuses changes nothing). Logged either way, never the token.
async fn email_reset(
    db: Store,
    mailer: Arc<Mailer>,
    caller: Caller,
    customer: customer::Customer,
    minutes: u32,
    retention: crate::config::Retention,
) {
    let id = customer.clcleunik;
    let token = crate::reset::new_token();
    let sending = token.clone();
    let sent = rocket::tokio::task::spawn_blocking(move || {
        mailer.send_reset(&customer.email, &customer.first_name, &sending)
    })
    .await
    .unwrap_or_else(|_| Err("the sending thread stopped".to_owned()));
    if let Err(error) = sent {
        return log::warn!("the password reset email for customer {id} was not sent: {error}");
    }
    let actor = caller.actor().to_owned();
    let stored = db
        .run(move |conn| crate::reset::store(conn, id, &token, minutes, &actor, retention))
        .await;
    match stored {
        Ok(_) => log::info!("password reset email sent for customer {id}"),
        Err(error) => log::warn!(
            "the password reset email for customer {id} was sent, but its token could not be \
             stored (its link will not work): {error}"
        ),
    }
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![post_reset];
    routes.extend(super::fallback_routes(super::RESET_PATH, &[Method::Post]));
    routes
}
