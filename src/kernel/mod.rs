//! Stage 3 — maps and kernel programs: load the BPF object, write compiled
//! rule sets into its maps, attach what they need, and hand out the event
//! stream and counters.
//!
//! Rule sets are double-buffered: [`Kernel::install`] writes the inactive set,
//! attaches any new hooks, then flips `state.active` in one map write. There is
//! no instant when neither the old nor the new rules apply, and a failure
//! before the flip leaves the old rules in force.
//!
//! Dropping [`Kernel`] detaches every program: enforcement lives exactly as
//! long as the reflex process that loaded it (nothing is pinned).

pub mod attach;
mod protect;
mod sampler;

use std::collections::{BTreeMap, BTreeSet};
use std::mem::MaybeUninit;
use std::sync::Mutex;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, PrintLevel, TracepointCategory};

use crate::events::RuleNames;
use crate::policy::hooks::Hook;
use crate::policy::{RateBy, Sample, SigValue, Target, To};
use crate::rules::Point;
use crate::rules::{RuleSet, Verdict};
use attach::{Plan, Strategy};

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/reflex.skel.rs"));
}

/// The kernel/user boundary types, generated from `bpf/reflex.h` via BTF.
pub use skel::types;
use types::{reflex_handler as H, reflex_limit as L, reflex_verdict as V};

/// How often the reader looks at the event buffer when the kernel has not
/// woken it (events are batched: see `wake_at` in reflex.bpf.c).
pub const EVENT_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Sums of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub matched: u64,
    pub signalled: u64,
    pub failed: u64,
    pub would_signal: u64,
    pub skipped: u64,
    pub audited: u64,
    pub denied: u64,
    pub would_deny: u64,
    pub paused: u64,
    /// Events the kernel could not reserve room for in the ring buffer.
    pub dropped: u64,
}

