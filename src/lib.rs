//! clientele: a self-hosted customer-list server, a safe drop-in replacement for the old
//! `GET /CUSTOMER/LIST/` API.
//!
//! The wire contract lives in the project's `contract.md`; this crate keeps it. [`rocket`] builds
//! the whole application from a figment, the same way for `clientele serve` and for the tests.

pub mod apikey;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod customer;
pub mod error;
pub mod export;
pub mod keyuse;
pub mod logging;
pub mod mail;
pub mod memo;
pub mod metrics;
pub mod ratelimit;
pub mod reset;
pub mod routes;
pub mod server;
pub mod session;
pub mod store;
pub mod sync;
pub mod tls;
pub mod transfer;

use std::net::IpAddr;

use rocket::figment::Figment;
use rocket::shield::{NoSniff, Shield};
use rocket::{Build, Rocket};

use crate::config::Config;
use crate::error::{ApiError, StartupError};
use crate::store::Store;

/// The configuration every command reads: see [`config::figment`].
pub fn figment() -> Figment {
    config::figment()
}

/// Whether a newly created database may be filled with the demo customers (when `seed_demo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    IfNew,
    /// `clientele import` into a new file: the shop's own customers, no demo mixed in.
    Never,
}

/// Reads the config, installs the logger and opens (creating, migrating and seeding as
/// needed) the database: everything every command does first.
pub fn prepare(figment: &Figment, seed: Seed) -> Result<(Config, Store), StartupError> {
    init_logging(figment);
    let config = Config::from_figment(figment)?;
    let db = open_store(&config, seed)?;
    Ok((config, db))
}

/// Installs the logger at the configured `log_level`, in the configured `log_format`. A
/// misspelled format writes text until [`Config::from_figment`] stops start-up over it.
fn init_logging(figment: &Figment) {
    let log_level: String = figment
        .extract_inner("log_level")
        .unwrap_or_else(|_| "normal".into());
    let log_format = figment
        .extract_inner::<String>("log_format")
        .ok()
        .and_then(|format| config::LogFormat::parse(&format).ok())
        .unwrap_or_default();
    logging::init(&log_level, log_format);
}

/// Opens the configured database, seeding it if it is new and `seed` allows (a new SQLite
/// file only: a PostgreSQL database is a production one, and gets the shop's customers by
/// `clientele copy-to` or `import`).
fn open_store(config: &Config, seed: Seed) -> Result<Store, StartupError> {
    if let Some(path) = config.database.file() {
        refuse_a_lost_database(path, config, seed)?;
        copy_before_upgrade(path)?;
    }
    let (store, report) = Store::open(&config.database, &config.hasher)?;
    let Some(db) = store.sqlite() else {
        if report.created {
            log::info!("created the clientele tables in {}", config.database);
        }
        return Ok(store);
    };
    if report.created {
        let seeded = if config.seed_demo && seed == Seed::IfNew {
            let mut conn = db
                .connection()
                .map_err(|e| StartupError::database(db.path(), e))?;
            transfer::seed_demo(&mut conn, &config.hasher).map_err(|e| {
                // Leave no half-made file behind: the next start must try again.
                store::sqlite::remove_files(db.path());
                StartupError::database(db.path(), e)
            })?
        } else {
            0
        };
        if seeded > 0 {
            log::info!(
                "created database {} with {seeded} demo customers",
                config.database
            );
        } else if seed == Seed::IfNew {
            // (`import`, which never seeds, says what became of the new file itself.)
            log::info!("created empty database {}", config.database);
        }
    }
    Ok(store)
}

