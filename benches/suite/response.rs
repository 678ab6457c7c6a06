//! Figure 1 — response: how fast, and how cleanly, a triggering process dies.
//!
//! A victim records the time, calls ptrace, then counts loop iterations in
//! shared memory until it dies. For each responder: trials in which the victim
//! ran no user-space iteration after the trigger, and the time from just
//! before the syscall until the victim starts to exit (recorded in the kernel
//! by a sched_process_exit program, so the benchmark's own wake-up is not
//! counted).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::procs::{self, End, Load};
use crate::stats::{self, max, median, percentile};
use crate::tools::{self, Tool};

struct Tally {
    trials: usize,
    clean: usize,
    missed: usize,
    latencies: Vec<f64>,
}

fn trials(n: usize, shm: &'static procs::Shared, clock: &tools::DeathClock, t: &mut Tally) {
    for _ in 0..n {
        let pid = procs::victim(shm);
        let (end, seen) = procs::wait_end(pid, Duration::from_secs(2));
        t.trials += 1;
        match end {
            End::Killed(9) => {
                let t0 = shm.t0.load(Ordering::SeqCst);
                let died = clock.death(pid).unwrap_or(seen);
                t.latencies.push(died.saturating_sub(t0) as f64);
                if shm.iterations.load(Ordering::SeqCst) == 0 {
                    t.clean += 1;
                }
            }
            _ => t.missed += 1,
        }
    }
}

pub fn run(n: usize, blocks: usize, dir: &Path, with_bpftrace: bool) -> String {
    let me = std::process::id().to_string();
    let shm = procs::shared();
    let clock = tools::DeathClock::start();
    let mut modes = vec![
        (
            "reflex (signal from the kernel)",
            Tool::reflex(&["--ppid", &me]),
        ),
        (
            "reflex --userspace-kill (kernel reports, user space calls kill())",
            Tool::reflex(&["--ppid", &me, "--userspace-kill"]),
        ),
    ];
    if with_bpftrace {
        modes.push((
            "bpftrace `signal(9)`",
            Tool::bpftrace_seed(std::process::id()),
        ));
    }
    let mut out = String::from(
        "| responder | load | trials | victim ran 0 iterations after the trigger | p50 | p99 | max | missed |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (load_name, saturate) in [("idle", false), ("all cores busy", true)] {
        let _load = saturate.then(Load::saturate);
        let mut tallies: Vec<Tally> = modes
            .iter()
            .map(|_| Tally {
                trials: 0,
                clean: 0,
                missed: 0,
                latencies: Vec::new(),
            })
            .collect();
        // Blocks of trials, the responders taking turns (A B C A B C …).
        for _ in 0..blocks {
            for (i, (_, tool)) in modes.iter().enumerate() {
                let running = tools::start(tool, dir);
                trials(n / blocks, shm, &clock, &mut tallies[i]);
                running.stop();
            }
        }
        for ((name, _), t) in modes.iter().zip(&tallies) {
            out.push_str(&format!(
                "| {name} | {load_name} | {} | {} ({:.1}%) | {} | {} | {} | {} |\n",
                t.trials,
                t.clean,
                100.0 * t.clean as f64 / t.trials.max(1) as f64,
                stats::time(median(&t.latencies)),
                stats::time(percentile(&t.latencies, 99.0)),
                stats::time(max(&t.latencies)),
                t.missed
            ));
        }
    }
    out
}