/// Load-time settings: fixed for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Size of the event ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Only calls from children of this process are considered (0: all).
    pub scope_ppid: u32,
    /// Load the tp_btf programs (raw syscall hook, protected-set followers).
    pub load_btf_programs: bool,
    /// Wake the event reader at every event, not in batches.
    pub wake_every_event: bool,
    /// The kernel has bpf_send_signal_task: the raw hook is loaded able to
    /// signal other tasks.
    pub kfuncs: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ring_buffer_bytes: 256 * 1024,
            scope_ppid: 0,
            load_btf_programs: true,
            wake_every_event: false,
            kfuncs: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("opening the embedded BPF object failed: {0}")]
    Open(#[source] libbpf_rs::Error),
    #[error("{}", explain_load(.source, .log))]
    Load {
        source: libbpf_rs::Error,
        /// What libbpf printed while loading, including the verifier log.
        log: String,
    },
    #[error("attaching {program} to {hook} failed: {source}{}", attach_hint(.source))]
    Attach {
        program: &'static str,
        hook: String,
        source: libbpf_rs::Error,
    },
    #[error("writing the {map} map failed: {source}")]
    Map {
        map: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

fn explain_load(source: &libbpf_rs::Error, log: &str) -> String {
    let verifier = log.contains("-- BEGIN PROG LOAD LOG --");
    let mut text = if verifier {
        let program = log
            .lines()
            .find_map(|l| l.strip_prefix("libbpf: prog '")?.split('\'').next())
            .unwrap_or("?");
        format!(
            "the kernel's verifier rejected reflex's program '{program}' ({source}): \
             this is a bug in reflex for this kernel; please report it with the log below"
        )
    } else {
        format!("the kernel refused reflex's BPF programs: {source}")
    };
    if !verifier && source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        text.push_str(
            "\n  Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root. \
             If you are root, kernel lockdown or a security module may forbid BPF; \
             `reflex check` says which.",
        );
    }
    let log = log.trim();
    if !log.is_empty() {
        text.push_str("\n  libbpf and verifier log:\n");
        for line in log.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn attach_hint(source: &libbpf_rs::Error) -> &'static str {
    match source.kind() {
        libbpf_rs::ErrorKind::NotFound => {
            " (is tracefs mounted? `mount -t tracefs tracefs /sys/kernel/tracing`; \
             does the kernel have CONFIG_FTRACE_SYSCALLS?)"
        }
        libbpf_rs::ErrorKind::PermissionDenied if nix::unistd::geteuid().is_root() => {
            " (refused although reflex runs as root: the kernel refuses a program for a \
             tracepoint whose record is shorter than what it reads, a bug in reflex for this \
             kernel; please report it)"
        }
        libbpf_rs::ErrorKind::PermissionDenied => " (attaching needs CAP_PERFMON or root)",
        _ => "",
    }
}

fn map_err(map: &'static str) -> impl Fn(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// Bytes of a generated boundary type, for map keys and values.
fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is one of the #[repr(C)] plain-data types generated from the
    // object's BTF; its padding is explicit (and zeroed by Default).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

const MAX_SYSCALLS: u32 = L::REFLEX_MAX_SYSCALLS.0;
const MAX_RULES: u32 = L::REFLEX_MAX_RULES.0;

/// What one rule set slot holds, to clear it before reuse and to name rules
/// in events.
#[derive(Debug, Default)]
struct Slot {
    syscalls: Vec<i32>,
    matches: Vec<types::reflex_match_key>,
}

/// Programs loaded only when a rule set first needs them, in an object of
/// their own that shares every map with the main one: start-up verifies
/// only what the first policy uses.
struct Extra {
    skel: skel::ReflexSkel<'static>,
    links: Vec<Link>,
    /// The raw object's sys_exit link, when exit rules are in force.
    exit: Option<Link>,
}

const TRACEPOINT_PROGRAMS: &[&str] = &[
    "reflex_tp0",
    "reflex_tp1",
    "reflex_tp2",
    "reflex_tp3",
    "reflex_tp4",
    "reflex_tp5",
    "reflex_tp6",
    "reflex_tp_eval",
];
/// Loaded on first use: its verification is as long as the evaluator's.
const TP_EXIT_PROGRAMS: &[&str] = &["reflex_tp_exit"];
const RAW_PROGRAMS: &[&str] = &["reflex_raw", "reflex_raw_exit"];
const RAW_K_PROGRAMS: &[&str] = &["reflex_raw_k", "reflex_raw_exit"];
const SAMPLE_PROGRAMS: &[&str] = &["reflex_sample"];

/// The BPF-LSM programs of a hook (each loaded on first use).
fn lsm_programs(hook: Hook) -> &'static [&'static str] {
    match hook {
        Hook::Ptrace => &["reflex_lsm_ptrace"],
        Hook::Exec => &["reflex_lsm_exec"],
        Hook::Open => &["reflex_lsm_open"],
        Hook::Kill => &["reflex_lsm_kill"],
        Hook::Module => &["reflex_lsm_module_file", "reflex_lsm_module_data"],
        Hook::Bpf if crate::probe::bpf_hook_has_kernel_flag() => &["reflex_lsm_bpf_kernel_flag"],
        Hook::Bpf => &["reflex_lsm_bpf"],
    }
}
const FOLLOWER_PROGRAMS: &[&str] = &["reflex_fork", "reflex_exec", "reflex_exit"];

/// Opens the object with `settings` written in and only `programs` to load.
fn open_object<'a>(
    storage: &'a mut MaybeUninit<OpenObject>,
    settings: &Settings,
    programs: &[&str],
) -> Result<skel::OpenReflexSkel<'a>, LoadError> {
    let mut open = skel::ReflexSkelBuilder::default()
        .open(storage)
        .map_err(LoadError::Open)?;
    open.maps
        .events
        .set_max_entries(settings.ring_buffer_bytes)
        .map_err(map_err("events"))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("reflex.bpf.c has const volatile globals");
    rodata.reflex_tgid = std::process::id();
    rodata.ancestor_helper = crate::probe::ancestor_helper();
    rodata.scope_ppid = settings.scope_ppid;
    rodata.wake_at = if settings.wake_every_event {
        0
    } else {
        u64::from(settings.ring_buffer_bytes / 8)
    };
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(programs.contains(&name.as_str()));
    }
    Ok(open)
}

/// reflex's programs, loaded, with what is attached.
pub struct Kernel<'obj> {
    skel: skel::ReflexSkel<'obj>,
    /// The set in force, once one is installed.
    active: Option<u32>,
    slots: [Slot; 2],
    tracepoints: BTreeMap<i32, (&'static str, Link)>,
    raw: Option<Extra>,
    followers: Option<Extra>,
    lsm: BTreeMap<Hook, Extra>,
    sample_prog: Option<Extra>,
    /// The tracepoint strategy's exit program.
    tp_exit: Option<Extra>,
    /// The perf event the sampler is attached with, and its per-CPU links.
    sampler: Option<(Sample, Vec<Link>)>,
    /// Protected executables and cgroups in force, and those of the rules
    /// being replaced.
    protected_objects: (Vec<types::reflex_file_key>, Vec<u64>),
    retired_objects: (Vec<types::reflex_file_key>, Vec<u64>),
    settings: Settings,
    plan: Option<Plan>,
    /// Installs so far: written into each rule, carried by each event.
    generation: u32,
    names: RuleNames,
}

