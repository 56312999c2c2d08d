//! The command line: `clientele [serve]` and the owner's tools. Every subcommand reads the same
//! config (`Rocket.toml`, then `ROCKET_*` environment variables).

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::auth::Secret;
use crate::{apikey, customer};

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
        /// The customer's clcleunik.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it. It is shown only this once; only a digest is stored.
    Create {
        /// A name to recognise the key by, e.g. the front-end that uses it ("webshop").
        name: String,
    },
    /// List key names and creation times (never the keys themselves).
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
        Command::Serve => serve(),
        Command::Keys(command) => keys(command),
        Command::Passwd { id } => passwd(id),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), String> {
    let rocket = crate::rocket(crate::figment()).map_err(|e| e.to_string())?;
    rocket::execute(async move {
        match rocket.launch().await {
            Ok(_) => Ok(()),
            // `kind()` marks the error as handled, so Rocket does not panic on drop.
            Err(error) => Err(format!("the server could not start: {}", error.kind())),
        }
    })
}

/// Opens the configured database for a command-line tool.
fn open() -> Result<(crate::config::Config, crate::db::Db), String> {
    crate::prepare(&crate::figment()).map_err(|e| e.to_string())
}

fn keys(command: KeysCommand) -> Result<(), String> {
    let (_, db) = open()?;
    let conn = db.connection().map_err(|e| e.to_string())?;
    match command {
        KeysCommand::Create { name } => {
            let key = apikey::create(&conn, &name).map_err(|e| e.to_string())?;
            eprintln!("Created API key {name:?}. Copy it now: it is not stored and cannot be shown again.");
            println!("{}", key.expose());
        }
        KeysCommand::List => {
            let keys = apikey::list(&conn).map_err(|e| e.to_string())?;
            if keys.is_empty() {
                eprintln!("No API keys. Create one with `clientele keys create NAME`.");
            }
            for (name, created) in keys {
                println!("{name}\tcreated {created}");
            }
        }
        KeysCommand::Revoke { name } => {
            apikey::revoke(&conn, &name).map_err(|e| e.to_string())?;
            eprintln!("Revoked API key {name:?}.");
        }
    }
    Ok(())
}

fn passwd(id: i64) -> Result<(), String> {
    let (config, db) = open()?;
    let conn = db.connection().map_err(|e| e.to_string())?;
    // Check the customer first, so nobody types a password for nothing.
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM customer WHERE clcleunik = ?1)",
            [id],
            |row| row.get(0),
        )
        .map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!("no customer with clcleunik {id}"));
    }
    let password = read_new_password()?;
    let hash = config.hasher.hash(&password).map_err(|e| e.to_string())?;
    if !customer::set_hash(&conn, id, &hash).map_err(|e| e.to_string())? {
        return Err(format!("no customer with clcleunik {id}"));
    }
    eprintln!("Password set for customer {id}.");
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
}
