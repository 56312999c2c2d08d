//! The cache of finished list responses.
//!
//! The list is read far more often than it changes, so each distinct query's response is built
//! once per *data version* and then served from memory: body bytes, a strong `ETag`, and a
//! gzip copy made the first time a client asks for one. The data version is SQLite's
//! `PRAGMA data_version` ([`crate::store::Store::generation`]), which changes on every commit by any
//! connection or process, `clientele import` included; a new version empties the cache.
//!
//! Access control and redaction are not the cache's business: the API key is checked before
//! the cache is consulted, and the redaction is fixed for the life of the server, so a cached
//! body is exactly what a fresh build would be. A customer session's list is asked for with
//! the filter held to its own id (`routes::customers`), so the entry it gets is that one
//! customer's, whoever else asked for it.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rocket::tokio::sync::OnceCell;
use sha2::{Digest, Sha256};

use crate::customer::ListFilter;
use crate::error::ApiError;

/// Bodies below this size are not worth compressing.
pub const MIN_GZIP_SIZE: usize = 1024;
/// Bodies from this size up are compressed at the fast level.
const FAST_GZIP_SIZE: usize = 1024 * 1024;
/// The most responses kept, whatever their size: each costs bookkeeping besides its body.
pub const MAX_ENTRIES: usize = 10_000;
/// What an entry costs besides its body and key: the map slot, the `Arc`s and cells, the
/// `CachedList` with its `ETag` string, and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 320;

/// A finished list response.
pub struct CachedList {
    pub body: Bytes,
    /// How many customers matched before paging (`X-Total-Count`).
    pub total: u64,
    /// A strong validator: a digest of the body, so it changes exactly when the body does.
    pub etag: String,
    gzip: OnceLock<Option<Bytes>>,
}

impl CachedList {
    pub fn new(body: Vec<u8>, total: u64) -> CachedList {
        CachedList {
            etag: etag(&body),
            body: Bytes::from(body),
            total,
            gzip: OnceLock::new(),
        }
    }

    /// The `ETag` of the gzip copy: a different representation needs a different strong tag.
    pub fn gzip_etag(&self) -> String {
        format!("{}-gzip\"", self.etag.trim_end_matches('"'))
    }

    /// Whether an `If-None-Match` header value matches this response (in either encoding).
    /// Comparison is weak, as RFC 9110 says for `If-None-Match`.
    pub fn matches(&self, if_none_match: &str) -> bool {
        let gzip_etag = self.gzip_etag();
        if_none_match.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag == self.etag || tag == gzip_etag
        })
    }

    /// Whether a client that accepts gzip gets the gzip copy.
    pub fn compressible(&self) -> bool {
        self.body.len() >= MIN_GZIP_SIZE
    }

    /// The gzip copy, compressed on first use, and whether this call made it; `None` when the
    /// body is too small to bother. Compressing is CPU work, so it runs on the blocking pool.
    async fn gzip(self: &Arc<Self>) -> Option<(Bytes, bool)> {
        if !self.compressible() {
            return None;
        }
        if let Some(done) = self.gzip.get() {
            return done.clone().map(|gz| (gz, false));
        }
        let this = Arc::clone(self);
        rocket::tokio::task::spawn_blocking(move || {
            let mut made = false;
            this.gzip
                .get_or_init(|| {
                    made = true;
                    // Large lists (the whole list) are made again at every change to any
                    // customer: the fast level takes about a third of the default's CPU,
                    // for more bytes (the whole list at 10,000: 0.7 MB against 0.4 MB).
                    let level = if this.body.len() >= FAST_GZIP_SIZE {
                        flate2::Compression::fast()
                    } else {
                        flate2::Compression::default()
                    };
                    let mut encoder = flate2::write::GzEncoder::new(
                        Vec::with_capacity(this.body.len() / 6),
                        level,
                    );
                    encoder.write_all(&this.body).ok()?;
                    encoder.finish().ok().map(Bytes::from)
                })
                .clone()
                .map(|gz| (gz, made))
        })
        .await
        .ok()
        .flatten()
    }
}

/// The strong `ETag` of a list body: a digest of it, so it changes exactly when it does.
pub fn etag(body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for byte in &digest[..16] {
        tag.push(char::from(HEX[usize::from(byte >> 4)]));
        tag.push(char::from(HEX[usize::from(byte & 15)]));
    }
    tag.push('"');
    tag
}

/// What an entry for `filter` with a `body` of this size weighs in the budget.
fn weight(filter: &ListFilter, body: usize) -> usize {
    let key = std::mem::size_of::<ListFilter>()
        + filter.email.as_ref().map_or(0, String::capacity)
        + filter.login.as_ref().map_or(0, String::capacity);
    body + key + ENTRY_OVERHEAD
}

type Slot = Arc<OnceCell<Arc<CachedList>>>;

struct State {
    /// The data version the entries were built for.
    generation: Option<i64>,
    entries: HashMap<ListFilter, Slot>,
    /// What the finished entries weigh: bodies, gzip copies, keys and bookkeeping.
    bytes: usize,
}