impl<'obj> Kernel<'obj> {
    /// Loads the object with its tracepoint programs; nothing is enforced
    /// until [`Kernel::install`]. Nothing stays loaded if any step fails.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        settings: &Settings,
    ) -> Result<Kernel<'obj>, LoadError> {
        let open = open_object(storage, settings, TRACEPOINT_PROGRAMS)?;
        let skel = with_libbpf_log(|| open.load())
            .map_err(|(source, log)| LoadError::Load { source, log })?;
        let eval = skel.progs.reflex_tp_eval.as_fd().as_raw_fd() as u32;
        skel.maps
            .tp_eval
            .update(&0u32.to_ne_bytes(), &eval.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("tp_eval"))?;
        Ok(Kernel {
            skel,
            active: None,
            slots: Default::default(),
            tracepoints: BTreeMap::new(),
            raw: None,
            followers: None,
            lsm: BTreeMap::new(),
            sample_prog: None,
            tp_exit: None,
            sampler: None,
            protected_objects: Default::default(),
            retired_objects: Default::default(),
            generation: 0,
            names: RuleNames::default(),
            settings: *settings,
            plan: None,
        })
    }

    /// Loads `programs` in a second instance of the object that uses this
    /// one's maps.
    fn load_extra(&self, programs: &[&str]) -> Result<Extra, LoadError> {
        let btf = programs
            .iter()
            .any(|p| p.starts_with("reflex_raw") || FOLLOWER_PROGRAMS.contains(p));
        if btf && !self.settings.load_btf_programs {
            return Err(LoadError::Unavailable(format!(
                "{} cannot load here (tp_btf programs are refused), so the raw syscall hook \
                 and the following of protected executables and cgroups are unavailable",
                programs.join(", ")
            )));
        }
        // Loaded once for the life of the process; the storage lives as long.
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = open_object(storage, &self.settings, programs)?;
        for mut map in open.open_object_mut().maps_mut() {
            let name = map.name().to_os_string();
            if name.to_string_lossy().starts_with('.') {
                continue; // this instance's own .rodata and .bss
            }
            if let Some(shared) = self.skel.object().maps().find(|m| m.name() == name) {
                map.reuse_fd(shared.as_fd())
                    .map_err(map_err("shared maps"))?;
            }
        }
        let skel = with_libbpf_log(|| open.load())
            .map_err(|(source, log)| LoadError::Load { source, log })?;
        Ok(Extra {
            skel,
            links: Vec::new(),
            exit: None,
        })
    }

    /// Puts `set` in force with one atomic switch, hooking syscalls as `plan`
    /// says. On error the rules in force before stay in force.
    pub fn install(&mut self, set: &RuleSet, plan: &Plan) -> Result<(), LoadError> {
        // Each kind of hook reads the active set at its own moment of a call:
        // switching kinds under live rules could answer a call twice or never.
        if let Some(in_force) = self.plan.as_ref().map(|p| p.strategy) {
            if in_force != plan.strategy {
                return Err(LoadError::Unavailable(format!(
                    "the rules in force use {in_force} hooks; switching to {} needs a restart",
                    plan.strategy
                )));
            }
        }
        let next = match self.active {
            None => 0,
            Some(a) => 1 - a,
        };
        self.clear(next)?;
        self.generation += 1;
        self.write(next, set, plan)?;

        // Hooks first: a hook that finds no rules for itself does nothing, so
        // attaching before the switch is harmless.
        let attached = self.hook(set, plan);
        if let Err(e) = attached {
            self.unhook_unused();
            return Err(e);
        }
        self.protect(set)?;

        self.names.add(
            self.generation,
            set.rules.iter().map(|r| r.name.clone()).collect(),
        );
        self.switch_to(next, set.protect.cgroup_levels)?;
        self.active = Some(next);
        self.plan = Some(plan.clone());
        self.unhook_unused();
        self.forget_unprotected(set);
        Ok(())
    }

    /// Zeroes what set `slot` held.
    fn clear(&mut self, slot: u32) -> Result<(), LoadError> {
        let old = std::mem::take(&mut self.slots[slot as usize]);
        let empty = types::reflex_syscall::default();
        for nr in old.syscalls {
            let idx = slot * MAX_SYSCALLS + nr as u32;
            self.skel
                .maps
                .syscalls
                .update(&idx.to_ne_bytes(), bytes_of(&empty), MapFlags::ANY)
                .map_err(map_err("syscalls"))?;
        }
        for key in &old.matches {
            let _ = self.skel.maps.matches.delete(bytes_of(key));
        }
        Ok(())
    }

    fn write(&mut self, slot: u32, set: &RuleSet, plan: &Plan) -> Result<(), LoadError> {
        let handler = match plan.strategy {
            Strategy::Tracepoint => H::REFLEX_HANDLER_TRACEPOINT,
            Strategy::Raw => H::REFLEX_HANDLER_RAW,
        };
        let mut written = Slot::default();
        for (id, rule) in set.rules.iter().enumerate() {
            let mut r = types::reflex_rule {
                id: id as u32,
                generation: self.generation,
                monitor: u8::from(rule.monitor),
                nchecks: rule.checks.len() as u8,
                ..Default::default()
            };
            let aim = |target| match target {
                Target::Process => types::reflex_target::REFLEX_TARGET_PROCESS.0 as u8,
                Target::Thread => types::reflex_target::REFLEX_TARGET_THREAD.0 as u8,
            };
            match rule.verdict {
                Verdict::Audit => r.verdict = V::REFLEX_VERDICT_AUDIT.0 as u8,
                Verdict::Signal { signal, target } => {
                    r.verdict = V::REFLEX_VERDICT_SIGNAL.0 as u8;
                    r.signal = signal.number();
                    r.target = aim(target);
                }
                Verdict::Deny {
                    error,
                    signal,
                    target,
                } => {
                    r.verdict = V::REFLEX_VERDICT_DENY.0 as u8;
                    r.error = error;
                    r.signal = signal.map_or(0, |s| s.number());
                    r.target = aim(target);
                }
            }
            if let Some(rate) = rule.rate {
                r.rate_window_ns = rate.window_ns;
                r.rate_over = rate.over;
                r.rate_by = (match rate.by {
                    RateBy::Process => types::reflex_rate_by::REFLEX_RATE_PROCESS,
                    RateBy::Parent => types::reflex_rate_by::REFLEX_RATE_PARENT,
                    RateBy::Session => types::reflex_rate_by::REFLEX_RATE_SESSION,
                    RateBy::Cgroup => types::reflex_rate_by::REFLEX_RATE_CGROUP,
                })
                .0 as u8;
            }
            (r.to, r.to_pid) = match rule.to {
                To::Caller => (types::reflex_to::REFLEX_TO_CALLER.0 as u8, 0),
                To::Parent => (types::reflex_to::REFLEX_TO_PARENT.0 as u8, 0),
                To::Pid(pid) => (types::reflex_to::REFLEX_TO_PID.0 as u8, pid),
            };
            (r.value_kind, r.value) = match rule.value {
                SigValue::Number(n) => (types::reflex_value::REFLEX_VALUE_NUMBER.0 as u8, n),
                SigValue::CallerPid => (types::reflex_value::REFLEX_VALUE_CALLER_PID.0 as u8, 0),
            };
            r.pause_ns = rule.pause_ns;
            for (dst, c) in r.checks.iter_mut().zip(&rule.checks) {
                *dst = types::reflex_check {
                    op: c.op.0 as u8,
                    arg: c.arg,
                    a: c.a,
                    b: c.b,
                    ..Default::default()
                };
            }
            let idx = slot * MAX_RULES + id as u32;
            self.skel
                .maps
                .rules
                .update(&idx.to_ne_bytes(), bytes_of(&r), MapFlags::ANY)
                .map_err(map_err("rules"))?;
        }
        for (key, value) in &set.matches {
            let k = types::reflex_match_key {
                nr: key.nr as u32,
                set: slot as u8,
                dim: key.dim.0,
                value: key.value,
                ..Default::default()
            };
            let v = types::reflex_match {
                pos: value.pos,
                neg: value.neg,
            };
            self.skel
                .maps
                .matches
                .update(bytes_of(&k), bytes_of(&v), MapFlags::ANY)
                .map_err(map_err("matches"))?;
            written.matches.push(k);
        }
        for (&nr, table) in &set.syscalls {
            let handler = match Point::of(nr) {
                Point::Hook(_) => H::REFLEX_HANDLER_LSM,
                Point::Sample => H::REFLEX_HANDLER_PERF,
                Point::Entry(_) | Point::Exit(_) => handler,
            };
            let mut s = types::reflex_syscall {
                rules: table.rules_mask(),
                checked: table.checked,
                free: table.free,
                negated: table.negated,
                dims: table.dims,
                cgroup_levels: table.cgroup_levels,
                handler: handler.0 as u8,
                nargs: plan.args.get(table.name).copied().unwrap_or(6),
                timed: u8::from(table.timed),
                ..Default::default()
            };
            s.rule[..table.slots.len()].copy_from_slice(&table.slots);
            let idx = slot * MAX_SYSCALLS + nr as u32;
            self.skel
                .maps
                .syscalls
                .update(&idx.to_ne_bytes(), bytes_of(&s), MapFlags::ANY)
                .map_err(map_err("syscalls"))?;
            written.syscalls.push(nr);
        }
        self.slots[slot as usize] = written;
        Ok(())
    }

    /// Attaches what `plan` needs for `set` and is not attached yet.
    fn hook(&mut self, set: &RuleSet, plan: &Plan) -> Result<(), LoadError> {
        match plan.strategy {
            Strategy::Tracepoint => {
                for (&nr, table) in &set.syscalls {
                    if self.tracepoints.contains_key(&nr) {
                        continue;
                    }
                    let tp = crate::probe::tracepoint_name(table.name);
                    if let Point::Exit(_) = Point::of(nr) {
                        let name = format!("sys_exit_{tp}");
                        if self.tp_exit.is_none() {
                            self.tp_exit = Some(self.load_extra(TP_EXIT_PROGRAMS)?);
                        }
                        let extra = self.tp_exit.as_ref().expect("loaded above");
                        let link = extra
                            .skel
                            .progs
                            .reflex_tp_exit
                            .attach_tracepoint(TracepointCategory::Syscalls, &name)
                            .map_err(|source| LoadError::Attach {
                                program: "reflex_tp_exit",
                                hook: format!("tp/syscalls/{name}"),
                                source,
                            })?;
                        self.tracepoints.insert(nr, (table.name, link));
                        continue;
                    }
                    if !matches!(Point::of(nr), Point::Entry(_)) {
                        continue;
                    }
                    let name = format!("sys_enter_{tp}");
                    let nargs = plan.args.get(table.name).copied().unwrap_or(6);
                    let progs = &self.skel.progs;
                    let (program, prog) = match nargs {
                        0 => ("reflex_tp0", &progs.reflex_tp0),
                        1 => ("reflex_tp1", &progs.reflex_tp1),
                        2 => ("reflex_tp2", &progs.reflex_tp2),
                        3 => ("reflex_tp3", &progs.reflex_tp3),
                        4 => ("reflex_tp4", &progs.reflex_tp4),
                        5 => ("reflex_tp5", &progs.reflex_tp5),
                        _ => ("reflex_tp6", &progs.reflex_tp6),
                    };
                    let link = prog
                        .attach_tracepoint(TracepointCategory::Syscalls, &name)
                        .map_err(|source| LoadError::Attach {
                            program,
                            hook: format!("tp/syscalls/{name}"),
                            source,
                        })?;
                    self.tracepoints.insert(nr, (table.name, link));
                }
            }
            Strategy::Raw => {
                // The variant able to signal other tasks where the kernel
                // has the kfuncs: then reloads never need to switch.
                let programs = if self.settings.kfuncs {
                    RAW_K_PROGRAMS
                } else {
                    RAW_PROGRAMS
                };
                if self.raw.is_none() {
                    self.raw = Some(self.load_extra(programs)?);
                }
                let raw = self.raw.as_mut().expect("loaded above");
                if raw.links.is_empty() {
                    let progs = &raw.skel.progs;
                    let prog = if self.settings.kfuncs {
                        &progs.reflex_raw_k
                    } else {
                        &progs.reflex_raw
                    };
                    let link = prog.attach().map_err(|source| LoadError::Attach {
                        program: programs[0],
                        hook: "tp_btf/sys_enter".into(),
                        source,
                    })?;
                    raw.links.push(link);
                }
                let exits = !set.exit_names().is_empty();
                match (exits, raw.exit.is_some()) {
                    (true, false) => {
                        let link = raw.skel.progs.reflex_raw_exit.attach().map_err(|source| {
                            LoadError::Attach {
                                program: "reflex_raw_exit",
                                hook: "tp_btf/sys_exit".into(),
                                source,
                            }
                        })?;
                        raw.exit = Some(link);
                    }
                    (false, true) => raw.exit = None,
                    _ => {}
                }
            }
        }
        if let Some(sample) = set.sampling {
            if self.sampler.as_ref().is_some_and(|(s, _)| *s != sample) {
                self.sampler = None; // another frequency: new events
            }
            if self.sampler.is_none() {
                if self.sample_prog.is_none() {
                    self.sample_prog = Some(self.load_extra(SAMPLE_PROGRAMS)?);
                }
                let extra = self.sample_prog.as_ref().expect("loaded above");
                let mut links = Vec::new();
                for cpu in
                    sampler::online_cpus().map_err(|e| LoadError::Unavailable(e.to_string()))?
                {
                    let fd = sampler::open(&sample, cpu)
                        .map_err(|e| LoadError::Unavailable(e.to_string()))?;
                    let link = extra
                        .skel
                        .progs
                        .reflex_sample
                        .attach_perf_event(fd)
                        .map_err(|source| {
                            // SAFETY: the fd was not handed over.
                            unsafe { libc::close(fd) };
                            LoadError::Attach {
                                program: "reflex_sample",
                                hook: format!("perf_event on CPU {cpu}"),
                                source,
                            }
                        })?;
                    links.push(link);
                }
                self.sampler = Some((sample, links));
            }
        }
        for hook in set.hooks() {
            if !self.lsm.contains_key(&hook) {
                let extra = self.load_extra(lsm_programs(hook))?;
                self.lsm.insert(hook, extra);
            }
            let extra = self.lsm.get_mut(&hook).expect("loaded above");
            if extra.links.is_empty() {
                for prog in extra.skel.object().progs_mut() {
                    let name = prog.name().to_string_lossy().into_owned();
                    if !lsm_programs(hook).contains(&name.as_str()) {
                        continue;
                    }
                    let link = prog.attach().map_err(|source| LoadError::Attach {
                        program: lsm_programs(hook)[0],
                        hook: hook.lsm().into(),
                        source,
                    })?;
                    extra.links.push(link);
                }
            }
        }
        if set.protect.track {
            if self.followers.is_none() {
                self.followers = Some(self.load_extra(FOLLOWER_PROGRAMS)?);
            }
            let followers = self.followers.as_mut().expect("loaded above");
            if followers.links.is_empty() {
                let progs = &followers.skel.progs;
                for (program, prog) in [
                    ("reflex_fork", &progs.reflex_fork),
                    ("reflex_exec", &progs.reflex_exec),
                    ("reflex_exit", &progs.reflex_exit),
                ] {
                    let link = prog.attach().map_err(|source| LoadError::Attach {
                        program,
                        hook: format!("tp_btf/sched_process_{}", &program[7..]),
                        source,
                    })?;
                    followers.links.push(link);
                }
            }
        }
        Ok(())
    }

    /// Detaches hooks that the set in force does not use.
    fn unhook_unused(&mut self) {
        let in_force: BTreeSet<i32> = match self.active {
            Some(a) => self.slots[a as usize].syscalls.iter().copied().collect(),
            None => BTreeSet::new(),
        };
        let strategy = self.plan.as_ref().map(|p| p.strategy);
        self.tracepoints
            .retain(|nr, _| strategy == Some(Strategy::Tracepoint) && in_force.contains(nr));
        if strategy != Some(Strategy::Raw) {
            if let Some(raw) = self.raw.as_mut() {
                raw.links.clear();
                raw.exit = None;
            }
        }
        let sampling = in_force.iter().any(|&nr| Point::of(nr) == Point::Sample);
        if !sampling {
            self.sampler = None;
        }
        for (hook, extra) in self.lsm.iter_mut() {
            if !in_force.contains(&hook.nr()) {
                extra.links.clear();
            }
        }
    }

    /// Writes the protected objects and the processes protected now (before
    /// the switch, so the new rules never run without their protection).
    fn protect(&mut self, set: &RuleSet) -> Result<(), LoadError> {
        let p = &set.protect;
        let exes: Vec<types::reflex_file_key> = p
            .executables
            .iter()
            .map(|&(dev, ino)| types::reflex_file_key {
                dev,
                ino,
                ..Default::default()
            })
            .collect();
        let maps = &self.skel.maps;
        for key in &exes {
            maps.protected_exes
                .update(bytes_of(key), &[1], MapFlags::ANY)
                .map_err(map_err("protected_exes"))?;
        }
        for id in &p.cgroups {
            maps.protected_cgroups
                .update(&id.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(map_err("protected_cgroups"))?;
        }
        // The followers are attached already: processes forked from here on
        // are followed by the kernel; the scan finds those that exist.
        for (pid, why) in protect::scan(p) {
            maps.protected
                .update(&pid.to_ne_bytes(), &[why], MapFlags::ANY)
                .map_err(map_err("protected"))?;
        }
        let old = std::mem::replace(&mut self.protected_objects, (exes, p.cgroups.clone()));
        self.retired_objects = old;
        Ok(())
    }

    /// After the switch: forget what only the previous rules protected.
    fn forget_unprotected(&mut self, set: &RuleSet) {
        if !set.protect.track {
            if let Some(f) = self.followers.as_mut() {
                f.links.clear();
            }
        }
        let (old_exes, old_cgroups) = std::mem::take(&mut self.retired_objects);
        let maps = &self.skel.maps;
        for key in &old_exes {
            if !self
                .protected_objects
                .0
                .iter()
                .any(|k| bytes_of(k) == bytes_of(key))
            {
                let _ = maps.protected_exes.delete(bytes_of(key));
            }
        }
        for id in &old_cgroups {
            if !self.protected_objects.1.contains(id) {
                let _ = maps.protected_cgroups.delete(&id.to_ne_bytes());
            }
        }
        let now = protect::scan(&set.protect);
        let stale: Vec<Vec<u8>> = maps
            .protected
            .keys()
            .filter(|k| {
                let pid = k.as_slice().try_into().map(u32::from_ne_bytes).unwrap_or(0);
                !now.contains_key(&pid)
            })
            .collect();
        for key in stale {
            let _ = maps.protected.delete(&key);
        }
    }

    /// Puts set `slot` in force and, when another set was, returns only
    /// once no program can still be reading that one (the next install
    /// rewrites it). The wait is an RCU grace period: ~15 ms here.
    fn switch_to(&mut self, slot: u32, protect_cgroup_levels: u32) -> Result<(), LoadError> {
        let st = types::reflex_state {
            active: slot,
            protect_cgroup_levels,
        };
        self.skel
            .maps
            .state
            .update(&0u32.to_ne_bytes(), bytes_of(&st), MapFlags::ANY)
            .map_err(map_err("state"))?;
        if self.active.is_none() {
            return Ok(());
        }
        // The kernel waits for running programs before this returns.
        let inner = self.skel.maps.grace_inner.as_fd().as_raw_fd() as u32;
        self.skel
            .maps
            .grace
            .update(&0u32.to_ne_bytes(), &inner.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("grace"))
    }

    /// The rule names of recent installs, for decoding events.
    pub fn names(&self) -> &RuleNames {
        &self.names
    }

    /// Where the programs are attached, for people to read.
    pub fn hooks(&self) -> Vec<String> {
        let mut hooks: Vec<String> = self
            .tracepoints
            .iter()
            .map(|(&nr, (name, _))| {
                let at = match Point::of(nr) {
                    Point::Exit(_) => "exit",
                    _ => "enter",
                };
                format!(
                    "tp/syscalls/sys_{at}_{}",
                    crate::probe::tracepoint_name(name)
                )
            })
            .collect();
        if self.raw.as_ref().is_some_and(|r| !r.links.is_empty()) {
            hooks.push("tp_btf/sys_enter".into());
        }
        if self.raw.as_ref().is_some_and(|r| r.exit.is_some()) {
            hooks.push("tp_btf/sys_exit".into());
        }
        if let Some((sample, links)) = &self.sampler {
            hooks.push(format!(
                "perf_event ({} Hz, {} CPUs)",
                sample.frequency,
                links.len()
            ));
        }
        if self.followers.as_ref().is_some_and(|f| !f.links.is_empty()) {
            hooks.push("tp_btf/sched_process_{fork,exec,exit}".into());
        }
        for (hook, extra) in &self.lsm {
            if !extra.links.is_empty() {
                hooks.push(hook.lsm().into());
            }
        }
        hooks
    }

    /// Detaches every program; events already in the ring buffer stay readable.
    pub fn detach(&mut self) {
        self.tracepoints.clear();
        for extra in [self.raw.as_mut(), self.followers.as_mut()]
            .into_iter()
            .flatten()
        {
            extra.links.clear();
        }
    }

    /// Paused processes due for their SIGCONT by `boot_ns` (all of them
    /// with u64::MAX), taken out of the kernel's list: (pid, rule name).
    pub fn take_due_pauses(&mut self, boot_ns: u64) -> Vec<(u32, String)> {
        let due: Vec<(u32, String)> = self
            .skel
            .maps
            .paused
            .keys()
            .filter_map(|k| {
                let pid = u32::from_ne_bytes(k.as_slice().try_into().ok()?);
                let v = self.skel.maps.paused.lookup(&k, MapFlags::ANY).ok()??;
                if v.len() < std::mem::size_of::<types::reflex_pause>() {
                    return None;
                }
                // SAFETY: the value is a reflex_pause (checked size), plain data.
                let p: types::reflex_pause = unsafe { std::ptr::read_unaligned(v.as_ptr().cast()) };
                let rule = self
                    .names
                    .get(p.generation, p.rule)
                    .unwrap_or("?")
                    .to_string();
                (p.resume_at <= boot_ns).then_some((pid, rule))
            })
            .collect();
        for (pid, _) in &due {
            let _ = self.skel.maps.paused.delete(&pid.to_ne_bytes());
        }
        due
    }

    /// The ring buffer carrying [`types::reflex_event`] records.
    pub fn events_map(&self) -> &dyn MapCore {
        &self.skel.maps.events
    }

    /// Hook hits on which the kernel did not run one of reflex's programs,
    /// summed over them: the kernel runs a tracing program at most once per
    /// CPU at a time, and skips (and counts, as `recursion_misses`, 5.12+)
    /// a hit that comes while it runs there. Where programs on syscall
    /// hooks can be preempted (as seen on 7.3), another task's call on the
    /// same CPU is such a hit; nothing reflex does answers it, so it is
    /// reported.
    pub fn missed(&self) -> u64 {
        let extras = [&self.raw, &self.followers, &self.sample_prog, &self.tp_exit]
            .into_iter()
            .flatten()
            .chain(self.lsm.values());
        std::iter::once(self.skel.object())
            .chain(extras.map(|e| e.skel.object()))
            .flat_map(|object| object.progs())
            .filter(|prog| prog.autoload())
            .map(|prog| recursion_misses(prog.as_fd()))
            .sum()
    }

    pub fn stats(&self) -> Result<Stats, libbpf_rs::Error> {
        let per_cpu = self
            .skel
            .maps
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        let mut sum = [0u64; types::reflex_stat::REFLEX_STAT_MAX.0 as usize];
        for cpu in per_cpu {
            for (i, total) in sum.iter_mut().enumerate() {
                let at = i * 8;
                if let Some(bytes) = cpu.get(at..at + 8) {
                    *total += u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
                }
            }
        }
        use types::reflex_stat as S;
        let get = |s: S| sum[s.0 as usize];
        Ok(Stats {
            matched: get(S::REFLEX_STAT_MATCHED),
            signalled: get(S::REFLEX_STAT_SIGNALLED),
            failed: get(S::REFLEX_STAT_FAILED),
            would_signal: get(S::REFLEX_STAT_WOULD_SIGNAL),
            skipped: get(S::REFLEX_STAT_SKIPPED),
            audited: get(S::REFLEX_STAT_AUDITED),
            denied: get(S::REFLEX_STAT_DENIED),
            paused: get(S::REFLEX_STAT_PAUSED),
            would_deny: get(S::REFLEX_STAT_WOULD_DENY),
            dropped: get(S::REFLEX_STAT_DROPPED),
        })
    }
}

