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

pub fn run(rounds: usize, _dir: &Path, with_bpftrace: bool) -> String {
    let me = std::process::id();
    let mut tools: Vec<(&str, &str, Vec<String>)> = vec![(
        "reflex run --ppid PID",
        tools::REFLEX,
        vec!["run".into(), "--ppid".into(), me.to_string()],
    )];
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
        "| tool | launch → first kill (median) | min | max | peak RSS (median) |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for (i, (name, _, _)) in tools.iter().enumerate() {
        let min = times[i].iter().copied().fold(f64::NAN, f64::min);
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {:.1} MiB |\n",
            stats::time(median(&times[i])),
            stats::time(min),
            stats::time(stats::max(&times[i])),
            median(&rss[i]) / 1024.0
        ));
    }
    out
}
