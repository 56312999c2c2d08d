//! The front layer's memo of small list responses, so that a request the app has already
//! answered at this data version is answered again without going through the app.
//!
//! A `GET` of the customer list is a pure function of the request (its target, its headers,
//! the client's address) and the data: config is fixed for the life of the server, and the
//! route has no side effects. So once the app has answered a request, the very same request
//! gets the very same response for as long as the data version (`PRAGMA data_version`, which
//! changes on any commit by any connection or process) has not moved. The memo keeps such
//! responses, keyed by the whole request, and answers from them after checking the version:
//! about three times the throughput for one customer by id (see docs/benchmarks.md).
//!
//! What is kept, and what is not:
//! - only `GET` with no body, on `/CUSTOMER/LIST` or `/CUSTOMER/LIST/` (in any case, as front-ends
//!   send it), answered 200
//!   or 304 with a body read whole (up to 64 KiB: one customer, a page, not the whole list);
//! - the key is the target and every header, byte for byte, in order, and the client's
//!   address: a request that differs in anything (another key, `Origin`, `Accept-Encoding`,
//!   `If-None-Match`) is another entry, so no response can reach a request it was not made
//!   for. A wrong or revoked key is never kept (401 is not kept; revoking commits, which
//!   changes the version);
//! - a request carrying a customer session (`Authorization: Bearer cls_...`) is kept for at
//!   most [`SESSION_TTL`]: a session ended by a logout or a password change is a commit, which
//!   drops it at once, but one can also expire without any commit, and its next request must
//!   then be refused: it is, at most that long after its expiry (written in the README);
//! - a response is kept only when the version read before the app ran equals the one read
//!   after, so it describes that version; a commit in between leaves it unkept;
//! - entries, request keys included, live in memory only, and all are dropped when the version
//!   changes or their total would pass the budget (an eighth of `response_cache_mib`; none
//!   when that is 0).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::StatusCode;

use crate::routes::LIST_PATH;

/// How long an answer to a request carrying a customer session is reused at most.
pub const SESSION_TTL: Duration = Duration::from_secs(1);

/// The first byte of a key: whether the request carries a customer session.
const SESSION_KEY: u8 = b's';
const PLAIN_KEY: u8 = b'k';

/// A kept response, and until when a session's one may be reused.
struct Entry {
    response: Arc<Memoized>,
    until: Option<Instant>,
}

/// A response as it was sent: status, headers (hyper's, after conversion), body.
pub struct Memoized {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Memoized {
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

/// The memo (one per server).
pub struct Memo {
    budget: usize,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: Option<i64>,
    entries: HashMap<Vec<u8>, Entry>,
    weight: usize,
}

impl Memo {
    /// A memo holding at most `budget` bytes; 0 keeps nothing.
    pub fn new(budget: usize) -> Memo {
        Memo {
            budget,
            inner: RwLock::default(),
        }
    }

    /// The key for a request, or `None` when its answer may not be kept.
    pub fn key(
        &self,
        method: &hyper::Method,
        target: &str,
        headers: &HeaderMap,
        has_body: bool,
        peer: IpAddr,
    ) -> Option<Vec<u8>> {
        let path = target.split('?').next().unwrap_or(target);
        let path = path.strip_suffix('/').unwrap_or(path);
        let list = path.eq_ignore_ascii_case(LIST_PATH);
        if self.budget == 0 || method != hyper::Method::GET || has_body || !list {
            return None;
        }
        let session = headers
            .get_all(hyper::header::AUTHORIZATION)
            .iter()
            .any(|value| crate::session::is_session_header(value.as_bytes()));
        // Unambiguous: whether a session is sent, the address, its length told by a tag; then
        // the target and the headers, none of which may hold a line break (nor a name a colon).
        let mut key = Vec::with_capacity(target.len() + 64 * headers.len() + 24);
        key.push(if session { SESSION_KEY } else { PLAIN_KEY });
        match peer {
            IpAddr::V4(v4) => {
                key.push(4);
                key.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                key.push(6);
                key.extend_from_slice(&v6.octets());
            }
        }
        key.extend_from_slice(target.as_bytes());
        key.push(b'\n');
        for (name, value) in headers {
            key.extend_from_slice(name.as_str().as_bytes());
            key.push(b':');
            key.extend_from_slice(value.as_bytes());
            key.push(b'\n');
        }
        Some(key)
    }