/// Refuses to start afresh where a shop's database was: a file of 0 bytes (a copy or a
/// restore that failed; SQLite would take it for a new, empty database), or no file where
/// backups of one, copies taken before an upgrade, or its write-ahead log lie. A typo in
/// `database` or a deleted file would otherwise bring up a new shop (the demo customers and
/// their published passwords, no keys), and its scheduled backups would start pruning the
/// real ones.
fn refuse_a_lost_database(
    path: &std::path::Path,
    config: &Config,
    seed: Seed,
) -> Result<(), StartupError> {
    let side = |suffix: &str| store::sqlite::side_file(path, suffix);
    let bytes = |file: &std::path::Path| std::fs::metadata(file).map(|meta| meta.len()).ok();
    match bytes(path) {
        Some(0) if bytes(&side("-wal")).unwrap_or(0) == 0 => {
            return Err(StartupError::database(
                path,
                "is empty (0 bytes), so it holds no customers and no keys: a copy or a \
                 restore that failed? Restore it from a backup (README, \"Backup and \
                 restore\"), or delete it to start a new database",
            ));
        }
        Some(_) => return Ok(()),
        None if path.symlink_metadata().is_ok() => return Ok(()),
        None => {}
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut evidence = Vec::new();
    let mut backup_folders = vec![folder.join("backups")];
    if let Some(schedule) = &config.operations.backups {
        backup_folders.insert(0, schedule.folder.clone());
    }
    backup_folders.dedup_by(|a, b| same_folder(a, b));
    let mut newest_backup: Option<std::path::PathBuf> = None;
    for backups in backup_folders {
        let (named, newest) = backup::restorable(&backups);
        if named == 0 {
            continue;
        }
        evidence.push(format!("{} holds {named} backup(s)", backups.display()));
        newest_backup = newest_backup.or(newest);
    }
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    if let (Some(name), Ok(entries)) = (name, std::fs::read_dir(&folder)) {
        let before = format!("{name}.before-v");
        if entries
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().starts_with(&before))
        {
            evidence.push(format!(
                "a copy taken before an upgrade ({name}.before-v...) is beside it"
            ));
        }
    }
    // A clean stop leaves them empty; a crash, with commits in the `-wal`.
    if side("-wal").symlink_metadata().is_ok() || side("-shm").symlink_metadata().is_ok() {
        evidence.push("its -wal or -shm file is still there".into());
    }
    // Another clientele database beside it, for the server (which would bring up a new
    // shop): `database` may have a typo. A tool creating one beside another (an import
    // into a fresh copy) says "into the new database" itself.
    let other = (seed == Seed::IfNew)
        .then(|| other_database_beside(path, &folder))
        .flatten();
    if let Some(other) = other {
        evidence.push(format!(
            "{} beside it is a clientele database (a typo in `database`?)",
            other.display()
        ));
    }
    if evidence.is_empty() {
        return Ok(());
    }
    // What is left of the old file's log must go first: applied to a backup, it would
    // damage it.
    let restore = match newest_backup {
        Some(newest) => format!(
            "restore the newest backup (`rm -f {db}-wal {db}-shm && cp {} {db}`)",
            newest.display(),
            db = path.display()
        ),
        None => format!(
            "restore it from a backup (delete {db}-wal and {db}-shm first)",
            db = path.display()
        ),
    };
    Err(StartupError::database(
        path,
        format!(
            "does not exist, but {}: a shop's database was here. If it was deleted or moved, \
             {restore}; if `database` has a typo, correct it. Nothing was created: to start \
             a new database here anyway, move those files elsewhere first",
            evidence.join(", and ")
        ),
    ))
}

/// A clientele SQLite database (by its header's application id) in `folder` whose name is
/// one or two letters away from `path`'s (`clientle.db` beside `clientele.db`): a sign
/// that `path` is a typo. Databases of other names (a test copy, `page.db` beside
/// `fuzz.db`) are someone's choice. At most 64 entries are looked at.
fn other_database_beside(
    path: &std::path::Path,
    folder: &std::path::Path,
) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(folder).ok()?;
    entries
        .filter_map(Result::ok)
        .take(64)
        .map(|entry| entry.path())
        .find(|other| {
            if other == path || !other.is_file() {
                return false;
            }
            let name = |p: &std::path::Path| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let (wanted, found) = (name(path), name(other));
            if wanted.chars().count() < 6 || letters_apart(&wanted, &found) > 2 {
                return false;
            }
            // Not a database this process has open: opening and closing it here costs no
            // SQLite lock.
            std::fs::File::open(other)
                .is_ok_and(|file| store::sqlite::check_header(other, &file).is_ok())
        })
}

