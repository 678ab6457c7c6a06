//! `reflex run`: compile, load, attach, stream events; reload on SIGHUP or
//! when a policy file changes; detach and summarise on SIGINT/SIGTERM.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libbpf_rs::RingBufferBuilder;

use super::watch::Watcher;
use crate::cli::RunArgs;
use crate::events::{Clock, Event};
use crate::features::{self, Features};
use crate::kernel::{EVENT_PERIOD, Kernel, Offer, Plan, RuleNames, Settings, Strategy, plan};
use crate::policy::check::Loaded;
use crate::policy::{Env, Mode};
use crate::rules::RuleSet;
use crate::sinks::{Json, Sink, Summary, Text};

/// Quiet time after a file change before reloading (editors write in steps).
const SETTLE: Duration = Duration::from_millis(150);

/// What `run` needs from the machine, checked before anything loads, each
/// failure with its fix.
fn preflight(features: &Features) -> Result<()> {
    if let Some(missing) = features.privileges().missing() {
        bail!(
            "reflex run needs privileges to load BPF programs: {missing}.\n  \
             Run it as root (sudo reflex run …), or grant CAP_BPF and CAP_PERFMON. \
             `reflex check` lists everything else this machine needs."
        );
    }
    if !features::has_btf() {
        bail!(
            "{} is missing: reflex needs kernel BTF (CONFIG_DEBUG_INFO_BTF=y) to relocate its \
             programs for this kernel",
            features::BTF_PATH
        );
    }
    let (tracefs, mounted) =
        features::tracefs(true).context("tracefs is needed to attach syscall tracepoints")?;
    if mounted {
        tracing::info!("mounted tracefs at {}", tracefs.display());
    }
    Ok(())
}

/// What this kernel offers for `set`.
fn offer(set: &RuleSet, features: &Features) -> Offer {
    let tracefs = features::tracefs(false).map(|(p, _)| p).ok();
    let mut offer = Offer {
        raw_refused: features
            .tp_btf()
            .refused()
            .map(|why| format!("tp_btf {why}")),
        // Parsing the kernel's BTF takes milliseconds: only when asked for.
        kfuncs: set.needs_kfuncs() && features.signal_task().yes(),
        ..Offer::default()
    };
    for name in set.syscall_names() {
        match tracefs
            .as_ref()
            .and_then(|t| features::syscall_tracepoint(t, name))
        {
            Some(n) => {
                offer.args.insert(name, n);
            }
            None => offer.without_tracepoint.push(name),
        }
    }
    offer
}

fn thread_check(set: &RuleSet, features: &Features) -> Result<()> {
    let wants_thread = set.rules.iter().any(|r| {
        matches!(
            r.verdict,
            crate::rules::Verdict::Signal {
                target: crate::policy::Target::Thread,
                ..
            }
        )
    });
    if wants_thread {
        if let features::Answer::No(why) = features.send_signal_thread() {
            bail!("a rule signals threads, which needs bpf_send_signal_thread: {why}");
        }
    }
    Ok(())
}

/// People-readable lines about what is in force.
fn describe(loaded: &Loaded, plan: &Plan, settings: &Settings, dry_run: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for r in &loaded.policy.rules {
        let mode = if dry_run || r.mode == Mode::Monitor {
            " (monitor: nothing is sent)"
        } else {
            ""
        };
        lines.push(format!(
            "reflex: rule '{}' ({}): on {}, {}{mode}",
            r.name,
            r.at,
            r.trigger.describe(),
            r.describe()
        ));
    }
    let p = &loaded.policy.protect;
    if !p.pids.is_empty() || p.tracks_processes() {
        lines.push(format!(
            "reflex: protected besides pid 1 and reflex: {} pids, {} executables, {} cgroups",
            p.pids.len(),
            p.executables.len(),
            p.cgroups.len()
        ));
    }
    lines.push(format!(
        "reflex: hooks: {} ({})",
        plan.strategy, plan.reason
    ));
    let whom = match settings.scope_ppid {
        0 => "every process on this machine".to_string(),
        ppid => format!("children of pid {ppid} only"),
    };
    lines.push(format!("reflex: scope: {whom}"));
    lines
}

