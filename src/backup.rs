//! Backups on a schedule (`backup_dir`, `backup_every_hours`, `backup_keep`): the same online,
//! consistent copy as `clientele backup`, taken by the server on a thread of its own.
//!
//! - The first copy is taken at start when the newest one in the folder is older than the
//!   interval (or there is none), then one every interval. A restart does not take an extra
//!   copy, nor skip one.
//! - Copies are named `clientele-YYYYMMDDTHHMMSSZ.db` (UTC), 0600, in a folder made 0700;
//!   beyond `backup_keep`, the oldest are removed (only files with that name pattern).
//! - A failed copy is logged, counted (`/metrics`) and reported by `/health`, tried again
//!   after a quarter of an hour (or the interval, if shorter), and never stops the service.
//!
//! SQLite only: on PostgreSQL the setting is refused at start (see `config`).

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::BackupSchedule;
use crate::metrics::{seconds_since_1970, Metrics};
use crate::store::Store;

const PREFIX: &str = "clientele-";
const SUFFIX: &str = ".db";
/// How soon a failed copy is tried again, at most.
const RETRY: Duration = Duration::from_secs(15 * 60);

/// Starts the schedule on a thread of its own.
pub fn start(schedule: BackupSchedule, store: Store, metrics: Arc<Metrics>) -> Result<(), String> {
    metrics.backups.scheduled.store(true, Relaxed);
    log::info!(
        "backups every {} h into {}, keeping the newest {}",
        schedule.every.as_secs() / 3600,
        schedule.folder.display(),
        schedule.keep
    );
    std::thread::Builder::new()
        .name("clientele-backup".into())
        .spawn(move || run(&schedule, &store, &metrics))
        .map(|_| ())
        .map_err(|e| format!("could not start the backup schedule: {e}"))
}

fn run(schedule: &BackupSchedule, store: &Store, metrics: &Metrics) {
    // The newest copy already there (a restart): when it was taken, for the first wait and
    // for /metrics and /health, which would otherwise say "no backup yet" after a restart.
    let now = seconds_since_1970(SystemTime::now());
    let live = store.sqlite().map(|db| db.path().to_owned());
    let newest = copies(&schedule.folder, now, live.as_deref())
        .ok()
        .and_then(|copies| {
            copies
                .into_iter()
                .rev()
                .find(|copy| looks_like_sqlite(&copy.path))
        })
        .map(|copy| copy.taken);
    if let Some(taken) = newest {
        metrics.backups.last_ok.store(taken, Relaxed);
    }
    let newest = newest.map(|taken| std::time::UNIX_EPOCH + Duration::from_secs(taken));
    let mut wait = first_wait(newest, SystemTime::now(), schedule.every);
    if !wait.is_zero() {
        log::info!(
            "the newest backup is recent: the next one in {} min",
            wait.as_secs() / 60
        );
    }
    loop {
        std::thread::sleep(wait);
        wait = match take(schedule, store) {
            Ok(path) => {
                let now = seconds_since_1970(SystemTime::now());
                metrics.backups.ok.fetch_add(1, Relaxed);
                // Never equal to a failure's second: a success right after one still counts.
                let failed = metrics.backups.last_failed.load(Relaxed);
                metrics.backups.last_ok.store(now.max(failed + 1), Relaxed);
                log::info!("backed up the database to {}", path.display());
                schedule.every
            }
            Err(error) => {
                let now = seconds_since_1970(SystemTime::now());
                metrics.backups.failed.fetch_add(1, Relaxed);
                let ok = metrics.backups.last_ok.load(Relaxed);
                metrics.backups.last_failed.store(now.max(ok + 1), Relaxed);
                let retry = schedule.every.min(RETRY);
                log::error!(
                    "the scheduled backup failed: {error}; trying again in {} min",
                    retry.as_secs() / 60
                );
                retry
            }
        };
    }
}

/// How long to wait before the first copy: none if the newest is older than `every`.
fn first_wait(newest: Option<SystemTime>, now: SystemTime, every: Duration) -> Duration {
    let Some(newest) = newest else {
        return Duration::ZERO;
    };
    let age = now.duration_since(newest).unwrap_or(Duration::ZERO);
    every.saturating_sub(age)
}

