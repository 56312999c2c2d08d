//! `POST /CUSTOMER/LOGIN/`: checks a customer's password on the server, replacing the old
//! "fetch by email, compare in the browser" pattern, and opens a customer session; and
//! `POST /CUSTOMER/LOGOUT/`, which ends one.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rocket::http::Method;
use rocket::tokio::sync::Semaphore;
use rocket::{post, Route, State};

use crate::apikey::AnyKey;
use crate::audit::{login_detail, Action, LoginOutcome};
use crate::auth::{PasswordHasher, Secret, Verdict};
use crate::config::Config;
use crate::customer::{Customer, CustomerList, Identifier};
use crate::error::{ApiError, JsonResponse};
use crate::metrics::{Login, Metrics};
use crate::ratelimit::Limits;
use crate::session;
use crate::store::Store;

use super::body::Fields;

/// A login waiting longer than this for a free verifier gets a 503 rather than hanging.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed login body: who, and the password they typed.
pub struct LoginRequest {
    identifier: Identifier,
    password: Secret,
}

/// Picks the identifier and the password out of the body's fields.
fn parse_fields(fields: Fields) -> Result<LoginRequest, ApiError> {
    // Other fields are ignored (clients send extras), so only these may not come twice.
    fields.check_unique_of(&["email", "login", "password"])?;
    let mut email = None;
    let mut login = None;
    let mut password = None;
    for (name, value) in fields.0 {
        let Some(value) = value else {
            // A list or an object where text belongs: said as the writes say it.
            if matches!(name.as_str(), "email" | "login" | "password") {
                return Err(ApiError::bad_request(format!(
                    "Invalid {name}: expected a single value"
                )));
            }
            continue;
        };
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
    limiter: Limits,
    /// When each subject (account, address) last had a `limited` row in the audit trail.
    limited_written: LimitedRows,
    /// Each verification takes ~19 MiB and a core for tens of milliseconds; this bounds how
    /// many run at once, so a burst of logins cannot starve list requests or exhaust memory.
    verifiers: Semaphore,
    hasher: PasswordHasher,
    /// The slowest password check lately: every failure takes at least this long.
    floor: std::sync::Arc<FailureFloor>,
}

/// How long a failed login takes at least: the slowest check of the last ten minutes (capped
/// at one second). An unknown account is checked against an Argon2id dummy, but a wrong
/// password for an account still holding a bcrypt hash (cost 10 to 12) takes several times
/// longer: without a floor, timing would tell such accounts from unknown ones.
struct FailureFloor(std::sync::Mutex<Floors>);

/// The floor's two parts: what start-up measured on the costliest stored hash (kept for the
/// life of the server, so that a quiet spell does not open the leak again), and the slowest
/// check seen lately (a hash imported since, a busy machine), forgotten after ten minutes.
struct Floors {
    primed: Duration,
    recent: (Duration, Instant),
}

impl FailureFloor {
    const KEPT: Duration = Duration::from_secs(600);
    const CAP: Duration = Duration::from_secs(1);

    fn new() -> FailureFloor {
        FailureFloor(std::sync::Mutex::new(Floors {
            primed: Duration::ZERO,
            recent: (Duration::ZERO, Instant::now()),
        }))
    }

    /// Records what the start-up check on the costliest stored hash took.
    fn prime(&self, took: Duration) {
        let mut floors = self.0.lock().unwrap_or_else(|p| p.into_inner());
        floors.primed = floors.primed.max(took.min(Self::CAP));
    }

    /// Records a check that took `took`; the floor a failure waits out now.
    fn observe(&self, took: Duration) -> Duration {
        let mut floors = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let recent = &mut floors.recent;
        if took >= recent.0 || now.duration_since(recent.1) > Self::KEPT {
            *recent = (took.min(Self::CAP), now);
        }
        floors.primed.max(floors.recent.0)
    }
}

impl LoginService {
    pub fn new(config: &Config, store: &Store) -> LoginService {
        LoginService {
            limiter: Limits::new(store, config.login_max_failures, config.login_window),
            limited_written: LimitedRows::new(config.login_window),
            verifiers: Semaphore::new(config.login_workers),
            hasher: config.hasher.clone(),
            floor: std::sync::Arc::new(FailureFloor::new()),
        }
    }

    /// Sets the failure floor from the slowest kind of stored hash, on a thread of its own so
    /// that start-up does not wait for it: one wrong-password check against the bcrypt hash
    /// of highest cost, if any is stored. Without it, the very first probe of such an account
    /// would still stand out.
    pub fn prime(&self, db: &Store) {
        let (floor, hasher, db) = (
            std::sync::Arc::clone(&self.floor),
            self.hasher.clone(),
            db.clone(),
        );
        std::thread::spawn(move || {
            let Ok(mut conn) = db.connection() else {
                return;
            };
            let slowest = conn.slowest_hash().ok().flatten();
            if let Some(hash) = slowest {
                let started = Instant::now();
                let _ = hasher.verify(&Secret::new(String::from("not the password")), Some(&hash));
                floor.prime(started.elapsed());
            }
        });
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

/// A customer whose password was just verified.
pub struct Authenticated {
    pub customer: Customer,
    /// The stored hash, and whether it is weaker than configured (bcrypt, cheaper Argon2).
    pub stored: Option<Secret>,
    pub rehash: bool,
}

/// Who a login attempt was about, as far as it got: for its audit row.
#[derive(Debug, Default)]
struct Trace {
    /// The account's customer, when it exists.
    customer: Option<i64>,
    /// What the limits count the attempt against (the account, the end user's address).
    subjects: Vec<String>,
}

/// When each subject last had a `limited` row: a flood of refused attempts writes one row per
/// account or address per window, not one per attempt. Bounded like the failure counts.
struct LimitedRows {
    window: Duration,
    written: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl LimitedRows {
    fn new(window: Duration) -> LimitedRows {
        LimitedRows {
            window,
            written: std::sync::Mutex::default(),
        }
    }

    /// Whether a refused attempt against `subjects` gets a row: none of them had one in the
    /// window. All of them are then marked. "None", not "one of them": a locked address
    /// trying a fresh email each time (or a locked account from a fresh address each time)
    /// is refused for the subject already marked, and writes nothing more. With [`crate::ratelimit::MAX_SUBJECTS`] subjects
    /// marked in the window (an attack from that many addresses), no more rows are written
    /// until some leave it: the bound holds whatever the flood.
    fn first_in_window(&self, subjects: &[String]) -> bool {
        let now = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |at: &Instant| now.duration_since(*at) < self.window;
        let first = subjects
            .iter()
            .all(|subject| !written.get(subject).is_some_and(fresh));
        if !first {
            return false;
        }
        if written.len() + subjects.len() > crate::ratelimit::MAX_SUBJECTS {
            written.retain(|_, at| fresh(at));
            if written.len() + subjects.len() > crate::ratelimit::MAX_SUBJECTS {
                return false;
            }
        }
        for subject in subjects {
            written.insert(subject.clone(), now);
        }
        true
    }
}

impl LoginService {
    /// Checks `password` for the account `identifier` names, under the failure limits: the
    /// attempt is counted (for the account, and for the end user's address `client` when it
    /// is known) before the slow check
    /// and refunded if it succeeds. Unknown account and wrong password are the same 401, in
    /// the same time (a dummy hash is verified for an unknown account).
    pub async fn authenticate(
        &self,
        db: &Store,
        identifier: Identifier,
        password: &Secret,
        client: Option<IpAddr>,
    ) -> Result<Authenticated, ApiError> {
        let mut trace = Trace::default();
        self.check(db, identifier, password, client, &mut trace)
            .await
    }

    /// [`LoginService::authenticate`], telling `trace` who the attempt was about.
    async fn check(
        &self,
        db: &Store,
        identifier: Identifier,
        password: &Secret,
        client: Option<IpAddr>,
        trace: &mut Trace,
    ) -> Result<Authenticated, ApiError> {
        let lookup = identifier.clone();
        let found = db.run(move |conn| conn.find_for_login(&lookup)).await?;
        let account = match &found {
            Some((customer, _)) => format!("customer:{}", customer.clcleunik),
            None => identifier.subject(),
        };
        // Only an end user's own address is counted: a shop's server calling for all of its
        // customers is not one person (see `apikey::end_user_address`).
        let address = client.map(|ip| format!("address:{ip}"));
        let mut subjects = vec![account.as_str()];
        subjects.extend(address.as_deref());
        trace.customer = found.as_ref().map(|(customer, _)| customer.clcleunik);
        trace.subjects = subjects
            .iter()
            .map(|subject| (*subject).to_owned())
            .collect();
        // Counted before the (slow) check, so that parallel attempts cannot all slip through.
        let attempt = self.limiter.begin(&subjects).await?;

        let (customer, stored) = match found {
            Some((customer, stored)) => (Some(customer), stored),
            None => (None, None),
        };
        let check_against = stored.clone();
        let attempt_password = password.clone();
        let checking = Instant::now();
        let verdict = self
            .with_hasher(move |hasher| {
                let started = Instant::now();
                let verdict = hasher.verify(
                    &attempt_password,
                    check_against.as_ref().map(Secret::expose),
                );
                (verdict, started.elapsed())
            })
            .await;
        let verdict = match verdict {
            Ok((verdict, took)) => {
                let floor = self.floor.observe(took);
                if !matches!(verdict, Verdict::Valid { .. }) || customer.is_none() {
                    // A failure takes as long as the slowest kind of check.
                    let waited = checking.elapsed();
                    if waited < floor {
                        rocket::tokio::time::sleep(floor - waited).await;
                    }
                }
                verdict
            }
            Err(error) => {
                // Not checked (the server is busy): not a failure.
                self.limiter.refund(attempt).await;
                return Err(error);
            }
        };
        let (Some(customer), Verdict::Valid { rehash }) = (customer, verdict) else {
            self.limiter.failed(attempt).await;
            return Err(ApiError::InvalidCredentials);
        };
        self.limiter.succeeded(attempt, &account).await;
        Ok(Authenticated {
            customer,
            stored,
            rehash,
        })
    }

    /// Writes a login attempt's row in the audit trail: `ok`, `failed` or `limited` (the
    /// first refusal of its account or address in the window only), the key, the customer
    /// when the account exists, the end user's address when known. Never the password or
    /// the email or login typed. A row that cannot be written is logged; the answer stands.
    async fn audit(
        &self,
        db: &Store,
        config: &Config,
        caller: &crate::apikey::Caller,
        trace: &Trace,
        outcome: Option<LoginOutcome>,
    ) {
        let Some(outcome) = outcome else {
            return;
        };
        if matches!(outcome, LoginOutcome::Limited { .. })
            && !self.limited_written.first_in_window(&trace.subjects)
        {
            return;
        }
        let detail = login_detail(outcome, trace.customer.is_some(), caller.end_user);
        let (actor, customer, retention) =
            (caller.actor().to_owned(), trace.customer, config.retention);
        let written = db
            .run(move |conn| conn.audit_event(&actor, Action::Login, customer, &detail, retention))
            .await;
        if let Err(error) = written {
            log::warn!("a login attempt could not be written to the audit trail: {error}");
        }
    }

    /// Hashes `password` on the bounded pool of password workers.
    pub async fn hash(&self, password: Secret) -> Result<String, ApiError> {
        self.with_hasher(move |hasher| hasher.hash(&password))
            .await?
            .map_err(ApiError::internal)
    }
}

/// LOGIN's `result`: the customer, as the list sends it, and the session.
struct LoginResult<'a> {
    customers: CustomerList<'a>,
    session: &'a session::NewSession,
}

impl serde::Serialize for LoginResult<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("customer", &self.customers.array())?;
        map.serialize_entry("token", self.session.token.expose())?;
        map.serialize_entry("expires", &self.session.expires)?;
        map.end()
    }
}

#[post("/CUSTOMER/LOGIN", data = "<body>")]
async fn post_login(
    key: AnyKey,
    db: &State<Store>,
    config: &State<Config>,
    service: &State<LoginService>,
    metrics: &State<std::sync::Arc<Metrics>>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let LoginRequest {
        identifier,
        password,
    } = parse_fields(body?)?;
    let mut trace = Trace::default();
    let checked = service
        .check(db, identifier, &password, key.0.end_user, &mut trace)
        .await;
    let refused = match &checked {
        Ok(_) => None,
        Err(ApiError::InvalidCredentials) => Some(LoginOutcome::Failed),
        Err(ApiError::TooManyAttempts { retry_after }) => Some(LoginOutcome::Limited {
            retry_after: *retry_after,
        }),
        // Not checked (busy, the database unavailable): no outcome to record.
        Err(_) => None,
    };
    match &refused {
        Some(LoginOutcome::Failed) => metrics.login(Login::Failed),
        Some(LoginOutcome::Limited { .. }) => metrics.login(Login::Limited),
        Some(LoginOutcome::Ok) | None => {}
    }
    if refused.is_some() {
        service.audit(db, config, &key.0, &trace, refused).await;
    }
    let Authenticated {
        customer,
        stored,
        rehash,
    } = checked?;
    if let (true, Some(old)) = (rehash, stored) {
        upgrade_hash(db, service, customer.clcleunik, old, password).await;
    }
    let (id, days) = (customer.clcleunik, config.session_days);
    let session = db.run(move |conn| session::open(conn, id, days)).await?;
    service
        .audit(db, config, &key.0, &trace, Some(LoginOutcome::Ok))
        .await;
    let result = LoginResult {
        customers: CustomerList {
            customers: std::slice::from_ref(&customer),
            view: config.view,
        },
        session: &session,
    };
    metrics.login(Login::Ok);
    Ok(JsonResponse::success("Login successful", result))
}

/// Ends the session sent as `Authorization: Bearer TOKEN` (with any key, given in
/// `?apikey=` or `X-API-Key`), and only that one.
#[post("/CUSTOMER/LOGOUT")]
async fn post_logout(
    _key: AnyKey,
    token: Result<SessionToken, ApiError>,
    db: &State<Store>,
) -> Result<JsonResponse, ApiError> {
    let SessionToken(token) = token?;
    match db
        .run(move |conn| session::end(conn, token.expose()))
        .await?
    {
        true => Ok(JsonResponse::message(
            rocket::http::Status::Ok,
            true,
            "Logged out",
        )),
        false => Err(ApiError::SessionEnded),
    }
}

/// The session token a request sends (`Authorization: Bearer cls_...`).
struct SessionToken(Secret);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for SessionToken {
    type Error = ApiError;

    async fn from_request(
        request: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, ApiError> {
        match session::presented(request) {
            Some(token) => rocket::request::Outcome::Success(SessionToken(Secret::new(token))),
            None => {
                let error = ApiError::NoSession;
                rocket::request::Outcome::Error((error.status(), error))
            }
        }
    }
}

/// Replaces a bcrypt or weaker Argon2 hash by one with the configured parameters. A failure
/// here does not fail the login: the old hash still works, and the next login tries again.
async fn upgrade_hash(db: &Store, service: &LoginService, id: i64, old: Secret, password: Secret) {
    let new = match service.hash(password).await {
        Ok(new) => new,
        Err(error) => {
            return log::warn!("could not re-hash the password of customer {id}: {error}")
        }
    };
    let stored = db
        .run(move |conn| conn.replace_hash(id, old.expose(), &new))
        .await;
    match stored {
        Ok(true) => {
            log::info!("upgraded the password hash of customer {id} to the configured Argon2id");
        }
        Ok(false) => {}
        Err(error) => {
            log::warn!("could not store the re-hashed password of customer {id}: {error}");
        }
    }
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![post_login, post_logout];
    routes.extend(super::fallback_routes(super::LOGIN_PATH, &[Method::Post]));
    routes.extend(super::fallback_routes(super::LOGOUT_PATH, &[Method::Post]));
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_subject_gets_one_limited_row_per_window() {
        let rows = LimitedRows::new(Duration::from_millis(200));
        let account = vec!["customer:1".to_owned()];
        let both = vec!["customer:1".to_owned(), "address:192.0.2.1".to_owned()];
        assert!(rows.first_in_window(&account));
        assert!(!rows.first_in_window(&account));
        assert!(
            !rows.first_in_window(&both),
            "refused for the account, already written"
        );
        // A locked address trying a fresh account each time: one row, not one per account.
        let address = |n: usize| vec![format!("email:{n}@x.example"), "address:192.0.2.9".into()];
        assert!(rows.first_in_window(&address(0)));
        assert!((1..50).all(|n| !rows.first_in_window(&address(n))));
        std::thread::sleep(Duration::from_millis(250));
        assert!(rows.first_in_window(&account), "a new window");
    }

    #[test]
    fn the_primed_floor_outlasts_a_quiet_spell_and_recent_checks_raise_it() {
        let floor = FailureFloor::new();
        floor.prime(Duration::from_millis(200));
        assert_eq!(
            floor.observe(Duration::from_millis(1)),
            Duration::from_millis(200)
        );
        // Ten minutes without a slow check: the recent part is forgotten, the primed stays.
        floor.0.lock().unwrap().recent.1 = Instant::now() - FailureFloor::KEPT * 2;
        assert_eq!(
            floor.observe(Duration::from_millis(1)),
            Duration::from_millis(200)
        );
        assert_eq!(
            floor.observe(Duration::from_millis(700)),
            Duration::from_millis(700)
        );
        assert_eq!(floor.observe(Duration::from_secs(5)), FailureFloor::CAP);
    }
}
