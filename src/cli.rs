//! The command line: `clientele [serve]` and the owner's tools. Every subcommand reads the same
//! config (`Rocket.toml`, then `ROCKET_*` environment variables).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::auth::{self, Secret};
use crate::customer::{Redaction, View};
use crate::store::Store;
use crate::transfer::{Format, TextEncoding};
use crate::{apikey, audit, customer, export, transfer as import, Seed};

/// A self-hosted customer-list server: the old CUSTOMER/LIST API, without the password leak.
///
/// Configuration comes from Rocket.toml in the working directory (or the file named by
/// ROCKET_CONFIG), then from ROCKET_* environment variables, e.g. ROCKET_DATABASE=/srv/shop.db.
#[derive(Debug, Parser)]
#[command(name = "clientele", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no subcommand is given).
    ///
    /// Opens the database (creating and filling it with demo customers on first run when
    /// seed_demo = true), hashes any plain-text passwords found in it, and listens on the
    /// configured address and port (127.0.0.1:8000 by default).
    Serve,
    /// Create, list and revoke the API keys front-ends use.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set a customer's password (prompted twice, or read from standard input).
    ///
    /// On a terminal the password is asked for twice without echo. Otherwise one line is read
    /// from standard input, e.g. `printf '%s\n' "$PW" | clientele passwd 12`.
    Passwd {
        /// The customer: clcleunik, email or login (id:N, login:NAME or email:ADDRESS says
        /// which, when a number is one customer's clcleunik and another's login). An email or login that several customers
        /// share names the one a login with it checks (the lowest clcleunik).
        customer: String,
    },
    /// Load customers from a saved old-API JSON response or a CSV file, all or nothing.
    ///
    /// Customers are inserted or updated by clcleunik. Plain-text passwords are hashed with
    /// Argon2id; existing Argon2 or bcrypt hashes are kept; an empty password means none. The
    /// whole file is checked first: every bad value (the first 20) is reported with FILE:LINE
    /// and its field, and nothing is written. Safe while `clientele serve` runs: it serves the
    /// new data as soon as the import commits.
    Import {
        /// The file, or - for standard input.
        file: String,
        /// json (the old API's response, or `clientele export`) or csv. Default: from the
        /// file's extension, else its first character.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Also delete the customers that are not in the file.
        #[arg(long)]
        replace: bool,
        /// With --replace, accept a file with no customers, deleting every stored one.
        #[arg(long, requires = "replace")]
        allow_empty: bool,
        /// Check the file and report what would change, without writing.
        #[arg(long)]
        dry_run: bool,
        /// How CSV text is encoded; auto reads UTF-8, else Windows-1252.
        #[arg(long, value_enum, default_value = "auto")]
        encoding: TextEncoding,
        /// The CSV separator, ',', ';' or tab. Default: whichever the header row uses most.
        #[arg(long, value_parser = parse_delimiter)]
        delimiter: Option<u8>,
    },
    /// Write every customer to standard output or a file, never with passwords.
    ///
    /// For a spreadsheet in a European Excel, which opens ';' and Windows-1252 with the
    /// accents right: `clientele export --format csv --delimiter ';' --encoding windows-1252
    /// -o customers.csv`. A value Windows-1252 cannot hold (an emoji, a Greek letter) stops
    /// the export, naming the customer and the field, and nothing is written.
    Export {
        /// json (the list's envelope, which `clientele import` reads back) or csv. Default:
        /// csv when -o names a .csv, .tsv or .txt file or --delimiter or --encoding is given,
        /// else json.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Include the fields that `redact` withholds (passwords are never exported).
        #[arg(long)]
        all_fields: bool,
        /// With --format csv: how the text is encoded, utf-8 (the default) or windows-1252.
        #[arg(long, value_enum)]
        encoding: Option<TextEncoding>,
        /// With --format csv: the separator, ',' (the default), ';' or tab.
        #[arg(long, value_parser = parse_delimiter)]
        delimiter: Option<u8>,
    },
    /// Make the local customers equal to the old API's list, once (see `upstream`).
    ///
    /// Fetches the whole list (with its plain-text passwords), checks it as an import does,
    /// refuses one that would delete more than half the customers (or is empty while
    /// customers exist) unless upstream_allow_mass_delete = true, and writes it in one
    /// transaction. Only new or changed passwords are hashed.
    Sync {
        /// The old API's list URL with its key; default: the `upstream` setting.
        url: Option<String>,
    },
    /// Show the audit trail: who wrote what, and when (never a password).
    ///
    /// One line per write through the API or `passwd`, and per import or sync (with its
    /// counts), oldest first: time (UTC), key name (or cli, sync, anonymous), action,
    /// customer, the names of the fields that changed. With --logins, the login attempts
    /// instead: ok, failed or limited, the customer (an account that does not exist is
    /// "unknown account", never the email typed), the key, the end user's address if known.
    Audit {
        /// Only this customer's entries.
        #[arg(long)]
        customer: Option<i64>,
        /// Only entries from this date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM:SS, UTC) on;
        /// also `today`, `yesterday` (from midnight UTC), or a span ago: 7d, 12h, 30m.
        #[arg(long, value_parser = parse_since)]
        since: Option<String>,
        /// At most this many entries, the newest.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Show login attempts (ok, failed, limited) instead of writes.
        #[arg(long)]
        logins: bool,
    },
    /// Measure the most logins per second this machine can check, and print it.
    ///
    /// Runs Argon2id verifications with the configured argon2_* parameters on login_workers
    /// threads for a few seconds, as the server's login endpoint does. Use it to choose those
    /// settings: stronger parameters mean fewer logins per second. Opens no database.
    LoginRate {
        /// How long to measure.
        #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
        seconds: f64,
    },
    /// Remove the demo customers (and their published passwords) the first start put in.
    ///
    /// For a shop that takes its customers through registration rather than an import (the
    /// first import removes them by itself), changed or not; customers who registered stay.
    RemoveDemo,
    /// Show the failed-login limits: how many accounts and addresses have failures and how
    /// many are locked now; with WHO (clcleunik, email or login), that customer's.
    ///
    /// The counts live in the database, so this works while the server runs: on PostgreSQL
    /// shared by every node, on SQLite written by the server as each attempt fails (and kept
    /// across a restart).
    Limits {
        /// The customer: clcleunik, email or login (id:N, login:NAME or email:ADDRESS says
        /// which, when a number is one customer's clcleunik and another's login).
        customer: Option<String>,
    },
    /// Clear a customer's failed logins and password-reset requests, so that they can log
    /// in (or reset) again at once, while the server runs (PostgreSQL: every node).
    Unlock {
        /// The customer: clcleunik, email or login (id:N, login:NAME or email:ADDRESS says
        /// which, when a number is one customer's clcleunik and another's login).
        customer: String,
    },
    /// Move this shop from its SQLite file onto PostgreSQL: everything in it (customers with
    /// their password hashes, API keys, the audit trail, the change history, sessions and
    /// reset tokens), so that the same keys work and the same list is served.
    ///
    /// The PostgreSQL database must hold no customers (its tables are created if missing).
    /// All or nothing: one transaction. Then set `database` to the URL.
    CopyTo {
        /// postgres://USER:PASSWORD@HOST[:PORT][,HOST2[:PORT]]/DB[?target_session_attrs=read-write]
        url: String,
    },
    /// Write a consistent copy of the live database, even while the server runs.
    ///
    /// SQLite only: on PostgreSQL it refuses and prints the pg_dump command to run instead.
    Backup {
        /// The file to create.
        path: PathBuf,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn parse_since(value: &str) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    since_at(value, now)
}

