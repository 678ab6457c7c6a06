//! `reflex run`: compile, load, attach, stream events; reload on SIGHUP or
//! when a policy file changes; detach and summarise on SIGINT/SIGTERM.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use libbpf_rs::RingBufferBuilder;

use super::guardian::Guardian;
use super::wakeups::{Source, Wakeups};
use super::watch::Watcher;
use crate::cli::RunArgs;
use crate::events::{Clock, Event};
use crate::features::{self, Features};
use crate::kernel::{EVENT_PERIOD, Kernel, Offer, Plan, RuleNames, Settings, Strategy, plan};
use crate::policy::check::Loaded;
use crate::policy::{Env, Mode};
use crate::rules::RuleSet;
use crate::say;
use crate::service::metrics::{Build, Metrics, Snapshot};
use crate::service::notify::Notifier;
use crate::sinks::{Detached, Fanout, FileOutput, Json, Sink, Summary, Text};
use crate::timings;

/// Exit codes (`--help` and the manual page say them: [`crate::cli::EXIT_STATUS`]).
pub const EXIT_STOPPED: u8 = 0;
pub const EXIT_COULD_NOT_START: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_LOST: u8 = 3;

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Enforcement was lost while running.
#[derive(Debug, thiserror::Error)]
#[error("enforcement was lost while running: {0:#}")]
pub struct Lost(anyhow::Error);

/// The exit code for an error `run` returned.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        EXIT_USAGE
    } else if e.downcast_ref::<Lost>().is_some() {
        EXIT_LOST
    } else {
        EXIT_COULD_NOT_START
    }
}

/// What the service side knows and publishes: systemd's notifications and
/// the metrics endpoint.
struct Service {
    notifier: Notifier,
    metrics: Option<Metrics>,
    ready: bool,
    reloads_ok: u64,
    reloads_refused: u64,
    last_reload: Option<std::time::SystemTime>,
    rules: u64,
    degraded: Vec<(String, String)>,
    build: Build,
}

impl Service {
    /// In force: `rules` rules, `degraded` hook rules running as something less.
    fn in_force(&mut self, rules: usize, degraded: &[crate::policy::degrade::Degraded]) {
        self.last_reload = Some(std::time::SystemTime::now());
        self.rules = rules as u64;
        self.degraded = degraded
            .iter()
            .map(|d| (d.rule.clone(), d.instead.clone()))
            .collect();
    }

    fn status(&self) -> String {
        format!(
            "{} rules in force ({} degraded); {} reloads, {} refused",
            self.rules,
            self.degraded.len(),
            self.reloads_ok,
            self.reloads_refused
        )
    }

    /// Publishes what the loop knows to the metrics endpoint.
    fn publish(&self, kernel: &Kernel, received: u64, sink: &Fanout) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let stats = kernel.stats().unwrap_or_default();
        metrics.publish(Snapshot {
            ready: self.ready,
            decisions: kernel
                .decisions()
                .into_iter()
                .map(|((rule, action), n)| (rule, crate::events::action_name(action), n))
                .collect(),
            events_read: received,
            events_dropped: stats.dropped,
            undelivered: sink.undelivered_by_sink(),
            missed: kernel.missed_by_program().into_iter().collect(),
            reloads_ok: self.reloads_ok,
            reloads_refused: self.reloads_refused,
            last_reload: self.last_reload,
            rules: self.rules,
            degraded: self.degraded.clone(),
            disarmed: kernel.disarmed(),
            stopped: kernel.stopped(),
            build: self.build.clone(),
        });
    }
}

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

/// The hooks for `set`, chosen as `choice` says with what this kernel
/// offers. Whether the raw hook loads is asked only when the answer could
/// be the raw hook (the probe parses the kernel's BTF: milliseconds, and
/// seconds under emulation): a plan that, assuming it does, picks
/// tracepoints picks them whatever the answer.
fn hooks(set: &RuleSet, features: &Features, choice: plan::Choice) -> Result<Plan> {
    let mut offer = offer(set, features);
    if matches!(
        choice,
        plan::Choice::Auto | plan::Choice::Only(Strategy::Fentry)
    ) {
        fentry_offer(set, features, &mut offer, true);
        crate::timings::mark("fentry asked");
    }
    if let Ok(assumed) = plan::plan(set, choice, &offer) {
        if assumed.strategy == Strategy::Tracepoint {
            return Ok(assumed);
        }
    }
    offer.raw_refused = raw_refused(features);
    plan::plan(set, choice, &offer).map_err(anyhow::Error::msg)
}

