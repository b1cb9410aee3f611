//! `aepg`: the command line for aepg's catalog administration —
//! installing the catalog, master keys, column keys, settings, column
//! assignments — and for reading it: `status`, `verify`, `explain`.
//! Every command is a thin layer over the `aepg` library's calls;
//! docs/CLI.md describes the commands, the config file and the JSON output.

mod args;
mod commands;
mod config;
mod connect;
mod failure;
mod output;

use clap::Parser;

use crate::args::Cli;
use crate::config::Settings;
use crate::output::Output;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Usage errors (and --help, --version) exit here, 2 (or 0) as clap says.
    let cli = Cli::parse();
    let output = Output::new(cli.json);
    let outcome = match Settings::resolve(&cli) {
        Ok(settings) => commands::run(&cli.command, &settings, output).await,
        Err(failure) => Err(failure),
    };
    if let Err(failure) = outcome {
        if output.is_json() && !failure.is_reported() {
            println!("{}", serde_json::json!({ "error": failure.to_string() }));
        }
        eprintln!("aepg: {failure}");
        std::process::exit(failure.exit_code());
    }
}