/// `--since` as the audit trail's UTC timestamps compare: `YYYY-MM-DD`,
/// `YYYY-MM-DDTHH:MM[:SS]`, `today`, `yesterday` (from midnight UTC), or `7d`, `12h`, `30m`
/// ago, counted from `now` (seconds since 1970). Anything else is refused: a typo must not
/// look like an empty trail.
fn since_at(value: &str, now: u64) -> Result<String, String> {
    let refuse = || {
        format!(
            "expected a date (YYYY-MM-DD), a UTC time (YYYY-MM-DDTHH:MM:SS), today, yesterday, \
             or a span ago such as 7d, 12h or 30m; found {value:?}"
        )
    };
    let midnight = now - now % 86_400;
    let relative = match value {
        "today" => Some(midnight),
        "yesterday" => Some(midnight.saturating_sub(86_400)),
        _ => value.char_indices().last().and_then(|(at, unit)| {
            let seconds = match unit {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                _ => return None,
            };
            let count: u64 = value[..at].parse().ok()?;
            Some(now.saturating_sub(count.checked_mul(seconds)?))
        }),
    };
    if let Some(at) = relative {
        return Ok(crate::clock::utc_seconds(at));
    }
    let date = value.get(..10).ok_or_else(refuse)?;
    let mut check = crate::customer::Customer::default();
    if date.is_empty()
        || crate::customer::field::set_field(
            &mut check,
            crate::customer::Field::AddedDate,
            date.into(),
        )
        .is_err()
    {
        return Err(refuse());
    }
    let time = &value[10..];
    let valid_time = time.is_empty()
        || time.strip_prefix('T').is_some_and(|clock| {
            let clock = clock.trim_end_matches('Z');
            let padded = match clock.len() {
                5 => format!("{clock}:00"),
                _ => clock.get(..8).unwrap_or("").to_owned(),
            };
            crate::customer::field::set_field(
                &mut check,
                crate::customer::Field::AddHour,
                padded.clone(),
            )
            .is_ok()
                && !padded.is_empty()
        });
    if valid_time {
        Ok(value.to_owned())
    } else {
        Err(refuse())
    }
}

fn parse_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if (0.1..=600.0).contains(&seconds) => Ok(seconds),
        _ => Err("expected a number of seconds from 0.1 to 600".into()),
    }
}