/// Whether fentry can watch `set`'s syscalls: their functions in the
/// kernel's BTF, and (`ask_load`) whether a program loads on one. A reload
/// under fentry asks only for the functions: start-up found that it loads.
fn fentry_offer(set: &RuleSet, features: &Features, offer: &mut Offer, ask_load: bool) {
    let names = set.syscall_names();
    if names.is_empty() {
        return;
    }
    let template = crate::kernel::FENTRY_TEMPLATE_SYSCALL;
    let mut wanted = names.clone();
    wanted.push(template);
    let found = features
        .kernel_btf()
        .and_then(|k| features::btf::syscall_functions(&k, &wanted));
    match found {
        Ok(found) => {
            for name in wanted {
                if let Some(f) = found.get(name) {
                    offer.functions.insert(name, *f);
                }
            }
            let first = names.iter().find_map(|n| offer.functions.get(n));
            offer.fentry_refused = match first {
                Some(&f) if ask_load => features::fentry_loads(f).err(),
                _ => None,
            };
        }
        Err(e) => offer.fentry_refused = Some(format!("reading the kernel's BTF: {e}")),
    }
}

/// Why the raw hook cannot load here, if it cannot (asks the probe).
fn raw_refused(features: &Features) -> Option<String> {
    features
        .tp_btf()
        .refused()
        .map(|why| format!("tp_btf {why}"))
}

