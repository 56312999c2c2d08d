//! API keys: creation (shown once), storage as SHA-256 digests, and the request guards that
//! let a request through only with a valid key (or anonymously on a loopback address when no
//! key exists at all). A public key (browser code) acts only through a customer session
//! ([`crate::session`]): the guards below say, route by route, what each kind of caller may do.
//!
//! Keys are 256 random bits, so a fast digest is enough: nobody can guess one by brute force,
//! and a stolen database holds nothing that opens the API.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rocket::http::Method;
use rocket::request::{FromRequest, Outcome, Request};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Secret;
use crate::error::{guard_failure, ApiError};
use crate::session;
use crate::store::{self, Backend, Store};

/// What every key starts with, so a leaked one is easy to recognise in a scanner or a log.
const PREFIX: &str = "clt_";

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// Why a key command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error("{0:?} names the command line, anonymous access or the sync in the audit trail: pick another name")]
    Reserved(String),
    /// Not echoed: it may be a key pasted in the wrong place.
    #[error("a key name may not start with clt_, cls_ or clr_ (it looks like a key or a token, and `keys list` would show it): pick a name such as \"webshop\"")]
    LooksLikeKey,
    #[error("a key named {0:?} already exists; revoke it first or pick another name")]
    Exists(String),
    #[error("no key named {0:?}")]
    NotFound(String),
    #[error("database: {0}")]
    Db(#[from] crate::store::Error),
}

fn check_name(name: &str) -> Result<(), KeyError> {
    // A key pasted as the name would be printed by `keys list` for anyone to read.
    let lower = name.to_ascii_lowercase();
    if ["clt_", "cls_", "clr_"]
        .iter()
        .any(|prefix| lower.starts_with(prefix))
    {
        return Err(KeyError::LooksLikeKey);
    }
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(KeyError::BadName(name.to_owned()));
    }
    // The audit trail's other actors: a key so named would pass its writes off as theirs.
    if ["cli", "anonymous", "sync"]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
    {
        return Err(KeyError::Reserved(name.to_owned()));
    }
    Ok(())
}

/// What a key may do. Keys are read-only unless created with `--write`; a `--public` key is
/// meant to sit in browser code and acts only for the customer whose session comes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Public,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Public => "public",
        }
    }

    pub fn from_stored(text: &str) -> Scope {
        match text {
            "write" => Scope::Write,
            "public" => Scope::Public,
            _ => Scope::Read,
        }
    }

    /// Which of two matching keys a request gets: the most capable.
    fn rank(self) -> u8 {
        match self {
            Scope::Public => 0,
            Scope::Read => 1,
            Scope::Write => 2,
        }
    }
}

/// What a new key may do besides its scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// The key belongs to a server that calls on behalf of end users (a shop's back end): it
    /// may name the end user's address as the first `X-Forwarded-For` entry, and login limits
    /// then count that address.
    pub forwards_client_address: bool,
}

/// Creates a key named `name` and returns it: the only time it is ever seen.
pub fn create(conn: &mut dyn Backend, name: &str, scope: Scope) -> Result<Secret, KeyError> {
    create_with(conn, name, scope, KeyOptions::default())
}

/// [`create`], with [`KeyOptions`].
pub fn create_with(
    conn: &mut dyn Backend,
    name: &str,
    scope: Scope,
    options: KeyOptions,
) -> Result<Secret, KeyError> {
    check_name(name)?;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let key = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    if !conn.create_key(name, &digest(&key), scope, options)? {
        return Err(KeyError::Exists(name.to_owned()));
    }
    Ok(Secret::new(key))
}

/// A key as `keys list` shows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub scope: Scope,
    pub created_at: String,
    pub forwards_client_address: bool,
    /// When a server last accepted it (UTC, as the audit trail writes times), as written
    /// so far (see [`crate::keyuse`]); `None`: never.
    pub last_used: Option<String>,
}

/// Every key's name, scope, creation time and last use, oldest first. Never the keys.
pub fn list(conn: &mut dyn Backend) -> Result<Vec<KeyInfo>, KeyError> {
    Ok(conn.keys()?)
}

