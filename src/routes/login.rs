//! `POST /CUSTOMER/LOGIN/`: checks a customer's password on the server, replacing the old
//! "fetch by email, compare in the browser" pattern.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rocket::data::{ByteUnit, FromData, Outcome};
use rocket::http::Method;
use rocket::tokio::sync::Semaphore;
use rocket::{post, Data, Request, Route, State};

use crate::apikey::ApiKey;
use crate::auth::{PasswordHasher, Secret, Verdict};
use crate::config::Config;
use crate::customer::{self, CustomerList, Identifier};
use crate::db::Db;
use crate::error::{ApiError, JsonResponse};
use crate::ratelimit::FailureLimiter;

/// Larger bodies are refused with a 413 before they are read.
const BODY_LIMIT: ByteUnit = ByteUnit::Kibibyte(16);
/// A login waiting longer than this for a free verifier gets a 503 rather than hanging.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed login body: who, and the password they typed.
pub struct LoginRequest {
    identifier: Identifier,
    password: Secret,
}

#[rocket::async_trait]
impl<'r> FromData<'r> for LoginRequest {
    type Error = ApiError;

    async fn from_data(request: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        let fail = |error: ApiError| Outcome::Error((error.status(), error));
        let content_type = request.content_type();
        let is_json = content_type.is_some_and(|ct| ct.is_json());
        let is_form = content_type.is_some_and(|ct| ct.is_form());
        if !is_json && !is_form {
            return fail(ApiError::UnsupportedBody);
        }
        let body = match data.open(BODY_LIMIT).into_bytes().await {
            Ok(body) if body.is_complete() => body.into_inner(),
            Ok(_) => return fail(ApiError::BodyTooLarge),
            Err(error) => return fail(ApiError::bad_request(format!("Unreadable body: {error}"))),
        };
        let fields: Vec<(String, String)> = if is_json {
            match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body) {
                Ok(object) => object
                    .into_iter()
                    .filter_map(|(name, value)| match value {
                        serde_json::Value::String(text) => Some((name, text)),
                        _ => None,
                    })
                    .collect(),
                Err(_) => return fail(ApiError::bad_request(
                    "Unreadable body: expected a JSON object with email (or login) and password",
                )),
            }
        } else {
            form_urlencoded::parse(&body).into_owned().collect()
        };
        match parse_fields(fields) {
            Ok(login) => Outcome::Success(login),
            Err(error) => fail(error),
        }
    }
}

/// Picks the identifier and the password out of the body's fields.
fn parse_fields(fields: Vec<(String, String)>) -> Result<LoginRequest, ApiError> {
    let mut email = None;
    let mut login = None;
    let mut password = None;
    for (name, value) in fields {
        match name.as_str() {
            "email" if !value.is_empty() => email = Some(value),
            "login" if !value.is_empty() => login = Some(value),
            "password" if !value.is_empty() => password = Some(Secret::new(value)),
            _ => {}
        }
    }
    // Email wins when both are sent: it is what the old front-ends looked customers up by.
    let identifier = match (email, login) {
        (Some(email), _) => Identifier::Email(email),
        (None, Some(login)) => Identifier::Login(login),
        (None, None) => return Err(ApiError::bad_request("Missing field: email or login")),
    };
    let password = password.ok_or_else(|| ApiError::bad_request("Missing field: password"))?;
    Ok(LoginRequest {
        identifier,
        password,
    })
}

/// What logins share: the failure counts and the bounded pool of password verifiers.
pub struct LoginService {
    limiter: FailureLimiter,
    /// Each verification takes ~19 MiB and a core for tens of milliseconds; this bounds how
    /// many run at once, so a burst of logins cannot starve list requests or exhaust memory.
    verifiers: Semaphore,
    hasher: PasswordHasher,
}

impl LoginService {
    pub fn new(config: &Config) -> LoginService {
        LoginService {
            limiter: FailureLimiter::new(config.login_max_failures, config.login_window),
            verifiers: Semaphore::new(config.login_workers),
            hasher: config.hasher.clone(),
        }
    }

    /// Runs `work` with the hasher on the blocking pool, once a verifier slot is free.
    async fn with_hasher<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = rocket::tokio::time::timeout(QUEUE_TIMEOUT, self.verifiers.acquire())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(ApiError::internal)?;
        let hasher = self.hasher.clone();
        match rocket::tokio::task::spawn_blocking(move || work(&hasher)).await {
            Ok(result) => Ok(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(ApiError::internal(error)),
        }
    }
}

#[post("/CUSTOMER/LOGIN", data = "<body>")]
async fn post_login(
    _key: ApiKey,
    client: Option<IpAddr>,
    db: &State<Db>,
    config: &State<Config>,
    service: &State<LoginService>,
    body: Result<LoginRequest, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let LoginRequest {
        identifier,
        password,
    } = body?;
    let lookup = identifier.clone();
    let found = db
        .run(move |conn| customer::find_for_login(conn, &lookup))
        .await?;

    let account = match &found {
        Some((customer, _)) => format!("customer:{}", customer.clcleunik),
        None => identifier.subject(),
    };
    let address = format!(
        "address:{}",
        client.map_or("unknown".into(), |ip| ip.to_string())
    );
    // Counted before the (slow) check, so that parallel attempts cannot all slip through.
    let attempt = service
        .limiter
        .begin(&[&account, &address], Instant::now())
        .map_err(|retry_after| ApiError::TooManyAttempts { retry_after })?;

    let (customer, stored) = match found {
        Some((customer, stored)) => (Some(customer), stored),
        None => (None, None),
    };
    let check_against = stored.clone();
    let attempt_password = password.clone();
    let verdict = service
        .with_hasher(move |hasher| {
            hasher.verify(
                &attempt_password,
                check_against.as_ref().map(Secret::expose),
            )
        })
        .await;
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => {
            // Not checked (the server is busy): not a failure.
            service.limiter.refund(attempt);
            return Err(error);
        }
    };

    let (Some(customer), Verdict::Valid { rehash }) = (customer, verdict) else {
        return Err(ApiError::InvalidCredentials);
    };
    service.limiter.succeeded(attempt, &account);
    if let (true, Some(old)) = (rehash, stored) {
        upgrade_hash(db, service, customer.clcleunik, old, password).await;
    }
    let result = CustomerList {
        customers: std::slice::from_ref(&customer),
        redaction: config.redaction,
    };
    Ok(JsonResponse::success("Login successful", result))
}

/// Replaces a bcrypt or weaker Argon2 hash by one with the configured parameters. A failure
/// here does not fail the login: the old hash still works, and the next login tries again.
async fn upgrade_hash(db: &Db, service: &LoginService, id: i64, old: Secret, password: Secret) {
    let hashed = service
        .with_hasher(move |hasher| hasher.hash(&password))
        .await
        .and_then(|result| result.map_err(ApiError::internal));
    let new = match hashed {
        Ok(new) => new,
        Err(error) => {
            return log::warn!("could not re-hash the password of customer {id}: {error}")
        }
    };
    let stored = db
        .run(move |conn| customer::replace_hash(conn, id, old.expose(), &new))
        .await;
    match stored {
        Ok(true) => {
            log::info!("upgraded the password hash of customer {id} to the configured Argon2id")
        }
        Ok(false) => {}
        Err(error) => {
            log::warn!("could not store the re-hashed password of customer {id}: {error}")
        }
    }
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![post_login];
    routes.extend(super::fallback_routes(super::LOGIN_PATH, &[Method::Post]));
    routes
}
