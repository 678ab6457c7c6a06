use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;
use reflex::cli::{Cli, Command};
use reflex::cmd;
use reflex::features::Features;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(|| reflex::sinks::stderr::Logs)
        .with_target(false)
        .without_time()
        .with_max_level(if cli.verbose {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .init();
    // What this machine allows, asked once, read by every command.
    let features = Arc::new(Features::new());
    let result = match &cli.command {
        Command::Run(args) => cmd::run::run(args, features),
        Command::Check => return cmd::check::check(&features),
        Command::Validate(args) => return cmd::validate::validate(args, &features),
        Command::Guardian => return cmd::guardian::guardian(),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            reflex::say!("reflex: error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // What reflex said gets a moment to reach stderr; a stderr nobody reads
    // does not keep reflex from exiting.
    reflex::sinks::stderr::finish(std::time::Duration::from_secs(2));
    code
}
