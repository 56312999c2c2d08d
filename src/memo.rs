//! The front layer's memo of small list answers, and the lane for one customer by id: both
//! answer without going through the app.
//!
//! A `GET` of the customer list is a pure function of the request (its target, its headers,
//! the client's address) and the data: config is fixed for the life of the server, and the
//! route has no side effects. So once the app has answered a request, the very same request
//! gets the very same answer for as long as the data it was made from has not changed.
//!
//! **The memo** keeps such answers, keyed by the whole request, each with the
//! [`Stamp`] read before its data was and what it depends on ([`Scope`], told by the app in
//! [`SCOPE_HEADER`], which never leaves the server): one customer's answer stays good while
//! that customer, the API keys (and, for a customer session, the sessions) are unchanged, so
//! a stream of account updates ends only the answers about the customers it changes. Any
//! other list answer depends on every customer.
//! - only `GET` with no body, on `/CUSTOMER/LIST` or `/CUSTOMER/LIST/` (in any case, as
//!   front-ends send it), answered 200 or 304 with a body read whole (up to 64 KiB);
//! - the key is the target and every header, byte for byte, in order, and the client's
//!   address: a request that differs in anything (another key, `Origin`, `Accept-Encoding`,
//!   `If-None-Match`) is another entry, so no answer can reach a request it was not made
//!   for. A wrong or revoked key is never kept (401 is not kept; revoking is a change to the
//!   keys, which ends every answer);
//! - an answer to a request carrying a customer session (`Authorization: Bearer cls_...`) is
//!   kept for at most [`SESSION_TTL`]: a session can expire without any commit, and its next
//!   request must then be refused (written in the README);
//! - entries live in memory only, within an eighth of `response_cache_mib` (none when that
//!   is 0); past it, all are dropped.
//!
//! **The lane** answers one customer by id (`?id_client=N`, `clcleunik` or `id`) that the
//! memo does not hold, without the app: once the app has answered a request of the same
//! *shape* (the same request with another id) with 200, the headers of that answer are
//! kept as a [`Template`] (they depend on the request's headers and the key, never on the
//! customer: everything that does, `ETag` and `X-Total-Count`, is filled in), and the lane
//! reads the row itself, with the very function the app uses, on the worker (a primary-key
//! read takes less than a hand-off to another thread). Anything else (no such customer, a
//! body large enough to compress, a conditional request, a session) goes to the app. A
//! template holds no customer data; templates are kept even when `response_cache_mib` is 0,
//! and end at any change to the keys.
//!
//! An answer given here skips the app, and so its check of the key: the app tells the key's
//! row id in [`KEY_HEADER`] (removed before the answer is sent), kept with the entry and the
//! template, so that the server counts the key as used ([`crate::keyuse`]): at most once a
//! second per memo entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ETAG};
use hyper::StatusCode;

use crate::routes::LIST_PATH;
use crate::store::versions::{Scope, Stamp};

/// How long an answer to a request carrying a customer session is reused at most.
pub const SESSION_TTL: Duration = Duration::from_secs(1);

/// The header through which the app tells this layer that an answer is about one customer
/// (`customer=ID`); removed before the answer is sent.
pub const SCOPE_HEADER: &str = "x-clientele-scope";

/// The header through which the app tells this layer which API key (its row id) a request
/// was checked against; removed before the answer is sent.
pub const KEY_HEADER: &str = "x-clientele-key";

/// The header the lane fills in with the number of customers found (always 1).
const TOTAL_HEADER: &str = "x-total-count";

/// Shapes of request remembered at most; past that they start over.
const MAX_SHAPES: usize = 4096;

/// The first byte of a key: whether the request carries a customer session.
const SESSION_KEY: u8 = b's';
const PLAIN_KEY: u8 = b'k';

/// The names of the query parameter that asks for one customer by id.
const ID_PARAMETERS: [&str; 3] = ["id_client", "clcleunik", "id"];

/// What a request is known by here.
#[derive(Debug, Clone)]
pub struct RequestKey {
    bytes: Vec<u8>,
    session: bool,
    /// For a request the lane may answer: where the id's digits sit in `bytes`, and the id.
    lane: Option<(usize, usize, i64)>,
}

