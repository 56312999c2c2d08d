//! The command line: `clientele [serve]` and the owner's tools. Every subcommand reads the same
//! config (`Rocket.toml`, then `ROCKET_*` environment variables).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
