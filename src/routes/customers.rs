//! `GET /CUSTOMER/LIST/`: the customer list, filtered and paged as the contract says, served
//! from the response cache with `ETag` revalidation and gzip.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use rocket::http::{Header, Method, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::tokio::sync::Semaphore;
use rocket::{get, Route, State};
use sha2::Digest;

use super::spool::{Copy, Spool, Writer};
use crate::apikey::{Acting, ReadOrSession};
use crate::cache::{CachedList, ResponseCache};
use crate::config::Config;
use crate::customer::{ListFilter, View};
use crate::error::{json_content_type, ApiError};
use crate::store::Store;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ListFilter {
    type Error = ApiError;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let query = request.uri().query().map(|query| query.as_str());
        match ListFilter::parse(query) {
            Ok(filter) => Outcome::Success(filter),
            Err(error) => Outcome::Error((error.status(), error)),
        }
    }
}

/// What the client can take: its cached `ETag`s and whether it accepts gzip.
pub struct Negotiation {
    if_none_match: Option<String>,
    gzip: bool,
    generation: Option<i64>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Negotiation {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = request.headers();
        Outcome::Success(Negotiation {
            if_none_match: headers.get_one("If-None-Match").map(str::to_owned),
            gzip: accepts_gzip(&headers.get("Accept-Encoding").collect::<Vec<_>>().join(",")),
            generation: crate::store::request_generation(request),
        })
    }
}

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` with a weight above 0, or, when
/// gzip is not named, `*` with a weight above 0 (RFC 9110 §12.5.3: `gzip;q=0, *` refuses it).
fn accepts_gzip(value: &str) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in value.split(',') {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or("");
        let weight = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight);
        } else if name == "*" {
            any = Some(weight);
        }
    }
    gzip.or(any).is_some_and(|weight| weight > 0.0)
}

/// How much of a body goes to the connection at a time. Rocket's default, 4 KiB, costs a
/// task hand-off per 4 KiB and made the whole list 4x slower; each connection holds up to
/// about two chunks in flight, so larger ones cost memory (measured: bench/run.py).
const CHUNK: usize = 256 * 1024;

/// A list response from the cache: the full body or its gzip copy, or a 304 (no body).
pub struct ListResponse {
    entry: Arc<CachedList>,
    /// The one customer the answer is about (a filter by id), for the memo in front.
    customer: Option<i64>,
    body: Option<bytes::Bytes>,
    /// The representation is the gzip copy: its own `ETag`, on a 304 too.
    gzipped: bool,
}

impl<'r> Responder<'r, 'static> for ListResponse {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            // Browsers may keep it, but must ask again each time: a 304 costs almost nothing.
            .header(Header::new("Cache-Control", "private, no-cache"))
            .header(Header::new("Vary", "Accept-Encoding"));
        if let Some(id) = self.customer {
            // Read and removed by the server in front (`memo::SCOPE_HEADER`).
            builder.header(Header::new(
                crate::memo::SCOPE_HEADER,
                format!("customer={id}"),
            ));
        }
        if let Some(key) = request.local_cache(|| crate::keyuse::UsedKey(None)).0 {
            // Read and removed by the server in front, which keeps it with the answer
            // (`memo::KEY_HEADER`), to count the key as used when it answers again.
            builder.header(Header::new(crate::memo::KEY_HEADER, key.to_string()));
        }
        let etag = if self.gzipped {
            self.entry.gzip_etag()
        } else {
            self.entry.etag.clone()
        };
        match self.body {
            None => {
                builder
                    .status(Status::NotModified)
                    .header(Header::new("ETag", etag));
            }
            Some(bytes) => {
                if self.gzipped {
                    builder.header(Header::new("Content-Encoding", "gzip"));
                }
                // Rocket buffers each chunk at full size: never more than the body needs.
                let length = bytes.len();
                builder
                    .status(Status::Ok)
                    .header(json_content_type())
                    .header(Header::new("ETag", etag))
                    .header(Header::new("X-Total-Count", self.entry.total.to_string()))
                    // Stated here so that a HEAD answer, whose body is stripped, still has it.
                    .header(Header::new("Content-Length", length.to_string()))
                    .sized_body(length, Cursor::new(bytes))
                    // Hand large bodies to the connection in large pieces, not 4 KiB ones
                    // (after `sized_body`, which resets it).
                    .max_chunk_size(length.clamp(1, CHUNK));
            }
        }
        Ok(builder.finalize())
    }
}

/// What a customer takes in a list body, on average (about 470 bytes with typical data), to
/// tell a list too large to keep from one that is not, before building it.
const ROW_BYTES: u64 = 512;
/// Streamed lists in flight at once: each holds a read snapshot, a connection of its own and
/// about two chunks; the next ones wait.
const STREAMS: usize = 8;

/// The list's answer: from the cache, or streamed when it is too large to keep.
pub enum ListAnswer {
    Cached(ListResponse),
    Streamed(StreamedList),
}

impl<'r> Responder<'r, 'static> for ListAnswer {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        match self {
            ListAnswer::Cached(response) => response.respond_to(request),
            ListAnswer::Streamed(response) => response.respond_to(request),
        }
    }
}

/// A list sent as it is read (no body: a 304). Its `ETag` names the data's change number, the
/// query and the view, so it is known before the body exists and a 304 costs no work: the
/// number moves with every change to a field the list sends (a password alone does not).
pub struct StreamedList {
    etag: String,
    gzipped: bool,
    total: u64,
    body: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    /// The body from a copy on disk ([`super::spool`]) instead, and whether the server in
    /// front sends it ([`ListStreams::send_copies_in_front`]).
    copy: Option<(Copy, bool)>,
    /// Set by the producer when the list could not be read to the end: the body then ends
    /// in an error, so that the connection is cut rather than the truncated body ended
    /// cleanly (a client must never take half a list for the whole one).
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl<'r> Responder<'r, 'static> for StreamedList {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut builder = Response::build();
        builder
            .header(Header::new("Cache-Control", "private, no-cache"))
            .header(Header::new("Vary", "Accept-Encoding"))
            .header(Header::new("ETag", self.etag));
        // A 200's headers, whichever way its body comes.
        let ok = |builder: &mut response::Builder<'static>| {
            if self.gzipped {
                builder.header(Header::new("Content-Encoding", "gzip"));
            }
            builder
                .status(Status::Ok)
                .header(json_content_type())
                .header(Header::new("X-Total-Count", self.total.to_string()));
        };
        if let Some((copy, front)) = self.copy {
            ok(&mut builder);
            builder.header(Header::new("Content-Length", copy.file.len.to_string()));
            if front {
                let named = format!("{} {}", copy.file.named(), copy.path.to_string_lossy());
                builder.header(Header::new(FILE_HEADER, named));
            } else {
                let file = super::spool::open_copy(&copy).map_err(|error| {
                    log::error!("could not read a copy of a list: {error}");
                    Status::InternalServerError
                })?;
                builder
                    .streamed_body(tokio::fs::File::from_std(file))
                    .max_chunk_size(CHUNK);
            }
            return Ok(builder.finalize());
        }
        match self.body {
            None => {
                builder.status(Status::NotModified);
            }
            Some(receiver) => {
                ok(&mut builder);
                builder.streamed_body(ChannelReader {
                    receiver,
                    current: Cursor::new(Vec::new()),
                    failed: self.failed,
                });
            }
        }
        Ok(builder.finalize())
    }
}

/// The pieces a producer sends, read as one body.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
    current: Cursor<Vec<u8>>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl tokio::io::AsyncRead for ChannelReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Read;
        use std::task::Poll;
        loop {
            let this = &mut *self;
            let position = this.current.position() as usize;
            if position < this.current.get_ref().len() {
                let read = this.current.read(out.initialize_unfilled())?;
                out.advance(read);
                return Poll::Ready(Ok(()));
            }
            match this.receiver.poll_recv(context) {
                Poll::Ready(Some(piece)) => this.current = Cursor::new(piece),
                // The producer finished (or stopped): the end of the body, unless it failed.
                Poll::Ready(None) if this.failed.load(std::sync::atomic::Ordering::Acquire) => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the list could not be read to the end",
                    )))
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The `ETag` of a streamed list.
fn stream_etag(filter: &ListFilter, view: View, seq: i64, gzipped: bool) -> String {
    let described = format!("{}|{filter:?}|{view:?}|{seq}", env!("CARGO_PKG_VERSION"));
    let digest = sha2::Sha256::digest(described.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"s{hex}{}\"", if gzipped { "-gzip" } else { "" })
}

/// Whether an `If-None-Match` value names `etag` (weakly, as RFC 9110 says).
fn names(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

/// Streams the list: a producer on the blocking pool reads rows in one snapshot and sends
/// pieces of [`CHUNK`] bytes (gzip-compressed as they go when the client takes it) through a
/// channel of two, so memory stays at a few pieces whatever the list's size.
#[allow(clippy::too_many_arguments)]
async fn stream(
    db: &Store,
    filter: ListFilter,
    view: View,
    seq: i64,
    negotiation: &Negotiation,
    streams: &Arc<Semaphore>,
    spool: Option<&Arc<Spool>>,
    front: bool,
) -> Result<StreamedList, ApiError> {
    let gzipped = negotiation.gzip;
    let etag = stream_etag(&filter, view, seq, gzipped);
    if negotiation.if_none_match.as_deref().is_some_and(|tags| {
        names(tags, &etag) || names(tags, &stream_etag(&filter, view, seq, !gzipped))
    }) {
        return Ok(StreamedList {
            etag,
            gzipped,
            total: 0,
            body: None,
            copy: None,
            failed: Arc::default(),
        });
    }
    if let Some(copy) = spool.and_then(|spool| spool.usable(&etag)) {
        return Ok(StreamedList {
            etag,
            gzipped,
            total: copy.total,
            body: None,
            copy: Some((copy, front)),
            failed: Arc::default(),
        });
    }
    let spool = spool.cloned();
    let slot = format!("{filter:?}|{view:?}|{gzipped}");
    let permit = Arc::clone(streams)
        .acquire_owned()
        .await
        .map_err(ApiError::internal)?;
    let mut conn = db.dedicated()?;
    let totals = db.totals();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed_flag = Arc::clone(&failed);
    let produced = filter.clone();
    // A thread of its own, at a lower priority: a download of the whole list is bulk work,
    // and must not take the cores from the many small requests beside it.
    let spawned = std::thread::Builder::new()
        .name("clientele-list".into())
        .spawn(move || {
            lower_priority();
            let filter = produced;
            let _permit = permit;
            // The copy on disk, written beside the download when this version is asked again.
            let copy: std::cell::RefCell<Option<(Writer, u64)>> = std::cell::RefCell::default();
            let mut gzip = gzipped.then(|| {
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(CHUNK),
                    flate2::Compression::fast(),
                )
            });
            let mut send = |piece: Vec<u8>| -> bool {
                let piece = match gzip.as_mut() {
                    None => piece,
                    Some(encoder) => {
                        use std::io::Write;
                        if encoder.write_all(&piece).is_err() {
                            return false;
                        }
                        std::mem::take(encoder.get_mut())
                    }
                };
                if let Some((writer, _)) = copy.borrow_mut().as_mut() {
                    writer.write(&piece);
                }
                let sent = piece.is_empty() || sender.blocking_send(piece).is_ok();
                // The reader left (or it was a HEAD): the copy would be cut short.
                if !sent {
                    copy.borrow_mut().take();
                }
                sent
            };
            let mut started_tx = Some(started_tx);
            let result = conn.stream_list(
                &filter,
                view,
                &totals,
                CHUNK,
                &mut |total, seq| {
                    if let Some(spool) = &spool {
                        let etag = stream_etag(&filter, view, seq, gzipped);
                        *copy.borrow_mut() = spool.claim(&etag, slot.clone()).map(|w| (w, total));
                    }
                    started_tx
                        .take()
                        .is_some_and(|started| started.send((total, seq)).is_ok())
                },
                &mut send,
            );
            match result {
                Ok(()) => {
                    if let Some(encoder) = gzip.take() {
                        match encoder.finish() {
                            Ok(rest) => {
                                if let Some((writer, _)) = copy.borrow_mut().as_mut() {
                                    writer.write(&rest);
                                }
                                if sender.blocking_send(rest).is_err() {
                                    copy.borrow_mut().take();
                                }
                            }
                            Err(_) => {
                                copy.borrow_mut().take();
                            }
                        }
                    }
                    // Kept only when the whole body reached the reader: every piece was sent.
                    if let Some((writer, total)) = copy.borrow_mut().take() {
                        writer.finish(total);
                    }
                }
                // No gzip trailer, and the body ends in an error (see `StreamedList::failed`).
                Err(error) => {
                    failed_flag.store(true, std::sync::atomic::Ordering::Release);
                    log::error!("streaming a list failed, the download is cut: {error}");
                }
            }
        });
    if let Err(error) = spawned {
        return Err(ApiError::unavailable(error));
    }
    let (total, seq) = started_rx
        .await
        .map_err(|_| ApiError::unavailable(std::io::Error::other("the list could not be read")))?;
    Ok(StreamedList {
        etag: stream_etag(&filter, view, seq, gzipped),
        gzipped,
        total,
        body: Some(receiver),
        copy: None,
        failed,
    })
}

/// The priority of the threads that stream lists, on thread-priority's scale from 0 (the
/// lowest) to 99, which it maps to niceness 19 to -20: 22 is niceness 10, under load about a
/// tenth of the share of a request worker (at 0).
const BULK_PRIORITY: u8 = 22;

/// Lowers the calling thread (a list producer's own) to [`BULK_PRIORITY`]. Where that is not
/// allowed, it runs at normal priority.
fn lower_priority() {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    let lowered = ThreadPriorityValue::try_from(BULK_PRIORITY)
        .map_err(|error| format!("{error:?}"))
        .and_then(|value| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(value),
                policy,
            )
            .map_err(|error| format!("{error:?}"))
        });
    if let Err(error) = lowered {
        log::debug!("could not lower a list stream's priority: {error}");
    }
}

/// Holds a customer session's list to its own customer: an id, email or login filter naming
/// anyone else is a 403 (whether or not that customer exists), and the filter gets the
/// session's id, so that nothing else can match. Paging applies as usual.
async fn own_filter(
    acting: &Acting,
    mut filter: ListFilter,
    db: &Store,
) -> Result<ListFilter, ApiError> {
    let Some(own) = acting.customer() else {
        return Ok(filter);
    };
    let found = db.run(move |conn| conn.find(own)).await?;
    let Some(customer) = found else {
        // Deleting a customer ends their sessions; a delete committed meanwhile lands here.
        return Err(ApiError::SessionEnded);
    };
    let foreign = if filter.id.is_some_and(|id| id != own) {
        Some("id_client")
    } else if filter
        .email
        .as_ref()
        .is_some_and(|email| !email.eq_ignore_ascii_case(&customer.email))
    {
        Some("email")
    } else if filter
        .login
        .as_ref()
        .is_some_and(|login| *login != customer.login)
    {
        Some("login")
    } else {
        None
    };
    if let Some(name) = foreign {
        return Err(ApiError::Forbidden(format!(
            "This session may only read its own customer: the {name} filter names another"
        )));
    }
    filter.id = Some(own);
    Ok(filter)
}

#[allow(clippy::too_many_arguments)]
#[get("/CUSTOMER/LIST")]
async fn get_customers(
    key: ReadOrSession,
    filter: Result<ListFilter, ApiError>,
    negotiation: Negotiation,
    db: &State<Store>,
    config: &State<Config>,
    cache: &State<ResponseCache>,
    streams: &State<ListStreams>,
) -> Result<ListAnswer, ApiError> {
    let filter = own_filter(&key.0, filter?, db).await?;
    let view = config.view;
    // A list that may be too large to keep, and is not kept already: stream it if it is.
    // (A page of up to 10,000 never is, with the default budget: no count is needed.)
    // While the customers change more than once a second, a list of a megabyte or more is
    // streamed rather than built whole and kept: each version would be built for one or two
    // downloads, holding its body and gzip copy in memory meanwhile.
    let unfiltered = filter.id.is_none() && filter.email.is_none() && filter.login.is_none();
    let keepable = match unfiltered && streams.churning(negotiation.generation) {
        true => (cache.budget() / 2).min(CHURN_KEPT) as u64,
        false => (cache.budget() / 2) as u64,
    };
    let could_be_large = unfiltered
        && filter
            .limit
            .is_none_or(|limit| u64::from(limit) * ROW_BYTES > keepable);
    if could_be_large && cache.peek(negotiation.generation, &filter).is_none() {
        let generation = negotiation.generation;
        let (rows, seq) = match streams.size(generation, &filter) {
            Some(known) => known,
            None => {
                let (counted, totals) = (filter.clone(), db.totals());
                let size = db
                    .run(move |conn| conn.list_size(&counted, &totals))
                    .await?;
                streams.remember(generation, &filter, size);
                size
            }
        };
        if rows.saturating_mul(ROW_BYTES) > keepable {
            let streamed = stream(
                db,
                filter,
                view,
                seq,
                &negotiation,
                &streams.permits,
                streams.spool.as_ref(),
                streams.front.load(std::sync::atomic::Ordering::Relaxed),
            )
            .await?;
            return Ok(ListAnswer::Streamed(streamed));
        }
    }
    cached(filter, view, negotiation, db, cache)
        .await
        .map(ListAnswer::Cached)
}

/// Lists too large to keep (Rocket state): the streams in flight, and the sizes and change
/// numbers last read, so that a revalidation (304) or a repeated download of an unchanged
/// list reads nothing from the database before it streams or answers.
pub struct ListStreams {
    permits: Arc<Semaphore>,
    sizes: Mutex<Sizes>,
    /// Copies on disk, per version (SQLite: beside the database file).
    spool: Option<Arc<Spool>>,
    /// Set by the server in front of the app ([`crate::server`]): a copy on disk is then
    /// sent by it (named in [`FILE_HEADER`]) rather than read through the app.
    front: std::sync::atomic::AtomicBool,
    churn: Mutex<Churn>,
}

/// The header naming the file the server in front sends as the body (which file it must be,
/// [`super::spool::FileId::named`], then its path); never sent on.
pub const FILE_HEADER: &str = "x-clientele-file";

/// Rows sent and change number per filter, valid for one data version.
#[derive(Default)]
struct Sizes {
    generation: Option<i64>,
    known: HashMap<ListFilter, (u64, i64)>,
}

/// When the customers' generation last moved, and how long the one before lasted.
#[derive(Default)]
struct Churn {
    generation: Option<i64>,
    since: Option<std::time::Instant>,
    lasted: Option<std::time::Duration>,
}

/// A generation lasting less than this means the customers are changing all the time.
const CHURN: std::time::Duration = std::time::Duration::from_secs(1);
/// The largest list body built whole and kept while they are.
const CHURN_KEPT: usize = 1024 * 1024;

/// Filters remembered at most (each a few dozen bytes); past that the memo starts over.
const SIZES_KEPT: usize = 256;

impl ListStreams {
    /// The size and change number read for `filter` at this data version, if any.
    fn size(&self, generation: Option<i64>, filter: &ListFilter) -> Option<(u64, i64)> {
        let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        match generation {
            Some(_) if sizes.generation == generation => sizes.known.get(filter).copied(),
            _ => None,
        }
    }

    /// Remembers a size read after `generation` was: no commit came between, or the next
    /// request sees another generation and reads again.
    fn remember(&self, generation: Option<i64>, filter: &ListFilter, size: (u64, i64)) {
        if generation.is_none() {
            return;
        }
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.generation != generation || sizes.known.len() >= SIZES_KEPT {
            sizes.generation = generation;
            sizes.known.clear();
        }
        sizes.known.insert(filter.clone(), size);
    }
}

impl ListStreams {
    /// With copies on disk in `spool`, if any.
    pub fn new(spool: Option<Arc<Spool>>) -> ListStreams {
        ListStreams {
            permits: Arc::new(Semaphore::new(STREAMS)),
            sizes: Mutex::default(),
            spool,
            front: std::sync::atomic::AtomicBool::new(false),
            churn: Mutex::default(),
        }
    }

    /// Whether the customers change more than once a second ([`CHURN`]), as seen from the
    /// generations requests bring (`generation` is this request's).
    fn churning(&self, generation: Option<i64>) -> bool {
        let mut churn = self.churn.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if generation.is_some() && churn.generation != generation {
            churn.lasted = churn.since.map(|since| now - since);
            churn.since = Some(now);
            churn.generation = generation;
        }
        // Calm again once the current generation has lasted a while.
        let current = churn.since.map_or(CHURN, |since| now - since);
        churn.lasted.is_some_and(|lasted| lasted < CHURN) && current < CHURN
    }

    /// The server in front sends copies on disk itself.
    pub fn send_copies_in_front(&self) {
        self.front.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The list from the response cache (built once per data version).
async fn cached(
    filter: ListFilter,
    view: View,
    negotiation: Negotiation,
    db: &Store,
    cache: &ResponseCache,
) -> Result<ListResponse, ApiError> {
    let entry = cache
        .get_or_build(negotiation.generation, &filter, || {
            let (db, filter, totals) = (db.clone(), filter.clone(), db.totals());
            async move {
                db.run(move |conn| {
                    let (body, total) = conn.list_json(&filter, view, Some(&totals))?;
                    Ok::<_, ApiError>(CachedList::new(body, total))
                })
                .await
            }
        })
        .await?;
    if negotiation
        .if_none_match
        .as_deref()
        .is_some_and(|tags| entry.matches(tags))
    {
        let gzipped = negotiation.gzip && entry.compressible();
        return Ok(ListResponse {
            entry,
            customer: filter.id,
            body: None,
            gzipped,
        });
    }
    let gzip = match negotiation.gzip {
        true => cache.gzip(negotiation.generation, &entry).await,
        false => None,
    };
    let (body, gzipped) = match gzip {
        Some(gzip) => (gzip, true),
        None => (entry.body.clone(), false),
    };
    Ok(ListResponse {
        entry,
        customer: filter.id,
        body: Some(body),
        gzipped,
    })
}

pub fn routes() -> Vec<Route> {
    let mut routes = rocket::routes![get_customers];
    routes.extend(super::fallback_routes(
        super::LIST_PATH,
        &[Method::Get, Method::Head],
    ));
    routes
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn a_list_streams_thread_runs_at_niceness_10() {
        let niceness = std::thread::spawn(|| {
            super::lower_priority();
            // Field 19 of /proc/thread-self/stat, after the command name in parentheses.
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after = stat.rsplit_once(')').unwrap().1;
            after
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(niceness, 10);
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip("*, gzip;q=0"));
        assert!(accepts_gzip("gzip;q=0.5, *;q=0"));
        assert!(!accepts_gzip("*;q=0"));
        assert!(!accepts_gzip(""));
    }
}