/// Removes the key named `name`; a running server refuses it from its next request on.
pub fn revoke(conn: &mut dyn Backend, name: &str) -> Result<(), KeyError> {
    match conn.revoke_key(name)? {
        false => Err(KeyError::NotFound(name.to_owned())),
        true => Ok(()),
    }
}

/// How many keys exist.
pub fn count(conn: &mut dyn Backend) -> store::Result<usize> {
    conn.key_count()
}

/// A stored key as the server holds it: digest, name (for the audit trail) and scope.
struct KnownKey {
    digest: KeyDigest,
    caller: Caller,
}

fn load_keys(conn: &mut dyn Backend) -> store::Result<Vec<KnownKey>> {
    Ok(conn
        .stored_keys()?
        .into_iter()
        .filter_map(|stored| {
            let digest = KeyDigest::try_from(stored.digest.as_slice()).ok()?;
            Some(KnownKey {
                digest,
                caller: Caller {
                    key_id: Some(stored.id),
                    name: Some(stored.name.into()),
                    scope: stored.scope,
                    forwards_client_address: stored.forwards_client_address,
                    end_user: None,
                },
            })
        })
        .collect())
}

/// Who is calling: the key's name and scope, or nobody (no key exists; loopback or
/// `allow_anonymous`), who may do everything, as the contract says for demos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's row (for its last use), or `None` without a key.
    pub key_id: Option<i64>,
    pub name: Option<Arc<str>>,
    pub scope: Scope,
    /// The key may name the end user's address in `X-Forwarded-For` (see [`KeyOptions`]).
    pub forwards_client_address: bool,
    /// The end user's address, when this request makes it known (see [`end_user_address`]):
    /// the address login and password-change limits count. `None` for a server calling on
    /// behalf of its users without naming them: only per-account limits apply then, so one
    /// user's failures never keep another out.
    pub end_user: Option<IpAddr>,
}

impl Caller {
    /// The name the audit trail records: the key's, or `anonymous`.
    pub fn actor(&self) -> &str {
        self.name.as_deref().unwrap_or("anonymous")
    }

    pub fn can_write(&self) -> bool {
        self.scope == Scope::Write
    }
}

