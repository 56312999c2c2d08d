//! The writes real front-ends make: `POST /CUSTOMER/ADD/` (registration), `POST
//! /CUSTOMER/UPDATE/` (an account page), `DELETE /CUSTOMER/DELETE/` (or `POST`, for clients
//! that cannot send DELETE) and `POST /CUSTOMER/PASSWORD/`. Each needs a write key (a
//! password change that proves the current password excepted), checks every value by the
//! import's rules, and is recorded in the audit trail in the same transaction.

use std::sync::Arc;

use rocket::http::{Method, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{delete, post, Route, State};

use super::body::{parse_id, query_id, Fields, RawBody};
use super::login::{Authenticated, LoginService};
use crate::apikey::{Acting, Caller, Principal, Registrar, WriteOrSession};
use crate::audit::Action;
use crate::auth::{self, PasswordHasher, Secret};
use crate::config::Config;
use crate::customer::{self, field, Customer, CustomerList, Field, FieldSet, Identifier};
use crate::error::{ApiError, JsonResponse};
use crate::store::Store;
use crate::sync::{self, Mirror, Mirroring};

/// The id in the query string (`?id_client=12`), checked.
pub struct QueryId(Option<i64>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for QueryId {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match query_id(request.uri().query().map(|q| q.as_str())) {
            Ok(id) => Outcome::Success(QueryId(id)),
            Err(error) => Outcome::Error((error.status(), error)),
        }
    }
}

/// A write body, checked: the id it names, the customer fields it sets, and a password.
#[derive(Default)]
struct Changes {
    id: Option<i64>,
    customer: Customer,
    present: FieldSet,
    password: Option<Secret>,
    /// The body as sent, for the master in mirror mode.
    raw: RawBody,
}

fn unknown_field(name: &str) -> ApiError {
    if name == "password" {
        ApiError::bad_request(
            "Unknown field: password (a password changes through POST /CUSTOMER/PASSWORD/)",
        )
    } else {
        ApiError::bad_request(format!("Unknown field: {name}"))
    }
}

/// Reads a write's fields: each customer field checked by the import's rules, the first bad
/// one a 400 naming it; `password` only where `password_allowed` (registration).
fn read_changes(fields: Fields, password_allowed: bool) -> Result<Changes, ApiError> {
    fields.check_unique()?;
    let mut changes = Changes {
        raw: fields.1,
        ..Changes::default()
    };
    for (name, value) in fields.0 {
        match name.as_str() {
            // Some clients repeat the key in the body; it is read from the query or headers.
            "apikey" => {}
            "id_client" | "id" => {
                let id = parse_id(&name, value.as_deref())?;
                if changes.id.is_some_and(|other| other != id) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid {name}: it differs from the other id given"
                    )));
                }
                changes.id = Some(id);
            }
            "password" if password_allowed => {
                let value = value.ok_or_else(|| {
                    ApiError::bad_request("Invalid password: expected a single value")
                })?;
                changes.password = (!value.is_empty()).then(|| Secret::new(value));
            }
            _ => {
                let field = Field::from_name(&name).ok_or_else(|| unknown_field(&name))?;
                let value = value.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid {name}: expected a text, number or true/false, not null, a list \
                         or an object"
                    ))
                })?;
                field::set_field(&mut changes.customer, field, value)
                    .map_err(|why| ApiError::bad_request(format!("Invalid {name}: {why}")))?;
                changes.present.insert(field);
            }
        }
    }
    for (field, value) in [
        (Field::Email, &changes.customer.email),
        (Field::Login, &changes.customer.login),
    ] {
        if let (true, Some(c)) = (
            changes.present.contains(field),
            field::invisible_char(value),
        ) {
            return Err(ApiError::bad_request(format!(
                "Invalid {}: contains an invisible character (U+{:04X})",
                field.name(),
                u32::from(c)
            )));
        }
    }
    let email = &changes.customer.email;
    if changes.present.contains(Field::Email)
        && !email.is_empty()
        && !field::looks_like_email(email)
    {
        return Err(ApiError::bad_request(
            "Invalid email: expected an address like name@example.com",
        ));
    }
    Ok(changes)
}