fn parse_delimiter(value: &str) -> Result<u8, String> {
    match value {
        "," => Ok(b','),
        ";" => Ok(b';'),
        "tab" | "\t" => Ok(b'\t'),
        _ => Err("expected ',', ';' or tab".into()),
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it. It is shown only this once; only a digest is stored.
    ///
    /// Keys may only read (list, login, changes, a password change that proves the current
    /// password) unless created with --write, which also allows ADD, UPDATE, DELETE and
    /// password resets. A --public key is for browser code, where anyone can read it: it
    /// logs customers in, and with a customer's session acts for that customer alone.
    Create {
        /// A name to recognise the key by, e.g. the front-end that uses it ("webshop"). The
        /// audit trail records writes under it.
        name: String,
        /// Allow this key to write (add, update and delete customers, reset passwords).
        #[arg(long, conflicts_with = "public")]
        write: bool,
        /// A key for browser code: it can log a customer in, and then read and change that
        /// customer only (with the session token LOGIN returns); never list anyone else.
        #[arg(long)]
        public: bool,
        /// The key belongs to a server that calls on behalf of end users (a shop's back
        /// end): it may send the end user's address as the first X-Forwarded-For entry, and
        /// login limits then count that address. Without it, logins through this key are
        /// limited per account only, so one visitor's failures never lock out the others.
        #[arg(long, conflicts_with = "public")]
        forwards_client_address: bool,
    },
    /// List key names, scopes (read, write or public), creation times and last uses (never
    /// the keys).
    ///
    /// A key's last use is when a server last accepted it (UTC), or "never". Servers write
    /// it at most once a minute and when they stop, so it may be up to a minute behind.
    List,
    /// Revoke a key by name; a running server refuses it from its next request.
    Revoke {
        /// The name given at creation.
        name: String,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => return serve(),
        Command::Keys(command) => keys(command),
        Command::Passwd { customer } => passwd(&customer),
        Command::Import {
            file,
            format,
            replace,
            allow_empty,
            dry_run,
            encoding,
            delimiter,
        } => import(
            &file,
            format,
            replace,
            allow_empty,
            dry_run,
            encoding,
            delimiter,
        ),
        Command::Export {
            format,
            output,
            all_fields,
            encoding,
            delimiter,
        } => {
            let (format, delimiter) =
                export_format(format, output.as_deref(), encoding.is_some(), delimiter);
            export_options(format, encoding, delimiter)
                .and_then(|csv| export(format, output, all_fields, csv))
        }
        Command::Backup { path, force } => backup(&path, force),
        Command::RemoveDemo => remove_demo(),
        Command::Limits { customer } => limits(customer.as_deref()),
        Command::Unlock { customer } => unlock(&customer),
        Command::CopyTo { url } => copy_to(&url),
        Command::Sync { url } => sync_once(url.as_deref()),
        Command::LoginRate { seconds } => login_rate(seconds),
        Command::Audit {
            customer,
            since,
            limit,
            logins,
        } => {
            let kind = match logins {
                true => audit::Kind::Logins,
                false => audit::Kind::Writes,
            };
            show_audit(kind, customer, since.as_deref(), limit)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", crate::logging::mask_secrets(&message));
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a configuration mistake (`EX_CONFIG` of sysexits.h): the systemd unit
/// does not restart on it, since a restart cannot fix it.
pub const EXIT_CONFIG: u8 = 78;

fn serve() -> ExitCode {
    let failed = |message: &dyn std::fmt::Display, code: u8| {
        // A configuration error may quote the line at fault: the old API's URL and its key.
        // Written as the log writes (with `log_format = "json"`, a JSON object), masked.
        crate::logging::fatal(&message.to_string());
        ExitCode::from(code)
    };
    match crate::rocket(crate::figment()) {
        Err(
            error
            @ (crate::error::StartupError::Config(_) | crate::error::StartupError::Refused(_)),
        ) => failed(&error, EXIT_CONFIG),
        // A missing folder, a foreign or damaged file: the owner must act, a restart cannot.
        // A file locked by another program may free up: that one is worth a restart.
        Err(error @ crate::error::StartupError::Database { .. })
            if !error.to_string().contains("locked") =>
        {
            failed(&error, EXIT_CONFIG)
        }
        Err(error) => failed(&error, 1),
        Ok(rocket) => match crate::server::run(rocket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => failed(&error, 1),
        },
    }
}

/// Opens the configured database for a command-line tool. A tool never fills a new database
/// with the demo customers (only the server's first start does): a tool run after the file was
/// deleted, or with a mistyped path, must not bring demo customers and demo passwords back.
/// It says when it created the file.
fn open() -> Result<(crate::config::Config, Store), String> {
    let (config, db) = crate::prepare(&crate::figment(), Seed::Never).map_err(|e| e.to_string())?;
    if db.created() {
        match db {
            Store::Sqlite(_) => eprintln!(
                "note: {} did not exist: created it, empty (config key `database`)",
                config.database
            ),
            // The database existed; it had no clientele tables yet.
            Store::Postgres(_) => eprintln!(
                "note: {} had no clientele tables: created them, empty (config key `database`)",
                config.database
            ),
        }
    }
    Ok((config, db))
}

/// Opens the configured database for a tool that reads or changes what is in it (export,
/// backup, audit, keys list, passwd...): a SQLite file that does not exist is refused, not
/// created empty. Run from another folder, or with a typo in `database`, such a tool would
/// otherwise "succeed" on a new, empty database (a nightly backup of nothing).
fn open_existing() -> Result<(crate::config::Config, Store), String> {
    let config =
        crate::config::Config::from_figment(&crate::figment()).map_err(|e| e.to_string())?;
    if let Some(path) = config.database.file() {
        if path.symlink_metadata().is_err() {
            let here = std::env::current_dir()
                .map(|folder| {
                    format!(
                        " (a relative path is read from the current folder, {})",
                        folder.display()
                    )
                })
                .unwrap_or_default();
            return Err(format!(
                "{} does not exist{here}: run this from the server's folder, or give the \
                 server's configuration (ROCKET_CONFIG) or its file (ROCKET_DATABASE). \
                 Nothing was done (config key `database`)",
                path.display()
            ));
        }
    }
    open()
}

/// The SQLite database, for the tools that work on the file itself (`copy-to`, `backup`);
/// on PostgreSQL, what to do instead.
fn sqlite_only<'a>(store: &'a Store, what: &str) -> Result<&'a crate::store::sqlite::Db, String> {
    store.sqlite().ok_or_else(|| {
        format!(
            "`clientele {what}` works on a SQLite database; this one is PostgreSQL ({}): \
             `database` must name the SQLite file",
            store.describe()
        )
    })
}

/// Progress bars on a terminal; nothing otherwise (scripts get the summary line only).
struct Bars(ProgressBar);

impl Bars {
    fn new() -> Bars {
        if !std::io::stderr().is_terminal() {
            return Bars(ProgressBar::hidden());
        }
        let style = ProgressStyle::with_template(
            "{msg:>18} [{bar:30}] {pos}/{len} rows  {per_sec}  {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Bars(ProgressBar::new(0).with_style(style))
    }
}

impl import::Progress for Bars {
    fn phase(&self, name: &'static str, total: usize) {
        self.0.set_message(name);
        self.0.set_length(total as u64);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn step(&self) {
        self.0.inc(1);
    }
}

/// Opens an input file, with the error in a shop owner's words.
fn open_input(file: &std::path::Path) -> Result<std::fs::File, String> {
    let shown = file.display();
    let opened = std::fs::File::open(file).and_then(|f| {
        if f.metadata()?.is_dir() {
            Err(std::io::Error::from(std::io::ErrorKind::IsADirectory))
        } else {
            Ok(f)
        }
    });
    opened.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: no such file"),
        std::io::ErrorKind::PermissionDenied => format!("{shown}: permission denied"),
        std::io::ErrorKind::IsADirectory => format!("{shown}: is a folder, not a file"),
        _ => format!("{shown}: {e}"),
    })
}

#[allow(clippy::too_many_arguments)]
fn import(
    file: &str,
    format: Option<Format>,
    replace: bool,
    allow_empty: bool,
    dry_run: bool,
    encoding: TextEncoding,
    delimiter: Option<u8>,
) -> Result<(), String> {
    let started = Instant::now();
    let name = if file == "-" { "stdin" } else { file };
    // The import reads its input twice (check, then write): standard input is kept in a
    // temporary file first.
    let spool;
    let path = if file == "-" {
        spool = tempfile::NamedTempFile::new().map_err(|e| format!("temporary file: {e}"))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool.as_file())
            .map_err(|e| format!("standard input: {e}"))?;
        spool.path().to_owned()
    } else {
        PathBuf::from(file)
    };
    let mut start = Vec::with_capacity(4096);
    open_input(&path)?
        .take(4096)
        .read_to_end(&mut start)
        .map_err(|e| format!("{name}: {e}"))?;
    let format = format.unwrap_or_else(|| Format::detect(file, &start));
    let open = || {
        let input = open_input(&path).map_err(|message| import::RecordError {
            line: 1,
            field: String::new(),
            message,
        })?;
        import::read_records(input, format, encoding, delimiter)
    };
    let (config, store) =
        crate::prepare(&crate::figment(), Seed::Never).map_err(|e| e.to_string())?;
    let mut conn = store.connection().map_err(|e| e.to_string())?;
    let options = import::Options {
        replace,
        allow_empty,
        dry_run,
        audit: Some((audit::CLI, audit::Action::Import, config.retention)),
        known: None,
    };
    let bars = Bars::new();
    let demo = conn.demo_ids().map_err(|e| e.to_string())?;
    let result = import::import(&mut *conn, open, &config.hasher, options, &bars);
    if matches!(&result, Ok(summary) if summary.demo_removed > 0 && !dry_run) {
        forget_demo_limits(&mut *conn, &demo, config.login_window)?;
    }
    let created = store.created();
    drop(conn);
    if let (true, Some(db)) = (created && (result.is_err() || dry_run), store.sqlite()) {
        // A failed import or a dry run into a new file leaves no database behind. (A
        // PostgreSQL database keeps the empty tables this run made: it is the owner's.)
        let path = db.path().to_owned();
        drop(store);
        crate::store::sqlite::remove_files(&path);
    }
    let summary = result.map_err(|error| match error {
        import::ImportError::Record(error) => format!("{name}:{error}"),
        import::ImportError::Records(errors) => {
            let mut lines: Vec<String> = errors.iter().map(|e| format!("{name}:{e}")).collect();
            let more = match errors.len() >= import::MAX_REPORTED {
                true => " (the first ones; there may be more)",
                false => "",
            };
            lines.push(format!(
                "{name}: {} bad values{more}; nothing imported",
                errors.len()
            ));
            lines.join("\n")
        }
        import::ImportError::Other(error) => format!("{name}: nothing imported: {error}"),
    })?;
    bars.0.finish_and_clear();
    let verb = if dry_run {
        "dry run, nothing written"
    } else {
        "imported"
    };
    // Always named: run from the wrong folder or as the wrong user, an import would
    // otherwise fill another database than the server's without a word.
    let into = match (created, dry_run) {
        (true, false) => format!(" into the new database {}", config.database),
        (_, true) => format!(" against {}", config.database),
        (false, false) => format!(" into {}", config.database),
    };
    eprintln!(
        "{name}: {verb}{into}: {} inserted, {} updated, {} deleted, {} unchanged ({} rows in {:.2} s)",
        summary.inserted,
        summary.updated,
        summary.deleted,
        summary.unchanged,
        summary.rows,
        started.elapsed().as_secs_f64()
    );
    if summary.demo_removed > 0 {
        let tense = if dry_run { "would remove" } else { "removed" };
        eprintln!(
            "{name}: {tense} the {} demo customers first (with their demo passwords): \
             the database held the demo data the first start put in",
            summary.demo_removed
        );
    }
    Ok(())
}

fn login_rate(seconds: f64) -> Result<(), String> {
    let figment = crate::figment();
    let config = crate::config::Config::from_figment(&figment).map_err(|e| e.to_string())?;
    let workers = config.login_workers;
    config.hasher.limit_concurrency(workers);
    let rate = config
        .hasher
        .verify_rate(workers, std::time::Duration::from_secs_f64(seconds))
        .map_err(|e| e.to_string())?;
    let plural = if workers == 1 { "" } else { "s" };
    println!(
        "{rate:.1} logins/s at most: password checks on {workers} login worker{plural} ({})",
        config.hasher.describe()
    );
    Ok(())
}

/// The format an export is written in, and its separator. Without --format, an output
/// file named .csv, .tsv or .txt (a spreadsheet, which would not open JSON) or a CSV-only
/// option (--delimiter, --encoding) means CSV; a .tsv file is separated by tabs unless
/// --delimiter says otherwise. Anything else is JSON, which `import` reads back as it is.
fn export_format(
    format: Option<Format>,
    output: Option<&std::path::Path>,
    encoding_given: bool,
    delimiter: Option<u8>,
) -> (Format, Option<u8>) {
    let extension = output
        .and_then(|path| path.extension())
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase());
    let tsv = extension.as_deref() == Some("tsv");
    let spreadsheet = matches!(extension.as_deref(), Some("csv" | "tsv" | "txt"));
    let format = format.unwrap_or(
        if extension.as_deref() != Some("json")
            && (spreadsheet || encoding_given || delimiter.is_some())
        {
            Format::Csv
        } else {
            Format::Json
        },
    );
    let delimiter = match delimiter {
        None if tsv && format == Format::Csv => Some(b'\t'),
        given => given,
    };
    (format, delimiter)
}

