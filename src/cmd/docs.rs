//! reflex's documentation from its own command-line definitions: manual
//! pages (clap_mangen) and shell completions (clap_complete), so that they
//! never disagree with `--help`; and the events' JSON Schema, from the types
//! the JSON sink writes.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, long_version};

fn command() -> clap::Command {
    Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .long_version(Box::leak(long_version().into_boxed_str()) as &'static str)
}

/// `reflex man [SUBCOMMAND]`: the page, in roff, on stdout.
pub fn man(page: Option<&str>) -> ExitCode {
    let top = command();
    let cmd = match page {
        None => top,
        Some(name) => match top.find_subcommand(name) {
            Some(sub) => {
                let page: &'static str = Box::leak(format!("reflex-{name}").into_boxed_str());
                sub.clone().name(page)
            }
            None => {
                eprintln!(
                    "reflex man: no subcommand '{name}': use run, validate or check (or none)"
                );
                return ExitCode::from(2);
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
        eprintln!("reflex man: {e}");
        return ExitCode::FAILURE;
    }
    let _ = std::io::stdout().write_all(&out);
    ExitCode::SUCCESS
}

/// `reflex completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut command(), "reflex", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// The JSON Schema of the JSON lines.
pub fn schema() -> ExitCode {
    print!("{}", reflex::sinks::json::schema());
    ExitCode::SUCCESS
}