/// Takes one copy and removes the oldest beyond `keep`.
fn take(schedule: &BackupSchedule, store: &Store) -> Result<PathBuf, String> {
    let folder = &schedule.folder;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|e| format!("{}: could not create the folder: {e}", folder.display()))?;
    let db = store
        .sqlite()
        .ok_or("scheduled backups copy a SQLite database")?;
    let name = format!(
        "{PREFIX}{}{SUFFIX}",
        compact_utc(seconds_since_1970(SystemTime::now()))
    );
    let path = folder.join(name);
    let conn = db.connection().map_err(|e| e.to_string())?;
    crate::export::backup(&conn, &path, false)?;
    drop(conn);
    prune(folder, schedule.keep, &path, Some(db.path()))?;
    Ok(path)
}

/// A copy found in the folder: its file and when it was taken (from its name).
#[derive(Debug, Clone)]
struct Copy {
    path: PathBuf,
    taken: u64,
}

/// How far ahead of this machine's clock a copy's time may be and still count: a little, for
/// a clock set back by a few minutes. One further ahead (a clock that was wrong) is neither
/// counted nor ever removed: it would otherwise stay "newest" for ever and push every real
/// copy out.
const FUTURE_SLACK: u64 = 3600;

/// The copies in `folder`, oldest first: regular files named exactly as copies, for a real
/// time no later than `now` (plus [`FUTURE_SLACK`]).
fn copies(folder: &Path, now: u64, live: Option<&Path>) -> std::io::Result<Vec<Copy>> {
    let live = live.and_then(|path| std::fs::canonicalize(path).ok());
    let mut found: Vec<Copy> = Vec::new();
    for entry in std::fs::read_dir(folder)?.filter_map(Result::ok) {
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) {
            continue;
        }
        // The database being served, should it sit in the folder under a copy's name (a
        // restored copy served in place): never counted, never removed.
        if live.is_some() && std::fs::canonicalize(entry.path()).ok() == live {
            continue;
        }
        let Some(taken) = entry.file_name().to_str().and_then(copy_time) else {
            continue;
        };
        if taken > now + FUTURE_SLACK {
            log::warn!(
                "{}: named for a time ahead of this machine's clock; not counted as a \
                 backup, and never removed by the schedule",
                entry.path().display()
            );
            continue;
        }
        found.push(Copy {
            path: entry.path(),
            taken,
        });
    }
    found.sort_by_key(|copy| copy.taken);
    Ok(found)
}

/// The backups in `folder`, as start-up looks for them where a database is missing: how
/// many files are named as copies (any of them is a sign a shop was here), and the newest
/// one worth restoring (a regular file, past-dated, a whole SQLite database by its header).
pub fn restorable(folder: &Path) -> (usize, Option<PathBuf>) {
    let named = std::fs::read_dir(folder).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| copy_time(name).is_some())
            })
            .count()
    });
    let newest = copies(folder, seconds_since_1970(SystemTime::now()), None)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|copy| looks_like_sqlite(&copy.path))
        .map(|copy| copy.path);
    (named, newest)
}

/// When the copy named `clientele-YYYYMMDDTHHMMSSZ.db` was taken, in seconds since 1970;
/// `None` for any other name (a real date and time only): nothing else in the folder is
/// ever removed.
fn copy_time(name: &str) -> Option<u64> {
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let bytes = stamp.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = stamp.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Howard Hinnant's days-from-civil, then a round trip: 31 February is no date.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59);
    (second <= 59 && compact_utc(seconds) == stamp).then_some(seconds)
}