/// How a CSV export is written, from `--encoding` and `--delimiter`; both are refused with
/// JSON (always UTF-8, no separator), and `--encoding auto` (it is for reading files).
fn export_options(
    format: Format,
    encoding: Option<TextEncoding>,
    delimiter: Option<u8>,
) -> Result<export::CsvOptions, String> {
    if format == Format::Json && (encoding.is_some() || delimiter.is_some()) {
        return Err(
            "--encoding and --delimiter are for --format csv: JSON is always UTF-8, \
             with no separator to choose; nothing was exported"
                .into(),
        );
    }
    let windows_1252 = match encoding {
        None | Some(TextEncoding::Utf8) => false,
        Some(TextEncoding::Windows1252) => true,
        Some(TextEncoding::Auto) => {
            return Err(
                "--encoding auto is for reading files; an export is written in \
                 utf-8 (the default) or windows-1252; nothing was exported"
                    .into(),
            )
        }
    };
    Ok(export::CsvOptions {
        delimiter: delimiter.unwrap_or(b','),
        windows_1252,
    })
}

fn export(
    format: Format,
    output: Option<PathBuf>,
    all_fields: bool,
    csv: export::CsvOptions,
) -> Result<(), String> {
    let (config, db) = open_existing()?;
    let mut conn = db.connection().map_err(|e| e.to_string())?;
    let view = if all_fields {
        View {
            redaction: Redaction::default(),
            ..config.view
        }
    } else {
        config.view
    };
    let mut buffer = Vec::new();
    let count =
        export::export(&mut *conn, format, view, csv, &mut buffer).map_err(|e| e.to_string())?;
    match output {
        Some(path) => {
            // Write beside, then rename: a reader never sees half a file.
            let mut partial = path.as_os_str().to_owned();
            partial.push(".partial");
            // Customer data: readable by this user alone, like the database.
            let _ = std::fs::remove_file(&partial);
            crate::store::sqlite::create_private_file(std::path::Path::new(&partial))
                .and_then(|mut file| file.write_all(&buffer))
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&partial);
                    format!("{}: {e}", path.display())
                })?;
            eprintln!(
                "exported {count} customer(s) to {}{}",
                path.display(),
                withheld_note(&config.view.redaction, all_fields)
            );
        }
        None => {
            std::io::stdout()
                .write_all(&buffer)
                .map_err(|e| format!("standard output: {e}"))?;
            // On standard error, so that the export itself stays as it is.
            let withheld = withheld_note(&config.view.redaction, all_fields);
            if !withheld.is_empty() {
                eprintln!("note: exported {count} customer(s){withheld}");
            }
        }
    }
    Ok(())
}

