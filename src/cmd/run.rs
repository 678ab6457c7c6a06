//! `reflex run`: compile, load, attach, stream events until told to stop.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libbpf_rs::RingBufferBuilder;

use crate::cli::RunArgs;
use crate::events::{Clock, Event};
use crate::kernel::Kernel;
use crate::policy::Target;
use crate::probe::{self, Privileges};
use crate::rules::{self, Compiled};
use crate::sinks::{Json, Sink, Summary, Text};

/// What `run` needs from the machine, checked before anything loads, each
/// failure with its fix.
fn preflight(rules: &Compiled) -> Result<()> {
    if let Some(missing) = Privileges::current().missing() {
        bail!(
            "reflex run needs privileges to load BPF programs: {missing}.\n  \
             Run it as root (sudo reflex run …), or grant CAP_BPF and CAP_PERFMON. \
             `reflex check` lists everything else this machine needs."
        );
    }
    if !probe::has_btf() {
        bail!(
            "{} is missing: reflex needs kernel BTF (CONFIG_DEBUG_INFO_BTF=y) to relocate its \
             programs for this kernel",
            probe::BTF_PATH
        );
    }
    let (tracefs, mounted) =
        probe::tracefs(true).context("tracefs is needed to attach syscall tracepoints")?;
    if mounted {
        tracing::info!("mounted tracefs at {}", tracefs.display());
    }
    if !probe::syscall_tracepoint(&tracefs, rules.syscall) {
        bail!(
            "this kernel has no tracepoint syscalls/sys_enter_{} under {} \
             (needs CONFIG_FTRACE_SYSCALLS=y)",
            rules.syscall,
            tracefs.display()
        );
    }
    if rules.target == Target::Thread {
        if let probe::Answer::No(why) = probe::send_signal_thread() {
            bail!("--thread needs bpf_send_signal_thread: {why}");
        }
    }
    Ok(())
}

/// One sentence on what is enforced, for the start-up banner.
fn describe(rules: &Compiled, hooks: &[&str]) -> String {
    let verb = if rules.dry_run {
        "monitoring (dry run, nothing is sent)"
    } else {
        "enforcing"
    };
    let aim = match rules.target {
        Target::Process => "the calling process",
        Target::Thread => "the calling thread",
    };
    let whom = match rules.target_ppid {
        0 => "every caller on this machine".to_string(),
        ppid => format!("callers whose parent is pid {ppid}"),
    };
    format!(
        "reflex: attached to {}; {verb} rule '{}': on {}, {} to {aim}, for {whom}. Ctrl-C to stop.",
        hooks.join(", "),
        rules.rule,
        rules.syscall,
        rules.signal,
    )
}

pub fn run(args: &RunArgs) -> Result<()> {
    let rules = rules::compile(&args.policy())?;
    if rules.target_ppid != 0
        && !std::path::Path::new(&format!("/proc/{}", rules.target_ppid)).exists()
    {
        tracing::warn!(
            "no process has pid {} now: the rule matches nothing until one does",
            rules.target_ppid
        );
    }
    preflight(&rules)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let mut storage = MaybeUninit::uninit();
    let mut kernel = Kernel::load(&mut storage, &rules, &args.settings())?;
    let sink: RefCell<Box<dyn Sink>> = RefCell::new(if args.json {
        Box::new(Json::new(io::stdout()))
    } else {
        Box::new(Text::new(io::stdout()))
    });
    let clock = Clock::new();
    let received = Cell::new(0u64);
    let undecodable = Cell::new(0u64);
    let broken_pipe = Cell::new(false);

    let mut builder = RingBufferBuilder::new();
    builder
        .add(kernel.events_map(), |data: &[u8]| {
            match Event::decode(data, &clock, &rules.rule) {
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

    // The ring buffer is read before the programs attach, so no event can be
    // missed; the banner is printed only once enforcement is on.
    kernel.attach()?;
    sink.borrow_mut().start()?;
    eprintln!("{}", describe(&rules, &kernel.hooks()));
    while !stop.load(Ordering::Relaxed) && !broken_pipe.get() {
        if let Err(e) = ring.poll(Duration::from_millis(100)) {
            if e.kind() != libbpf_rs::ErrorKind::Interrupted && !broken_pipe.get() {
                return Err(e).context("reading events");
            }
        }
    }

    // Stop deciding first, then report what was decided.
    kernel.detach();
    let _ = ring.consume();
    drop(ring);
    let summary = Summary {
        kernel: kernel.stats().context("reading the kernel's counters")?,
        received: received.get(),
        undecodable: undecodable.get(),
    };
    eprintln!("reflex: detached.");
    eprintln!("{summary}");
    let _ = io::stdout().flush();
    Ok(())
}
