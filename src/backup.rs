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
    let newest = copies(&schedule.folder)
        .ok()
        .and_then(|copies| copies.last().cloned())
        .and_then(|path| path.metadata().ok()?.modified().ok());
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
    prune(folder, schedule.keep)?;
    Ok(path)
}

/// The copies in `folder`, oldest first (their names sort by time).
fn copies(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(is_copy_name)
        })
        .collect();
    found.sort();
    Ok(found)
}

/// `clientele-YYYYMMDDTHHMMSSZ.db`, exactly: nothing else in the folder is ever removed.
fn is_copy_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
}

fn prune(folder: &Path, keep: usize) -> Result<(), String> {
    let found = copies(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let extra = found.len().saturating_sub(keep);
    for old in &found[..extra] {
        std::fs::remove_file(old).map_err(|e| format!("{}: {e}", old.display()))?;
        log::info!("removed the old backup {}", old.display());
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
    fn only_files_named_as_copies_are_ever_pruned_oldest_first() {
        let folder = tempfile::tempdir().unwrap();
        let names = [
            "clientele-20261101T000000Z.db",
            "clientele-20261102T000000Z.db",
            "clientele-20261103T000000Z.db",
            "clientele-20261103T000000Z.db.partial",
            "clientele-notes.db",
            "shop.db",
        ];
        for name in names {
            std::fs::write(folder.path().join(name), b"x").unwrap();
        }
        prune(folder.path(), 1).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "clientele-20261103T000000Z.db",
                "clientele-20261103T000000Z.db.partial",
                "clientele-notes.db",
                "shop.db"
            ]
        );
    }

    #[test]
    fn copy_names_sort_by_time() {
        assert_eq!(compact_utc(0), "19700101T000000Z");
        assert!(is_copy_name(&format!(
            "{PREFIX}{}{SUFFIX}",
            compact_utc(1_800_000_000)
        )));
    }
}
