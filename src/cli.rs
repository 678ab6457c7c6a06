//! The command line: `reflex run`, `reflex check`.

use clap::{Args, Parser, Subcommand};

use crate::kernel::Settings;
use crate::policy::{Mode, Policy, Target};
use crate::signal::Signal;

/// Kernel-speed reflexes for Linux processes.
///
/// reflex loads small eBPF programs that watch what processes do and answer in
/// the kernel with a signal, before the process runs one more user-space
/// instruction. Every decision is printed, or written as JSON lines.
#[derive(Debug, Parser)]
#[command(name = "reflex", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (libbpf's messages among it).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the rules and answer from the kernel until Ctrl-C or SIGTERM.
    ///
    /// With no options: every process that calls ptrace gets SIGKILL. Scope it
    /// with --ppid when you try it by hand.
    Run(RunArgs),
    /// Check what this machine lets reflex do; needs no flags, works without root.
    Check,
}

#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Only processes whose parent (real_parent->tgid) is PID.
    #[arg(long, value_name = "PID")]
    pub ppid: Option<u32>,
    /// Signal to send: a name (SIGKILL, KILL, SIGSTOP, SIGUSR1, SIGRTMIN+1) or a number.
    #[arg(long, short, value_name = "SIGNAL", default_value = "SIGKILL")]
    pub signal: Signal,
    /// Signal only the calling thread (bpf_send_signal_thread), not its whole process.
    #[arg(long)]
    pub thread: bool,
    /// Send nothing; report what would have been sent.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Never signal PID (repeatable). pid 1 and reflex itself are always protected.
    #[arg(long, value_name = "PID")]
    pub protect: Vec<u32>,
    /// Size of the event ring buffer in KiB: a power of two, 4 to 1048576.
    /// Raise it if the summary shows dropped events.
    #[arg(long, value_name = "KIB", default_value = "256", value_parser = parse_ring_kib)]
    pub ring_buffer: u32,
}

fn parse_ring_kib(s: &str) -> Result<u32, String> {
    let kib: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a size in KiB (e.g. 256)"))?;
    if !(4..=1024 * 1024).contains(&kib) || !kib.is_power_of_two() {
        return Err(format!(
            "{kib} KiB: the ring buffer must be a power of two from 4 KiB (one page) to 1 GiB, e.g. 256 or 4096"
        ));
    }
    Ok(kib)
}

impl RunArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            ring_buffer_bytes: self.ring_buffer * 1024,
        }
    }

    /// The seed's policy, adjusted by these flags.
    pub fn policy(&self) -> Policy {
        let mut policy = Policy::seed();
        let rule = &mut policy.rules[0];
        rule.ppid = self.ppid;
        rule.signal = self.signal;
        rule.target = if self.thread {
            Target::Thread
        } else {
            Target::Process
        };
        if self.dry_run {
            policy.mode = Mode::Monitor;
        }
        policy.protect = self.protect.clone();
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("reflex").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(args).unwrap().command {
            Command::Run(a) => a,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_without_arguments_is_the_seed() {
        let a = run_args(&["run"]);
        assert_eq!(a.policy(), Policy::seed());
    }

    #[test]
    fn run_options() {
        let a = run_args(&[
            "run",
            "--ppid",
            "42",
            "--signal",
            "SIGUSR1",
            "--thread",
            "--dry-run",
            "--json",
            "--protect",
            "7",
            "--protect",
            "8",
        ]);
        assert!(a.json);
        let p = a.policy();
        assert_eq!(p.rules[0].ppid, Some(42));
        assert_eq!(p.rules[0].signal.number(), libc::SIGUSR1);
        assert_eq!(p.rules[0].target, Target::Thread);
        assert_eq!(p.mode, Mode::Monitor);
        assert_eq!(p.protect, vec![7, 8]);
        assert_eq!(run_args(&["run", "-s", "9"]).signal, Signal::KILL);
        assert_eq!(
            run_args(&["run", "--signal=stop"]).signal.number(),
            libc::SIGSTOP
        );
    }

    #[test]
    fn bad_arguments_are_clear_errors() {
        let err = parse(&["run", "--signal", "SIGKIL"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown signal 'SIGKIL'"), "{err}");
        assert!(err.contains("did you mean SIGKILL?"), "{err}");
        let err = parse(&["run", "--signal", "99"]).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = parse(&["run", "--ppid", "-4"]).unwrap_err().to_string();
        assert!(err.contains("'-4'"), "{err}");
        let err = parse(&["run", "--ppid", "abc"]).unwrap_err().to_string();
        assert!(err.contains("invalid digit"), "{err}");
        assert!(parse(&["check", "--ppid", "3"]).is_err());
        for bad in ["3", "100", "0", "2097152", "x"] {
            let err = parse(&["run", "--ring-buffer", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("KiB"), "{bad}: {err}");
        }
        assert_eq!(
            run_args(&["run", "--ring-buffer", "4"])
                .settings()
                .ring_buffer_bytes,
            4096
        );
        assert_eq!(run_args(&["run"]).settings(), Settings::default());
        assert!(parse(&[]).is_err());
    }
}