/// The fields only the shop sets: a customer acting through a public key (a session, or a
/// public registration) may not send them.
const SHOP_FIELDS: [Field; 7] = [
    Field::CustomerNumber,
    Field::GroupePrice,
    Field::ShowPrice,
    Field::WebRemise,
    Field::MegawinappLogin,
    Field::AddedDate,
    Field::AddHour,
];

/// Refuses, naming the first, any of the shop's own fields in `present`.
fn refuse_shop_fields(present: FieldSet) -> Result<(), ApiError> {
    match SHOP_FIELDS
        .into_iter()
        .find(|field| present.contains(*field))
    {
        Some(field) => Err(ApiError::Forbidden(format!(
            "This API key is public: {} is set by the shop, not by the customer",
            field.name()
        ))),
        None => Ok(()),
    }
}

/// The one id a write names, in the body and/or the query: both, differing, is a 400.
fn resolve_id(body: Option<i64>, query: Option<i64>) -> Result<i64, ApiError> {
    match (body, query) {
        (Some(a), Some(b)) if a != b => Err(ApiError::bad_request(
            "Invalid id_client: the body and the query string give different ids",
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(ApiError::bad_request("Missing field: id_client")),
    }
}

/// A write in mirror mode: what to send to the master, and what to store after.
struct Forward {
    method: &'static str,
    name: &'static str,
    id: Option<i64>,
    /// For an ADD whose answer gives no id: the customer is found by email after a sync.
    email: Option<String>,
    /// The body for the master (see [`RawBody::for_master`]).
    body: RawBody,
    action: Action,
    /// An UPDATE's checked changes: applied here if the master took them but its copy cannot
    /// be fetched back, so that this server does not serve the old values as current.
    changes: Option<(Customer, FieldSet)>,
    /// An ADD's password, sent to the master: kept out of its messages if it echoes it.
    password: Option<Secret>,
}

/// The master's refusal without `password` in it: a master may echo the body it was sent, in
/// whatever spelling it holds it (as sent, form-encoded, JSON-escaped...). Every spelling this
/// server knows is masked for the log; the client, who sent the password, gets the refusal
/// without the master's text, since a spelling nobody thought of could still carry it.
fn without_password(
    error: sync::SyncError,
    password: Option<&Secret>,
    body: &RawBody,
) -> sync::SyncError {
    let Some(password) = password.map(Secret::expose).filter(|p| !p.is_empty()) else {
        return error;
    };
    match error {
        sync::SyncError::Rejected { status, message } => {
            let mut masked = message;
            for spelling in password_spellings(password, body) {
                if spelling.len() >= 4 {
                    masked = masked.replace(&spelling, "***");
                }
            }
            log::warn!("the old API refused a registration: {masked}");
            sync::SyncError::Rejected {
                status,
                message: "the registration was refused (its message is in the server log: it \
                          may repeat the password sent)"
                    .to_owned(),
            }
        }
        other => other,
    }
}

/// The ways `password` may stand in a master's echo of `body`: as typed, form-encoded,
/// JSON-escaped, and exactly as the body sent it (a client's own percent-encoding or escapes).
fn password_spellings(password: &str, body: &RawBody) -> Vec<String> {
    let mut spellings = vec![
        password.to_owned(),
        form_urlencoded::byte_serialize(password.as_bytes()).collect(),
    ];
    if let Ok(json) = serde_json::to_string(password) {
        spellings.push(json.trim_matches('"').to_owned());
    }
    let text = String::from_utf8_lossy(&body.bytes);
    for pair in text.split('&') {
        if let Some((name, raw)) = pair.split_once('=') {
            if form_urlencoded::parse(name.as_bytes())
                .next()
                .is_some_and(|(decoded, _)| decoded == "password")
            {
                spellings.push(raw.to_owned());
            }
        }
    }
    if let Ok(fields) = serde_json::from_slice::<
        std::collections::HashMap<String, &serde_json::value::RawValue>,
    >(&body.bytes)
    {
        if let Some(raw) = fields.get("password") {
            spellings.push(raw.get().trim_matches('"').to_owned());
        }
    }
    spellings.sort_by_key(|spelling| std::cmp::Reverse(spelling.len()));
    spellings
}

/// What became of a write the master took.
enum Mirrored {
    /// Its copy is stored here: the customer as stored now (`None`: deleted, or an ADD the
    /// sync did not find by email).
    Stored(Option<Customer>),
    /// Its copy could not be fetched back or stored: the next sync (asked for at once) brings
    /// it. An UPDATE's changes as applied here meanwhile, if they could be.
    Pending(Option<Customer>),
}

/// In mirror mode a write goes to the master (the old API) first; then the customer it
/// touched is fetched again from there and stored (or deleted), so the next read sees it.
///
/// Waiting for the master never holds a thread of the blocking pool or a database connection
/// (reads, logins and `/health` need them): the turn is awaited as a future, bounded in number
/// and time ([`Mirror::write_turn`]); only the one write holding the turn uses a blocking
/// thread, for its HTTP calls. The write then runs on a task of its own, which keeps the turn
/// until the master's copy is stored here, even if the client leaves.
async fn through_master(
    mirror: &Arc<Mirror>,
    db: &Store,
    config: &Config,
    actor: &str,
    forward: Forward,
) -> Result<Mirrored, ApiError> {
    let turn = mirror.write_turn().await?;
    let (mirror, db, hasher, retention, actor) = (
        Arc::clone(mirror),
        db.clone(),
        config.hasher.clone(),
        config.retention,
        actor.to_owned(),
    );
    let task = rocket::tokio::spawn(async move {
        let _turn = turn;
        forward_and_store(&mirror, &db, &hasher, &actor, retention, forward).await
    });
    match task.await {
        Ok(result) => result.map_err(ApiError::from),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// Runs blocking work (an HTTP call to the master) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, sync::SyncError> + Send + 'static,
) -> Result<T, sync::SyncError> {
    rocket::tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| sync::SyncError::Store(e.to_string()))?
}

/// The body of [`through_master`], run in the write's turn.
async fn forward_and_store(
    mirror: &Arc<Mirror>,
    db: &Store,
    hasher: &PasswordHasher,
    actor: &str,
    retention: crate::config::Retention,
    forward: Forward,
) -> Result<Mirrored, sync::SyncError> {
    let upstream = mirror.upstream.clone();
    let extra = (forward.method == "DELETE")
        .then(|| forward.id.map(|id| format!("id_client={id}")))
        .flatten();
    let sent = {
        let (upstream, method, name, body) = (
            upstream.clone(),
            forward.method,
            forward.name,
            forward.body.clone(),
        );
        blocking(move || {
            upstream.forward(
                method,
                name,
                extra.as_deref(),
                body.content_type.as_deref(),
                &body.bytes,
            )
        })
        .await
    };
    let (status, body) = match sent {
        Ok(answer) => answer,
        Err(error) => {
            log::warn!(
                "a {} forwarded to the old API failed: {}",
                forward.name,
                error.detail()
            );
            if matches!(error, sync::SyncError::NoAnswer(_)) {
                // It may have been made there: the next sync tells.
                mirror.sync_soon();
            }
            return Err(error);
        }
    };
    let answer = upstream
        .accepted(status, &body)
        .map_err(|error| without_password(error, forward.password.as_ref(), &forward.body))
        .inspect_err(|error| {
            log::warn!("the old API refused a {}: {}", forward.name, error.detail());
        })?;
    // From here on the master has the change: whatever fails now, the answer says so.
    let returned = &answer["result"]["customer"][0]["clcleunik"];
    let id = forward.id.or_else(|| {
        returned
            .as_i64()
            .or_else(|| returned.as_str().and_then(|id| id.parse().ok()))
    });
    match store_master_copy(mirror, db, hasher, actor, retention, &forward, id).await {
        Ok(stored) => Ok(Mirrored::Stored(stored)),
        Err(error) => {
            log::warn!(
                "the old API took a {}, but its copy could not be stored here: {}; syncing now",
                forward.name,
                error.detail()
            );
            mirror.sync_soon();
            let local = match (forward.changes, id) {
                (Some((customer, present)), Some(id)) => {
                    let actor = actor.to_owned();
                    db.run(move |conn| conn.update(id, &customer, present, &actor, retention))
                        .await
                        .ok()
                }
                _ => None,
            };
            Ok(Mirrored::Pending(local))
        }
    }
}

/// After the master took a write: its copy of the customer, fetched again and stored here
/// (or the customer deleted here). The HTTP calls hold no database connection.
async fn store_master_copy(
    mirror: &Arc<Mirror>,
    db: &Store,
    hasher: &PasswordHasher,
    actor: &str,
    retention: crate::config::Retention,
    forward: &Forward,
    id: Option<i64>,
) -> Result<Option<Customer>, sync::SyncError> {
    let store_error = |e: ApiError| sync::SyncError::Store(e.to_string());
    let (this, hasher, actor, action) = (
        Arc::clone(mirror),
        hasher.clone(),
        actor.to_owned(),
        forward.action,
    );
    let upstream = mirror.upstream.clone();
    match (forward.method, id) {
        ("DELETE", Some(id)) => db
            .run(move |conn| {
                Ok::<_, ApiError>(
                    match crate::store::Backend::delete(conn, id, &actor, retention) {
                        Ok(()) | Err(customer::WriteError::NotFound(_)) => Ok(None),
                        Err(error) => Err(sync::SyncError::Store(error.to_string())),
                    },
                )
            })
            .await
            .map_err(store_error)?,
        (_, Some(id)) => {
            let record = blocking(move || upstream.fetch_one(id)).await?;
            db.run(move |conn| {
                let audit = (actor.as_str(), action, retention);
                let silent = &crate::transfer::Silent;
                Ok::<_, ApiError>(
                    sync::store(conn, &[record], false, &hasher, &this.key, audit, silent)
                        .and_then(|_| {
                            crate::store::Backend::find(conn, id)
                                .map_err(|e| sync::SyncError::Store(e.to_string()))
                        }),
                )
            })
            .await
            .map_err(store_error)?
        }
        (_, None) => {
            let records = blocking(move || upstream.fetch_list()).await?;
            let email = forward.email.clone();
            db.run(move |conn| {
                let silent = &crate::transfer::Silent;
                let upstream = &this.upstream;
                Ok::<_, ApiError>(
                    sync::apply(
                        conn, upstream, &records, &hasher, &this.key, retention, silent,
                    )
                    .and_then(|_| {
                        let Some(email) = email else {
                            return Ok(None);
                        };
                        crate::store::Backend::find_for_login(conn, &Identifier::Email(email))
                            .map(|found| found.map(|(customer, _)| customer))
                            .map_err(|e| sync::SyncError::Store(e.to_string()))
                    }),
                )
            })
            .await
            .map_err(store_error)?
        }
    }
}

/// The answer to a write the master took but whose copy is not stored here yet: 202, a
/// success that says so (a client must not send it again: that would make it twice), and
/// the customer as this server shows it meanwhile, if any.
fn pending(message: &str, customer: Option<&Customer>, config: &Config) -> JsonResponse {
    let mut response = one_customer_or_none(message, customer, config);
    response.status = Status::Accepted;
    response
}

fn one_customer_or_none(
    message: &str,
    customer: Option<&Customer>,
    config: &Config,
) -> JsonResponse {
    let result = CustomerList {
        customers: customer.map_or(&[][..], std::slice::from_ref),
        view: config.view,
    };
    JsonResponse::success(message, result)
}

const UPDATE_PENDING: &str = "Customer updated in the old API (the master). Its copy could not \
    be fetched back yet, so this server shows the change as sent until the next sync, which \
    starts now, brings the master's copy";
const UPDATE_PENDING_UNSEEN: &str = "Customer updated in the old API (the master). Its copy \
    could not be fetched back yet: this server shows the change after the next sync, which \
    starts now";
const ADD_PENDING: &str = "Customer added in the old API (the master). Its copy could not be \
    fetched back yet: it appears here after the next sync, which starts now. Do not send it \
    again";
const DELETE_PENDING: &str = "Customer deleted in the old API (the master). This server could \
    not remove its copy yet: it leaves the list at the next sync, which starts now";

fn one_customer(message: &str, customer: &Customer, config: &Config) -> JsonResponse {
    let result = CustomerList {
        customers: std::slice::from_ref(customer),
        view: config.view,
    };
    JsonResponse::success(message, result)
}

/// The subject a browser visitor's registrations or identity changes are counted under:
/// its address, or, when no address is known (a proxy that does not pass it on, `ip_header`
/// unset or its header missing), one allowance all such visitors share. Failing closed:
/// uncounted, a 409 ("that email is taken") repeated without end would list the customers.
fn visitor_subject(kind: &str, end_user: Option<std::net::IpAddr>) -> String {
    match end_user {
        Some(ip) => format!("{kind}:address:{ip}"),
        None => format!("{kind}:address:unknown"),
    }
}

#[allow(clippy::too_many_arguments)]
#[post("/CUSTOMER/UPDATE", data = "<body>")]
async fn post_update(
    key: WriteOrSession,
    query: Result<QueryId, ApiError>,
    db: &State<Store>,
    config: &State<Config>,
    mirroring: &State<Mirroring>,
    limiter: &State<super::reset::ResetLimiter>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let changes = read_changes(body?, false)?;
    let body_id = match (changes.id, changes.present.contains(Field::Clcleunik)) {
        (Some(id), true) if id != changes.customer.clcleunik => {
            return Err(ApiError::bad_request(
                "Invalid clcleunik: a customer's clcleunik cannot change",
            ))
        }
        (None, true) => Some(changes.customer.clcleunik),
        (id, _) => id,
    };
    let id = resolve_id(body_id, query?.0)?;
    let key = key.0;
    key.check_own(id)?;
    if let Some(own) = key.customer() {
        refuse_shop_fields(changes.present)?;
        // A customer may change their email or login, and a 409 says another customer has
        // it: counted per customer and per visitor, like registrations, so that a session
        // is not an unlimited test of which emails exist.
        if changes.present.contains(Field::Email) || changes.present.contains(Field::Login) {
            let visitor = visitor_subject("identity", key.caller().end_user);
            limiter
                .count(&[&format!("identity:customer:{own}"), &visitor])
                .await?;
        }
    }
    let key = key.caller();
    if let Some(mirror) = &mirroring.0 {
        let forward = Forward {
            method: "POST",
            name: "UPDATE",
            id: Some(id),
            email: None,
            body: changes.raw.for_master(Some(id)),
            action: Action::Update,
            changes: Some((changes.customer, changes.present)),
            password: None,
        };
        return match through_master(mirror, db, config, key.actor(), forward).await? {
            Mirrored::Stored(Some(stored)) => Ok(one_customer("Customer updated", &stored, config)),
            Mirrored::Stored(None) => Err(ApiError::NotFound(format!(
                "No customer with id_client {id}"
            ))),
            Mirrored::Pending(Some(local)) => Ok(pending(UPDATE_PENDING, Some(&local), config)),
            Mirrored::Pending(None) => Ok(pending(UPDATE_PENDING_UNSEEN, None, config)),
        };
    }
    let (actor, retention) = (key.actor().to_owned(), config.retention);
    let updated = db
        .run(move |conn| conn.update(id, &changes.customer, changes.present, &actor, retention))
        .await?;
    Ok(one_customer("Customer updated", &updated, config))
}

#[post("/CUSTOMER/ADD", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn post_add(
    key: Registrar,
    db: &State<Store>,
    config: &State<Config>,
    service: &State<LoginService>,
    mirroring: &State<Mirroring>,
    limiter: &State<super::reset::ResetLimiter>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let mut changes = read_changes(body?, true)?;
    let Registrar(key, public) = key;
    if public {
        // Registrations from browsers are limited per visitor like resets: a 409 says an
        // email is taken (the contract's promise), so an unlimited stream of them would list
        // the shop's customers.
        limiter
            .count(&[&visitor_subject("register", key.end_user)])
            .await?;
        // A registrant gets the next free id and the shop's defaults for its own fields.
        if changes.id.is_some() || changes.present.contains(Field::Clcleunik) {
            return Err(ApiError::Forbidden(
                "This API key is public: a registration cannot choose its clcleunik (or \
                 id_client); the next free one is given"
                    .into(),
            ));
        }
        refuse_shop_fields(changes.present)?;
    }
    if let Some(id) = changes.id {
        if changes.present.contains(Field::Clcleunik) && changes.customer.clcleunik != id {
            return Err(ApiError::bad_request(
                "Invalid id_client: it differs from clcleunik",
            ));
        }
        changes.customer.clcleunik = id;
        changes.present.insert(Field::Clcleunik);
    }
    if changes.customer.email.is_empty() {
        return Err(ApiError::bad_request("Missing field: email"));
    }
    if let Some(mirror) = &mirroring.0 {
        let forward = Forward {
            method: "POST",
            name: "ADD",
            id: changes
                .present
                .contains(Field::Clcleunik)
                .then_some(changes.customer.clcleunik),
            email: Some(changes.customer.email.clone()),
            body: changes.raw.for_master(None),
            action: Action::Add,
            changes: None,
            password: changes.password.take(),
        };
        let mut response = match through_master(mirror, db, config, key.actor(), forward).await? {
            Mirrored::Stored(Some(customer)) => one_customer("Customer added", &customer, config),
            Mirrored::Stored(None) => JsonResponse::message(Status::Ok, true, "Customer added"),
            Mirrored::Pending(_) => return Ok(pending(ADD_PENDING, None, config)),
        };
        response.status = Status::Created;
        return Ok(response);
    }
    let hash = match changes.password.take() {
        Some(password) => {
            let customer = &changes.customer;
            let context = [
                customer.email.as_str(),
                &customer.login,
                &customer.first_name,
                &customer.last_name,
            ];
            auth::check_new_password(&password, &context).map_err(ApiError::BadRequest)?;
            Some(service.hash(password).await?)
        }
        None => None,
    };
    let (actor, retention) = (key.actor().to_owned(), config.retention);
    let added = db
        .run(move |conn| conn.insert(changes.customer, changes.present, hash, &actor, retention))
        .await?;
    let mut response = one_customer("Customer added", &added, config);
    response.status = Status::Created;
    Ok(response)
}

async fn delete(
    key: Acting,
    id: Option<i64>,
    db: &Store,
    config: &Config,
    mirroring: &Mirroring,
) -> Result<JsonResponse, ApiError> {
    let id = id.ok_or_else(|| ApiError::bad_request("Missing field: id_client"))?;
    key.check_own(id)?;
    let key = key.caller();
    if let Some(mirror) = &mirroring.0 {
        let forward = Forward {
            method: "DELETE",
            name: "DELETE",
            id: Some(id),
            email: None,
            body: RawBody::default(),
            action: Action::Delete,
            changes: None,
            password: None,
        };
        return match through_master(mirror, db, config, key.actor(), forward).await? {
            Mirrored::Stored(_) => Ok(JsonResponse::message(Status::Ok, true, "Customer deleted")),
            Mirrored::Pending(_) => Ok(pending(DELETE_PENDING, None, config)),
        };
    }
    let (actor, retention) = (key.actor().to_owned(), config.retention);
    db.run(move |conn| conn.delete(id, &actor, retention))
        .await?;
    Ok(JsonResponse::message(Status::Ok, true, "Customer deleted"))
}

#[delete("/CUSTOMER/DELETE")]
async fn delete_customer(
    key: WriteOrSession,
    query: Result<QueryId, ApiError>,
    db: &State<Store>,
    config: &State<Config>,
    mirroring: &State<Mirroring>,
) -> Result<JsonResponse, ApiError> {
    delete(key.0, query?.0, db, config, mirroring).await
}

/// For clients that cannot send DELETE: the same, as a POST (id in the query or the body).
#[post("/CUSTOMER/DELETE", data = "<body>")]
async fn post_delete(
    key: WriteOrSession,
    query: Result<QueryId, ApiError>,
    db: &State<Store>,
    config: &State<Config>,
    mirroring: &State<Mirroring>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    let changes = read_changes(body?, false)?;
    if changes.present != FieldSet::default() {
        return Err(ApiError::bad_request(
            "A delete takes only id_client; other fields are not expected",
        ));
    }
    let id = resolve_id(changes.id, query?.0)?;
    delete(key.0, Some(id), db, config, mirroring).await
}

/// A password change body: who, the current password (optional with a write key), the new.
struct PasswordChange {
    /// Whose password: named by email, login or id, or by the reset token alone.
    who: PasswordOwner,
    current: Option<Secret>,
    new: Secret,
}

enum PasswordOwner {
    Named(Identifier),
    /// `resetToken` from `POST /CUSTOMER/PASSWORD/RESET/`: it names the customer.
    ResetToken(Secret),
}

fn read_password_change(fields: Fields) -> Result<PasswordChange, ApiError> {
    fields.check_unique()?;
    let (mut identifier, mut current, mut new, mut reset) = (None, None, None, None);
    for (name, value) in fields.0 {
        let text = || {
            value.clone().ok_or_else(|| {
                ApiError::bad_request(format!("Invalid {name}: expected a single value"))
            })
        };
        match name.as_str() {
            "apikey" => {}
            "email" => identifier = Some(Identifier::Email(text()?)),
            "login" => identifier = Some(Identifier::Login(text()?)),
            "id_client" => identifier = Some(Identifier::Id(parse_id(&name, value.as_deref())?)),
            "currentPassword" => current = Some(text()?).filter(|v| !v.is_empty()).map(Secret::new),
            "newPassword" => new = Some(text()?).filter(|v| !v.is_empty()).map(Secret::new),
            "resetToken" => reset = Some(Secret::new(text()?)),
            _ => return Err(ApiError::bad_request(format!("Unknown field: {name}"))),
        }
    }
    let who = match (reset, identifier) {
        (Some(token), None) if current.is_none() => PasswordOwner::ResetToken(token),
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "Invalid resetToken: it names the customer itself; send it with newPassword \
                 only (no email, login, id_client or currentPassword)",
            ))
        }
        (None, identifier) => PasswordOwner::Named(
            identifier
                .filter(
                    |id| !matches!(id, Identifier::Email(v) | Identifier::Login(v) if v.is_empty()),
                )
                .ok_or_else(|| {
                    ApiError::bad_request("Missing field: email, login, id_client or resetToken")
                })?,
        ),
    };
    Ok(PasswordChange {
        who,
        current,
        new: new.ok_or_else(|| ApiError::bad_request("Missing field: newPassword"))?,
    })
}