impl State {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Finished list responses by query, for one data version at a time, within a memory budget
/// (`response_cache_mib`) and at most [`MAX_ENTRIES`] of them.
pub struct ResponseCache {
    state: Mutex<State>,
    budget: usize,
}

impl ResponseCache {
    /// A cache that holds at most about `budget` bytes, everything counted.
    pub fn new(budget: usize) -> ResponseCache {
        ResponseCache {
            state: Mutex::new(State {
                generation: None,
                entries: HashMap::new(),
                bytes: 0,
            }),
            budget,
        }
    }

    /// The response for `filter` at data version `generation`, built by `build` if no request
    /// has built it yet. Concurrent requests for the same query wait for one build rather than
    /// each building (a whole list of 100,000 customers is tens of megabytes). With no known
    /// generation (the database could not be asked), nothing is cached.
    pub async fn get_or_build<F, Fut>(
        &self,
        generation: Option<i64>,
        filter: &ListFilter,
        build: F,
    ) -> Result<Arc<CachedList>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<CachedList, ApiError>>,
    {
        let Some(generation) = generation.filter(|_| self.budget > 0) else {
            return build().await.map(Arc::new);
        };
        let slot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.generation != Some(generation) {
                state.generation = Some(generation);
                state.clear();
            }
            match state.entries.get(filter) {
                Some(slot) => Arc::clone(slot),
                None => {
                    if state.entries.len() >= MAX_ENTRIES {
                        state.clear();
                    }
                    Arc::clone(state.entries.entry(filter.clone()).or_default())
                }
            }
        };
        let mut built = false;
        let entry = Arc::clone(
            slot.get_or_try_init(|| {
                built = true;
                async { build().await.map(Arc::new) }
            })
            .await?,
        );
        if built {
            self.account(generation, weight(filter, entry.body.len()));
        }
        Ok(entry)
    }

    /// The finished response for `filter` at `generation`, if one is kept.
    pub fn peek(&self, generation: Option<i64>, filter: &ListFilter) -> Option<Arc<CachedList>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if generation.is_none() || state.generation != generation {
            return None;
        }
        state.entries.get(filter)?.get().cloned()
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The gzip copy of `entry` (see [`CachedList::gzip`]), counted in the budget when made.
    pub async fn gzip(&self, generation: Option<i64>, entry: &Arc<CachedList>) -> Option<Bytes> {
        let (gzip, made) = entry.gzip().await?;
        if let (true, Some(generation)) = (made, generation) {
            self.account(generation, gzip.len());
        }
        Some(gzip)
    }

    /// Counts `size` more bytes; over budget, the cache starts afresh (entries in use stay
    /// alive for their requests, and a response larger than the whole budget is still served,
    /// just not kept).
    fn account(&self, generation: i64, size: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.generation != Some(generation) {
            return;
        }
        state.bytes += size;
        if state.bytes > self.budget {
            state.clear();
        }
    }

    /// What the kept entries weigh, as counted against the budget.
    pub fn weight(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// How many responses are kept.
    pub fn entries(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_follow_the_body_and_match_weakly_in_either_encoding() {
        let a = CachedList::new(b"{\"a\":1}".to_vec(), 1);
        let b = CachedList::new(b"{\"a\":2}".to_vec(), 1);
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.etag, CachedList::new(b"{\"a\":1}".to_vec(), 1).etag);
        assert!(a.matches(&a.etag));
        assert!(a.matches(&format!("W/{}", a.etag)));
        assert!(a.matches(&format!("\"x\", {}", a.gzip_etag())));
        assert!(a.matches("*"));
        assert!(!a.matches(&b.etag));
        assert!(!a.matches(""));
    }

    async fn build(body: usize) -> Result<CachedList, ApiError> {
        Ok(CachedList::new(vec![b'x'; body], 1))
    }

    fn offset(n: i64) -> ListFilter {
        ListFilter {
            offset: n,
            ..ListFilter::default()
        }
    }

    #[rocket::async_test]
    async fn keys_and_bookkeeping_count_and_entries_are_capped() {
        let cache = ResponseCache::new(64 * 1024 * 1024);
        for n in 0..40_000 {
            cache
                .get_or_build(Some(1), &offset(n), || build(10))
                .await
                .unwrap();
            assert!(cache.entries() <= MAX_ENTRIES);
        }
        // Each tiny body is counted with its key and overhead, not as 10 bytes.
        let kept = cache.entries();
        assert!(kept > 0);
        assert!(
            cache.weight() >= kept * (10 + ENTRY_OVERHEAD),
            "{}",
            cache.weight()
        );
    }

    #[rocket::async_test]
    async fn the_budget_holds_and_a_body_larger_than_it_is_still_served() {
        let cache = ResponseCache::new(10_000);
        for n in 0..50 {
            let entry = cache
                .get_or_build(Some(1), &offset(n), || build(3_000))
                .await
                .unwrap();
            assert_eq!(entry.body.len(), 3_000);
            assert!(cache.weight() <= 10_000, "{}", cache.weight());
        }
        let huge = cache
            .get_or_build(Some(1), &offset(99), || build(50_000))
            .await
            .unwrap();
        assert_eq!(huge.body.len(), 50_000);
        assert!(huge.etag.starts_with('"'));
        assert!(cache.weight() <= 10_000);
        let gzip = cache.gzip(Some(1), &huge).await.unwrap();
        assert!(!gzip.is_empty());
        assert!(cache.weight() <= 10_000);
    }
}
