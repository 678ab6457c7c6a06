//! `reflex bench` (run by `./dev bench`): the figures behind reflex's claims,
//! each measured against a baseline in the same run, configurations taking
//! turns. Prints Markdown; writes it to bench-results/latest.md too.
//!
//! Needs root. Every kill is scoped to this process's own children.

mod cost;
mod procs;
mod response;
mod startup;
mod stats;
mod stream;
mod tools;

use std::time::Instant;

struct Args {
    trials: usize,
    rounds: usize,
    calls: u64,
    bpftrace: bool,
    /// Only these sections (1-4); all when empty.
    only: Vec<usize>,
    /// Section 2's reflex hooks (all that load here when empty).
    hooks: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        trials: 1000,
        rounds: 5,
        calls: 100_000,
        bpftrace: true,
        only: Vec::new(),
        hooks: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--trials" => a.trials = num("--trials"),
            "--rounds" => a.rounds = num("--rounds"),
            "--calls" => a.calls = num("--calls") as u64,
            "--quick" => {
                a.trials = 100;
                a.rounds = 1;
                a.calls = 20_000;
            }
            "--no-bpftrace" => a.bpftrace = false,
            "--only" => a.only.push(num("--only")),
            "--hooks" => {
                let list = it
                    .next()
                    .expect("--hooks needs a list: tracepoint,raw,fentry");
                a.hooks = list.split(',').map(str::to_string).collect();
            }
            "--bench" => {} // cargo bench passes this
            other => panic!(
                "unknown argument {other}: use --trials N, --rounds N, --calls N, --quick, --no-bpftrace, --only SECTION, --hooks LIST"
            ),
        }
    }
    a
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let bpftrace = std::process::Command::new("bpftrace")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "not installed".into());
    let date = chrono_free_date();
    format!(
        "{date}; {cores} cores ({cpu}); Linux {kernel}; {bpftrace}; reflex {}",
        env!("CARGO_PKG_VERSION")
    )
}

fn chrono_free_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("reflex bench loads BPF programs: run it as root (sudo ./dev bench)");
        std::process::exit(1);
    }
    // The start-up baseline: the seed's program under a minimal libbpf
    // loader (this binary, run again), until killed.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--seed-loader") {
        let ppid = argv.get(2).and_then(|p| p.parse().ok()).unwrap_or(0);
        let _seed = tools::load_seed(ppid);
        loop {
            std::thread::park();
        }
    }
    let a = args();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    let mut report = format!("Measured {}.\n\n", machine());

    let run = |n: usize| a.only.is_empty() || a.only.contains(&n);
    if run(1) {
        eprintln!(
            "bench: 1/4 response ({} trials per responder and load)…",
            a.trials
        );
        report.push_str(&format!(
            "### 1. Response: time from just before the triggering syscall until the victim is dead\n\n{}\n",
            response::run(a.trials, 4.min(a.trials), dir.path(), a.bpftrace)
        ));
    }
    if run(2) {
        eprintln!("bench: 2/4 cost ({} rounds)…", a.rounds);
        let cost = cost::run(a.rounds, a.calls, dir.path(), a.bpftrace, &a.hooks);
        report.push_str(&format!(
            "### 2. Cost per call: the watched syscall (ptrace) and an unrelated one (getppid)\n\n\
         Configurations take turns, {} rounds; each measurement is the best of 5 × {} calls. \
         \"added\" is the median, over rounds, of (configuration on − off again right after); \
         \"vs seed\" divides it by the seed program's.\n\n{}\n",
            a.rounds, a.calls, cost.table
        ));
    }
    if run(3) {
        eprintln!("bench: 3/4 event stream…");
        report.push_str(&format!(
            "### 3. Event stream: an audit rule on getppid, called as fast as one process can for 2 s\n\n{}\n",
            stream::run(2.0, dir.path())
        ));
    }
    if run(4) {
        eprintln!("bench: 4/4 start-up and footprint ({} rounds)…", a.rounds);
        report.push_str(&format!(
            "### 4. Start-up and footprint\n\n{}\n",
            startup::run(a.rounds, dir.path(), a.bpftrace)
        ));
    }
    report.push_str(&format!(
        "Whole suite: {:.0} s. Reproduce: `sudo ./dev bench` (or `cargo bench --features bench --bench suite -- --quick`).\n",
        started.elapsed().as_secs_f64()
    ));
    print!("{report}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("latest.md"), &report);
}
