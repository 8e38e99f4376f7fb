//! The `keyward` command: keystore management, the daemon and its clients.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod context;
mod daemon;
mod display;
mod error;
mod passphrase;

use clap::Parser;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout with exit 0, and usage
            // errors to stderr with exit 2, as documented.
            error.exit();
        }
    };
    if let Err(error) = commands::run(cli) {
        eprintln!("{error}");
        std::process::exit(error.code as i32);
    }
}
