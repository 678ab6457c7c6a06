//! Figure 4 — start-up and footprint: time from launch until the first
//! triggering process is actually killed (enforcement attached), measured the
//! same way for every tool; peak resident memory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::{self, End};
use crate::stats::{self, median};
use crate::tools;

fn one(program: &str, args: &[String]) -> (f64, Option<u64>) {
    let t0 = procs::now_ns();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tool runs");
    let mut elapsed = f64::NAN;
    while procs::now_ns() - t0 < 60_000_000_000 {
        let victim = procs::probe_victim();
        if let (End::Killed(9), seen) = procs::wait_end(victim, Duration::from_secs(5)) {
            elapsed = (seen - t0) as f64;
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss = tools::peak_rss_kib(child.id());
    tools::stop_child(&mut child);
    (elapsed, rss)
}

/// The seed's job with 999 more rules that never match (63 on ptrace
/// itself, before it, the rest on other syscalls).
fn thousand_rules(dir: &Path) -> String {
    let mut yaml = crate::cost::rules_with(999, 63);
    yaml.push_str("  - {name: kill-ptrace, syscall: ptrace, action: {signal: SIGKILL}}\n");
    let path = dir.join("thousand.yaml");
    std::fs::write(&path, yaml).expect("writing the 1,000-rule policy");
    path.display().to_string()
}

pub fn run(rounds: usize, dir: &Path, with_bpftrace: bool) -> String {
    let me = std::process::id();
    let bench = std::env::current_exe().expect("the bench's own path");
    let bench = bench.to_str().expect("a UTF-8 path");
    let mut tools: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "the seed's program, minimal libbpf loader (baseline)",
            bench,
            vec!["--seed-loader".into(), me.to_string()],
        ),
        (
            "reflex run --ppid PID (the seed's job)",
            tools::REFLEX,
            vec!["run".into(), "--ppid".into(), me.to_string()],
        ),
        (
            "reflex run --ppid PID, 1,000 rules",
            tools::REFLEX,
            vec![
                "run".into(),
                "--ppid".into(),
                me.to_string(),
                thousand_rules(dir),
            ],
        ),
    ];
    if with_bpftrace {
        let tools::Tool::Bpftrace(program) = tools::Tool::bpftrace_seed(me) else {
            unreachable!()
        };
        tools.push((
            "bpftrace --unsafe -e '…signal(9)…'",
            "bpftrace",
            vec!["--unsafe".into(), "-e".into(), program],
        ));
    }
    let mut times = vec![Vec::new(); tools.len()];
    let mut rss = vec![Vec::new(); tools.len()];
    for _ in 0..rounds {
        for (i, (_, program, args)) in tools.iter().enumerate() {
            let (t, r) = one(program, args);
            times[i].push(t);
            if let Some(r) = r {
                rss[i].push(r as f64);
            }
        }
    }
    let mut out = String::from(
        "| tool | launch → first kill (median) | vs the seed's loader | min | max | peak RSS (median) |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let baseline = median(&times[0]);
    for (i, (name, _, _)) in tools.iter().enumerate() {
        let min = times[i].iter().copied().fold(f64::NAN, f64::min);
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {:.1} MiB |\n",
            stats::time(median(&times[i])),
            stats::ratio(median(&times[i]), baseline),
            stats::time(min),
            stats::time(stats::max(&times[i])),
            median(&rss[i]) / 1024.0
        ));
    }
    out.push_str(&format!("\n{}", idle(dir)));
    out
}

/// Context switches of a process's threads so far (each one a wake-up or a
/// preemption).
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The children of `pid` (reflex's guardian).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Wake-ups of reflex (every thread, and its guardian) over 10 s with
/// nothing to do, beside the seed's loader.
fn idle(dir: &Path) -> String {
    const SECS: u64 = 10;
    let me = std::process::id();
    let bench = std::env::current_exe().expect("the bench's own path");
    let mut out = format!(
        "Wake-ups while idle: context switches of every thread (and reflex's guardian) over \
         {SECS} s in which no watched call happens, after a second to settle.\n\n\
         | tool | wake-ups per second |\n| --- | ---: |\n"
    );
    let seed_loader = (
        "the seed's loader",
        bench.to_str().expect("a UTF-8 path").to_string(),
        vec!["--seed-loader".to_string(), me.to_string()],
    );
    let policy = thousand_rules(dir);
    let runs = [
        seed_loader,
        (
            "reflex run --ppid PID",
            tools::REFLEX.to_string(),
            vec!["run".into(), "--ppid".into(), me.to_string()],
        ),
        (
            "reflex run --ppid PID, 1,000 rules, watching the file",
            tools::REFLEX.to_string(),
            vec!["run".into(), "--ppid".into(), me.to_string(), policy],
        ),
    ];
    for (name, program, args) in runs {
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tool runs");
        std::thread::sleep(Duration::from_secs(2));
        let pids = |c: &std::process::Child| {
            let mut p = vec![c.id()];
            p.extend(children(c.id()));
            p
        };
        let before: u64 = pids(&child).iter().map(|&p| switches(p)).sum();
        std::thread::sleep(Duration::from_secs(SECS));
        let after: u64 = pids(&child).iter().map(|&p| switches(p)).sum();
        tools::stop_child(&mut child);
        out.push_str(&format!(
            "| {name} | {:.1} |\n",
            after.saturating_sub(before) as f64 / SECS as f64
        ));
    }
    out
}