    /// The response kept for `key` at this data version, if any.
    pub fn get(&self, generation: Option<i64>, key: &[u8]) -> Option<Arc<Memoized>> {
        generation?;
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if inner.generation != generation {
            return None;
        }
        let entry = inner.entries.get(key)?;
        match entry.until {
            Some(until) if until <= Instant::now() => None,
            _ => Some(Arc::clone(&entry.response)),
        }
    }

    /// Keeps `response` for `key`, if it was made at one data version (`before` the app ran
    /// equal to `after`) and is one that may be kept.
    pub fn keep(&self, before: Option<i64>, after: Option<i64>, key: Vec<u8>, response: Memoized) {
        let keepable = matches!(response.status, StatusCode::OK | StatusCode::NOT_MODIFIED);
        if before.is_none() || before != after || !keepable {
            return;
        }
        let weight = response.weight(&key);
        if weight > self.budget / 4 {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.generation != before || inner.weight + weight > self.budget {
            inner.entries.clear();
            inner.weight = 0;
            inner.generation = before;
        }
        let replaced = inner.entries.get(&key).map(|old| old.response.weight(&key));
        inner.weight = inner.weight.saturating_sub(replaced.unwrap_or(0)) + weight;
        let until = (key.first() == Some(&SESSION_KEY)).then(|| Instant::now() + SESSION_TTL);
        inner.entries.insert(
            key,
            Entry {
                response: Arc::new(response),
                until,
            },
        );
    }

    /// Bytes held (for tests).
    #[cfg(test)]
    fn weight(&self) -> usize {
        self.inner.read().map(|inner| inner.weight).unwrap_or(0)
    }
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
        Memoized {
            status,
            headers: headers(&[("content-type", "application/json")]),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn key(memo: &Memo, target: &str, pairs: &[(&'static str, &'static str)]) -> Vec<u8> {
        memo.key(&hyper::Method::GET, target, &headers(pairs), false, PEER)
            .unwrap()
    }

    #[test]
    fn only_bodiless_gets_of_the_list_have_a_key() {
        let memo = Memo::new(1 << 20);
        let get = hyper::Method::GET;
        let none = HeaderMap::new();
        assert!(memo
            .key(&get, "/CUSTOMER/LIST/?id_client=1", &none, false, PEER)
            .is_some());
        assert!(memo
            .key(&get, "/CUSTOMER/LIST", &none, false, PEER)
            .is_some());
        assert!(memo
            .key(&get, "/customer/list/?id_client=1", &none, false, PEER)
            .is_some());
        assert!(memo
            .key(&get, "/CUSTOMER/LIST/?id_client=1", &none, true, PEER)
            .is_none());
        let head = hyper::Method::HEAD;
        assert!(memo
            .key(&head, "/CUSTOMER/LIST/", &none, false, PEER)
            .is_none());
        let post = hyper::Method::POST;
        assert!(memo
            .key(&post, "/CUSTOMER/LIST/", &none, false, PEER)
            .is_none());
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
        assert!(Memo::new(0)
            .key(&get, "/CUSTOMER/LIST/", &none, false, PEER)
            .is_none());
        // A customer session's answer has a key of its own kind: kept for SESSION_TTL.
        let session = headers(&[("authorization", "Bearer cls_abc")]);
        let session_key = memo
            .key(&get, "/CUSTOMER/LIST/", &session, false, PEER)
            .unwrap();
        let key = headers(&[("authorization", "Bearer clt_abc")]);
        let plain_key = memo
            .key(&get, "/CUSTOMER/LIST/", &key, false, PEER)
            .unwrap();
        assert_eq!(session_key[0], SESSION_KEY);
        assert_eq!(plain_key[0], PLAIN_KEY);
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
        memo.keep(
            Some(3),
            Some(3),
            session.clone(),
            response(StatusCode::OK, "{}"),
        );
        memo.keep(
            Some(3),
            Some(3),
            plain.clone(),
            response(StatusCode::OK, "{}"),
        );
        assert!(memo.get(Some(3), &session).is_some());
        std::thread::sleep(SESSION_TTL + Duration::from_millis(50));
        assert!(
            memo.get(Some(3), &session).is_none(),
            "expired with the TTL"
        );
        assert!(
            memo.get(Some(3), &plain).is_some(),
            "a key's answer lasts the data version"
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
            Some(3),
            Some(3),
            kept.clone(),
            response(StatusCode::OK, "{}"),
        );

        assert!(memo.get(Some(3), &kept).is_some());
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
            assert!(memo.get(Some(3), &other).is_none());
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
        assert!(memo.get(Some(3), &elsewhere).is_none());
    }

    #[test]
    fn a_new_data_version_or_one_unknown_finds_nothing() {
        let memo = Memo::new(1 << 20);
        let kept = key(&memo, "/CUSTOMER/LIST/", &[]);
        memo.keep(
            Some(3),
            Some(3),
            kept.clone(),
            response(StatusCode::OK, "{}"),
        );

        assert!(memo.get(Some(4), &kept).is_none());
        assert!(memo.get(None, &kept).is_none());
        // Keeping at the new version drops the old entries.
        let other = key(&memo, "/CUSTOMER/LIST/?id_client=2", &[]);
        memo.keep(Some(4), Some(4), other, response(StatusCode::OK, "{}"));
        assert!(memo.get(Some(3), &kept).is_none());
    }

    #[test]
    fn only_answers_made_at_one_version_with_200_or_304_are_kept() {
        let memo = Memo::new(1 << 20);
        let kept = key(&memo, "/CUSTOMER/LIST/", &[]);
        memo.keep(
            Some(3),
            Some(4),
            kept.clone(),
            response(StatusCode::OK, "{}"),
        );
        memo.keep(None, None, kept.clone(), response(StatusCode::OK, "{}"));
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
        ] {
            memo.keep(Some(3), Some(3), kept.clone(), response(status, "{}"));
        }
        assert!(memo.get(Some(3), &kept).is_none());
        assert!(memo.get(Some(4), &kept).is_none());

        memo.keep(
            Some(3),
            Some(3),
            kept.clone(),
            response(StatusCode::NOT_MODIFIED, ""),
        );
        assert_eq!(
            memo.get(Some(3), &kept).unwrap().status,
            StatusCode::NOT_MODIFIED
        );
    }

    #[test]
    fn memory_stays_within_the_budget() {
        let memo = Memo::new(64 * 1024);
        let body: &'static str = Box::leak("x".repeat(1000).into_boxed_str());
        for id in 0..500 {
            let target = format!("/CUSTOMER/LIST/?id_client={id}");
            let key = memo
                .key(&hyper::Method::GET, &target, &HeaderMap::new(), false, PEER)
                .unwrap();
            memo.keep(Some(1), Some(1), key, response(StatusCode::OK, body));
            assert!(memo.weight() <= 64 * 1024);
        }
        assert!(memo.weight() > 0);
        // One response larger than a quarter of the budget is never kept.
        let big: &'static str = Box::leak("x".repeat(20 * 1024).into_boxed_str());
        let key = key(&memo, "/CUSTOMER/LIST/?limit=100", &[]);
        memo.keep(Some(1), Some(1), key.clone(), response(StatusCode::OK, big));
        assert!(memo.get(Some(1), &key).is_none());
    }
}
