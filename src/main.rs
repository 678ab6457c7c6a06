use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use reflex::cli::{Cli, Color, Command, long_version};
use reflex::cmd;
use reflex::features::Features;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Whether stderr is the journal's stream (systemd sets JOURNAL_STREAM to
/// its device and inode).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Logs: to the journal, with fields, under systemd; elsewhere plain lines
/// on stderr, coloured only on a terminal (or when asked).
fn logs(cli: &Cli) {
    let level = if cli.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    if stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal.with_syslog_identifier("reflex".into());
            if tracing_subscriber::registry()
                .with(journal)
                .with(filter)
                .try_init()
                .is_ok()
            {
                return;
            }
        }
    }
    let ansi = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    tracing_subscriber::fmt()
        .with_writer(|| reflex::sinks::stderr::Logs)
        .with_target(false)
        .without_time()
        .with_ansi(ansi)
        .with_max_level(level)
        .init();
}

fn main() -> ExitCode {
    reflex::timings::begin(std::time::Instant::now());
    let version: &'static str = Box::leak(long_version().into_boxed_str());
    let matches = Cli::command().long_version(version).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    logs(&cli);
    // What this machine allows, asked once, read by every command.
    let features = Arc::new(Features::new());
    let result = match &cli.command {
        Command::Run(args) => cmd::run::run(args, features),
        Command::Check => return cmd::check::check(&features),
        Command::Validate(args) => return cmd::validate::validate(args, &features),
        Command::Guardian => return cmd::guardian::guardian(),
        Command::Man { page } => return cmd::docs::man(page.as_deref()),
        Command::Completions { shell } => return cmd::docs::completions(*shell),
        Command::Schema => return cmd::docs::schema(),
    };
    let code = match result {
        Ok(()) => cmd::run::EXIT_STOPPED,
        Err(e) => {
            reflex::say!("reflex: error: {e:#}");
            cmd::run::exit_code(&e)
        }
    };
    // What reflex said gets a moment to reach stderr; a stderr nobody reads
    // does not keep reflex from exiting.
    reflex::sinks::stderr::finish(std::time::Duration::from_secs(2));
    ExitCode::from(code)
}