/// What an export left out because `redact` withholds it, said after its summary (an export
/// for an accountant missing the VAT numbers should not be a surprise).
fn withheld_note(redaction: &crate::customer::Redaction, all_fields: bool) -> String {
    if all_fields {
        return String::new();
    }
    let withheld: Vec<&str> = crate::customer::Field::ALL
        .iter()
        .filter(|field| redaction.withholds(**field))
        .map(|field| field.name())
        .collect();
    match withheld.as_slice() {
        [] => String::new(),
        names => format!(
            " (without {}, withheld by `redact`; --all-fields includes them)",
            names.join(", ")
        ),
    }
}

fn remove_demo() -> Result<(), String> {
    let (config, store) = open_existing()?;
    let mut conn = store.connection().map_err(|e| e.to_string())?;
    let demo = conn.demo_ids().map_err(|e| e.to_string())?;
    let removed = conn
        .remove_demo(audit::CLI, config.retention)
        .map_err(|e| e.to_string())?;
    if removed > 0 {
        forget_demo_limits(&mut *conn, &demo, config.login_window)?;
    }
    eprintln!(
        "removed {removed} demo customer(s) from {}",
        config.database
    );
    Ok(())
}

fn copy_to(url: &str) -> Result<(), String> {
    let started = Instant::now();
    let target = crate::store::Location::parse(url);
    let crate::store::Location::Postgres(url) = target else {
        return Err(format!(
            "copy-to: {target} is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST/DB)"
        ));
    };
    let (config, store) = open_existing()?;
    let db = sqlite_only(&store, "copy-to")?;
    let summary = crate::store::postgres::copy::from_sqlite(db, &url, &config.hasher)
        .map_err(|e| crate::logging::mask_secrets(&e))?;
    eprintln!(
        "copied {} to {} in {:.1} s: {summary}. Set database = \"postgres://...\" (that URL) \
         and start the nodes.",
        db.path().display(),
        crate::store::postgres::redact_url(url.expose()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn backup(path: &std::path::Path, force: bool) -> Result<(), String> {
    let (_, store) = open_existing()?;
    if let Some(pg) = store.postgres() {
        // The copy of a PostgreSQL database is PostgreSQL's own tool's job: say exactly what
        // to run (the URL without its password, which pg_dump takes from PGPASSWORD or
        // ~/.pgpass).
        let url = shell_quote(&pg.url_without_password());
        let file = shell_quote(&path.display().to_string());
        return Err(format!(
            "`clientele backup` copies a SQLite file; this database is PostgreSQL ({}). \
             Back it up with PostgreSQL's own tool instead (`umask 077` first: the dump \
             holds password hashes; the password from PGPASSWORD or \
             ~/.pgpass):\n  pg_dump --format=custom --file={file} {url}\n\
             and restore it into an empty database with:\n  \
             pg_restore --no-owner --dbname={url} {file}",
            store.describe(),
        ));
    }
    let db = sqlite_only(&store, "backup")?;
    let conn = db.connection().map_err(|e| e.to_string())?;
    export::backup(&conn, path, force)?;
    eprintln!("backed up {} to {}", db.path().display(), path.display());
    Ok(())
}

/// `text` as one word for a POSIX shell: in single quotes, each `'` written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn sync_once(url: Option<&str>) -> Result<(), String> {
    let started = Instant::now();
    let (config, store) = open()?;
    let upstream = match (url, &config.mirror) {
        (Some(url), _) => crate::sync::Upstream::new(url, config.upstream_settings)?,
        (None, Some(mirror)) => crate::sync::Upstream::new(&mirror.url, config.upstream_settings)?,
        (None, None) => {
            return Err("no URL given and no `upstream` setting: clientele sync URL".into())
        }
    };
    let key_file = crate::sync::SyncKey::path_for_store(&store, &config.upstream_key_file);
    let key = crate::sync::SyncKey::load_or_create_at(&key_file)?;
    // On PostgreSQL, the turn the mirroring nodes share: no node's sync or forwarded write
    // runs between this fetch and this commit.
    let _turn = crate::sync::command_line_turn(&store, || {
        eprintln!("waiting for a server's sync or forwarded write to end first...");
    })?;
    let mut conn = store.connection().map_err(|e| e.to_string())?;
    let bars = Bars::new();
    let summary = crate::sync::sync(
        &mut *conn,
        &upstream,
        &config.hasher,
        &key,
        config.retention,
        &bars,
    )
    .map_err(|e| format!("sync from {}: {}", upstream.display(), e.detail()))?;
    bars.0.finish_and_clear();
    eprintln!(
        "synced from {}: {} inserted, {} updated, {} deleted, {} unchanged, {} password(s) \
         hashed ({} rows in {:.2} s)",
        upstream.display(),
        summary.inserted,
        summary.updated,
        summary.deleted,
        summary.unchanged,
        summary.hashed,
        summary.rows,
        started.elapsed().as_secs_f64()
    );
    if summary.demo_removed > 0 {
        eprintln!(
            "removed the {} demo customers first (with their demo passwords)",
            summary.demo_removed
        );
    }
    Ok(())
}

fn show_audit(
    kind: audit::Kind,
    customer: Option<i64>,
    since: Option<&str>,
    limit: usize,
) -> Result<(), String> {
    let (_, db) = open_existing()?;
    let mut conn = db.connection().map_err(|e| e.to_string())?;
    let entries = conn
        .audit(kind, customer, since, limit)
        .map_err(|e| e.to_string())?;
    if entries.is_empty() {
        eprintln!("No audit entries match.");
    }
    for entry in entries {
        println!("{entry}");
    }
    Ok(())
}

fn keys(command: KeysCommand) -> Result<(), String> {
    // A key may be made before the first start (the package's install steps); listing or
    // revoking needs the database that exists.
    let (config, db) = match command {
        KeysCommand::Create { .. } => open()?,
        _ => open_existing()?,
    };
    let mut conn = db.connection().map_err(|e| e.to_string())?;
    match command {
        KeysCommand::Create {
            name,
            write,
            public,
            forwards_client_address,
        } => {
            let scope = match (write, public) {
                (true, _) => apikey::Scope::Write,
                (_, true) => apikey::Scope::Public,
                _ => apikey::Scope::Read,
            };
            let options = apikey::KeyOptions {
                forwards_client_address,
            };
            let key = apikey::create_with(&mut *conn, &name, scope, options)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "Created {} API key {name:?}{} in {}. Copy it now: it is not stored and cannot be \
                 shown again.",
                scope.as_str(),
                if forwards_client_address {
                    " (forwards the client address)"
                } else {
                    ""
                },
                config.database
            );
            println!("{}", key.expose());
        }
        KeysCommand::List => {
            let keys = apikey::list(&mut *conn).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                eprintln!("No API keys. Create one with `clientele keys create NAME`.");
            }
            for key in keys {
                println!(
                    "{}\t{}\tcreated {}\tlast used {}{}",
                    key.name,
                    key.scope.as_str(),
                    key.created_at,
                    key.last_used.as_deref().unwrap_or("never"),
                    if key.forwards_client_address {
                        "\tforwards client address"
                    } else {
                        ""
                    }
                );
            }
        }
        KeysCommand::Revoke { name } => {
            apikey::revoke(&mut *conn, &name).map_err(|e| e.to_string())?;
            eprintln!("Revoked API key {name:?}.");
        }
    }
    Ok(())
}