impl RequestKey {
    /// The customer asked for by id, when the lane may answer this request.
    pub fn lane_customer(&self) -> Option<i64> {
        self.lane.map(|(_, _, id)| id)
    }

    /// The request with its id left out: the same for every id.
    fn shape(&self) -> Option<Vec<u8>> {
        let (start, end, _) = self.lane?;
        let mut shape = Vec::with_capacity(self.bytes.len());
        shape.extend_from_slice(&self.bytes[..start]);
        shape.push(b'#');
        shape.extend_from_slice(&self.bytes[end..]);
        Some(shape)
    }
}

/// A kept answer, and what it depends on.
struct Entry {
    response: Arc<Memoized>,
    until: Option<Instant>,
    made: Stamp,
    scope: Scope,
    session: bool,
}

/// An answer as it was sent: status, headers (hyper's, after conversion), body; and the
/// key it was made for.
pub struct Memoized {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The API key it was made for, counted as used when the answer is given again.
    touch: KeyTouch,
}

/// An API key (its row id, see [`KEY_HEADER`]) to count as used, at most once a second per
/// holder: a memo entry, a lane template.
pub struct KeyTouch {
    key: Option<i64>,
    /// The last second (see [`second_of`]) the key was counted through this holder.
    touched: AtomicU64,
}

impl KeyTouch {
    pub fn new(key: Option<i64>, second: u64) -> KeyTouch {
        KeyTouch {
            key,
            touched: AtomicU64::new(second),
        }
    }

    /// The key's row id, if the answers were made for one.
    pub fn key(&self) -> Option<i64> {
        self.key
    }

    /// The key, if it has not been counted in `second` yet through this holder.
    pub fn due(&self, second: u64) -> Option<i64> {
        let key = self.key?;
        // Read first: a hit that finds this second already counted writes nothing, so two
        // cores answering through the same holder do not fight over its cache line.
        if self.touched.load(Ordering::Relaxed) == second {
            return None;
        }
        (self.touched.swap(second, Ordering::Relaxed) != second).then_some(key)
    }
}

/// Whole seconds from the process's first request to `at` (a request's arrival, read
/// once for everything it needs): the clock of [`KeyTouch`], 1 and up.
pub fn second_of(at: Instant) -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| at);
    at.saturating_duration_since(*start).as_secs() + 1
}

impl Memoized {
    /// An answer made for a request checked against key `key` (if any), whose use was
    /// last counted in `second` (0: not yet).
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        key: Option<i64>,
        second: u64,
    ) -> Memoized {
        Memoized {
            status,
            headers,
            body,
            touch: KeyTouch::new(key, second),
        }
    }

    /// The key to count as used for giving this answer again in `second`, at most once.
    pub fn key_to_touch(&self, second: u64) -> Option<i64> {
        self.touch.due(second)
    }

    /// Bytes counted against the budget: the body, the headers and bookkeeping.
    fn weight(&self, key: &[u8]) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        key.len() + self.body.len() + headers + 128
    }
}

/// The headers of a 200 answer to one shape of request, with the customer's own left out.
pub struct Template {
    made: Stamp,
    headers: Vec<(HeaderName, Slot)>,
    /// The API key the shape's requests carry, counted as used by the lane's answers.
    pub touch: KeyTouch,
}

enum Slot {
    Fixed(HeaderValue),
    Etag,
    Total,
}

impl Template {
    /// The headers for one customer's answer with this `etag`, in the order the app sends.
    pub fn headers(&self, etag: &str) -> Option<HeaderMap> {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (name, slot) in &self.headers {
            let value = match slot {
                Slot::Fixed(value) => value.clone(),
                Slot::Etag => HeaderValue::from_str(etag).ok()?,
                Slot::Total => HeaderValue::from_static("1"),
            };
            map.append(name.clone(), value);
        }
        Some(map)
    }
}

/// The memo and the lane's templates (one per server).
pub struct Memo {
    budget: usize,
    inner: RwLock<Inner>,
    shapes: RwLock<HashMap<Vec<u8>, Arc<Template>, RandomState>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Vec<u8>, Entry, RandomState>,
    weight: usize,
}

