//! The `clientele` binary: parse the command line, hand it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    clientele::cli::run(clientele::cli::Cli::parse())
}