pub fn run(args: &RunArgs, features: Arc<Features>) -> Result<()> {
    let env = Env::host();
    // Usage, then the policy, then the machine: each said before the next
    // is looked at, and the policy read once.
    args.usage_error()?;
    let loaded = args.load(&env)?;
    preflight(&features)?;
    let (loaded, set, degraded) = args.compile(loaded, &env, &features)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    for note in &degraded {
        eprintln!("reflex: DEGRADED: {note}");
    }
    if let Some(ppid) = args.ppid {
        if !std::path::Path::new(&format!("/proc/{ppid}")).exists() {
            tracing::warn!("no process has pid {ppid} now: the rules match nothing until one does");
        }
    }
    thread_check(&set, &features)?;
    let plan =
        plan::plan(&set, args.attach, &offer(&set, &features)).map_err(anyhow::Error::msg)?;
    let mut settings = args.settings();
    // The raw hook is loaded able to signal other tasks where it can be, so
    // that a reload adding such rules needs no other program.
    settings.kfuncs = plan.strategy == Strategy::Raw && features.signal_task().yes();

    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
        .context("installing signal handlers")?;
    let watcher = if args.policies.is_empty() {
        None
    } else {
        Some(Watcher::new(&args.policies).context("watching the policy files")?)
    };

    let mut storage = MaybeUninit::uninit();
    let mut kernel = Kernel::load(&mut storage, &settings, Arc::clone(&features))?;
    // Buffered, and flushed after each batch the ring buffer hands over.
    let out = || io::BufWriter::with_capacity(64 * 1024, io::stdout());
    let sink: Box<dyn Sink> = match args.json {
        true => Box::new(Json::new(out())),
        false => Box::new(Text::new(out())),
    };
    #[cfg(feature = "bench")]
    let sink: Box<dyn Sink> = match args.userspace_kill() {
        true => Box::new(crate::sinks::Responder::new(sink)),
        false => sink,
    };
    let sink = RefCell::new(sink);
    let clock = Clock::new();
    let names: RefCell<RuleNames> = RefCell::default();
    let received = Cell::new(0u64);
    let undecodable = Cell::new(0u64);
    let broken_pipe = Cell::new(false);

    let mut builder = RingBufferBuilder::new();
    builder
        .add(kernel.events_map(), |data: &[u8]| {
            match Event::decode(data, &clock, &names.borrow()) {
                Ok(event) => {
                    received.set(received.get() + 1);
                    if let Err(e) = sink.borrow_mut().event(&event) {
                        if e.kind() == io::ErrorKind::BrokenPipe {
                            broken_pipe.set(true);
                            return -1;
                        }
                        tracing::warn!("writing an event: {e}");
                    }
                }
                Err(e) => {
                    undecodable.set(undecodable.get() + 1);
                    tracing::warn!("{e}");
                }
            }
            0
        })
        .context("setting up the event ring buffer")?;
    let ring = builder
        .build()
        .context("setting up the event ring buffer")?;

    // The ring buffer is read before the rules are installed, so no event can
    // be missed; the banner is printed only once enforcement is on.
    kernel.install(&set, &plan)?;
    *names.borrow_mut() = kernel.names().clone();
    sink.borrow_mut().start()?;
    sink.borrow_mut().flush()?;
    for line in describe(&loaded, &plan, &settings, args.dry_run) {
        eprintln!("{line}");
    }
    eprintln!(
        "reflex: attached to {}. Ctrl-C to stop{}.",
        kernel.hooks().join(", "),
        if args.policies.is_empty() {
            ""
        } else {
            "; SIGHUP or a change to a policy file reloads"
        }
    );

    let served = serve(Serve {
        args,
        env: &env,
        features: &features,
        in_force: plan.strategy,
        kernel: &mut kernel,
        ring: &ring,
        clock: &clock,
        sink: &sink,
        names: &names,
        broken_pipe: &broken_pipe,
        stop: &stop,
        hup: &hup,
        watcher: watcher.as_ref(),
    });

    // However serving ended: stop deciding first (every kind of attachment
    // detached, and no program still running), then report what was
    // decided, then leave nothing paused, then the summary.
    let detached = kernel.detach();
    let _ = ring.consume();
    drop(ring);
    resume(&mut kernel, &clock, &sink, true);
    flush(&sink, &broken_pipe);
    let summary = Summary {
        kernel: kernel.stats().context("reading the kernel's counters")?,
        received: received.get(),
        undecodable: undecodable.get(),
        missed: kernel.missed(),
    };
    eprintln!(
        "reflex: detached after {} reloads.",
        served.as_ref().copied().unwrap_or(0)
    );
    eprintln!("{summary}");
    let _ = io::stdout().flush();
    served?;
    detached?;
    Ok(())
}

/// What the serving loop works with.
struct Serve<'a, 'k> {
    args: &'a RunArgs,
    env: &'a Env,
    features: &'a Features,
    in_force: Strategy,
    kernel: &'a mut Kernel<'k>,
    ring: &'a libbpf_rs::RingBuffer<'a>,
    clock: &'a Clock,
    sink: &'a RefCell<Box<dyn Sink>>,
    names: &'a RefCell<RuleNames>,
    broken_pipe: &'a Cell<bool>,
    stop: &'a AtomicBool,
    hup: &'a AtomicBool,
    watcher: Option<&'a Watcher>,
}

