//! Counters for `GET /metrics`, in Prometheus' text format (version 0.0.4).
//!
//! What is counted: requests by route and status with a latency histogram, how requests for
//! the list were answered (the front memo, the lane, or the app), logins by outcome, writes by
//! action, scheduled backups. What is read at scrape time: customers, database bytes, open
//! connections, the last sync's age, the certificate's expiry.
//!
//! No label ever carries a key, an email, a login or a customer id: the route label is one of
//! a fixed set of paths (anything else is `other`), and every other label comes from a fixed
//! set of words. The counters are split in shards, one per worker thread, so that two cores
//! counting the same route never fight over one cache line: the hot path pays a few
//! uncontended atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The routes requests are counted under, as the contract writes them; index = label.
pub const ROUTES: [&str; 14] = [
    "/CUSTOMER/LIST/",
    "/CUSTOMER/LOGIN/",
    "/CUSTOMER/LOGOUT/",
    "/CUSTOMER/ADD/",
    "/CUSTOMER/UPDATE/",
    "/CUSTOMER/DELETE/",
    "/CUSTOMER/PASSWORD/",
    "/CUSTOMER/PASSWORD/RESET/",
    "/CUSTOMER/CHANGES/",
    "/health",
    "/metrics",
    "/openapi.json",
    "/",
    "other",
];
const OTHER: usize = ROUTES.len() - 1;
/// The index of the list's route.
pub const LIST: usize = 0;
/// The index of the page at `/`.
const ROOT: usize = ROUTES.len() - 2;
/// The routes whose 2xx answers are writes, and the action each is counted as.
const WRITES: [(usize, &str); 5] = [
    (3, "add"),
    (4, "update"),
    (5, "delete"),
    (6, "password"),
    (7, "password_reset"),
];
/// The histogram's upper bounds, in seconds: from a memo hit (tens of µs) to a slow login.
const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Status codes counted one by one: 100 to 599.
const STATUSES: usize = 500;
const SHARDS: usize = 8;

/// How a request for the list was answered.
#[derive(Debug, Clone, Copy)]
pub enum Answered {
    /// From the front memo: an answer kept at the current data version.
    Memo,
    /// By the lane: one customer read without the app.
    Lane,
    /// By the app (its own response cache, or the database).
    App,
}

/// A login's outcome.
#[derive(Debug, Clone, Copy)]
pub enum Login {
    Ok,
    Failed,
    Limited,
}

#[repr(align(128))]
struct Shard {
    requests: Box<[AtomicU64]>,
    /// Per route: one count per bound and one for `+Inf` (not cumulative; summed when read).
    buckets: Box<[AtomicU64]>,
    /// Per route: the sum of latencies, in nanoseconds.
    nanos: Box<[AtomicU64]>,
    answered: [AtomicU64; 3],
    /// Per action of [`WRITES`]: the writes that succeeded.
    writes: [AtomicU64; WRITES.len()],
}

impl Shard {
    fn new() -> Shard {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Shard {
            requests: zeros(ROUTES.len() * STATUSES),
            buckets: zeros(ROUTES.len() * (BOUNDS.len() + 1)),
            nanos: zeros(ROUTES.len()),
            answered: Default::default(),
            writes: Default::default(),
        }
    }
}

/// The backups' record, for `/metrics` and `/health`.
#[derive(Debug, Default)]
pub struct BackupRecord {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Seconds since 1970 of the last good backup (0: none yet).
    pub last_ok: AtomicU64,
    /// Seconds since 1970 of the last failed one (0: none).
    pub last_failed: AtomicU64,
    /// Whether backups are scheduled at all.
    pub scheduled: std::sync::atomic::AtomicBool,
}

impl BackupRecord {
    /// Whether the last backup taken failed.
    pub fn failing(&self) -> bool {
        self.last_failed.load(Relaxed) > self.last_ok.load(Relaxed)
    }
}