#[post("/CUSTOMER/PASSWORD", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn post_password(
    principal: Principal,
    db: &State<Store>,
    config: &State<Config>,
    service: &State<LoginService>,
    mirroring: &State<Mirroring>,
    body: Result<Fields, ApiError>,
) -> Result<JsonResponse, ApiError> {
    if mirroring.0.is_some() {
        return Err(ApiError::Conflict(
            "This server mirrors the old API: passwords are set there (in the ERP), and \
             reach this server at the next sync"
                .into(),
        ));
    }
    let PasswordChange { who, current, new } = read_password_change(body?)?;
    let identifier = match who {
        PasswordOwner::Named(identifier) => identifier,
        // The token is the proof: any key, a public one without a session included.
        PasswordOwner::ResetToken(token) => {
            return reset_password(principal.caller(), db, config, service, token, new).await
        }
    };
    let acting = match principal {
        Principal::Key(caller) => Acting::Key(caller),
        Principal::Customer { caller, id } => Acting::Customer { caller, id },
        Principal::Visitor(_) => return Err(ApiError::PublicKey),
    };
    // A session changes its own customer's password, proving the current one; it is checked
    // by id, so that another customer sharing the email or login is never the one.
    let identifier = match acting.customer() {
        None => identifier,
        Some(own) => {
            if current.is_none() {
                return Err(ApiError::Forbidden(
                    "This API key is public: a customer changes their password with \
                     currentPassword"
                        .into(),
                ));
            }
            let found = db.run(move |conn| conn.find(own)).await?;
            let named_own = match (&identifier, &found) {
                (Identifier::Id(id), _) => *id == own,
                (Identifier::Email(email), Some(c)) => email.eq_ignore_ascii_case(&c.email),
                (Identifier::Login(login), Some(c)) => *login == c.login,
                (_, None) => false,
            };
            if !named_own {
                return Err(ApiError::Forbidden(
                    "This session may only change its own customer's password".into(),
                ));
            }
            Identifier::Id(own)
        }
    };
    let key = acting.caller();
    let (customer, action) = match current {
        // The customer proves the current password: any key, the login's limits and 401.
        Some(current) => {
            let Authenticated { customer, .. } = service
                .authenticate(db, identifier, &current, key.end_user)
                .await?;
            (customer, Action::Password)
        }
        // An owner's reset: a write key (or no keys at all, on loopback).
        None if key.can_write() => {
            let lookup = identifier.clone();
            let found = db.run(move |conn| conn.find_for_login(&lookup)).await?;
            let (customer, _) = found.ok_or_else(|| {
                ApiError::NotFound("No customer with that email, login or id_client".into())
            })?;
            (customer, Action::PasswordReset)
        }
        None => return Err(ApiError::ReadOnlyKey),
    };
    let hash = strong_hash(service, &customer, new).await?;
    let (actor, retention, id) = (key.actor().to_owned(), config.retention, customer.clcleunik);
    let changed = db
        .run(move |conn| conn.set_password(id, &hash, &actor, action, retention))
        .await?;
    if !changed {
        return Err(ApiError::NotFound(format!(
            "No customer with id_client {id}"
        )));
    }
    Ok(JsonResponse::message(Status::Ok, true, "Password changed"))
}

