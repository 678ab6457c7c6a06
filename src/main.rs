use std::process::ExitCode;

use clap::Parser;
use reflex::cli::{Cli, Command};
use reflex::cmd;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_max_level(if cli.verbose {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    let result = match &cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Check => return cmd::check::check(),
        Command::Validate(args) => return cmd::validate::validate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reflex: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
