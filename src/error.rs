//! The one error type of the HTTP API, the JSON envelope every response is wrapped in, and the
//! catchers that turn Rocket's own errors (unknown path, bad body, panics...) into that envelope.
//!
//! The contract: every body is JSON with `Content-Type: application/json; charset=utf-8`, and
//! `success` is the *string* `"true"` or `"false"`. Error messages are sentences a shop owner can
//! act on; the cause of an internal error goes to the log, never to the client.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::Catcher;
use serde::Serialize;

/// `application/json; charset=utf-8`, the only content type this server answers with.
pub fn json_content_type() -> ContentType {
    ContentType::new("application", "json").with_params(("charset", "utf-8"))
}

/// The bytes of a success envelope up to its `result`'s value:
/// `{"success":"true","message":"...","result":`. Whoever writes the result (a serializer, or
/// the list streaming rows) then closes the envelope with `}`. The one place its shape lives.
pub fn success_prefix(message: &str) -> Vec<u8> {
    let mut body = br#"{"success":"true","message":"#.to_vec();
    // A `&str` always serializes.
    let _ = serde_json::to_writer(&mut body, message);
    body.extend_from_slice(br#","result":"#);
    body
}

/// A finished JSON response: status, body bytes and any extra headers.
///
/// Every handler and catcher answers through this type, so the content type cannot be forgotten.
#[derive(Debug, Clone)]
pub struct JsonResponse {
    pub status: Status,
    pub body: Vec<u8>,
    pub headers: Vec<Header<'static>>,
}

impl JsonResponse {
    /// The success envelope around `result`: `{"success":"true","message":..,"result":..}`.
    pub fn success<T: Serialize>(message: &str, result: T) -> Self {
        let mut body = success_prefix(message);
        // Serializing our own view types into memory cannot fail: they hold only strings,
        // numbers and booleans.
        let body = match serde_json::to_writer(&mut body, &result) {
            Ok(()) => {
                body.push(b'}');
                body
            }
            Err(_) => br#"{"success":"false","message":"Internal error"}"#.to_vec(),
        };
        JsonResponse {
            status: Status::Ok,
            body,
            headers: Vec::new(),
        }
    }

    /// A success envelope without a `result`, as `/health` answers.
    pub fn message(status: Status, success: bool, message: &str) -> Self {
        #[derive(Serialize)]
        struct Bare<'a> {
            success: &'static str,
            message: &'a str,
        }
        let body = serde_json::to_vec(&Bare {
            success: if success { "true" } else { "false" },
            message,
        })
        .unwrap_or_default();
        JsonResponse {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, header: Header<'static>) -> Self {
        self.headers.push(header);
        self
    }
}

impl<'r> Responder<'r, 'static> for JsonResponse {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            .status(self.status)
            .header(json_content_type())
            // Customer data must not sit in shared or browser caches.
            .header(Header::new("Cache-Control", "no-store"))
            // Stated here so that a HEAD answer, whose body is stripped, still has it.
            .header(Header::new("Content-Length", self.body.len().to_string()))
            .sized_body(self.body.len(), Cursor::new(self.body));
        for header in self.headers {
            builder.header(header);
        }
        Ok(builder.finalize())
    }
}

const UNAVAILABLE: &str = "The customer store is unavailable. Try again shortly";
const INTERNAL: &str = "Internal error. The server log has the details";