/// `new`, hashed, once it passes the strength rules for `customer` (whose email, login and
/// names count as words an attacker tries first); a 400 saying why otherwise.
async fn strong_hash(
    service: &LoginService,
    customer: &Customer,
    new: Secret,
) -> Result<String, ApiError> {
    let context = [
        customer.email.as_str(),
        &customer.login,
        &customer.first_name,
        &customer.last_name,
    ];
    auth::check_new_password(&new, &context).map_err(ApiError::BadRequest)?;
    service.hash(new).await
}

/// The password a reset token names, set (any key: the token is the proof). The token works
/// once; a weak new password is refused and leaves it usable.
async fn reset_password(
    caller: &Caller,
    db: &Store,
    config: &Config,
    service: &LoginService,
    token: Secret,
    new: Secret,
) -> Result<JsonResponse, ApiError> {
    let unusable = || {
        ApiError::bad_request(
            "This reset token cannot be used (wrong, already used, or expired): start a new \
             password reset",
        )
    };
    let lookup = token.clone();
    let customer = db
        .run(move |conn| {
            let Some(id) = crate::reset::holder(conn, &lookup)? else {
                return Ok::<_, crate::store::Error>(None);
            };
            conn.find_for_login(&Identifier::Id(id))
        })
        .await?
        .map(|(customer, _)| customer)
        .ok_or_else(unusable)?;
    let hash = strong_hash(service, &customer, new).await?;
    let (actor, retention) = (caller.actor().to_owned(), config.retention);
    db.run(move |conn| crate::reset::spend(conn, &token, &hash, &actor, retention))
        .await?
        .ok_or_else(unusable)?;
    Ok(JsonResponse::message(Status::Ok, true, "Password changed"))
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![
        post_update,
        post_add,
        delete_customer,
        post_delete,
        post_password
    ];
    for path in [super::ADD_PATH, super::UPDATE_PATH, super::PASSWORD_PATH] {
        routes.extend(super::fallback_routes(path, &[Method::Post]));
    }
    routes.extend(super::fallback_routes(
        super::DELETE_PATH,
        &[Method::Delete, Method::Post],
    ));
    routes
}