/// A loaded program's `recursion_misses` (0 where the kernel has no such count).
fn recursion_misses(prog: BorrowedFd<'_>) -> u64 {
    use libbpf_rs::libbpf_sys;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a plain C struct of `len` bytes, which is all the
    // kernel writes.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(prog.as_raw_fd(), (&raw mut info).cast(), &mut len)
    };
    if ret == 0 { info.recursion_misses } else { 0 }
}

/// libbpf's messages while `f` runs (the verifier log among them), returned
/// with `f`'s error; at other times they go to `tracing` at debug level.
///
/// The signals reflex handles are blocked meanwhile: the verifier gives up
/// with EAGAIN when a signal arrives during a long verification (SIGHUPs
/// sent in quick succession would make a reload fail). They are delivered
/// when `f` returns.
fn with_libbpf_log<T>(
    f: impl FnOnce() -> Result<T, libbpf_rs::Error>,
) -> Result<T, (libbpf_rs::Error, String)> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut handled = SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        handled.add(sig);
    }
    let mut before = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut before)).is_ok();
    let result = capture_libbpf_log(f);
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    result
}

fn capture_libbpf_log<T>(
    f: impl FnOnce() -> Result<T, libbpf_rs::Error>,
) -> Result<T, (libbpf_rs::Error, String)> {
    static CAPTURED: Mutex<Option<String>> = Mutex::new(None);
    fn capture(level: PrintLevel, msg: String) {
        let mut captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        match captured.as_mut() {
            Some(buf) => buf.push_str(&msg),
            None => tracing::debug!(target: "libbpf", ?level, "{}", msg.trim_end()),
        }
    }
    *CAPTURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(String::new());
    libbpf_rs::set_print(Some((PrintLevel::Info, capture)));
    let result = f();
    let log = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    result.map_err(|e| (e, log))
}