/// Who may call the API, as decided at start-up, plus the key digests, reloaded whenever the
/// database changes so that `clientele keys revoke` takes effect at once.
pub struct Access {
    /// No key needed while none exists (loopback address, or `allow_anonymous = true`).
    anonymous_when_keyless: bool,
    /// Keyless on a loopback address: requests must name this machine in `Host`.
    keyless_on_loopback: bool,
    /// The address the server listens on.
    address: IpAddr,
    /// Browser origins the owner allowed (`cors_origins`).
    cors_origins: Vec<String>,
    cache: RwLock<Option<(i64, Arc<[KnownKey]>)>>,
    /// When each key was last used, written to the database now and then.
    uses: Arc<crate::keyuse::KeyUses>,
    /// When keys were last read again because a presented key was not among those cached
    /// (see [`Access::check`]).
    reread: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often, at most, an unknown key makes a node read the keys again: on PostgreSQL a key
/// created through another node or a tool works at once, and random keys cost one small
/// query per interval at most.
const REREAD_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Access {
    pub fn new(
        anonymous_when_keyless: bool,
        address: IpAddr,
        cors_origins: Vec<String>,
        uses: Arc<crate::keyuse::KeyUses>,
    ) -> Access {
        Access {
            anonymous_when_keyless,
            keyless_on_loopback: anonymous_when_keyless && address.is_loopback(),
            address,
            cors_origins,
            cache: RwLock::new(None),
            uses,
            reread: std::sync::Mutex::new(None),
        }
    }

    /// Whether the server serves without a key while none exists (loopback or
    /// `allow_anonymous`).
    pub fn anonymous_when_keyless(&self) -> bool {
        self.anonymous_when_keyless
    }

    /// The current keys, from memory unless the database changed since they were read
    /// (`generation` is the data version as of this request), or `fresh`.
    async fn keys(
        &self,
        db: &Store,
        generation: Option<i64>,
        fresh: bool,
    ) -> Result<Arc<[KnownKey]>, ApiError> {
        if let (Some(generation), Ok(cache), false) = (generation, self.cache.read(), fresh) {
            if let Some((cached, digests)) = cache.as_ref() {
                if *cached == generation {
                    return Ok(Arc::clone(digests));
                }
            }
        }
        let digests: Arc<[KnownKey]> = db.run(|conn| load_keys(conn)).await?.into();
        if let (Some(generation), Ok(mut cache)) = (generation, self.cache.write()) {
            *cache = Some((generation, Arc::clone(&digests)));
        }
        Ok(digests)
    }

    /// Whether a key not found among the cached ones may be looked for again now: on
    /// PostgreSQL (where another node's commit reaches this one a moment later), at most
    /// every [`REREAD_EVERY`]. SQLite's data version is exact: never needed there.
    fn may_reread(&self, db: &Store) -> bool {
        if !matches!(db, Store::Postgres(_)) {
            return false;
        }
        let mut last = self.reread.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REREAD_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Who a request presenting `presented` keys is, if it may go on at all.
    pub async fn check(
        &self,
        db: &Store,
        generation: Option<i64>,
        presented: &[&str],
    ) -> Result<Caller, ApiError> {
        let mut keys = self.keys(db, generation, false).await?;
        // One comparison per request; a second only when an unknown key is looked up again.
        let mut matched = Self::matching(&keys, presented);
        if matched.is_none() && !presented.is_empty() && !keys.is_empty() && self.may_reread(db) {
            keys = self.keys(db, generation, true).await?;
            matched = Self::matching(&keys, presented);
        }
        if keys.is_empty() {
            return if self.anonymous_when_keyless {
                Ok(Caller {
                    key_id: None,
                    name: None,
                    scope: Scope::Write,
                    forwards_client_address: false,
                    end_user: None,
                })
            } else {
                Err(ApiError::Unauthorized)
            };
        }
        let caller = matched.ok_or(ApiError::Unauthorized)?;
        if let Some(id) = caller.key_id {
            self.uses.touch(id);
        }
        Ok(caller)
    }

    /// The most capable stored key among `presented`, if any. Every presented key is
    /// compared with every stored digest, without stopping at the first match, so the time
    /// taken does not depend on which key (if any) matched.
    fn matching(keys: &[KnownKey], presented: &[&str]) -> Option<Caller> {
        let mut matched = None;
        for key in presented {
            let candidate = digest(key);
            for stored in keys {
                if bool::from(candidate.ct_eq(&stored.digest)) {
                    // The most capable of the keys presented.
                    let rank = stored.caller.scope.rank();
                    if matched
                        .as_ref()
                        .is_none_or(|m: &Caller| m.scope.rank() < rank)
                    {
                        matched = Some(stored.caller.clone());
                    }
                }
            }
        }
        matched
    }
}

/// Whether the server may start without any key on `address`, and what to say in the log.
pub fn startup_mode(
    keys: usize,
    address: IpAddr,
    allow_anonymous: bool,
) -> Result<(bool, String), String> {
    if keys > 0 {
        return Ok((
            false,
            format!("access: an API key is required ({keys} key(s) configured)"),
        ));
    }
    if address.is_loopback() {
        return Ok((
            true,
            format!(
                "access: anonymous, because no API key exists and {address} is a loopback \
                 address. Create a key with `clientele keys create NAME` before exposing it"
            ),
        ));
    }
    if allow_anonymous {
        return Ok((
            true,
            format!(
                "access: ANONYMOUS on {address} because allow_anonymous = true: anyone who can \
                 reach this address can read every customer"
            ),
        ));
    }
    Err(format!(
        "address: {address} is not a loopback address and no API key exists, so anyone could \
         read every customer. Create a key with `clientele keys create NAME`, or set \
         allow_anonymous = true to serve without keys"
    ))
}

/// The keys a request presents: `X-API-Key`, `Authorization: Bearer`, and `?apikey=`. A
/// `Bearer` value with the session prefix is a customer session, not a key
/// ([`crate::session::presented`]).
///
/// Only the literal parameter name `apikey` counts (not a percent-encoded spelling of it), so
/// the log masking, which looks for that name, always covers the key that was accepted.
fn presented_keys<'r>(request: &'r Request<'_>) -> Vec<std::borrow::Cow<'r, str>> {
    let mut keys = Vec::new();
    let headers = request.headers();
    keys.extend(headers.get("X-API-Key").map(std::borrow::Cow::Borrowed));
    keys.extend(
        headers
            .get("Authorization")
            .filter_map(session::bearer)
            .filter(|value| !value.starts_with(session::PREFIX))
            .map(std::borrow::Cow::Borrowed),
    );
    if let Some(query) = request.uri().query() {
        for pair in query.as_str().split('&') {
            if pair.starts_with("apikey=") {
                if let Some((_, key)) = form_urlencoded::parse(pair.as_bytes()).next() {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// Serving without keys is for one person at one machine, so no web page that person visits
/// may use it:
/// - on a loopback address, the `Host` must name this machine (`localhost`, a loopback
///   address, or the configured address), or a page on another site could read everything
///   through DNS rebinding (its own name, resolved to 127.0.0.1);
/// - anything but GET, HEAD and OPTIONS (a write, a login) whose `Origin` is present must come
///   from the server's own origin or one in `cors_origins`, or any page could send a "simple"
///   cross-site POST that changes or deletes customers.
fn keyless_request_allowed(request: &Request<'_>, access: &Access) -> Result<(), ApiError> {
    // No `Host` at all (HTTP/1.0, a tool) is no browser, so no rebinding.
    let host = request.headers().get_one("Host");
    let hosts = request.headers().get("Host").count();
    if access.keyless_on_loopback
        && (hosts > 1 || host.is_some_and(|host| !is_local_host(host, access.address)))
    {
        return Err(ApiError::Forbidden(
            "Without an API key this server only answers requests addressed to localhost, \
             127.0.0.1 or [::1]. Create a key (clientele keys create NAME) to serve other \
             host names"
                .into(),
        ));
    }
    // A reverse proxy in front (which may well send `Host: 127.0.0.1`) serves whoever reaches
    // the proxy: that is no longer one person at this machine.
    const PROXY_HEADERS: [&str; 4] = [
        "X-Forwarded-For",
        "X-Real-IP",
        "Forwarded",
        "X-Forwarded-Host",
    ];
    if access.keyless_on_loopback
        && PROXY_HEADERS
            .iter()
            .any(|name| request.headers().contains(*name))
    {
        return Err(ApiError::Forbidden(
            "This server has no API key, so it serves only this machine, and this request came \
             through a proxy (X-Forwarded-For or the like). Create a key (clientele keys create \
             NAME) to serve it through a proxy"
                .into(),
        ));
    }
    let method = request.method();
    if matches!(method, Method::Get | Method::Head | Method::Options) {
        return Ok(());
    }
    let Some(origin) = request.headers().get_one("Origin") else {
        return Ok(());
    };
    let own = ["http://", "https://"]
        .iter()
        .any(|scheme| host.is_some() && origin.strip_prefix(scheme) == host);
    if own || access.cors_origins.iter().any(|allowed| allowed == origin) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "Without an API key this server refuses writes and logins sent by web pages of other \
         sites (the Origin header). List the site in cors_origins, or create a key"
            .into(),
    ))
}

/// Whether a `Host` header names this machine: `localhost`, a loopback address, or the
/// address the server is configured on, with or without a port.
pub(crate) fn is_local_host(host: &str, configured: IpAddr) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]`, `[::1]:8000`; never `[::1].evil.example` or `[::1]@evil.example`.
        Some(rest) => match rest.split_once(']') {
            Some((inside, "")) => inside,
            Some((inside, port))
                if port.len() > 1
                    && port.starts_with(':')
                    && port[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                inside
            }
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || ip == configured)
}

/// The address of the person behind a request, as far as it is known, for the login limits:
/// - a key created with `--forwards-client-address` names it as the first `X-Forwarded-For`
///   entry (ignored from any other caller, who could pick any address);
/// - a public key (a browser): the proxy's header behind the operator's proxy (`ip_header`),
///   else the TCP peer.
///
/// With no key at all the peer is this machine, often a shop front-end calling for everyone:
/// only per-account limits apply there too.
///
/// A public key sits in browser code: its requests come from the end user, whose address is
/// the TCP peer (or the proxy's header). A loopback peer without `ip_header` is a reverse
/// proxy on this machine, the same address for every visitor: not counted, so that one
/// visitor's failures never keep the others out.
///
/// A read or write key that does not forward an address belongs to a server calling for many
/// people at once (a shop's back end): its own address would lump them together, so none is
/// counted and only per-account limits apply.
fn end_user_address(request: &Request<'_>, caller: &Caller) -> Option<IpAddr> {
    let address = if caller.forwards_client_address {
        request
            .headers()
            .get_one("X-Forwarded-For")
            .and_then(|value| value.split(',').next())
            .and_then(|first| parse_address(first.trim()))
    } else if caller.scope == Scope::Public {
        // A browser: behind the operator's proxy its header, else the peer (unless the peer
        // is a proxy on this machine, the same address for every visitor).
        let peer = || {
            request
                .remote()
                .map(|peer| peer.ip())
                .filter(|ip| !ip.is_loopback())
        };
        match &request.rocket().config().ip_header {
            Some(header) => request.real_ip().or_else(|| {
                // A proxy that does not set the header (misconfigured, or a second way in)
                // would make every visitor one address, locking all of them out together.
                warn_missing_header(header.as_str());
                peer()
            }),
            None => peer(),
        }
    } else {
        // A read or write key is a shop's server calling for all its visitors, even through
        // the operator's proxy: its address is nobody's.
        None
    };
    address.map(limit_unit)
}

/// Says once per process that requests arrive without the `ip_header` header: their
/// visitors are then limited per account only (or per peer, if it is not on this machine).
fn warn_missing_header(header: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        log::warn!(
            "ip_header = {header:?}, but a request with a public key came without a valid \
             {header} header: check that the proxy sets it (README, \"Install on a server\"). \
             Such requests are limited per account only, not per visitor address"
        );
    }
}

/// The unit a per-address limit counts: an IPv4 address (an IPv4-mapped IPv6 one too), or an
/// IPv6 /64, the block one subscriber gets: counting single IPv6 addresses would give anyone
/// with a /64 an unlimited number of fresh counters.
fn limit_unit(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

/// An address as `X-Forwarded-For` carries it: `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]`,
/// with or without a port.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

/// The caller behind a request's key, checked (the key, the keyless rules, the end user's
/// address), before any rule about what the route allows.
async fn caller(request: &Request<'_>) -> Result<Caller, ApiError> {
    let (Some(access), Some(db)) = (
        request.rocket().state::<Access>(),
        request.rocket().state::<Store>(),
    ) else {
        return Err(ApiError::Unauthorized);
    };
    let keys = presented_keys(request);
    let keys: Vec<&str> = keys.iter().map(|k| k.as_ref()).collect();
    let generation = crate::store::request_keys_generation(request);
    let mut caller = access.check(db, generation, &keys).await?;
    if caller.name.is_none() {
        keyless_request_allowed(request, access)?;
    }
    // For the answer's header: the memo in front touches the key when it answers again.
    request.local_cache(|| crate::keyuse::UsedKey(caller.key_id));
    caller.end_user = end_user_address(request, &caller);
    Ok(caller)
}

/// Who acts on a request, once its key and, for a public key, its customer session are
/// checked. A request guard; the narrower guards below say what each route allows.
///
/// A read or write key (or no key, where the server serves without keys) ignores any session
/// sent with it: it may do more than the session would allow. A public key with a session
/// token that is unknown, tampered, ended or expired is a 401 on every route whose guard
/// resolves a `Principal` (all but LOGIN, LOGOUT and ADD, which use [`AnyKey`] and
/// [`Registrar`]: logging in again or registering must work with a stale token around, and
/// LOGOUT answers for the token itself).
pub enum Principal {
    /// A read or write key, or no key at all on a server that serves without keys.
    Key(Caller),
    /// A public key with a live session: acts for customer `id` and nobody else.
    Customer { caller: Caller, id: i64 },
    /// A public key without a session: may log in (and register, if the owner allows).
    Visitor(Caller),
}

impl Principal {
    pub fn caller(&self) -> &Caller {
        match self {
            Principal::Key(caller)
            | Principal::Customer { caller, .. }
            | Principal::Visitor(caller) => caller,
        }
    }

    async fn resolve(request: &Request<'_>) -> Result<Principal, ApiError> {
        let caller = caller(request).await?;
        if caller.scope != Scope::Public {
            return Ok(Principal::Key(caller));
        }
        let Some(token) = session::presented(request) else {
            return Ok(Principal::Visitor(caller));
        };
        let db = request
            .rocket()
            .state::<Store>()
            .ok_or(ApiError::Unauthorized)?;
        let token = token.to_owned();
        match db.run(move |conn| session::customer(conn, &token)).await? {
            Some(id) => Ok(Principal::Customer { caller, id }),
            None => Err(ApiError::SessionEnded),
        }
    }

    /// What a public key may not do on a route that needs a read or write key.
    fn refusal(&self) -> ApiError {
        match self {
            Principal::Visitor(_) => ApiError::PublicKey,
            _ => ApiError::Forbidden(
                "This API key is public: with a customer session it may only list, update or \
                 delete that customer and change their password"
                    .into(),
            ),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Principal {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match Principal::resolve(request).await {
            Ok(principal) => Outcome::Success(principal),
            Err(error) => guard_failure(request, error),
        }
    }
}

/// A request guard: present on a handler, the request needs a valid read or write API key
/// (or none, on a server that serves without keys). A public key gets 403. It says who
/// called, for the audit trail and for the writes a read key may not make.
pub struct ApiKey(pub Caller);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiKey {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match Principal::resolve(request).await {
            Ok(Principal::Key(caller)) => Outcome::Success(ApiKey(caller)),
            Ok(other) => guard_failure(request, other.refusal()),
            Err(error) => guard_failure(request, error),
        }
    }
}

/// A request guard for the writes: a valid key created with `--write` (or no key at all on a
/// server that serves without keys). A read or public key gets 403.
pub struct WriteKey(pub Caller);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for WriteKey {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match ApiKey::from_request(request).await {
            Outcome::Success(ApiKey(caller)) if caller.can_write() => {
                Outcome::Success(WriteKey(caller))
            }
            Outcome::Success(_) => guard_failure(request, ApiError::ReadOnlyKey),
            Outcome::Error(error) => Outcome::Error(error),
            Outcome::Forward(status) => Outcome::Forward(status),
        }
    }
}

/// Who acts on a route a customer session may use: a key, or one customer.
pub enum Acting {
    Key(Caller),
    /// A public key with customer `id`'s live session.
    Customer {
        caller: Caller,
        id: i64,
    },
}

impl Acting {
    pub fn caller(&self) -> &Caller {
        match self {
            Acting::Key(caller) | Acting::Customer { caller, .. } => caller,
        }
    }

    /// The customer a session restricts this request to, if any.
    pub fn customer(&self) -> Option<i64> {
        match self {
            Acting::Key(_) => None,
            Acting::Customer { id, .. } => Some(*id),
        }
    }

    /// Refuses `id` when a session acts for another customer.
    pub fn check_own(&self, id: i64) -> Result<(), ApiError> {
        match self.customer() {
            Some(own) if own != id => Err(ApiError::Forbidden(format!(
                "This session may only act on its own customer, not id_client {id}"
            ))),
            _ => Ok(()),
        }
    }
}

async fn acting(request: &Request<'_>, write: bool) -> Result<Acting, ApiError> {
    match Principal::resolve(request).await? {
        Principal::Key(caller) if write && !caller.can_write() => Err(ApiError::ReadOnlyKey),
        Principal::Key(caller) => Ok(Acting::Key(caller)),
        Principal::Customer { caller, id } => Ok(Acting::Customer { caller, id }),
        Principal::Visitor(_) => Err(ApiError::PublicKey),
    }
}

/// A request guard for the list and a password change: any read or write key, or a public
/// key with a customer session (which the route then holds to that customer).
pub struct ReadOrSession(pub Acting);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ReadOrSession {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match acting(request, false).await {
            Ok(acting) => Outcome::Success(ReadOrSession(acting)),
            Err(error) => guard_failure(request, error),
        }
    }
}

/// A request guard for UPDATE and DELETE: a write key, or a public key with a customer
/// session (which the route then holds to that customer). A read key gets 403.
pub struct WriteOrSession(pub Acting);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for WriteOrSession {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match acting(request, true).await {
            Ok(acting) => Outcome::Success(WriteOrSession(acting)),
            Err(error) => guard_failure(request, error),
        }
    }
}

/// A request guard for LOGIN and LOGOUT: any valid key, public ones included. Any session
/// sent along is not checked here: a browser holding a stale token must still be able to log
/// in again (LOGOUT reads the token itself).
pub struct AnyKey(pub Caller);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AnyKey {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        match caller(request).await {
            Ok(caller) => Outcome::Success(AnyKey(caller)),
            Err(error) => guard_failure(request, error),
        }
    }
}

/// A request guard for ADD: a write key, or, when the owner set `public_registration`, a
/// public key (any session sent along is not looked at: registering is not acting for a
/// customer). The `bool` says it is a public registration, which the route holds to the
/// registrant's own fields.
pub struct Registrar(pub Caller, pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Registrar {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let open = request
            .rocket()
            .state::<crate::config::Config>()
            .is_some_and(|config| config.public_registration);
        let outcome = match caller(request).await {
            Ok(caller) if caller.can_write() => Ok(Registrar(caller, false)),
            Ok(caller) if caller.scope == Scope::Public && open => Ok(Registrar(caller, true)),
            Ok(caller) if caller.scope == Scope::Public => Err(ApiError::PublicKey),
            Ok(_) => Err(ApiError::ReadOnlyKey),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(registrar) => Outcome::Success(registrar),
            Err(error) => guard_failure(request, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn keys_are_long_random_and_url_safe() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE api_key (name TEXT PRIMARY KEY, digest BLOB NOT NULL UNIQUE, created_at TEXT NOT NULL DEFAULT '', scope TEXT NOT NULL DEFAULT 'read', forwards_client_address INTEGER NOT NULL DEFAULT 0); CREATE TABLE api_key_use (key_id INTEGER PRIMARY KEY, last_used TEXT NOT NULL)").unwrap();
        let a = create(&mut conn, "shop", Scope::Read).unwrap();
        let b = create(&mut conn, "shop-2", Scope::Write).unwrap();
        assert_ne!(a, b);
        let body = a.expose().strip_prefix(PREFIX).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert!(a
            .expose()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
        assert!(matches!(
            create(&mut conn, "shop", Scope::Read),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            create(&mut conn, "bad name", Scope::Read),
            Err(KeyError::BadName(_))
        ));
        for reserved in ["cli", "Anonymous", "sync"] {
            assert!(matches!(
                create(&mut conn, reserved, Scope::Write),
                Err(KeyError::Reserved(_))
            ));
        }
        let scopes: Vec<Scope> = list(&mut conn).unwrap().iter().map(|k| k.scope).collect();
        assert_eq!(scopes, [Scope::Read, Scope::Write]);
        let stored: Vec<u8> = conn
            .query_row("SELECT digest FROM api_key WHERE name='shop'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, digest(a.expose()).to_vec());
    }

    #[test]
    fn non_loopback_addresses_need_a_key_or_an_explicit_opt_in() {
        let public: IpAddr = "0.0.0.0".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(startup_mode(0, public, false)
            .unwrap_err()
            .contains("keys create"));
        assert!(startup_mode(0, public, true).unwrap().0);
        assert!(startup_mode(0, loopback, false).unwrap().0);
        assert!(!startup_mode(1, public, false).unwrap().0);
    }
}