impl Memo {
    /// A memo holding at most `budget` bytes of answers; 0 keeps none (the lane still runs).
    pub fn new(budget: usize) -> Memo {
        Memo {
            budget,
            inner: RwLock::default(),
            shapes: RwLock::default(),
        }
    }

    /// The key for a request, or `None` when it is not a plain read of the list.
    pub fn key(
        &self,
        method: &hyper::Method,
        target: &str,
        headers: &HeaderMap,
        has_body: bool,
        peer: IpAddr,
    ) -> Option<RequestKey> {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let path = path.strip_suffix('/').unwrap_or(path);
        if method != hyper::Method::GET || has_body || !path.eq_ignore_ascii_case(LIST_PATH) {
            return None;
        }
        let session = headers
            .get_all(hyper::header::AUTHORIZATION)
            .iter()
            .any(|value| crate::session::is_session_header(value.as_bytes()));
        // Unambiguous: whether a session is sent, the address, its length told by a tag; then
        // the target and the headers, none of which may hold a line break (nor a name a colon).
        let mut bytes = Vec::with_capacity(target.len() + 48 * headers.len() + 24);
        bytes.push(if session { SESSION_KEY } else { PLAIN_KEY });
        match peer {
            IpAddr::V4(v4) => {
                bytes.push(4);
                bytes.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                bytes.push(6);
                bytes.extend_from_slice(&v6.octets());
            }
        }
        let target_at = bytes.len();
        bytes.extend_from_slice(target.as_bytes());
        bytes.push(b'\n');
        let mut conditional = false;
        for (name, value) in headers {
            let name = name.as_str();
            conditional |= name.starts_with("if-") || name == "range";
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(b':');
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(b'\n');
        }
        let lane = match (session || conditional, query) {
            (false, Some(query)) => id_digits(query).map(|(start, end, id)| {
                let at = target_at + (target.len() - query.len());
                (at + start, at + end, id)
            }),
            _ => None,
        };
        Some(RequestKey {
            bytes,
            session,
            lane,
        })
    }

