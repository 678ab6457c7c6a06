//! Figure 2 — cost: ns per call of the watched syscall (ptrace) and of an
//! unrelated one (getppid), under each configuration, measured in turns.

use std::fmt::Write as _;
use std::path::Path;

use crate::procs::{self, now_ns};
use crate::stats::{self, median};
use crate::tools::{self, NOBODY, Tool};

/// Least ns per call of `f` over `reps` runs of `n` calls: interference
/// (the other tenants of this machine) only ever adds time.
fn ns_per_call(f: fn(), n: u64, reps: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = now_ns();
        for _ in 0..n {
            f();
        }
        best = best.min((now_ns() - t) as f64 / n as f64);
    }
    best
}

/// Rarely called syscalls, to hold the rules that do not fit on ptrace.
const COLD: &[&str] = &[
    "reboot",
    "swapon",
    "swapoff",
    "sethostname",
    "setdomainname",
    "acct",
    "settimeofday",
    "pivot_root",
    "mount",
    "quotactl",
    "iopl",
    "ioperm",
    "chroot",
    "syslog",
    "vhangup",
    "ustat",
];

/// `n` audit rules that never match this process: up to 64 on ptrace (one
/// selector lookup between them all), the rest on cold syscalls.
fn rules(n: usize) -> String {
    rules_with(n, 64)
}

/// `n` audit rules that never match this process: up to `on_ptrace` on
/// ptrace, the rest on cold syscalls (64 each).
pub fn rules_with(n: usize, on_ptrace: usize) -> String {
    let mut yaml = String::from("rules:\n");
    for i in 0..n {
        let syscall = if i < on_ptrace {
            "ptrace"
        } else {
            COLD[(i - on_ptrace) / 64]
        };
        yaml.push_str(&format!(
            "  - {{name: r{i}, syscall: {syscall}, match: {{uid: {}}}, action: audit}}\n",
            50_000 + i
        ));
    }
    yaml
}

pub struct Figures {
    pub table: String,
}

/// `hooks`: the reflex hooks to measure (empty: tracepoint, raw, and
/// fentry where it loads).
pub fn run(
    rounds: usize,
    calls: u64,
    dir: &Path,
    with_bpftrace: bool,
    hooks: &[String],
) -> Figures {
    let write = |name: &str, yaml: &str| {
        let p = dir.join(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_str().unwrap().to_string()
    };
    let audit = write(
        "audit.yaml",
        "rules:\n  - {name: audit-ptrace, syscall: ptrace, action: audit}\n",
    );
    // Every ptrace call is timed from entry to exit; none matches (uid).
    let slow = write(
        "slow.yaml",
        "rules:\n  - {name: slow-ptrace, syscall: ptrace, slower_than: 10s, match: {uid: 50000}, action: {signal: SIGQUIT, thread: true}}\n",
    );
    let mut configs: Vec<(String, Tool)> = vec![
        ("no BPF program".into(), Tool::None),
        (
            "seed program (tracepoint, caller not matched)".into(),
            Tool::Seed { ppid: NOBODY },
        ),
    ];
    configs.push((
        "empty tp_btf/sys_enter program (the floor of any raw hook)".into(),
        Tool::EmptyRaw,
    ));
    if with_bpftrace {
        configs.push((
            "bpftrace one-liner (caller not matched)".into(),
            Tool::bpftrace_seed(NOBODY),
        ));
    }
    // fentry where it loads (the matrix's VMs; not this machine).
    let mut hows = vec!["tracepoint", "raw"];
    if tools::fentry_loads() {
        hows.push("fentry");
    }
    if !hooks.is_empty() {
        hows.retain(|h| hooks.iter().any(|w| w == h));
    }
    for how in hows {
        configs.push((
            format!("reflex {how}: the seed's job, caller not matched (--ppid)"),
            Tool::reflex(&["--ppid", &NOBODY.to_string(), "--attach", how]),
        ));
        for n in [1usize, 10, 100, 1000] {
            let path = write(&format!("rules-{n}.yaml"), &rules(n));
            configs.push((
                format!(
                    "reflex {how}: {n} rule{} (none matches)",
                    if n == 1 { "" } else { "s" }
                ),
                Tool::reflex(&[&path, "--attach", how]),
            ));
        }
        configs.push((
            format!("reflex {how}: 1 rule, matches (audit: an event per call)"),
            Tool::reflex(&[&audit, "--attach", how]),
        ));
        configs.push((
            format!(
                "reflex {how}: 1 rule, matches, events without the identity (the cost before it)"
            ),
            Tool::reflex(&[&audit, "--attach", how, "--no-identity"]),
        ));
        configs.push((
            format!("reflex {how}: 1 exit rule (`slower_than`): each call timed, entry to exit"),
            Tool::reflex(&[&slow, "--attach", how]),
        ));
    }
    // Each configuration is measured on, then at once off: the cost it adds
    // is the difference of the pair, which drifts of the machine's pace
    // between configurations do not touch.
    let n = configs.len();
    let (mut watched, mut unrelated) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    let (mut added_w, mut added_u) = (vec![Vec::new(); n], vec![Vec::new(); n]);
    for _ in 0..rounds {
        for (i, (_, tool)) in configs.iter().enumerate() {
            let running = tools::start(tool, dir);
            let (w, u) = (
                ns_per_call(procs::ptrace_peek, calls, 5),
                ns_per_call(procs::getppid, calls, 5),
            );
            running.stop();
            let (w0, u0) = (
                ns_per_call(procs::ptrace_peek, calls, 5),
                ns_per_call(procs::getppid, calls, 5),
            );
            watched[i].push(w);
            unrelated[i].push(u);
            added_w[i].push(w - w0);
            added_u[i].push(u - u0);
        }
    }
    // What `--attach auto` picks for the seed's job, in its own words.
    let auto = tools::start(&Tool::reflex(&["--ppid", &NOBODY.to_string()]), dir).stop();
    let auto = auto
        .lines()
        .find_map(|l| l.strip_prefix("reflex: hooks: "))
        .unwrap_or("?")
        .to_string();
    let seed_w = median(&added_w[1]);
    let seed_u = median(&added_u[1]);
    let mut table = String::from(
        "| configuration | ptrace (watched) ns/call | added | vs seed | getppid (unrelated) ns/call | added | vs seed |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (i, (name, _)) in configs.iter().enumerate() {
        let (w, u) = (median(&watched[i]), median(&unrelated[i]));
        let (aw, au) = (median(&added_w[i]), median(&added_u[i]));
        let _ = writeln!(
            table,
            "| {name} | {w:.0} | {} | {} | {u:.0} | {} | {} |",
            if i == 0 {
                "–".into()
            } else {
                format!("{aw:+.0}")
            },
            if i <= 1 {
                "–".into()
            } else {
                stats::ratio(aw, seed_w)
            },
            if i == 0 {
                "–".into()
            } else {
                format!("{au:+.0}")
            },
            if i <= 1 {
                "–".into()
            } else {
                stats::ratio(au, seed_u)
            },
        );
    }
    table.push_str(&format!(
        "\nFor the seed's job, `--attach auto` picks: {auto}.\n"
    ));
    Figures { table }
}
