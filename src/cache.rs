//! The cache of finished list responses.
//!
//! The list is read far more often than it changes, so each distinct query's response is built
//! once per *data version* and then served from memory: body bytes, a strong `ETag`, and a
//! gzip copy made the first time a client asks for one. The data version is SQLite's
//! `PRAGMA data_version` ([`crate::db::Db::generation`]), which changes on every commit by any
//! connection or process, `clientele import` included; a new version empties the cache.
//!
//! Access control and redaction are not the cache's business: the API key is checked before
//! the cache is consulted, and the redaction is fixed for the life of the server, so a cached
//! body is exactly what a fresh build would be.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use rocket::tokio::sync::OnceCell;
use sha2::{Digest, Sha256};

use crate::customer::ListFilter;
use crate::error::ApiError;

/// Bodies below this size are not worth compressing.
const MIN_GZIP_SIZE: usize = 1024;

/// A finished list response.
pub struct CachedList {
    pub body: Arc<[u8]>,
    /// How many customers matched before paging (`X-Total-Count`).
    pub total: u64,
    /// A strong validator: a digest of the body, so it changes exactly when the body does.
    pub etag: String,
    gzip: OnceLock<Option<Arc<[u8]>>>,
}

impl CachedList {
    pub fn new(body: Vec<u8>, total: u64) -> CachedList {
        let digest = Sha256::digest(&body);
        let etag = format!(
            "\"{}\"",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        CachedList {
            body: body.into(),
            total,
            etag,
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

    /// The gzip copy, compressed on first use; `None` when the body is too small to bother.
    /// Compressing is CPU work, so it runs on the blocking pool.
    pub async fn gzip(self: &Arc<Self>) -> Option<Arc<[u8]>> {
        if self.body.len() < MIN_GZIP_SIZE {
            return None;
        }
        if let Some(done) = self.gzip.get() {
            return done.clone();
        }
        let this = Arc::clone(self);
        rocket::tokio::task::spawn_blocking(move || {
            this.gzip
                .get_or_init(|| {
                    let mut encoder = flate2::write::GzEncoder::new(
                        Vec::with_capacity(this.body.len() / 6),
                        flate2::Compression::default(),
                    );
                    encoder.write_all(&this.body).ok()?;
                    encoder.finish().ok().map(Arc::from)
                })
                .clone()
        })
        .await
        .ok()
        .flatten()
    }

    fn size(&self) -> usize {
        self.body.len()
    }
}

type Slot = Arc<OnceCell<Arc<CachedList>>>;

struct State {
    /// The data version the entries were built for.
    generation: Option<i64>,
    entries: HashMap<ListFilter, Slot>,
    /// Body bytes held by finished entries, as last counted.
    bytes: usize,
}

/// Finished list responses by query, for one data version at a time, within a memory budget.
pub struct ResponseCache {
    state: Mutex<State>,
    budget: usize,
}

impl ResponseCache {
    /// A cache that holds at most about `budget` bytes of bodies.
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
        let Some(generation) = generation else {
            return build().await.map(Arc::new);
        };
        let slot = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.generation != Some(generation) {
                state.generation = Some(generation);
                state.entries.clear();
                state.bytes = 0;
            }
            match state.entries.get(filter) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(state.entries.entry(filter.clone()).or_default()),
            }
        };
        let mut built = false;
        let entry = slot
            .get_or_try_init(|| {
                built = true;
                async { build().await.map(Arc::new) }
            })
            .await?
            .clone();
        if built {
            self.account(generation, entry.size());
        }
        Ok(entry)
    }

    /// Counts `size` new body bytes (gzip copies, about a fifth more, are not counted); over
    /// budget, the cache starts afresh (entries in use stay alive for their requests).
    fn account(&self, generation: i64, size: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.generation != Some(generation) {
            return;
        }
        state.bytes += size;
        if state.bytes > self.budget {
            state.entries.clear();
            state.bytes = 0;
        }
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
}