/// Every counter of one server. Shared by the socket layer and the app (Rocket state).
pub struct Metrics {
    shards: Box<[Shard]>,
    logins: [AtomicU64; 3],
    pub connections: AtomicI64,
    pub backups: BackupRecord,
    /// The certificate's `notAfter`, seconds since 1970 (0: no HTTPS).
    pub certificate_expires: AtomicU64,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
std::thread_local! {
    /// This thread's shard, chosen at its first count (`usize::MAX` until then): a constant
    /// initialiser, so reading it is one load, with no lazy-initialisation check.
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// The route label of a request path: one of [`ROUTES`], matched as the app matches paths
/// (any case, with or without the trailing slash).
pub fn route_of(path: &str) -> usize {
    let path = path.split('?').next().unwrap_or("");
    if path == "/" {
        return ROOT;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    // The API's paths match in any case, as the app matches them; the others exactly.
    ROUTES[..ROOT]
        .iter()
        .position(|route| {
            let route = route.strip_suffix('/').unwrap_or(route);
            match route.starts_with("/CUSTOMER/") {
                true => route.eq_ignore_ascii_case(path),
                false => route == path,
            }
        })
        .unwrap_or(OTHER)
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            shards: (0..SHARDS).map(|_| Shard::new()).collect(),
            logins: Default::default(),
            connections: AtomicI64::new(0),
            backups: BackupRecord::default(),
            certificate_expires: AtomicU64::new(0),
            started: SystemTime::now(),
        }
    }

    fn shard(&self) -> &Shard {
        let index = SHARD.with(|shard| {
            if shard.get() == usize::MAX {
                shard.set(NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS);
            }
            shard.get()
        });
        &self.shards[index]
    }

    /// Counts one request: its route (from [`route_of`]), status and time to the response head.
    /// A write request (`POST` or `DELETE`, never a browser's `OPTIONS` preflight of one)
    /// answered `status`: counted in `clientele_writes_total` when it succeeded on a write
    /// route.
    pub fn wrote(&self, route: usize, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        if let Some(index) = WRITES.iter().position(|(write, _)| *write == route) {
            self.shard().writes[index].fetch_add(1, Relaxed);
        }
    }

    pub fn request(&self, route: usize, status: u16, took: Duration) {
        let shard = self.shard();
        let status = usize::from(status.clamp(100, 599) - 100);
        shard.requests[route * STATUSES + status].fetch_add(1, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        shard.buckets[route * (BOUNDS.len() + 1) + bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        shard.nanos[route].fetch_add(nanos, Relaxed);
    }

    /// Counts how a list request was answered.
    pub fn answered(&self, how: Answered) {
        self.shard().answered[how as usize].fetch_add(1, Relaxed);
    }

    /// Counts a login by outcome.
    pub fn login(&self, outcome: Login) {
        self.logins[outcome as usize].fetch_add(1, Relaxed);
    }

    fn sum(&self, pick: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| pick(shard).load(Relaxed))
            .sum()
    }

    /// The text `GET /metrics` answers, with the values read at scrape time.
    pub fn render(&self, now: &Gauges) -> String {
        let mut out = String::with_capacity(8192);

        header(
            &mut out,
            "clientele_http_requests_total",
            "counter",
            "Requests answered, by route (a fixed set of paths; anything else is \"other\") and \
             status code.",
        );
        for (route, label) in ROUTES.iter().enumerate() {
            for status in 0..STATUSES {
                let count = self.sum(|shard| &shard.requests[route * STATUSES + status]);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "clientele_http_requests_total{{route=\"{label}\",status=\"{}\"}} {count}",
                        status + 100
                    );
                }
            }
        }
        header(
            &mut out,
            "clientele_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its response's head, by route.",
        );
        for (route, label) in ROUTES.iter().enumerate() {
            let width = BOUNDS.len() + 1;
            let counts: Vec<u64> = (0..width)
                .map(|bucket| self.sum(|shard| &shard.buckets[route * width + bucket]))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (bound, count) in BOUNDS.iter().zip(&counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "clientele_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "clientele_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {total}"
            );
            let nanos = self.sum(|shard| &shard.nanos[route]);
            let _ = writeln!(
                out,
                "clientele_http_request_duration_seconds_sum{{route=\"{label}\"}} {}",
                nanos as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "clientele_http_request_duration_seconds_count{{route=\"{label}\"}} {total}"
            );
        }
        header(
            &mut out,
            "clientele_list_answers_total",
            "counter",
            "Requests for the list by how they were answered: memo (kept answers, hit), lane \
             (one customer read without the app) or app (miss: the app's response cache or the \
             database).",
        );
        for (index, how) in ["memo", "lane", "app"].iter().enumerate() {
            let count = self.sum(|shard| &shard.answered[index]);
            let _ = writeln!(out, "clientele_list_answers_total{{by=\"{how}\"}} {count}");
        }
        header(
            &mut out,
            "clientele_logins_total",
            "counter",
            "Login attempts by outcome: ok, failed (wrong or unknown credentials) or limited \
             (refused by the failed-login limits).",
        );
        for (index, outcome) in ["ok", "failed", "limited"].iter().enumerate() {
            let count = self.logins[index].load(Relaxed);
            let _ = writeln!(
                out,
                "clientele_logins_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        header(
            &mut out,
            "clientele_writes_total",
            "counter",
            "Writes that succeeded, by action.",
        );
        for (index, (_, action)) in WRITES.iter().enumerate() {
            let count = self.sum(|shard| &shard.writes[index]);
            let _ = writeln!(out, "clientele_writes_total{{action=\"{action}\"}} {count}");
        }
        header(
            &mut out,
            "clientele_connections_open",
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(
            out,
            "clientele_connections_open {}",
            self.connections.load(Relaxed).max(0)
        );
        if let Some(customers) = now.customers {
            header(
                &mut out,
                "clientele_customers",
                "gauge",
                "Customers in the database.",
            );
            let _ = writeln!(out, "clientele_customers {customers}");
        }
        if let Some(bytes) = now.database_bytes {
            header(
                &mut out,
                "clientele_database_bytes",
                "gauge",
                "Size of the database (SQLite: the file and its write-ahead log; PostgreSQL: \
                 pg_database_size).",
            );
            let _ = writeln!(out, "clientele_database_bytes {bytes}");
        }
        if let Some(age) = now.last_sync_age {
            header(
                &mut out,
                "clientele_upstream_last_sync_age_seconds",
                "gauge",
                "Seconds since the last good sync from the old API (absent until one).",
            );
            let _ = writeln!(out, "clientele_upstream_last_sync_age_seconds {age}");
        }
        if self.backups.scheduled.load(Relaxed) {
            let backups = &self.backups;
            header(
                &mut out,
                "clientele_backups_total",
                "counter",
                "Scheduled backups by result.",
            );
            let _ = writeln!(
                out,
                "clientele_backups_total{{result=\"ok\"}} {}\nclientele_backups_total{{result=\"failed\"}} {}",
                backups.ok.load(Relaxed),
                backups.failed.load(Relaxed)
            );
            header(
                &mut out,
                "clientele_backup_last_success_timestamp_seconds",
                "gauge",
                "When the last good scheduled backup finished, seconds since 1970 (0: none yet).",
            );
            let _ = writeln!(
                out,
                "clientele_backup_last_success_timestamp_seconds {}",
                backups.last_ok.load(Relaxed)
            );
            header(
                &mut out,
                "clientele_backup_last_failed",
                "gauge",
                "1 when the last scheduled backup failed (the log and /health say why), else 0.",
            );
            let _ = writeln!(
                out,
                "clientele_backup_last_failed {}",
                u8::from(backups.failing())
            );
        }
        let expires = self.certificate_expires.load(Relaxed);
        if expires > 0 {
            header(
                &mut out,
                "clientele_tls_certificate_expiry_timestamp_seconds",
                "gauge",
                "When the certificate served now expires, seconds since 1970.",
            );
            let _ = writeln!(
                out,
                "clientele_tls_certificate_expiry_timestamp_seconds {expires}"
            );
        }
        header(
            &mut out,
            "clientele_start_time_seconds",
            "gauge",
            "When this server started, seconds since 1970.",
        );
        let _ = writeln!(
            out,
            "clientele_start_time_seconds {}",
            seconds_since_1970(self.started)
        );
        header(
            &mut out,
            "clientele_build_info",
            "gauge",
            "Always 1; the version of this server as a label.",
        );
        let _ = writeln!(
            out,
            "clientele_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

/// What is read at scrape time rather than counted.
#[derive(Debug, Default)]
pub struct Gauges {
    pub customers: Option<u64>,
    pub database_bytes: Option<u64>,
    pub last_sync_age: Option<u64>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Seconds since 1970 (0 for a time before it).
pub fn seconds_since_1970(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_matched_in_any_case_with_or_without_the_slash() {
        assert_eq!(
            ROUTES[route_of("/CUSTOMER/LIST/?id_client=5")],
            "/CUSTOMER/LIST/"
        );
        assert_eq!(ROUTES[route_of("/customer/list")], "/CUSTOMER/LIST/");
        assert_eq!(
            ROUTES[route_of("/CUSTOMER/PASSWORD/RESET")],
            "/CUSTOMER/PASSWORD/RESET/"
        );
        assert_eq!(ROUTES[route_of("/")], "/");
        assert_eq!(ROUTES[route_of("/health")], "/health");
        assert_eq!(ROUTES[route_of("/metrics")], "/metrics");
        // Anything else, however it is spelled, is one label: a path never becomes a label.
        for path in [
            "/CUSTOMER/LIST/12",
            "/a@b.example",
            "/x?apikey=secret",
            "//",
            "",
        ] {
            assert_eq!(ROUTES[route_of(path)], "other", "{path}");
        }
    }

    #[test]
    fn counters_add_up_across_threads_and_the_histogram_is_cumulative() {
        let metrics = std::sync::Arc::new(Metrics::new());
        let list = route_of("/CUSTOMER/LIST/");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let metrics = std::sync::Arc::clone(&metrics);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        metrics.request(list, 200, Duration::from_micros(200));
                    }
                    metrics.request(list, 404, Duration::from_secs(20));
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let text = metrics.render(&Gauges::default());
        assert!(text.contains(
            "clientele_http_requests_total{route=\"/CUSTOMER/LIST/\",status=\"200\"} 4000\n"
        ));
        assert!(text.contains(
            "clientele_http_requests_total{route=\"/CUSTOMER/LIST/\",status=\"404\"} 4\n"
        ));
        // 200 µs is under 0.00025 s: in that bucket and every one above it; 20 s only in +Inf.
        assert!(text.contains("le=\"0.0001\"} 0\n"));
        assert!(text.contains("le=\"0.00025\"} 4000\n"));
        assert!(text.contains("le=\"10\"} 4000\n"));
        assert!(text.contains("le=\"+Inf\"} 4004\n"));
        assert!(text.contains("_count{route=\"/CUSTOMER/LIST/\"} 4004\n"));
    }

    #[test]
    fn writes_are_the_two_hundreds_of_write_requests_on_the_write_routes() {
        let metrics = Metrics::new();
        let add = route_of("/CUSTOMER/ADD/");
        metrics.wrote(add, 201);
        metrics.wrote(add, 200);
        metrics.wrote(add, 409);
        metrics.wrote(route_of("/CUSTOMER/DELETE/"), 200);
        metrics.wrote(route_of("/CUSTOMER/LOGIN/"), 200);
        // A preflight is a request, not a write.
        metrics.request(route_of("/CUSTOMER/UPDATE/"), 200, Duration::ZERO);
        let text = metrics.render(&Gauges::default());
        assert!(text.contains("clientele_writes_total{action=\"add\"} 2\n"));
        assert!(text.contains("clientele_writes_total{action=\"delete\"} 1\n"));
        assert!(text.contains("clientele_writes_total{action=\"update\"} 0\n"));
    }
}