/// The underlying error of an internal failure: kept for the log, never sent.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request can fail with. `Display` is the message the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter or body field is wrong; the message names it.
    #[error("{0}")]
    BadRequest(String),
    #[error("Missing or invalid API key")]
    Unauthorized,
    #[error("Invalid credentials")]
    InvalidCredentials,
    #[error("This API key may only read")]
    ReadOnlyKey,
    /// A public key (browser code) without a customer session, on a route that needs one.
    #[error("This API key is public: log in first")]
    PublicKey,
    /// A customer session token that is unknown, tampered with, ended or expired.
    #[error("The customer session is invalid or has expired: log in again")]
    SessionEnded,
    /// LOGOUT without a session token.
    #[error(
        "Missing customer session: send the token LOGIN gave as Authorization: Bearer TOKEN \
         (and the API key as ?apikey= or X-API-Key)"
    )]
    NoSession,
    /// A request refused for where it comes from (a foreign `Host` or `Origin` while the
    /// server has no key); the message says what to do.
    #[error("{0}")]
    Forbidden(String),
    /// No such customer (or other thing); the message names what was looked for.
    #[error("{0}")]
    NotFound(String),
    /// An email, login or id another customer already has; the message names the field.
    #[error("{0}")]
    Conflict(String),
    /// A changes token older than what is kept.
    #[error("{0}")]
    Gone(String),
    /// In mirror mode, the old API (the master) refused a forwarded write (its 4xx status)
    /// or could not be reached, did not answer, or is busy (503; `Retry-After` when trying
    /// again is safe).
    #[error("{message}")]
    Master {
        status: Status,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("Method not allowed. This path accepts: {allow}")]
    MethodNotAllowed { allow: String },
    #[error("Too many failed attempts. Try again in {retry_after} seconds")]
    TooManyAttempts { retry_after: u64 },
    #[error("Request body too large: at most 16 KiB")]
    BodyTooLarge,
    #[error("Unsupported body type: send application/json or application/x-www-form-urlencoded")]
    UnsupportedBody,
    /// A feature the owner has not configured (the message names the settings).
    #[error("{0}")]
    NotSetUp(String),
    /// Too many logins are waiting for a password check.
    #[error("The server is busy checking passwords. Try again shortly")]
    Busy,
    /// The database is missing, locked or unreadable. The cause is logged, not sent.
    #[error("{UNAVAILABLE}")]
    Unavailable(#[source] Cause),
    /// A bug or an unexpected failure. The cause is logged, not sent.
    #[error("{INTERNAL}")]
    Internal(#[source] Cause),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(cause))
    }

    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Unavailable(Box::new(cause))
    }

    pub fn status(&self) -> Status {
        match self {
            ApiError::BadRequest(_) => Status::BadRequest,
            ApiError::Unauthorized
            | ApiError::InvalidCredentials
            | ApiError::SessionEnded
            | ApiError::NoSession => Status::Unauthorized,
            ApiError::ReadOnlyKey | ApiError::PublicKey | ApiError::Forbidden(_) => {
                Status::Forbidden
            }
            ApiError::NotFound(_) => Status::NotFound,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::Gone(_) => Status::Gone,
            ApiError::Master { status, .. } => *status,
            ApiError::MethodNotAllowed { .. } => Status::MethodNotAllowed,
            ApiError::TooManyAttempts { .. } => Status::TooManyRequests,
            ApiError::BodyTooLarge => Status::PayloadTooLarge,
            ApiError::UnsupportedBody => Status::UnsupportedMediaType,
            ApiError::Busy | ApiError::NotSetUp(_) => Status::ServiceUnavailable,
            ApiError::Unavailable(_) => Status::ServiceUnavailable,
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }

    /// The envelope for this error, with the headers its status calls for.
    pub fn into_response(self) -> JsonResponse {
        match &self {
            ApiError::Internal(cause) => log::error!("internal error: {cause}"),
            ApiError::Unavailable(cause) => log::error!("store unavailable: {cause}"),
            _ => {}
        }
        let mut response = JsonResponse::message(self.status(), false, &self.to_string());
        match self {
            ApiError::MethodNotAllowed { allow } => {
                response = response.with_header(Header::new("Allow", allow));
            }
            ApiError::TooManyAttempts { retry_after }
            | ApiError::Master {
                retry_after: Some(retry_after),
                ..
            } => {
                response =
                    response.with_header(Header::new("Retry-After", retry_after.to_string()));
            }
            _ => {}
        }
        response
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        self.into_response().respond_to(request)
    }
}

/// The message for a status that Rocket raised itself (no handler produced the error).
fn catcher_message(status: Status) -> String {
    match status.code {
        400 => "Bad request: the request could not be read".into(),
        401 => ApiError::Unauthorized.to_string(),
        // A guard that failed with its own message has it sent instead (`guard_failure`).
        403 => ApiError::ReadOnlyKey.to_string(),
        404 => "Unknown path. This server answers GET /CUSTOMER/LIST/, POST /CUSTOMER/LOGIN/ \
                and /CUSTOMER/LOGOUT/, the customer writes beside them (ADD, UPDATE, DELETE), \
                GET /CUSTOMER/CHANGES/ and GET /health"
            .into(),
        413 => ApiError::BodyTooLarge.to_string(),
        415 => ApiError::UnsupportedBody.to_string(),
        422 => "The request body could not be understood".into(),
        500 => INTERNAL.into(),
        503 => UNAVAILABLE.into(),
        _ => status
            .reason()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP error {}", status.code)),
    }
}

/// The message of the error a request guard failed with. Rocket hands a catcher only the
/// status, so a guard keeps its message here for the catcher to send.
#[derive(Default)]
struct GuardFailure(Option<String>);

/// Fails a request guard with `error`: its status, and its message in the answer.
pub fn guard_failure<T>(
    request: &Request<'_>,
    error: ApiError,
) -> rocket::request::Outcome<T, ApiError> {
    let message = error.to_string();
    request.local_cache(|| GuardFailure(Some(message)));
    rocket::request::Outcome::Error((error.status(), error))
}

#[rocket::catch(default)]
fn default_catcher(status: Status, request: &Request<'_>) -> JsonResponse {
    let message = match &request.local_cache(GuardFailure::default).0 {
        Some(message) => message.clone(),
        None => catcher_message(status),
    };
    JsonResponse::message(status, false, &message)
}

/// Catchers that answer every status Rocket raises with the JSON envelope.
pub fn catchers() -> Vec<Catcher> {
    rocket::catchers![default_catcher]
}

/// Why the server (or a command) could not start. Printed as one line, then the process exits
/// non-zero: no backtrace, and always naming the config key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database file {path}: {reason} (config key `database`)")]
    Database { path: String, reason: String },
    /// The database refuses for a reason only its owner can change (a wrong password, a
    /// missing database, a foreign or newer schema): a restart cannot help.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl StartupError {
    pub fn database(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        StartupError::Database {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// A database error at `location` (shown as it displays: a PostgreSQL URL without its
    /// password).
    pub fn at(location: &impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        StartupError::Database {
            path: location.to_string(),
            reason: reason.to_string(),
        }
    }
}