    /// The answer kept for `key`, if `fresh` says it still holds.
    pub fn get(
        &self,
        key: &RequestKey,
        fresh: impl Fn(Stamp, Scope, bool) -> bool,
    ) -> Option<Arc<Memoized>> {
        if self.budget == 0 {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let entry = inner.entries.get(&key.bytes)?;
        if entry.until.is_some_and(|until| until <= Instant::now()) {
            return None;
        }
        fresh(entry.made, entry.scope, entry.session).then(|| Arc::clone(&entry.response))
    }

    /// Keeps `response` for `key`, made from data read after `made`, if it may be kept.
    pub fn keep(&self, made: Option<Stamp>, key: &RequestKey, response: Memoized, scope: Scope) {
        let keepable = matches!(response.status, StatusCode::OK | StatusCode::NOT_MODIFIED);
        let Some(made) = made.filter(|_| keepable && self.budget > 0) else {
            return;
        };
        let weight = response.weight(&key.bytes);
        if weight > self.budget / 4 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.weight + weight > self.budget {
            inner.entries.clear();
            inner.weight = 0;
        }
        let until = key.session.then(|| Instant::now() + SESSION_TTL);
        let entry = Entry {
            response: Arc::new(response),
            until,
            made,
            scope,
            session: key.session,
        };
        if let Some(old) = inner.entries.insert(key.bytes.clone(), entry) {
            inner.weight = inner.weight.saturating_sub(old.response.weight(&key.bytes));
        }
        inner.weight += weight;
    }

    /// The template for `key`'s shape, if the lane may answer it and `fresh` says the keys
    /// have not changed since it was made.
    pub fn template(
        &self,
        key: &RequestKey,
        fresh: impl Fn(Stamp, Scope, bool) -> bool,
    ) -> Option<Arc<Template>> {
        let shape = key.shape()?;
        let shapes = self.shapes.read().unwrap_or_else(|e| e.into_inner());
        let template = shapes.get(&shape)?;
        fresh(template.made, Scope::Keys, false).then(|| Arc::clone(template))
    }

    /// Learns the shape of `key` from the app's answer to it, made after `made`: a 200
    /// about the customer the request asked for, uncompressed, with its `ETag`.
    pub fn learn(
        &self,
        made: Option<Stamp>,
        key: &RequestKey,
        status: StatusCode,
        headers: &HeaderMap,
        scope: Scope,
        api_key: Option<i64>,
    ) {
        let (Some(made), Some(id), Some(shape)) = (made, key.lane_customer(), key.shape()) else {
            return;
        };
        let total = headers.get(TOTAL_HEADER).map(HeaderValue::as_bytes);
        if status != StatusCode::OK
            || scope != Scope::Customer(id)
            || total != Some(b"1".as_slice())
            || !headers.contains_key(ETAG)
            || headers.contains_key(hyper::header::CONTENT_ENCODING)
        {
            return;
        }
        let slots = headers
            .iter()
            .map(|(name, value)| {
                let slot = if name == ETAG {
                    Slot::Etag
                } else if name.as_str() == TOTAL_HEADER {
                    Slot::Total
                } else {
                    Slot::Fixed(value.clone())
                };
                (name.clone(), slot)
            })
            .collect();
        let template = Arc::new(Template {
            made,
            headers: slots,
            touch: KeyTouch::new(api_key, 0),
        });
        let mut shapes = self.shapes.write().unwrap_or_else(|e| e.into_inner());
        if shapes.len() >= MAX_SHAPES {
            shapes.clear();
        }
        shapes.insert(shape, template);
    }

    /// Bytes held (for tests).
    #[cfg(test)]
    fn weight(&self) -> usize {
        self.inner.read().map(|inner| inner.weight).unwrap_or(0)
    }
}

/// Where the one id parameter's value sits in `query` (start, end) and its value, when the
/// query names exactly one of [`ID_PARAMETERS`], written plainly with 1 to 18 digits.
fn id_digits(query: &str) -> Option<(usize, usize, i64)> {
    let mut found = None;
    let mut at = 0;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if ID_PARAMETERS.contains(&name) {
            if found.is_some() {
                return None;
            }
            let plain =
                (1..=18).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
            if !plain {
                return None;
            }
            let start = at + name.len() + 1;
            found = Some((start, start + value.len(), value.parse().ok()?));
        }
        at += pair.len() + 1;
    }
    found
}

/// The key the app told in [`KEY_HEADER`] (removed from `headers`), if any.
pub fn take_key(headers: &mut HeaderMap) -> Option<i64> {
    headers
        .remove(KEY_HEADER)
        .and_then(|value| value.to_str().ok()?.parse().ok())
}