/// What this kernel offers for `set`, the raw hook assumed to load.
fn offer(set: &RuleSet, features: &Features) -> Offer {
    let tracefs = features::tracefs(false).map(|(p, _)| p).ok();
    let mut offer = Offer {
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

/// Says when rules may stop processes that reflex could not resume: the
/// SIGCONT comes from user space, and reaches other users' processes only
/// with CAP_KILL (root in a container whose capabilities were dropped lacks
/// it; so does its guardian).
fn resume_check(set: &RuleSet, features: &Features) {
    let stops = set.uses().features & crate::abi::types::reflex_use::REFLEX_USE_STOP.0 != 0;
    if stops && !features.privileges().cap_kill {
        say!(
            "reflex: WARNING: rules stop processes (a pause or a stopping signal), but reflex \
             lacks CAP_KILL: a stopped process of another user could not be resumed, and would \
             stay stopped. Grant CAP_KILL (in a container: --cap-add=KILL)."
        );
    }
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
    let whom = match (settings.scope_ppid, settings.scope_tree) {
        (0, 0) => "every process on this machine".to_string(),
        (0, tree) => format!("descendants of pid {tree} only (up to 16 generations)"),
        (ppid, _) => format!("children of pid {ppid} only"),
    };
    lines.push(format!("reflex: scope: {whom}"));
    lines
}

/// Signals that stop reflex cleanly: every one whose default action ends a
/// process, but SIGHUP (reload), SIGUSR1 (see below), and those no process
/// can handle (SIGKILL, SIGSTOP) or should (the faults a crash raises:
/// SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP). For those the kernel
/// detaches the programs and the guardian resumes what reflex stopped.
fn stopping_signals() -> Vec<i32> {
    use libc::*;
    let mut sigs = vec![
        SIGINT, SIGTERM, SIGQUIT, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGPWR,
        SIGSTKFLT, SIGIO, SIGSYS,
    ];
    // Real-time signals end a process too (glibc keeps the first two).
    sigs.extend(SIGRTMIN() + 2..=SIGRTMAX());
    sigs
}

/// What arrived by signal since the loop last looked.
struct Signals {
    /// The signal that asks reflex to stop (0: none yet).
    stop: Arc<AtomicUsize>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
    tstp: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Signals> {
        let s = Signals {
            stop: Arc::new(AtomicUsize::new(0)),
            hup: Arc::new(AtomicBool::new(false)),
            usr1: Arc::new(AtomicBool::new(false)),
            tstp: Arc::new(AtomicBool::new(false)),
        };
        let context = "installing signal handlers";
        for sig in stopping_signals() {
            signal_hook::flag::register_usize(sig, Arc::clone(&s.stop), sig as usize)
                .context(context)?;
        }
        signal_hook::flag::register(libc::SIGHUP, Arc::clone(&s.hup)).context(context)?;
        signal_hook::flag::register(libc::SIGUSR1, Arc::clone(&s.usr1)).context(context)?;
        // Ctrl-Z would freeze the loop that resumes pauses: not obeyed.
        for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            signal_hook::flag::register(sig, Arc::clone(&s.tstp)).context(context)?;
        }
        Ok(s)
    }

    /// Every signal [`Signals::install`] handles.
    fn handled() -> Vec<i32> {
        let mut sigs = stopping_signals();
        sigs.extend([
            libc::SIGHUP,
            libc::SIGUSR1,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ]);
        sigs
    }

    fn stop(&self) -> Option<i32> {
        match self.stop.load(Ordering::Relaxed) {
            0 => None,
            sig => Some(sig as i32),
        }
    }
}

/// A warning said at most once per [`Warnings::EVERY`] for its kind, with
/// how many like it were held back since.
#[derive(Default)]
struct Warnings(std::collections::HashMap<&'static str, (Instant, u64)>);

impl Warnings {
    const EVERY: Duration = Duration::from_secs(10);

    fn warn(&mut self, kind: &'static str, text: impl FnOnce() -> String) {
        match self.0.get_mut(kind) {
            Some((said, held)) if said.elapsed() < Self::EVERY => *held += 1,
            Some((said, held)) => {
                let more = std::mem::take(held);
                *said = Instant::now();
                tracing::warn!(
                    "{} ({more} more like it in the last {:?})",
                    text(),
                    Self::EVERY
                );
            }
            None => {
                self.0.insert(kind, (Instant::now(), 0));
                tracing::warn!("{}", text());
            }
        }
    }
}

pub fn run(args: &RunArgs, features: Arc<Features>) -> Result<()> {
    if args.timings {
        timings::enable();
    }
    timings::mark("arguments");
    let env = Env::host_at(args.host_root.as_deref()).map_err(|e| {
        anyhow::Error::new(Usage(format!(
            "--host-root {}: {e}",
            args.host_root.clone().unwrap_or_default().display()
        )))
    })?;
    if let Some(view) = env.host.view() {
        say!("reflex: paths, users and groups are resolved in {view}");
    }
    // Usage, then the policy, then the machine: each said before the next
    // is looked at, and the policy read once.
    args.usage_error()
        .map_err(|d| anyhow::Error::new(Usage(d.to_string())))?;
    let loaded = args.load(&env)?;
    timings::mark("policy read");
    preflight(&features)?;
    timings::mark("preflight");
    let (loaded, set, degraded) = args.compile(loaded, &env, &features)?;
    timings::mark("policy compiled");
    for w in &loaded.warnings {
        say!("{w}");
    }
    for note in &degraded {
        say!("reflex: DEGRADED: {}", crate::escape::escape(&note.note));
    }
    if let Some(ppid) = args.ppid {
        if !std::path::Path::new(&format!("/proc/{ppid}")).exists() {
            tracing::warn!("no process has pid {ppid} now: the rules match nothing until one does");
        }
    }
    thread_check(&set, &features)?;
    resume_check(&set, &features);
    let plan = hooks(&set, &features, args.attach)?;
    let mut settings = args.settings();
    // The raw hook is loaded able to signal other tasks where it can be, so
    // that a reload adding such rules needs no other program.
    settings.kfuncs = plan.strategy == Strategy::Raw && features.signal_task().yes();
    timings::mark("hooks chosen");

    // Outputs and the metrics endpoint before anything loads: a file that
    // cannot be opened or an address in use is a reason not to start.
    let mut sinks: Vec<(&'static str, Box<dyn Sink>)> = Vec::new();
    if !args.quiet {
        // Events are formatted here and written by a thread of their own: a
        // stdout nobody reads never holds the loop that enforces.
        let out = Detached::new("stdout", Box::new(io::stdout()));
        let stdout: Box<dyn Sink> = match args.json {
            true => Box::new(Json::new(out)),
            false => Box::new(Text::new(out)),
        };
        #[cfg(feature = "bench")]
        let stdout: Box<dyn Sink> = match args.userspace_kill() {
            true => Box::new(crate::sinks::Responder::new(stdout)),
            false => stdout,
        };
        sinks.push(("stdout", stdout));
    }
    if let Some(path) = &args.output {
        let file = FileOutput::create(path)
            .with_context(|| format!("--output {}: cannot open it to append", path.display()))?;
        sinks.push(("file", Box::new(Json::new(file))));
    }
    let metrics = match &args.metrics {
        Some(address) => Some(Metrics::serve(address).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let mut service = Service {
        notifier: Notifier::from_env(),
        metrics,
        ready: false,
        reloads_ok: 0,
        reloads_refused: 0,
        last_reload: None,
        rules: 0,
        degraded: Vec::new(),
        build: Build {
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("REFLEX_COMMIT").into(),
            libbpf: crate::cli::libbpf_version(),
            kernel: features::kernel_release(),
            hooks: plan.strategy.to_string(),
        },
    };

    let signals = Signals::install()?;
    // Every signal handled also wakes the loop.
    let wakeups = Wakeups::new(&Signals::handled()).context("setting up the serving loop")?;
    let mut watcher = if args.policies.is_empty() {
        None
    } else {
        Some(Watcher::new(&args.policies).context("watching the policy files")?)
    };
    // Started before anything loads: the programs know its pid.
    let mut guardian = match Guardian::spawn() {
        Ok(g) => Some(g),
        Err(e) => {
            tracing::warn!(
                "no guardian ({e}): if reflex is killed with SIGKILL or crashes, processes it \
                 stopped stay stopped until someone sends them SIGCONT"
            );
            None
        }
    };
    settings.helper_tgid = guardian.as_ref().map_or(0, Guardian::pid);
    timings::mark("outputs, signals, guardian");

    let mut storage = MaybeUninit::uninit();
    let mut kernel = Kernel::load(
        &mut storage,
        &settings,
        Arc::clone(&features),
        plan.strategy,
        set.uses(),
        Some(&crate::kernel::entry_stubs(&set, &plan)),
    )?;
    if let Some(g) = &guardian {
        if let Err(e) = g.keep(kernel.paused_map()) {
            tracing::warn!("the guardian could not be given the list of stopped processes: {e}");
        }
    }
    let sink = RefCell::new(Fanout(sinks));
    let clock = Clock::new();
    let names: RefCell<RuleNames> = RefCell::default();
    let received = Cell::new(0u64);
    let undecodable = Cell::new(0u64);

    let mut builder = RingBufferBuilder::new();
    builder
        .add(kernel.events_map(), |data: &[u8]| {
            match Event::decode(data, &clock, &names.borrow()) {
                Ok(event) => {
                    received.set(received.get() + 1);
                    // Formatting only: the writing is the sink's thread's.
                    let _ = sink.borrow_mut().event(&event);
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
    timings::mark("ring buffer");

    // The ring buffer is read before the rules are installed, so no event can
    // be missed; the banner is printed only once enforcement is on.
    kernel.install(&set, &plan)?;
    timings::mark("rules written, attached");
    *names.borrow_mut() = kernel.names().clone();
    let _ = sink.borrow_mut().start();
    let _ = sink.borrow_mut().flush();
    for line in describe(&loaded, &plan, &settings, args.dry_run) {
        say!("{line}");
    }
    if let Some(m) = &service.metrics {
        say!(
            "reflex: metrics at http://{}/metrics, readiness at /ready",
            m.address()
        );
    }
    if let Some(path) = &args.output {
        say!(
            "reflex: events also go to {} (JSON lines; SIGUSR1 reopens it)",
            path.display()
        );
    }
    let hooks = kernel.hooks();
    say!(
        "reflex: attached to {}. Ctrl-C to stop{}.",
        if hooks.is_empty() {
            "nothing (no rules in force)".to_string()
        } else {
            hooks.join(", ")
        },
        if args.policies.is_empty() {
            ""
        } else {
            "; SIGHUP or a change to a policy file reloads"
        }
    );
    service.in_force(set.rules.len(), &degraded);
    service.ready = true;
    service.publish(&kernel, received.get(), &sink.borrow());
    service.notifier.ready(&service.status());
    if let Some(text) = timings::report("start-up") {
        say!("{text}");
    }

    // SAFETY: the ring buffer's own epoll descriptor, open while `ring` is.
    let ring_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ring.epoll_fd()) };
    wakeups.add(ring_fd, Source::Events)?;
    if let Some(w) = &watcher {
        wakeups.add(w.fd(), Source::Policies)?;
    }
    if let Some(m) = &service.metrics {
        wakeups.add(m.wanted(), Source::Metrics)?;
    }
    if let Some(g) = &guardian {
        wakeups.add(g.fd(), Source::Guardian)?;
    }

    batch_scheduling();
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
        signals: &signals,
        watcher: watcher.as_mut(),
        guardian: guardian.as_mut(),
        wakeups: &wakeups,
        service: &mut service,
        received: &received,
    });

    // However serving ended: stop deciding first (every kind of attachment
    // detached, and no program still running), then report what was
    // decided, then leave nothing stopped, then the summary.
    service.notifier.stopping();
    if let Some(m) = &service.metrics {
        m.unready();
    }
    let detached = kernel.detach();
    let _ = ring.consume();
    drop(ring);
    let _ = resume(&mut kernel, &clock, &sink, true);
    if let Some(g) = guardian.take() {
        g.release();
    }
    // Events still queued get a moment to be written; what is left then is
    // undelivered.
    let _ = sink.borrow_mut().flush();
    let _ = sink.borrow_mut().finish(Duration::from_secs(1));
    // A write that failed since the last look is said now, not never.
    if let Some((error, _)) = sink.borrow().take_error() {
        say!("reflex: events: {error}: what could not be written is counted as undelivered");
    }
    let summary = Summary {
        kernel: kernel.stats().context("reading the kernel's counters")?,
        received: received.get(),
        undecodable: undecodable.get(),
        missed: kernel.missed(),
        undelivered: sink.borrow().undelivered(),
    };
    match &served {
        Ok(s) => say!("reflex: detached after {} reloads ({}).", s.reloads, s.why),
        Err(_) => say!("reflex: detached."),
    }
    say!("{summary}");
    served.map_err(|e| anyhow::Error::new(Lost(e)))?;
    detached.map_err(|e| anyhow::Error::new(Lost(e.into())))?;
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
    sink: &'a RefCell<Fanout>,
    names: &'a RefCell<RuleNames>,
    signals: &'a Signals,
    watcher: Option<&'a mut Watcher>,
    guardian: Option<&'a mut Guardian>,
    wakeups: &'a Wakeups,
    service: &'a mut Service,
    received: &'a Cell<u64>,
}

/// Makes the serving loop's thread a batch task. The kernel wakes it for the
/// first event into an empty ring buffer, which is often a kill's: a batch
/// task does not preempt the running task when it wakes (on a busy CPU, the
/// process on its way out), and gets its share of the CPU as before.
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: this thread, a valid parameter; no privileges needed.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!(
            "SCHED_BATCH refused ({}): the reader may preempt a signalled process when it wakes",
            io::Error::last_os_error()
        );
    }
}

/// How serving ended.
struct Served {
    reloads: u64,
    /// Why, in words: the signal that asked reflex to stop.
    why: String,
}

fn signal_name(sig: i32) -> String {
    crate::signal::Signal::from_number(sig).map_or_else(|| format!("signal {sig}"), |s| s.name())
}

/// Reads events, resumes pauses that are due and reloads, until a signal
/// asks reflex to stop. Sleeps while nothing happens (see [`Wakeups`]).
fn serve(mut s: Serve<'_, '_>) -> Result<Served> {
    let mut changed_at: Option<Instant> = None;
    let mut reloads = 0u64;
    let mut missed = Misses::new(s.kernel.missed());
    let mut warnings = Warnings::default();
    let mut disarmed: BTreeSet<String> = BTreeSet::new();
    // Records read by the last turn, and the next pause due (boot time).
    let mut read = 0usize;
    let mut next_pause: Option<u64> = None;
    // Checks made after events (missed runs, rules disarmed), at most once
    // a second: when the next one is due.
    let mut checked = Instant::now();
    let mut check_due: Option<Instant> = None;
    loop {
        if let Some(sig) = s.signals.stop() {
            return Ok(Served {
                reloads,
                why: format!("stopped by {}", signal_name(sig)),
            });
        }
        // Only what is due at a known time sets a timeout: nothing, when
        // nothing happens.
        let now = Instant::now();
        let timeout = [
            // A full batch: more are waiting. Some records: more may wait
            // below the ring buffer's wake-up threshold (see `wake_at` in
            // act.h), which wakes the reader only for the first record into
            // an empty buffer or once an eighth of it is full.
            match read {
                0 => None,
                n if n >= BATCH => Some(Duration::ZERO),
                _ => Some(EVENT_PERIOD),
            },
            next_pause.map(|at| Duration::from_nanos(at.saturating_sub(s.clock.boot_now()))),
            changed_at.map(|t| SETTLE.saturating_sub(t.elapsed())),
            check_due.map(|t| t.saturating_duration_since(now)),
            s.service.notifier.tick(),
            // A policy folder that went away is looked for again besides
            // its parent's events (it may come back between the two).
            s.watcher
                .as_ref()
                .filter(|w| w.missing())
                .map(|_| Duration::from_secs(1)),
        ]
        .into_iter()
        .flatten()
        .min();
        let woken = s.wakeups.wait(timeout).context("waiting for events")?;
        read = match s.ring.consume_raw_n(BATCH) {
            n if n < 0 => {
                let e = io::Error::from_raw_os_error(-n);
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e).context("reading events");
                }
                0
            }
            n => n as usize,
        };
        next_pause = resume(s.kernel, s.clock, s.sink, false);
        // Events read and resumptions, out to the sinks before sleeping.
        let _ = s.sink.borrow_mut().flush();
        if let Some((error, _)) = s.sink.borrow().take_error() {
            warnings.warn("events", || {
                format!(
                    "{error}: events that cannot be written there are counted as \
                         undelivered (the summary says how many); enforcement goes on"
                )
            });
        }
        if read > 0 {
            check_due.get_or_insert(checked + Duration::from_secs(1));
        }
        if check_due.is_some_and(|t| t <= Instant::now()) {
            check_due = None;
            checked = Instant::now();
            missed.check(s.kernel);
            for rule in s.kernel.disarmed() {
                if disarmed.insert(rule.clone()) {
                    tracing::warn!(
                        "rule '{}' is disarmed: its circuit breaker opened (it acted on more \
                         distinct targets than its `disarm` allows); it audits instead of acting \
                         until the next reload",
                        crate::escape::escape(&rule)
                    );
                }
            }
        }
        if woken.by(Source::Metrics) {
            s.service
                .publish(s.kernel, s.received.get(), &s.sink.borrow());
        }
        if woken.by(Source::Guardian) && s.guardian.as_mut().is_some_and(|g| !g.alive()) {
            if let Some(g) = s.guardian.take() {
                s.wakeups.remove(g.fd());
            }
            tracing::warn!(
                "reflex's guardian has exited: if reflex is now killed with SIGKILL or crashes, \
                 processes it stopped stay stopped"
            );
        }
        if s.signals.tstp.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "reflex does not suspend (Ctrl-Z): it resumes pauses and reports as it runs; \
                 Ctrl-C stops it"
            );
        }
        if s.signals.usr1.swap(false, Ordering::Relaxed) {
            match s.sink.borrow_mut().reopen() {
                Some(Ok(path)) => tracing::info!("SIGUSR1: reopened {path}"),
                Some(Err(e)) => tracing::warn!(
                    "SIGUSR1: could not reopen the output file ({e}): events go on to the one \
                     open"
                ),
                None => tracing::info!("SIGUSR1: no --output file to reopen"),
            }
        }
        if s.watcher.as_mut().is_some_and(|w| w.changed()) {
            changed_at = Some(Instant::now());
        }
        let settled = changed_at.is_some_and(|t| t.elapsed() >= SETTLE);
        if s.signals.hup.swap(false, Ordering::Relaxed) || settled {
            changed_at = None;
            timings::begin(Instant::now());
            s.service.notifier.reloading();
            match reload(s.args, s.env, s.features, s.in_force, s.kernel) {
                Ok((text, rules, degraded)) => {
                    reloads += 1;
                    s.service.reloads_ok += 1;
                    s.service.in_force(rules, &degraded);
                    *s.names.borrow_mut() = s.kernel.names().clone();
                    disarmed.clear();
                    say!("{text}");
                    if let Some(text) = timings::report("the reload") {
                        say!("{text}");
                    }
                }
                Err(e) => {
                    s.service.reloads_refused += 1;
                    say!("reflex: reload refused; the rules in force stay in force:\n{e:#}")
                }
            }
            s.service
                .publish(s.kernel, s.received.get(), &s.sink.borrow());
            s.service.notifier.ready(&s.service.status());
        }
    }
}