/// Whether `path` is a whole SQLite database by its header: the magic string, and a length
/// of at least the pages the header counts. A file merely named like a copy, or a copy cut
/// short, does not count as the last backup.
fn looks_like_sqlite(path: &Path) -> bool {
    let mut head = [0u8; 100];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if std::io::Read::read_exact(&mut file, &mut head).is_err()
        || &head[..16] != b"SQLite format 3\0"
    {
        return false;
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let pages = u64::from(u32::from_be_bytes([head[28], head[29], head[30], head[31]]));
    // The page count is only valid when the change counter matches "version valid for".
    let counted = head[24..28] == head[92..96];
    let length = file.metadata().map_or(0, |meta| meta.len());
    page_size >= 512 && (!counted || length >= pages * page_size)
}

/// Removes the oldest copies beyond `keep`, never `written` (the one just taken).
fn prune(folder: &Path, keep: usize, written: &Path, live: Option<&Path>) -> Result<(), String> {
    let now = seconds_since_1970(SystemTime::now());
    let found = copies(folder, now, live).map_err(|e| format!("{}: {e}", folder.display()))?;
    let extra = found.len().saturating_sub(keep);
    for old in found[..extra].iter().filter(|copy| copy.path != written) {
        std::fs::remove_file(&old.path).map_err(|e| format!("{}: {e}", old.path.display()))?;
        log::info!("removed the old backup {}", old.path.display());
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ` for seconds since 1970.
fn compact_utc(seconds: u64) -> String {
    crate::clock::utc_seconds(seconds).replace(['-', ':'], "")
}

/// What `/health` says of the schedule, when there is one. `/health` needs no key: the
/// cause of a failure (which names folders) stays in the log.
pub fn report(metrics: &Metrics) -> Option<serde_json::Value> {
    let backups = &metrics.backups;
    if !backups.scheduled.load(Relaxed) {
        return None;
    }
    let now = seconds_since_1970(SystemTime::now());
    let last_ok = backups.last_ok.load(Relaxed);
    let failed = backups.failing();
    Some(serde_json::json!({
        "ok": !failed,
        "last_good_backup_age_secs": (last_ok > 0).then(|| now.saturating_sub(last_ok)),
        "failures": backups.failed.load(Relaxed),
        "message": failed.then_some(
            "the last scheduled backup failed: the server log says why; the next try is \
             within a quarter of an hour"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_copy_waits_only_for_what_is_left_of_the_interval() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(first_wait(None, now, day), Duration::ZERO);
        let hour_ago = now - Duration::from_secs(3600);
        assert_eq!(
            first_wait(Some(hour_ago), now, day),
            day - Duration::from_secs(3600)
        );
        assert_eq!(first_wait(Some(now - 2 * day), now, day), Duration::ZERO);
    }

    #[test]
    fn only_real_past_copies_are_ever_pruned_oldest_first_and_never_the_new_one() {
        let folder = tempfile::tempdir().unwrap();
        let names = [
            "clientele-20261101T000000Z.db",
            "clientele-20261102T000000Z.db",
            "clientele-20261103T000000Z.db",
            "clientele-20261103T000000Z.db.partial",
            "clientele-notes.db",
            "clientele-20261306T000000Z.db",
            "clientele-20260231T000000Z.db",
            "clientele-29991231T235959Z.db",
            "shop.db",
        ];
        for name in names {
            std::fs::write(folder.path().join(name), b"x").unwrap();
        }
        let written = folder.path().join("clientele-20261103T000000Z.db");
        let live = folder.path().join("clientele-20261102T000000Z.db");
        prune(folder.path(), 1, &written, Some(&live)).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "clientele-20260231T000000Z.db",
                "clientele-20261102T000000Z.db",
                "clientele-20261103T000000Z.db",
                "clientele-20261103T000000Z.db.partial",
                "clientele-20261306T000000Z.db",
                "clientele-29991231T235959Z.db",
                "clientele-notes.db",
                "shop.db"
            ]
        );
        // A future-dated name never pushes the copy just written out, even with keep = 1.
        let written = folder.path().join("clientele-20261104T000000Z.db");
        std::fs::write(&written, b"x").unwrap();
        prune(folder.path(), 1, &written, Some(&live)).unwrap();
        assert!(written.exists());
        assert!(live.exists(), "the database being served is never removed");
        assert!(!folder.path().join("clientele-20261103T000000Z.db").exists());
    }

    #[test]
    fn copy_names_sort_by_time_and_read_back_as_their_time() {
        assert_eq!(compact_utc(0), "19700101T000000Z");
        for seconds in [0, 951_782_400, 1_800_000_000, 4_102_444_799] {
            let name = format!("{PREFIX}{}{SUFFIX}", compact_utc(seconds));
            assert_eq!(copy_time(&name), Some(seconds), "{name}");
        }
        assert_eq!(
            copy_time("clientele-20240229T120000Z.db"),
            Some(1_709_208_000)
        );
        assert_eq!(copy_time("clientele-20230229T120000Z.db"), None);
        assert_eq!(copy_time("clientele-20231301T000000Z.db"), None);
        assert_eq!(copy_time("clientele-2023120T1000000Z.db"), None);
    }

    #[test]
    fn a_copy_cut_short_is_not_taken_for_the_last_backup() {
        let folder = tempfile::tempdir().unwrap();
        let whole = folder.path().join("whole.db");
        let conn = rusqlite::Connection::open(&whole).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (zeroblob(20000));")
            .unwrap();
        drop(conn);
        assert!(looks_like_sqlite(&whole));
        let bytes = std::fs::read(&whole).unwrap();
        let cut = folder.path().join("cut.db");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(!looks_like_sqlite(&cut));
        let junk = folder.path().join("junk.db");
        std::fs::write(&junk, b"SQLite format 3\0").unwrap();
        assert!(!looks_like_sqlite(&junk));
    }
}