/// How many letters must be added, removed or changed to make `a` into `b` (Levenshtein).
fn letters_apart(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Whether two paths name the same folder (one may be relative, or through a link).
fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The largest SQLite file copied before a schema upgrade; a larger one is upgraded with a
/// warning to back it up first (copying it would hold up the start for long).
pub const UPGRADE_COPY_MAX_BYTES: u64 = 1 << 30;

/// Before this binary migrates an existing SQLite file to its schema, a consistent copy of
/// it (as `clientele backup` makes, mode 0600, checked) beside it, at
/// `<database>.before-v<schema this binary writes>`: what an owner restores to go back to
/// the previous version. A file over [`UPGRADE_COPY_MAX_BYTES`] is not copied (a warning
/// says to run `clientele backup` first); a copy that fails stops start-up, nothing changed.
fn copy_before_upgrade(path: &std::path::Path) -> Result<(), StartupError> {
    let Some(from) = store::sqlite::schema_behind(path) else {
        return Ok(());
    };
    let to = store::sqlite::SCHEMA_VERSION;
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            std::fs::metadata(store::sqlite::side_file(path, suffix))
                .ok()
                .map(|meta| meta.len())
        })
        .sum();
    if size > UPGRADE_COPY_MAX_BYTES {
        log::warn!(
            "upgrading {} from schema {from} to {to} without a copy: it is over 1 GiB. Stop \
             now and run `clientele backup` with the previous version if you have no recent \
             backup (README, \"Upgrading\")",
            path.display()
        );
        return Ok(());
    }
    let mut copy = path.as_os_str().to_owned();
    copy.push(format!(".before-v{to}"));
    let copy = std::path::PathBuf::from(copy);
    let conn = store::sqlite::open_connection(path).map_err(|e| StartupError::database(path, e))?;
    // Schemas before 5 have no changes feed to renumber: a plain snapshot.
    let copied = if from >= 5 {
        export::backup(&conn, &copy, true)
    } else {
        let _ = std::fs::remove_file(&copy);
        store::sqlite::create_private_file(&copy)
            .map_err(|e| e.to_string())
            .and_then(|_| {
                conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
    };
    copied.map_err(|why| {
        StartupError::database(
            path,
            format!(
                "could not be copied before upgrading its schema from {from} to {to}, so it \
                 was not upgraded: {why}"
            ),
        )
    })?;
    log::warn!(
        "copied {} to {} before upgrading its schema from {from} to {to}: to go back to the \
         previous version, restore that copy (README, \"Upgrading\")",
        path.display(),
        copy.display()
    );
    Ok(())
}

/// Builds the application: config checked, database ready, access mode decided, routes and
/// catchers mounted.
pub fn rocket(figment: Figment) -> Result<Rocket<Build>, StartupError> {
    init_logging(&figment);
    let config = Config::from_figment(&figment)?;
    // Rocket's own settings (port, log_level, ip_header...), checked before anything is
    // opened or created: a bad one is a configuration mistake like ours.
    let settings = rocket::Config::try_from(&figment).map_err(|error| {
        StartupError::Config(
            error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    // The metrics listener on the main port: it could never listen, and no restart helps.
    if let Some(metrics) = config.operations.metrics_address {
        let main_ip = settings.address;
        if metrics.port() == settings.port
            && settings.port != 0
            && (metrics.ip() == main_ip || main_ip.is_unspecified())
        {
            return Err(StartupError::Config(format!(
                "metrics_address: {metrics} is where the server itself listens (address and \
                 port); give the metrics listener a port of its own, e.g. 127.0.0.1:9464"
            )));
        }
    }
    // The certificate files (or the ACME folder) too: a bad pair is the owner's to fix.
    if let Some(tls) = &config.operations.tls {
        tls::check(tls).map_err(StartupError::Config)?;
    }
    // The server hashes at most `login_workers` passwords at once (a large start-up
    // migration excepted: see `db::hash_legacy_passwords`).
    config.hasher.limit_concurrency(config.login_workers);
    let db = open_store(&config, Seed::IfNew)?;
    config.hasher.release_buffers();
    let address: IpAddr = figment
        .extract_inner("address")
        .map_err(|e| StartupError::Config(format!("address: {e}")))?;
    let keys = db
        .connection()
        .and_then(|mut conn| apikey::count(&mut *conn).map_err(ApiError::from))
        .map_err(|e| StartupError::at(&config.database, e))?;
    let (anonymous, mode) = apikey::startup_mode(keys, address, config.allow_anonymous)
        .map_err(StartupError::Config)?;
    let demo = db
        .connection()
        .ok()
        .and_then(|mut conn| conn.demo_left().ok())
        .unwrap_or(0);
    if demo > 0 && (keys > 0 || !address.is_loopback()) {
        log::warn!(
            "{demo} demo customers, whose passwords the README publishes, are still in the \
             database: import your customers (the first import removes them), or remove them \
             now with `clientele remove-demo`"
        );
    }
    // Said once start-up can no longer fail for the file's sake: a refusal stays one line.
    log::info!(target: logging::LAUNCH, "{}", config::config_file().describe());
    log::info!(target: logging::LAUNCH, "database {}", db.describe());
    if anonymous && !address.is_loopback() {
        log::warn!("{mode}");
    } else {
        log::info!("{mode}");
    }
    let mirror = match &config.mirror {
        Some(settings) => {
            let key_file = sync::SyncKey::path_for_store(&db, &config.upstream_key_file);
            let mirror =
                sync::Mirror::open(settings.clone(), config.upstream_settings, &key_file, &db)
                    .map_err(StartupError::Config)?;
            log::info!(
                "mirroring {} every {} s; writes go to it first",
                mirror.upstream.display(),
                settings.every.as_secs()
            );
            if db.postgres().is_some() {
                // Every node must use the same key file: say which one this node reads.
                log::info!(
                    "the mirrored passwords' digest key is {} (upstream_key_file; the same \
                     file on every node)",
                    key_file.display()
                );
            }
            Some(std::sync::Arc::new(mirror))
        }
        None => None,
    };
    let mailer = match &config.mail {
        Some(settings) => Some(std::sync::Arc::new(
            mail::Mailer::new(settings, config.reset_minutes).map_err(StartupError::Config)?,
        )),
        None => None,
    };
    let login = routes::login::LoginService::new(&config, &db);
    login.prime(&db);
    let cors = (!config.cors_origins.is_empty()).then(|| routes::Cors {
        origins: config.cors_origins.clone(),
    });
    let key_uses = std::sync::Arc::new(keyuse::KeyUses::default());
    let rocket = rocket::custom(figment);
    // The keys' last uses are written now and then, from lift-off on (and by the server in
    // front when it stops).
    let rocket = {
        let (uses, db) = (std::sync::Arc::clone(&key_uses), db.clone());
        rocket.attach(rocket::fairing::AdHoc::on_liftoff("key uses", move |_| {
            Box::pin(async move {
                rocket::tokio::spawn(uses.flush_every_minute(db));
            })
        }))
    };
    // The sync loop runs on the server's runtime, from lift-off on.
    let rocket = match &mirror {
        Some(mirror) => {
            let (mirror, db, hasher, retention) = (
                std::sync::Arc::clone(mirror),
                db.clone(),
                config.hasher.clone(),
                config.retention,
            );
            rocket.attach(rocket::fairing::AdHoc::on_liftoff(
                "upstream sync",
                move |_| {
                    Box::pin(async move {
                        rocket::tokio::spawn(mirror.run(db, hasher, retention));
                    })
                },
            ))
        }
        None => rocket,
    };
    // No CORS fairing at all when no origin is configured: nothing to add, nothing to run.
    let rocket = match cors {
        Some(cors) => rocket.attach(cors),
        None => rocket,
    };
    Ok(rocket
        .manage(apikey::Access::new(
            anonymous,
            address,
            config.cors_origins.clone(),
            std::sync::Arc::clone(&key_uses),
        ))
        .manage(key_uses)
        .manage(sync::Mirroring(mirror))
        .manage(routes::docs::OpenApi::for_view(config.view))
        .manage(routes::reset::ResetLimiter::new(&config, &db))
        .manage(routes::reset::Mailing(mailer))
        .manage(login)
        .manage(cache::ResponseCache::new(config.response_cache_bytes))
        .manage(routes::customers::ListStreams::new(
            db.sqlite()
                .and_then(|db| routes::spool::Spool::open(db.path())),
        ))
        .manage(std::sync::Arc::new(metrics::Metrics::new()))
        .manage(config)
        .manage(db)
        // Of Shield's headers only nosniff means anything for a JSON API; the others
        // (frame options, permissions policy) are for pages, and cost on every response.
        .attach(Shield::new().enable(NoSniff::Enable))
        .attach(routes::CanonicalPaths)
        .mount("/", routes::customers::routes())
        .mount("/", routes::login::routes())
        .mount("/", routes::writes::routes())
        .mount("/", routes::reset::routes())
        .mount("/", routes::changes::routes())
        .mount("/", routes::docs::routes())
        .mount("/", routes::health::routes())
        .mount("/", routes::metrics::routes())
        .register("/", error::catchers()))
}

#[cfg(test)]
mod tests {
    use super::letters_apart;

    #[test]
    fn a_typo_is_one_or_two_letters_apart_and_another_name_is_not() {
        assert_eq!(letters_apart("clientle.db", "clientele.db"), 1);
        assert_eq!(letters_apart("clinetele.db", "clientele.db"), 2);
        assert_eq!(letters_apart("shop.db", "shop.db"), 0);
        assert!(letters_apart("page.db", "fuzz.db") > 2);
        assert!(letters_apart("", "abc") == 3);
    }
}