/// Says, while it runs, when the kernel skipped reflex's programs (see
/// [`Kernel::missed`]): at most once a second, with how many since.
struct Misses {
    seen: u64,
}

impl Misses {
    fn new(seen: u64) -> Misses {
        Misses { seen }
    }

    /// The loop calls this after events, at most once a second.
    fn check(&mut self, kernel: &Kernel) {
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

/// Sends the SIGCONT of every stop that is due, or of all of them; when
/// the next one is due (boot time).
fn resume(kernel: &mut Kernel, clock: &Clock, sink: &RefCell<Fanout>, all: bool) -> Option<u64> {
    let until = if all { u64::MAX } else { clock.boot_now() };
    let (due, next) = kernel.take_due_pauses(until);
    for (pid, rule) in due {
        let sent = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        match sent {
            Ok(()) => {
                let _ = sink.borrow_mut().event(&Event::resumed(pid, &rule));
            }
            // Gone: nothing left to resume.
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!(
                "could not resume pid {pid}, stopped by rule '{}': {e}{}; it stays stopped \
                 until someone sends it SIGCONT (`kill -CONT {pid}`)",
                crate::escape::escape(&rule),
                if e == nix::errno::Errno::EPERM {
                    " (reflex lacks CAP_KILL for its user)"
                } else {
                    ""
                }
            ),
        }
    }
    next
}

/// Reads, checks and installs the policies again.
fn reload(
    args: &RunArgs,
    env: &Env,
    features: &Features,
    in_force: Strategy,
    kernel: &mut Kernel,
) -> Result<(String, usize, Vec<crate::policy::degrade::Degraded>)> {
    let (loaded, set, degraded) = args.prepare(env, features)?;
    timings::mark("policy read and compiled");
    for w in &loaded.warnings {
        say!("{w}");
    }
    for note in &degraded {
        say!("reflex: DEGRADED: {}", crate::escape::escape(&note.note));
    }
    thread_check(&set, features)?;
    resume_check(&set, features);
    // The reason a replan gives compares with the best hooks for the new
    // set, which needs the full answer.
    let mut offer = offer(&set, features);
    offer.raw_refused = raw_refused(features);
    // The functions of the new set's syscalls (the hooks stay fentry).
    if in_force == Strategy::Fentry {
        fentry_offer(&set, features, &mut offer, false);
    }
    let plan = plan::replan(&set, in_force, &offer).map_err(anyhow::Error::msg)?;
    timings::mark("hooks chosen");
    let narrow = !kernel.evaluator_handles_all();
    kernel.install(&set, &plan)?;
    timings::mark("rules written, attached");
    // The new set's functions were looked up (under fentry): the kernel's
    // BTF need not stay mapped.
    features.forget_kernel_btf();
    let mut text = format!(
        "reflex: reloaded {} rules; hooks: {} ({}): {}",
        set.rules.len(),
        plan.strategy,
        plan.reason,
        kernel.hooks().join(", ")
    );
    if narrow && kernel.evaluator_handles_all() {
        // Said because it is the one reload that costs a verification.
        text.push_str(
            "\nreflex: these rules use more than those at start: the evaluator was loaded again \
             to handle every kind of rule (once: later reloads need nothing more)",
        );
    }
    Ok((text, set.rules.len(), degraded))
}
