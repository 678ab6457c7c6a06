//! The command line: `reflex run`, `reflex validate`, `reflex check`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::features::Features;
use crate::kernel::{Choice, Settings};
use crate::policy::check::Loaded;
use crate::policy::{self, Action, Diagnostic, Diagnostics, Env, Location, Target};
use crate::rules;
use crate::signal::Signal;
use crate::syscall::Arch;

/// Kernel-speed reflexes for Linux processes.
///
/// reflex loads small eBPF programs that watch what processes do and answer in
/// the kernel with a signal, before the process runs one more user-space
/// instruction. Every decision is printed, or written as JSON lines.
#[derive(Debug, Parser)]
#[command(
    name = "reflex",
    version,
    propagate_version = true,
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (libbpf's messages among it).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Colour in logs: auto (only when stderr is a terminal and NO_COLOR is
    /// unset), always, never. Under systemd logs go to the journal, with
    /// fields, and without colour.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// Exit codes, for `--help`, the manual page and supervisors.
pub const EXIT_STATUS: &str = "Exit status:
  0  stopped on request (SIGINT, SIGTERM, or another signal that ends it cleanly)
  1  could not start: the policy, the machine or the kernel refused (restarting will not help)
  2  usage error: the command line is wrong
  3  enforcement was lost while running (restarting may help)
Killed by a signal it cannot handle (SIGKILL, a crash): the kernel detaches its programs and
its guardian resumes what it stopped.";

/// The libbpf reflex runs with (vendored by libbpf-sys): `1.7`.
pub fn libbpf_version() -> String {
    // SAFETY: plain queries of constants, no arguments.
    let (major, minor) = unsafe {
        (
            libbpf_rs::libbpf_sys::libbpf_major_version(),
            libbpf_rs::libbpf_sys::libbpf_minor_version(),
        )
    };
    format!("{major}.{minor}")
}

/// What `--version` says: the commit, libbpf and the build profile.
pub fn long_version() -> String {
    format!(
        "{} (commit {}, libbpf {}, {} build)",
        env!("CARGO_PKG_VERSION"),
        env!("REFLEX_COMMIT"),
        libbpf_version(),
        env!("REFLEX_PROFILE"),
    )
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load policies and answer from the kernel until Ctrl-C or SIGTERM.
    ///
    /// With no policy: every process that calls ptrace gets SIGKILL (the
    /// built-in seed policy). Scope it with --ppid when you try it by hand.
    /// SIGHUP, or a change to a policy file, reloads the policies.
    #[command(after_long_help = EXIT_STATUS)]
    Run(RunArgs),
    /// Check policy files without loading anything (no privileges needed).
    Validate(ValidateArgs),
    /// Check what this machine lets reflex do; needs no flags, works without root.
    Check,
    /// Print a manual page (roff): `reflex man | man -l -`; `reflex man run`
    /// for a subcommand's.
    Man {
        #[arg(value_name = "SUBCOMMAND")]
        page: Option<String>,
    },
    /// Print shell completions: `reflex completions bash > /etc/bash_completion.d/reflex`.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of the events `run --json` writes (one object
    /// per line); the same as docs/event.schema.json.
    Schema,
    /// reflex's guardian (started by `run`, not by people): resumes what
    /// reflex stopped if reflex dies without stopping cleanly.
    #[command(hide = true)]
    Guardian,
}

#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Policy files or directories (their *.yaml files, by name). Earlier
    /// rules take precedence. None: the built-in seed policy.
    #[arg(value_name = "POLICY")]
    pub policies: Vec<PathBuf>,
    /// Only processes whose parent (real_parent->tgid) is PID, for every rule.
    #[arg(long, value_name = "PID", allow_negative_numbers = true, value_parser = parse_pid)]
    pub ppid: Option<u32>,
    /// Only processes descending from PID (children, grandchildren, … up to 16
    /// generations; not PID itself), for every rule: a shell and everything it
    /// starts, through sudo, timeout or strace.
    #[arg(long, value_name = "PID", allow_negative_numbers = true, value_parser = parse_pid,
          conflicts_with = "ppid")]
    pub tree: Option<u32>,
    /// Signal for the built-in policy: a name (SIGKILL, KILL, SIGSTOP, SIGUSR1,
    /// SIGRTMIN+1) or a number. Default SIGKILL.
    #[arg(long, short, value_name = "SIGNAL")]
    pub signal: Option<Signal>,
    /// Built-in policy: signal only the calling thread (bpf_send_signal_thread).
    #[arg(long)]
    pub thread: bool,
    /// Send nothing; report what would have been sent (every rule in monitor mode).
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write events as JSON lines to FILE (appended; reopened on
    /// SIGUSR1, for logrotate).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No events on stdout (with --output: only the file).
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics, and /ready
    /// (200 once the rules are in force); port 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Never signal PID (repeatable). pid 1 and reflex itself are always protected.
    #[arg(long, value_name = "PID", allow_negative_numbers = true, value_parser = parse_pid)]
    pub protect: Vec<u32>,
    /// Size of the event ring buffer in KiB: a power of two, 4 to 1048576.
    /// Raise it if the summary shows dropped events.
    #[arg(long, value_name = "KIB", default_value = "1024", value_parser = parse_ring_kib)]
    pub ring_buffer: u32,
    /// How syscalls are hooked: auto (chosen from measured costs), tracepoint
    /// (one per syscall) or raw (one tp_btf/sys_enter program).
    #[arg(long, value_name = "HOW", default_value = "auto")]
    pub attach: Choice,
    /// Resolve the policies' paths, users and groups under DIR, where the
    /// host's `/` is mounted (in a container; by default, there, through
    /// /proc/1/root).
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
    /// Say on stderr how long each stage of start-up and of every reload
    /// took, and the kernel's verification time for each program.
    #[arg(long)]
    pub timings: bool,
    /// Benchmark only: every rule in monitor mode, and reflex sends the
    /// signal itself with kill() after reading the event (the old path).
    #[cfg(feature = "bench")]
    #[arg(long, hide = true)]
    pub userspace_kill: bool,
    /// Benchmark only: events without the process's identity (what it costs).
    #[cfg(feature = "bench")]
    #[arg(long, hide = true)]
    pub no_identity: bool,
}