/// The customer `who` names: a clcleunik, an email (with an @) or a login; `id:N`,
/// `login:NAME` or `email:ADDRESS` says which. A number that is one customer's clcleunik and
/// another's login is refused as ambiguous, naming both, rather than silently taken for one.
fn find_customer(
    conn: &mut crate::store::Connection,
    who: &str,
) -> Result<customer::Customer, String> {
    let candidates = if let Some(id) = who.strip_prefix("id:") {
        let id = id
            .parse::<i64>()
            .map_err(|_| format!("{who:?}: after id: comes a clcleunik; nothing changed"))?;
        vec![customer::Identifier::Id(id)]
    } else if let Some(login) = who.strip_prefix("login:") {
        vec![customer::Identifier::Login(login.to_owned())]
    } else if let Some(email) = who.strip_prefix("email:") {
        vec![customer::Identifier::Email(email.to_owned())]
    } else {
        let mut candidates = Vec::new();
        if let Ok(id) = who.parse::<i64>() {
            candidates.push(customer::Identifier::Id(id));
        }
        candidates.push(match who.contains('@') {
            true => customer::Identifier::Email(who.to_owned()),
            false => customer::Identifier::Login(who.to_owned()),
        });
        candidates
    };
    let mut found: Vec<customer::Customer> = Vec::new();
    for identifier in &candidates {
        if let Some((customer, _)) = conn.find_for_login(identifier).map_err(|e| e.to_string())? {
            if !found.iter().any(|f| f.clcleunik == customer.clcleunik) {
                found.push(customer);
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(match who.parse::<i64>() {
            Ok(id) => format!("no customer with clcleunik {id} or login {who:?}; nothing changed"),
            Err(_) if who.contains('@') => {
                format!("no customer with email {who:?}; nothing changed")
            }
            Err(_) => format!("no customer with login {who:?}; nothing changed"),
        }),
        _ => Err(format!(
            "{who:?} is customer {}'s clcleunik and customer {}'s login: say which, with \
             id:{who} or login:{who}; nothing changed",
            found[0].clcleunik, found[1].clcleunik
        )),
    }
}

/// What the limiter counts for a customer: its logins (and password changes), its resets.
fn limit_subjects(id: i64) -> [String; 2] {
    [format!("customer:{id}"), format!("reset:customer:{id}")]
}

/// The removed demo customers' failed logins and resets, forgotten as `unlock` forgets them
/// (a running server too): the shop's own customer 1 must not start locked out by the
/// wrong passwords someone tried on demo customer 1.
fn forget_demo_limits(
    conn: &mut dyn crate::store::Backend,
    ids: &[i64],
    window: std::time::Duration,
) -> Result<(), String> {
    let subjects: Vec<String> = ids.iter().flat_map(|id| limit_subjects(*id)).collect();
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    conn.limit_clear(&subjects, window)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn limits(who: Option<&str>) -> Result<(), String> {
    let (config, store) = open_existing()?;
    let mut conn = store.connection().map_err(|e| e.to_string())?;
    let (max, window) = (config.login_max_failures, config.login_window);
    match who {
        None => {
            let (with_failures, locked) =
                conn.limit_totals(max, window).map_err(|e| e.to_string())?;
            println!(
                "{with_failures} account(s) or address(es) with failed logins in the last {} s; \
                 {locked} locked now ({max} failures lock)",
                window.as_secs()
            );
        }
        Some(who) => {
            let found = find_customer(&mut conn, who)?;
            let subjects = limit_subjects(found.clcleunik);
            let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
            let status = conn
                .limit_status(&subjects, max, window)
                .map_err(|e| e.to_string())?;
            for ((failures, wait), what) in status.iter().zip(["logins", "password resets"]) {
                let state = match wait {
                    0 => "not locked".to_owned(),
                    wait => format!("locked for {wait} s more"),
                };
                println!(
                    "customer {}: {failures} failed {what} in the last {} s, {state}",
                    found.clcleunik,
                    window.as_secs()
                );
            }
        }
    }
    Ok(())
}

fn unlock(who: &str) -> Result<(), String> {
    let (config, store) = open_existing()?;
    let mut conn = store.connection().map_err(|e| e.to_string())?;
    let found = find_customer(&mut conn, who)?;
    let subjects = limit_subjects(found.clcleunik);
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let cleared = conn
        .limit_clear(&subjects, config.login_window)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "Cleared {cleared} failed attempt(s) of customer {}: they may log in at once.",
        found.clcleunik
    );
    Ok(())
}

fn passwd(who: &str) -> Result<(), String> {
    let (config, db) = open_existing()?;
    let mut conn = db.connection().map_err(|e| e.to_string())?;
    // Find the customer first, so nobody types a password for nothing.
    let found = find_customer(&mut conn, who)?;
    let id = found.clcleunik;
    let password = read_new_password()?;
    let context = found.password_context();
    let context: Vec<&str> = context.iter().map(String::as_str).collect();
    auth::check_new_password(&password, &context)
        .map_err(|why| format!("{why}; nothing changed"))?;
    let hash = config.hasher.hash(&password).map_err(|e| e.to_string())?;
    let changed = conn
        .set_password(
            id,
            &hash,
            audit::CLI,
            audit::Action::PasswordReset,
            config.retention,
        )
        .map_err(|e| e.to_string())?;
    if !changed {
        return Err(format!("no customer with clcleunik {id}"));
    }
    match who == id.to_string() {
        true => eprintln!("Password set for customer {id}."),
        false => eprintln!("Password set for customer {id} ({who})."),
    }
    Ok(())
}

/// Twice without echo on a terminal; otherwise the first line of standard input.
fn read_new_password() -> Result<Secret, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the two passwords differ; nothing changed".into());
        }
        first
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| format!("reading standard input: {e}"))?;
        let line = input.lines().next().unwrap_or("");
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    };
    if password.is_empty() {
        return Err("the password is empty; nothing changed".into());
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn since_takes_dates_times_and_spans_and_refuses_anything_else() {
        // 2026-11-29T17:30:00Z
        let now = 1_795_973_400;
        assert_eq!(
            super::since_at("today", now).unwrap(),
            "2026-11-29T00:00:00Z"
        );
        assert_eq!(
            super::since_at("yesterday", now).unwrap(),
            "2026-11-28T00:00:00Z"
        );
        assert_eq!(super::since_at("7d", now).unwrap(), "2026-11-22T17:30:00Z");
        assert_eq!(super::since_at("90m", now).unwrap(), "2026-11-29T16:00:00Z");
        for good in ["2026-11-01", "2026-11-01T08:15", "2026-11-01T08:15:00Z"] {
            assert_eq!(super::since_at(good, now).unwrap(), good);
        }
        for bad in [
            "yesterdy",
            "last week",
            "",
            "2026-13-01",
            "2026-11-01 08:15",
            "7x",
            "d",
        ] {
            let error = super::since_at(bad, now).unwrap_err();
            assert!(error.contains("yesterday"), "{bad}: {error}");
        }
    }
}
