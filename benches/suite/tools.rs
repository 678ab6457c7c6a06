//! The things being compared, started and stopped the same way: reflex (in
//! its modes), bpftrace's signal() one-liner, the seed's program, nothing.

use std::fs;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod seed_skel {
    include!(concat!(env!("OUT_DIR"), "/seed.skel.rs"));
}

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod clock_skel {
    include!(concat!(env!("OUT_DIR"), "/clock.skel.rs"));
}

pub const REFLEX: &str = env!("CARGO_BIN_EXE_reflex");

/// Records when processes start to exit (CLOCK_MONOTONIC, from the kernel).
pub struct DeathClock {
    skel: clock_skel::ClockSkel<'static>,
}

impl DeathClock {
    pub fn start() -> DeathClock {
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = clock_skel::ClockSkelBuilder::default()
            .open(storage)
            .expect("open clock");
        let mut skel = open.load().expect("load clock");
        skel.attach().expect("attach clock");
        DeathClock { skel }
    }

    /// An empty tp_btf/sys_enter program, attached until the box is dropped.
    fn empty_raw() -> Box<dyn std::any::Any> {
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = clock_skel::ClockSkelBuilder::default()
            .open(storage)
            .expect("open clock");
        open.progs.clock_exit.set_autoload(false);
        open.progs.empty_raw.set_autoload(true);
        let skel = open.load().expect("load empty raw");
        let link = skel.progs.empty_raw.attach().expect("attach empty raw");
        Box::new((skel, link))
    }

    /// When `pid` started to exit, if it has.
    pub fn death(&self, pid: i32) -> Option<u64> {
        use libbpf_rs::MapCore;
        self.skel
            .maps
            .deaths
            .lookup(&(pid as u32).to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
    }
}

/// A pid that is nobody's parent: rules scoped to it match nothing.
pub const NOBODY: u32 = 4_194_000;

#[derive(Debug, Clone)]
pub enum Tool {
    None,
    /// The tutorial's program, loaded by this process; SIGKILLs ptrace
    /// callers whose parent is `ppid`.
    Seed {
        ppid: u32,
    },
    /// `reflex run ARGS`.
    Reflex(Vec<String>),
    /// `bpftrace --unsafe -e PROGRAM`.
    Bpftrace(String),
    /// An empty tp_btf/sys_enter program.
    EmptyRaw,
}

impl Tool {
    pub fn reflex(args: &[&str]) -> Tool {
        Tool::Reflex(args.iter().map(|s| s.to_string()).collect())
    }

    /// bpftrace's answer to the seed's job, scoped to the children of `ppid`.
    pub fn bpftrace_seed(ppid: u32) -> Tool {
        Tool::Bpftrace(format!(
            "BEGIN {{ printf(\"ready\\n\"); }} \
             tracepoint:syscalls:sys_enter_ptrace /curtask->real_parent->tgid == {ppid}/ {{ signal(9); }}"
        ))
    }
}

/// After a kill request, how long a tool gets before SIGTERM, then SIGKILL
/// (bpftrace 0.17 sometimes ignores SIGINT).
const GRACE: Duration = Duration::from_secs(3);

/// Asks a child to stop (SIGINT), insisting if it does not.
pub fn stop_child(child: &mut Child) {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let _ = kill(pid, sig);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A started tool; stop it with [`Running::stop`].
pub struct Running {
    child: Option<Child>,
    log: PathBuf,
    seed: Option<Box<dyn std::any::Any>>,
}

fn wait_for(log: &Path, what: &str, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before '{what}':\n{text}"));
        }
        sleep(Duration::from_millis(5));
    }
    Err(format!("no '{what}' after 60 s"))
}

pub fn start(tool: &Tool, dir: &Path) -> Running {
    let log = dir.join(format!("tool-{}.log", std::process::id()));
    let _ = fs::remove_file(&log);
    match tool {
        Tool::None => Running {
            child: None,
            log,
            seed: None,
        },
        Tool::Seed { ppid } => Running {
            child: None,
            log,
            seed: Some(load_seed(*ppid)),
        },
        Tool::EmptyRaw => Running {
            child: None,
            log,
            seed: Some(DeathClock::empty_raw()),
        },
        Tool::Reflex(args) => {
            let mut child = Command::new(REFLEX)
                .arg("run")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .expect("reflex runs");
            wait_for(&log, "reflex: attached", &mut child)
                .unwrap_or_else(|e| panic!("reflex {args:?}: {e}"));
            Running {
                child: Some(child),
                log,
                seed: None,
            }
        }
        Tool::Bpftrace(program) => {
            let out = fs::File::create(&log).unwrap();
            let mut child = Command::new("bpftrace")
                .args(["--unsafe", "-e", program])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("bpftrace runs (apt-get install bpftrace)");
            wait_for(&log, "ready", &mut child).unwrap_or_else(|e| panic!("bpftrace: {e}"));
            Running {
                child: Some(child),
                log,
                seed: None,
            }
        }
    }
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGINT, wait, and what it printed on stderr.
    pub fn stop(mut self) -> String {
        self.seed.take();
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `reflex check` says fentry programs load here.
pub fn fentry_loads() -> bool {
    let out = std::process::Command::new(REFLEX)
        .arg("check")
        .output()
        .expect("reflex check");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("fentry programs") && l.split_whitespace().nth(2) == Some("ok"))
}

/// The seed's program, loaded and attached until the box is dropped.
pub fn load_seed(ppid: u32) -> Box<dyn std::any::Any> {
    let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = seed_skel::SeedSkelBuilder::default()
        .open(storage)
        .expect("open seed");
    open.maps.rodata_data.as_deref_mut().unwrap().target_ppid = ppid as i32;
    let mut skel = open.load().expect("load seed");
    skel.attach().expect("attach seed");
    Box::new(skel)
}

/// A value from a summary line `  name   N` on reflex's stderr.
pub fn summary(stderr: &str, name: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Peak resident memory of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}