#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct ValidateArgs {
    /// Policy files or directories.
    #[arg(value_name = "POLICY", required = true)]
    pub policies: Vec<PathBuf>,
    /// Resolve syscall names for this architecture (x86_64 or aarch64).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    /// Resolve paths, users and groups under DIR, where the host's `/` is
    /// mounted (as `run --host-root`).
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
}

/// A pid as the command line gives it: 0 is let through for `conflicts` to
/// explain (`--ppid 0` means something to fix, not a typo).
fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<i64>() {
        Ok(n) if (0..=4_194_304).contains(&n) => Ok(n as u32),
        Ok(n) => Err(format!(
            "{n} is not a process id: pids are 1 to 4194304 (see /proc/sys/kernel/pid_max)"
        )),
        Err(e) => Err(format!("'{s}' is not a process id ({e})")),
    }
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
    /// `--userspace-kill` (built with the `bench` feature only).
    pub fn userspace_kill(&self) -> bool {
        #[cfg(feature = "bench")]
        return self.userspace_kill;
        #[cfg(not(feature = "bench"))]
        false
    }

    pub fn settings(&self) -> Settings {
        Settings {
            ring_buffer_bytes: self.ring_buffer * 1024,
            scope_ppid: self.ppid.unwrap_or(0),
            scope_tree: self.tree.unwrap_or(0),
            // The old path's best case: the daemon reads each event at once.
            wake_every_event: self.userspace_kill(),
            #[cfg(feature = "bench")]
            describe: !self.no_identity,
            ..Settings::default()
        }
    }

    pub fn options(&self) -> rules::Options {
        rules::Options {
            monitor_all: self.dry_run || self.userspace_kill(),
        }
    }

    /// Flags that make no sense together, before anything is read.
    pub fn conflicts(&self) -> Option<String> {
        if !self.policies.is_empty() && (self.signal.is_some() || self.thread) {
            return Some(
                "--signal and --thread apply to the built-in policy only: with policy files, \
                 say it in the rule (`action: {signal: SIGSTOP, thread: true}`)"
                    .into(),
            );
        }
        if self.ppid == Some(0) {
            return Some(
                "--ppid 0 would match nothing real: omit --ppid to match every parent".into(),
            );
        }
        if self.tree == Some(0) {
            return Some(
                "--tree 0 would match nothing real: omit --tree to match every process".into(),
            );
        }
        if self.protect.contains(&0) {
            return Some("--protect 0: pids start at 1".into());
        }
        None
    }

    /// The policy to run: the files, or the seed adjusted by the flags; plus
    /// `--protect` pids.
    pub fn load(&self, env: &Env) -> Result<Loaded, Diagnostics> {
        let mut loaded = if self.policies.is_empty() {
            let mut loaded = policy::load_str(policy::SEED, policy::SEED_NAME.as_ref(), env)?;
            let rule = &mut loaded.policy.rules[0];
            rule.action = Action::Signal {
                signal: self.signal.unwrap_or(Signal::KILL),
                target: if self.thread {
                    Target::Thread
                } else {
                    Target::Process
                },
            };
            loaded
        } else {
            policy::load_allowing_empty(&self.policies, env)?
        };
        let p = &mut loaded.policy.protect.pids;
        p.extend(&self.protect);
        p.sort_unstable();
        p.dedup();
        Ok(loaded)
    }

    /// A usage error as a diagnostic at "command line".
    pub fn usage_error(&self) -> Result<(), Diagnostics> {
        match self.conflicts() {
            None => Ok(()),
            Some(msg) => {
                let at = Location::file(&policy::diag::shown("command line".as_ref()));
                Err(Diagnostics(vec![Diagnostic::error(at, msg)]))
            }
        }
    }

    /// The policy (read once, by [`RunArgs::load`]) compiled, or every
    /// diagnostic. Where the policy has hook rules and `features` says
    /// BPF-LSM cannot be used here, hook rules fall back or are refused, and
    /// what degraded is returned in words.
    pub fn compile(
        &self,
        mut loaded: Loaded,
        env: &Env,
        features: &Features,
    ) -> Result<(Loaded, rules::RuleSet, Vec<policy::degrade::Degraded>), Diagnostics> {
        let mut degraded = Vec::new();
        if loaded
            .policy
            .rules
            .iter()
            .any(|r| r.trigger.hook().is_some())
        {
            if let Some(why) = features.lsm().refused() {
                let (policy, notes) = policy::degrade::without_lsm(&loaded.policy, why, env.arch)?;
                loaded.policy = policy;
                degraded = notes;
            }
        }
        let set = rules::compile(&loaded.policy, self.options())?;
        Ok((loaded, set, degraded))
    }

    /// Checks, loads and compiles in one step (tests, reloads).
    pub fn prepare(
        &self,
        env: &Env,
        features: &Features,
    ) -> Result<(Loaded, rules::RuleSet, Vec<policy::degrade::Degraded>), Diagnostics> {
        self.usage_error()?;
        self.compile(self.load(env)?, env, features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;
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
        let loaded = a.load(&Env::host()).unwrap();
        assert_eq!(loaded.policy.rules, policy::Policy::seed().rules);
        assert_eq!(a.settings(), Settings::default());
        assert_eq!(a.attach, Choice::Auto);
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
            "--attach",
            "raw",
        ]);
        assert!(a.json);
        assert_eq!(a.settings().scope_ppid, 42);
        let (loaded, set, _) = a.prepare(&Env::host(), &Features::new()).unwrap();
        let rule = &loaded.policy.rules[0];
        assert_eq!(
            rule.action,
            Action::Signal {
                signal: "SIGUSR1".parse().unwrap(),
                target: Target::Thread
            }
        );
        assert_eq!(
            rule.mode,
            Mode::Enforce,
            "--dry-run is applied when compiling"
        );
        assert!(set.rules[0].monitor);
        assert_eq!(loaded.policy.protect.pids, vec![7, 8]);
        assert_eq!(run_args(&["run", "-s", "9"]).signal, Some(Signal::KILL));
        assert_eq!(
            run_args(&["run", "--signal=stop"])
                .signal
                .map(|s| s.number()),
            Some(libc::SIGSTOP)
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
        let err = parse(&["run", "--ppid", "3", "--tree", "4"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be used with"), "{err}");
        assert_eq!(run_args(&["run", "--tree", "9"]).settings().scope_tree, 9);
        assert!(parse(&[]).is_err());
        assert!(parse(&["validate"]).is_err(), "validate needs a file");
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
        let err = parse(&["run", "--attach", "kprobe"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown attach strategy 'kprobe'"), "{err}");
    }

    #[test]
    fn conflicting_flags() {
        let a = run_args(&["run", "policy.yaml", "--signal", "SIGSTOP"]);
        let err = a
            .prepare(&Env::host(), &Features::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--signal and --thread apply to the built-in policy only"),
            "{err}"
        );
        let err = run_args(&["run", "--ppid", "0"])
            .prepare(&Env::host(), &Features::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("omit --ppid"), "{err}");
    }
}
