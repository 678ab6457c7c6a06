//! Figure 3 — the event stream: an audit rule on a hot syscall; events/s
//! delivered to user space, events dropped (counted by the kernel), CPU used
//! by reflex; delivered + dropped must equal generated.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::procs;
use crate::tools::{self, Tool};

pub fn run(secs: f64, dir: &Path) -> String {
    let policy = dir.join("stream.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - {name: audit-getppid, syscall: getppid, action: audit}\n",
    )
    .unwrap();
    let me = std::process::id().to_string();
    let shm = procs::shared();
    let mut out = String::from(
        "| ring buffer | output | generated | delivered | dropped | delivered + dropped = generated | delivered/s | reflex CPU |\n\
         | ---: | --- | ---: | ---: | ---: | :---: | ---: | ---: |\n",
    );
    for (kib, json) in [("1024", true), ("4096", true), ("1024", false)] {
        let mut args = vec![
            policy.to_str().unwrap(),
            "--ppid",
            &me,
            "--ring-buffer",
            kib,
        ];
        if json {
            args.push("--json");
        }
        let running = tools::start(&Tool::reflex(&args), dir);
        let pid = running.pid().unwrap();
        let cpu0 = tools::cpu_seconds(pid).unwrap_or(0.0);
        let t0 = procs::now_ns();
        let generator = procs::generator(shm, secs);
        procs::wait_end(generator, Duration::from_secs_f64(secs + 30.0));
        std::thread::sleep(Duration::from_millis(300)); // let reflex drain
        let wall = (procs::now_ns() - t0) as f64 / 1e9;
        let cpu = tools::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
        let stderr = running.stop();
        let generated = shm.calls.load(Ordering::SeqCst);
        let matched = tools::summary(&stderr, "events").unwrap_or(0);
        let delivered = tools::summary(&stderr, "received").unwrap_or(0);
        let dropped = tools::summary(&stderr, "dropped").unwrap_or(0);
        out.push_str(&format!(
            "| {kib} KiB | {} | {generated} | {delivered} | {dropped} | {} | {:.0} | {:.0}% of a core |\n",
            if json { "JSON lines" } else { "table" },
            if delivered + dropped == generated && matched == generated {
                "yes".to_string()
            } else {
                format!("NO (kernel matched {matched})")
            },
            delivered as f64 / secs,
            100.0 * cpu / wall
        ));
    }
    out
}