/// Reads events, resumes pauses that are due and reloads, until asked to
/// stop (or stdout goes away); the number of reloads.
fn serve(s: Serve<'_, '_>) -> Result<u64> {
    let mut changed_at: Option<Instant> = None;
    let mut reloads = 0u64;
    let mut missed = Misses::new(s.kernel.missed());
    while !s.stop.load(Ordering::Relaxed) && !s.broken_pipe.get() {
        // Woken by the kernel when enough events wait, else on the period;
        // either way, take everything there is.
        if let Err(e) = read_events(s.ring, EVENT_PERIOD) {
            if e.kind() != io::ErrorKind::Interrupted && !s.broken_pipe.get() {
                return Err(e).context("reading events");
            }
        }
        flush(s.sink, s.broken_pipe);
        resume(s.kernel, s.clock, s.sink, false);
        missed.check(s.kernel);
        if s.watcher.is_some_and(Watcher::changed) {
            changed_at = Some(Instant::now());
        }
        let settled = changed_at.is_some_and(|t| t.elapsed() >= SETTLE);
        if s.hup.swap(false, Ordering::Relaxed) || settled {
            changed_at = None;
            match reload(s.args, s.env, s.features, s.in_force, s.kernel) {
                Ok(text) => {
                    reloads += 1;
                    *s.names.borrow_mut() = s.kernel.names().clone();
                    eprintln!("{text}");
                }
                Err(e) => {
                    eprintln!("reflex: reload refused; the rules in force stay in force:\n{e:#}")
                }
            }
        }
    }
    Ok(reloads)
}

/// Says, while it runs, when the kernel skipped reflex's programs (see
/// [`Kernel::missed`]): at most once a second, with how many since.
struct Misses {
    seen: u64,
    checked: Instant,
}

impl Misses {
    fn new(seen: u64) -> Misses {
        Misses {
            seen,
            checked: Instant::now(),
        }
    }

    fn check(&mut self, kernel: &Kernel) {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.checked = Instant::now();
        let now = kernel.missed();
        if now > self.seen {
            tracing::warn!(
                "the kernel did not run reflex's program for {} hook hits since the last \
                 report: another run of it was in progress on the same CPU (on kernels that \
                 preempt programs on syscall hooks, such as Debian's 7.3); reflex did not \
                 see those calls",
                now - self.seen
            );
            self.seen = now;
        }
    }
}

/// Records read per turn of the loop. `consume` alone reads for as long as
/// records keep coming: a producer as fast as the reader (seen in emulated
/// VMs) would hold off reloads, resumes and Ctrl-C.
const BATCH: usize = 16_384;

/// Waits up to `timeout` for records, then reads at most [`BATCH`] of them.
fn read_events(ring: &libbpf_rs::RingBuffer, timeout: Duration) -> io::Result<()> {
    let mut ready = libc::epoll_event { events: 0, u64: 0 };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the ring buffer's own epoll fd, and room for one event.
    if unsafe { libc::epoll_wait(ring.epoll_fd(), &mut ready, 1, ms) } < 0 {
        return Err(io::Error::last_os_error());
    }
    match ring.consume_raw_n(BATCH) {
        n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
        _ => Ok(()),
    }
}

/// Sends the SIGCONT of every pause that is due, or of all of them.
fn resume(kernel: &mut Kernel, clock: &Clock, sink: &RefCell<Box<dyn Sink>>, all: bool) {
    let until = if all { u64::MAX } else { clock.boot_now() };
    for (pid, rule) in kernel.take_due_pauses(until) {
        let sent = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        if sent.is_ok() {
            let _ = sink.borrow_mut().event(&Event::resumed(pid, &rule));
        }
    }
}

fn flush(sink: &RefCell<Box<dyn Sink>>, broken_pipe: &Cell<bool>) {
    if let Err(e) = sink.borrow_mut().flush() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            broken_pipe.set(true);
        } else {
            tracing::warn!("writing events: {e}");
        }
    }
}

/// Reads, checks and installs the policies again.
fn reload(
    args: &RunArgs,
    env: &Env,
    features: &Features,
    in_force: Strategy,
    kernel: &mut Kernel,
) -> Result<String> {
    let (loaded, set, degraded) = args.prepare(env, features)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    for note in &degraded {
        eprintln!("reflex: DEGRADED: {note}");
    }
    thread_check(&set, features)?;
    let plan = plan::replan(&set, in_force, &offer(&set, features)).map_err(anyhow::Error::msg)?;
    kernel.install(&set, &plan)?;
    Ok(format!(
        "reflex: reloaded {} rules; hooks: {} ({}): {}",
        set.rules.len(),
        plan.strategy,
        plan.reason,
        kernel.hooks().join(", ")
    ))
}