/// The scope the app told in [`SCOPE_HEADER`] (removed from `headers`): one customer's
/// answer, or any other list answer.
pub fn take_scope(headers: &mut HeaderMap) -> Scope {
    let told = headers.remove(SCOPE_HEADER);
    told.as_ref()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("customer="))
        .and_then(|id| id.parse().ok())
        .map_or(Scope::Customers, Scope::Customer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn response(status: StatusCode, body: &'static str) -> Memoized {
        Memoized::new(
            status,
            headers(&[("content-type", "application/json")]),
            Bytes::from_static(body.as_bytes()),
            None,
            0,
        )
    }

    fn key(memo: &Memo, target: &str, pairs: &[(&'static str, &'static str)]) -> RequestKey {
        memo.key(&hyper::Method::GET, target, &headers(pairs), false, PEER)
            .unwrap()
    }

    /// Freshness as the store tells it: answers made at `now` hold, older ones do not.
    fn at(now: u64) -> impl Fn(Stamp, Scope, bool) -> bool {
        move |made, _, _| made == Stamp(now)
    }

    #[test]
    fn only_bodiless_gets_of_the_list_have_a_key() {
        let memo = Memo::new(1 << 20);
        let get = hyper::Method::GET;
        let none = HeaderMap::new();
        for target in [
            "/CUSTOMER/LIST/?id_client=1",
            "/CUSTOMER/LIST",
            "/customer/list/?id_client=1",
        ] {
            assert!(
                memo.key(&get, target, &none, false, PEER).is_some(),
                "{target}"
            );
        }
        assert!(memo
            .key(&get, "/CUSTOMER/LIST/?id_client=1", &none, true, PEER)
            .is_none());
        for method in [hyper::Method::HEAD, hyper::Method::POST] {
            assert!(memo
                .key(&method, "/CUSTOMER/LIST/", &none, false, PEER)
                .is_none());
        }
        for other in [
            "/CUSTOMER/LISTS",
            "/CUSTOMER/LIST//",
            "/CUSTOMER/CHANGES/",
            "/health",
        ] {
            assert!(
                memo.key(&get, other, &none, false, PEER).is_none(),
                "{other}"
            );
        }
        // A customer session's answer has a key of its own kind: kept for SESSION_TTL.
        let session = key(
            &memo,
            "/CUSTOMER/LIST/",
            &[("authorization", "Bearer cls_abc")],
        );
        let plain = key(
            &memo,
            "/CUSTOMER/LIST/",
            &[("authorization", "Bearer clt_abc")],
        );
        assert!(session.session);
        assert!(!plain.session);
    }

    #[test]
    fn a_sessions_answer_is_reused_for_at_most_the_session_ttl() {
        let memo = Memo::new(1 << 20);
        let session = key(
            &memo,
            "/CUSTOMER/LIST/",
            &[("authorization", "Bearer cls_abc")],
        );
        let plain = key(&memo, "/CUSTOMER/LIST/", &[("x-api-key", "clt_a")]);
        for key in [&session, &plain] {
            let ok = response(StatusCode::OK, "{}");
            memo.keep(Some(Stamp(3)), key, ok, Scope::Customers);
        }
        assert!(memo.get(&session, at(3)).is_some());
        std::thread::sleep(SESSION_TTL + Duration::from_millis(50));
        assert!(memo.get(&session, at(3)).is_none(), "expired with the TTL");
        assert!(
            memo.get(&plain, at(3)).is_some(),
            "a key's answer lasts as long as its data"
        );
    }

    #[test]
    fn a_request_differing_in_any_header_or_address_is_another_entry() {
        let memo = Memo::new(1 << 20);
        let kept = key(
            &memo,
            "/CUSTOMER/LIST/?id_client=1",
            &[("x-api-key", "clt_a")],
        );
        memo.keep(
            Some(Stamp(3)),
            &kept,
            response(StatusCode::OK, "{}"),
            Scope::Customer(1),
        );
        assert!(memo.get(&kept, at(3)).is_some());
        for other in [
            key(
                &memo,
                "/CUSTOMER/LIST/?id_client=1",
                &[("x-api-key", "clt_b")],
            ),
            key(
                &memo,
                "/CUSTOMER/LIST/?id_client=2",
                &[("x-api-key", "clt_a")],
            ),
            key(&memo, "/CUSTOMER/LIST/?id_client=1", &[]),
            key(
                &memo,
                "/CUSTOMER/LIST/?id_client=1",
                &[("x-api-key", "clt_a"), ("origin", "https://shop.be")],
            ),
        ] {
            assert!(memo.get(&other, at(3)).is_none());
        }
        let elsewhere = memo
            .key(
                &hyper::Method::GET,
                "/CUSTOMER/LIST/?id_client=1",
                &headers(&[("x-api-key", "clt_a")]),
                false,
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            )
            .unwrap();
        assert!(memo.get(&elsewhere, at(3)).is_none());
    }

    #[test]
    fn an_answer_is_given_only_while_the_store_says_it_holds_with_its_scope() {
        let memo = Memo::new(1 << 20);
        let one = key(&memo, "/CUSTOMER/LIST/?id_client=7", &[]);
        let session = key(
            &memo,
            "/CUSTOMER/LIST/",
            &[("authorization", "Bearer cls_x")],
        );
        memo.keep(
            Some(Stamp(3)),
            &one,
            response(StatusCode::OK, "{}"),
            Scope::Customer(7),
        );
        memo.keep(
            Some(Stamp(3)),
            &session,
            response(StatusCode::OK, "{}"),
            Scope::Customer(9),
        );
        let asked = std::cell::RefCell::new(Vec::new());
        let fresh = |made, scope, session| {
            asked.borrow_mut().push((made, scope, session));
            true
        };
        assert!(memo.get(&one, fresh).is_some());
        assert!(memo.get(&session, fresh).is_some());
        assert_eq!(
            *asked.borrow(),
            [
                (Stamp(3), Scope::Customer(7), false),
                (Stamp(3), Scope::Customer(9), true)
            ]
        );
        assert!(memo.get(&one, at(4)).is_none());
        // Nothing is kept without a stamp (changes could not be seen).
        let other = key(&memo, "/CUSTOMER/LIST/?id_client=8", &[]);
        memo.keep(
            None,
            &other,
            response(StatusCode::OK, "{}"),
            Scope::Customer(8),
        );
        assert!(memo.get(&other, |_, _, _| true).is_none());
    }

    #[test]
    fn only_200_and_304_are_kept_and_nothing_when_the_budget_is_0() {
        let memo = Memo::new(1 << 20);
        let kept = key(&memo, "/CUSTOMER/LIST/", &[]);
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
        ] {
            memo.keep(
                Some(Stamp(3)),
                &kept,
                response(status, "{}"),
                Scope::Customers,
            );
            assert!(memo.get(&kept, at(3)).is_none());
        }
        let not_modified = response(StatusCode::NOT_MODIFIED, "");
        memo.keep(Some(Stamp(3)), &kept, not_modified, Scope::Customers);
        assert_eq!(
            memo.get(&kept, at(3)).unwrap().status,
            StatusCode::NOT_MODIFIED
        );
        let none = Memo::new(0);
        let ok = response(StatusCode::OK, "{}");
        none.keep(Some(Stamp(3)), &kept, ok, Scope::Customers);
        assert!(none.get(&kept, at(3)).is_none());
    }

    #[test]
    fn memory_stays_within_the_budget() {
        let memo = Memo::new(64 * 1024);
        let body: &'static str = Box::leak("x".repeat(1000).into_boxed_str());
        for id in 0..500 {
            let key = key(&memo, &format!("/CUSTOMER/LIST/?id_client={id}"), &[]);
            let ok = response(StatusCode::OK, body);
            memo.keep(Some(Stamp(1)), &key, ok, Scope::Customer(id));
            assert!(memo.weight() <= 64 * 1024);
        }
        assert!(memo.weight() > 0);
        // One answer larger than a quarter of the budget is never kept.
        let big: &'static str = Box::leak("x".repeat(20 * 1024).into_boxed_str());
        let key = key(&memo, "/CUSTOMER/LIST/?limit=100", &[]);
        let ok = response(StatusCode::OK, big);
        memo.keep(Some(Stamp(1)), &key, ok, Scope::Customers);
        assert!(memo.get(&key, at(1)).is_none());
    }

    #[test]
    fn the_lane_takes_plain_lookups_by_one_id_only() {
        let memo = Memo::new(0);
        let lane = |target: &str, pairs: &[(&'static str, &'static str)]| {
            key(&memo, target, pairs).lane_customer()
        };
        assert_eq!(lane("/CUSTOMER/LIST/?id_client=42", &[]), Some(42));
        assert_eq!(
            lane("/CUSTOMER/LIST/?apikey=clt_x&clcleunik=7", &[]),
            Some(7)
        );
        assert_eq!(lane("/customer/list?id=5&limit=1", &[]), Some(5));
        for target in [
            "/CUSTOMER/LIST/",
            "/CUSTOMER/LIST/?id_client=",
            "/CUSTOMER/LIST/?id_client=-1",
            "/CUSTOMER/LIST/?id_client=1e3",
            "/CUSTOMER/LIST/?id_client=%31",
            "/CUSTOMER/LIST/?id_client=1&id=1",
            "/CUSTOMER/LIST/?id_client=1234567890123456789",
            "/CUSTOMER/LIST/?email=a%40b.be",
        ] {
            assert_eq!(lane(target, &[]), None, "{target}");
        }
        for conditional in [("if-none-match", "\"x\""), ("range", "bytes=0-1")] {
            assert_eq!(lane("/CUSTOMER/LIST/?id_client=1", &[conditional]), None);
        }
        let session = [("authorization", "Bearer cls_abc")];
        assert_eq!(lane("/CUSTOMER/LIST/?id_client=1", &session), None);
    }

    #[test]
    fn a_template_is_learned_from_a_200_about_the_customer_asked_for_and_fits_every_id() {
        let memo = Memo::new(0);
        let pairs = [("x-api-key", "clt_a")];
        let asked = key(&memo, "/CUSTOMER/LIST/?id_client=1", &pairs);
        let answer = headers(&[
            ("content-type", "application/json"),
            ("etag", "\"aaaa\""),
            ("x-total-count", "1"),
            ("vary", "Accept-Encoding"),
            ("vary", "Origin"),
        ]);
        let other = key(&memo, "/CUSTOMER/LIST/?id_client=22", &pairs);
        // Not learned: another customer's answer, not a 200, another total, compressed.
        let mut gzipped = answer.clone();
        gzipped.insert("content-encoding", HeaderValue::from_static("gzip"));
        let mut two = answer.clone();
        two.insert("x-total-count", HeaderValue::from_static("2"));
        for (status, headers, scope) in [
            (StatusCode::OK, &answer, Scope::Customer(2)),
            (StatusCode::OK, &answer, Scope::Customers),
            (StatusCode::NOT_MODIFIED, &answer, Scope::Customer(1)),
            (StatusCode::OK, &gzipped, Scope::Customer(1)),
            (StatusCode::OK, &two, Scope::Customer(1)),
        ] {
            memo.learn(Some(Stamp(3)), &asked, status, headers, scope, None);
            assert!(memo.template(&other, at(3)).is_none());
        }
        memo.learn(
            Some(Stamp(3)),
            &asked,
            StatusCode::OK,
            &answer,
            Scope::Customer(1),
            Some(5),
        );
        let template = memo.template(&other, at(3)).expect("the same shape");
        assert_eq!(template.touch.due(7), Some(5), "the key its requests carry");
        let made = template.headers("\"bbbb\"").unwrap();
        let names: Vec<_> = made
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("content-type", "application/json"),
                ("etag", "\"bbbb\""),
                ("x-total-count", "1"),
                ("vary", "Accept-Encoding"),
                ("vary", "Origin"),
            ]
        );
        // Not for another shape, nor once the keys changed.
        let another_key = key(
            &memo,
            "/CUSTOMER/LIST/?id_client=22",
            &[("x-api-key", "clt_b")],
        );
        assert!(memo.template(&another_key, at(3)).is_none());
        assert!(memo.template(&other, at(4)).is_none());
    }

    #[test]
    fn the_key_header_is_read_and_removed_and_a_hit_touches_its_key_once_a_second() {
        let mut told = headers(&[(KEY_HEADER, "42"), ("etag", "\"x\"")]);
        assert_eq!(take_key(&mut told), Some(42));
        assert!(!told.contains_key(KEY_HEADER));
        assert_eq!(take_key(&mut told), None);

        let kept = Memoized::new(StatusCode::OK, told, Bytes::new(), Some(42), 0);
        assert_eq!(kept.key_to_touch(9), Some(42));
        assert_eq!(kept.key_to_touch(9), None, "once a second");
        assert_eq!(kept.key_to_touch(10), Some(42));
        let keyless = Memoized::new(StatusCode::OK, HeaderMap::new(), Bytes::new(), None, 0);
        assert_eq!(keyless.key_to_touch(9), None);
        let start = Instant::now();
        let first = second_of(start);
        assert!(second_of(start + Duration::from_secs(3)) >= first + 3);
    }

    #[test]
    fn the_scope_header_is_read_and_removed() {
        let mut told = headers(&[(SCOPE_HEADER, "customer=12"), ("etag", "\"x\"")]);
        assert_eq!(take_scope(&mut told), Scope::Customer(12));
        assert!(!told.contains_key(SCOPE_HEADER));
        assert_eq!(take_scope(&mut told), Scope::Customers);
    }
}
