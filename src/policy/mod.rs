//! Stage 1 — the policy: what the user asked for.
//!
//! Policy files (YAML, see `file`) are read and checked (`check`) into a
//! [`Policy`]: rules with every name resolved (syscalls to numbers, constants
//! to values, executables to device+inode, cgroups to ids) on a [`host`],
//! each remembering where it was written (`diag`). A rule's [`Trigger`] says
//! where it answers; `degrade` turns hook rules into syscall rules where
//! BPF-LSM is refused (`hooks`: what each hook falls back to). Without files,
//! reflex runs the built-in seed policy (`policies/seed.yaml`).

pub mod check;
pub mod constants;
pub mod degrade;
pub mod diag;
pub mod file;
pub mod files;
pub mod hooks;
pub mod host;

use std::path::PathBuf;

pub use crate::abi::{Hook, Point};
pub use check::{Env, load, load_allowing_empty, load_str};
pub use diag::{Diagnostic, Diagnostics, Location, Severity};

use crate::signal::Signal;

/// The seed's job: every caller of `ptrace` gets SIGKILL.
pub const SEED: &str = include_str!("../../policies/seed.yaml");
/// The name the seed is reported under.
pub const SEED_NAME: &str = "<built-in seed policy>";

/// Which task the signal is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The whole thread group (`bpf_send_signal`).
    Process,
    /// Only the thread that made the call (`bpf_send_signal_thread`).
    Thread,
}

/// Whether decisions are carried out or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    /// Report what enforce would do; send nothing.
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Report only.
    Audit,
    Signal {
        signal: Signal,
        target: Target,
    },
    /// Refuse the operation with `error` (hooks only), and send `signal` too.
    Deny {
        error: i32,
        signal: Option<Signal>,
        target: Target,
    },
}

fn aimed(signal: Signal, target: Target) -> String {
    match target {
        Target::Process => format!("{signal} to the process"),
        Target::Thread => format!("{signal} to the calling thread"),
    }
}

impl Action {
    pub fn describe(&self) -> String {
        match *self {
            Action::Audit => "audit".into(),
            Action::Signal { signal, target } => aimed(signal, target),
            Action::Deny {
                error,
                signal,
                target,
            } => {
                let errno = format!("{:?}", nix::errno::Errno::from_raw(error));
                match signal {
                    None => format!("deny ({errno})"),
                    Some(s) => format!("deny ({errno}) and {}", aimed(s, target)),
                }
            }
        }
    }
}

/// `values`, or everything but `values` when `negate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set<T> {
    pub negate: bool,
    pub values: Vec<T>,
}

impl<T: PartialEq> Set<T> {
    pub fn accepts(&self, v: &T) -> bool {
        self.values.contains(v) != self.negate
    }

    /// Whether some value is accepted by both.
    pub fn meets(&self, other: &Set<T>) -> bool {
        match (self.negate, other.negate) {
            (false, false) => self.values.iter().any(|v| other.values.contains(v)),
            (false, true) => self.values.iter().any(|v| !other.values.contains(v)),
            (true, false) => other.values.iter().any(|v| !self.values.contains(v)),
            (true, true) => true,
        }
    }
}

/// A file as the kernel identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Kernel dev_t encoding: major << 20 | minor.
    pub dev: u32,
    pub ino: u64,
    pub path: PathBuf,
}

impl PartialOrd for FileId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FileId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.dev, self.ino).cmp(&(other.dev, other.ino))
    }
}

/// A cgroup (v2): "in the cgroup" means in it or anywhere below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cgroup {
    pub id: u64,
    /// Depth below the root (the root is 0).
    pub level: u32,
    pub path: String,
}

/// A process name as the kernel keeps it (at most 15 bytes).
pub type Comm = [u8; 16];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    pub pid: Option<Set<u32>>,
    pub ppid: Option<Set<u32>>,
    pub uid: Option<Set<u32>>,
    pub gid: Option<Set<u32>>,
    pub comm: Option<Set<Comm>>,
    pub executable: Option<Set<FileId>>,
    pub parent_executable: Option<Set<FileId>>,
    pub cgroup: Option<Set<Cgroup>>,
    /// Some ancestor (up to [`ANCESTOR_DEPTH`] generations up) is one of
    /// these processes, or runs one of these executables.
    pub ancestor: Option<Set<u32>>,
    pub ancestor_executable: Option<Set<FileId>>,
}

/// Generations an `ancestor:` selector (and `run --tree`) looks up through.
pub const ANCESTOR_DEPTH: usize = crate::abi::types::reflex_limit::REFLEX_ANCESTOR_DEPTH.0 as usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    /// Some of the bits are set.
    Any,
    /// All of the bits are set.
    All,
    /// None of the bits is set.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgCond {
    /// Equal to one of the values (or to none, when negated).
    In(Set<u64>),
    Bits(Bits, u64),
    /// Inclusive bounds; `outside` inverts.
    Range {
        lo: u64,
        hi: u64,
        outside: bool,
    },
    /// The argument is the pid of a protected process (or is not).
    Protected {
        negate: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgMatch {
    /// 0..=5
    pub index: u8,
    pub cond: ArgCond,
    pub at: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Syscall {
    pub name: &'static str,
    pub nr: i32,
}

/// What makes a rule answer: exactly one kind of event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A syscall's entry.
    Entry(Vec<Syscall>),
    /// A syscall's exit, on conditions (`slower_than`, `returns`).
    Exit { syscalls: Vec<Syscall>, exit: Exit },
    /// A security hook (BPF-LSM), which can refuse the operation.
    Hook {
        hook: Hook,
        /// The file the operation is on.
        file: Option<Set<FileId>>,
        /// What to do at syscall entry where BPF-LSM is refused.
        fallback: Option<Action>,
    },
    /// A perf event sample on every CPU.
    Sample(Sample),
}

impl Trigger {
    /// The rule-table entries where the rule answers, with their names.
    pub fn points(&self) -> Vec<(Point, &'static str)> {
        match self {
            Trigger::Entry(calls) => calls.iter().map(|s| (Point::Entry(s.nr), s.name)).collect(),
            Trigger::Exit { syscalls, .. } => syscalls
                .iter()
                .map(|s| (Point::Exit(s.nr), s.name))
                .collect(),
            Trigger::Hook { hook, .. } => vec![(Point::Hook(*hook), hook.lsm())],
            Trigger::Sample(_) => vec![(Point::Sample, "sample")],
        }
    }

    /// The syscalls of a syscall trigger (entry or exit); none otherwise.
    pub fn syscalls(&self) -> &[Syscall] {
        match self {
            Trigger::Entry(calls)
            | Trigger::Exit {
                syscalls: calls, ..
            } => calls,
            Trigger::Hook { .. } | Trigger::Sample(_) => &[],
        }
    }

    pub fn hook(&self) -> Option<Hook> {
        match self {
            Trigger::Hook { hook, .. } => Some(*hook),
            _ => None,
        }
    }

    /// Where the rule answers, for people: `ptrace, kill`, `read exit`,
    /// `lsm/task_kill`, `99 Hz sampling`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Entry(calls) => calls.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
            Trigger::Exit { syscalls, .. } => syscalls
                .iter()
                .map(|s| format!("{} exit", s.name))
                .collect::<Vec<_>>()
                .join(", "),
            Trigger::Hook { hook, .. } => hook.lsm().to_string(),
            Trigger::Sample(s) => format!("{} Hz sampling", s.frequency),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Where the rule's name is written.
    pub at: Location,
    pub trigger: Trigger,
    /// Act only past a number of matching calls in a window.
    pub rate: Option<Rate>,
    /// Signal rules: whom the signal goes to, and the value it carries.
    pub to: To,
    pub value: SigValue,
    /// `{pause: …}`: the SIGSTOP is followed by a SIGCONT after this long.
    pub pause_ns: Option<u64>,
    /// A circuit breaker: past this many distinct things acted on, audit.
    pub disarm: Option<Disarm>,
    pub args: Vec<ArgMatch>,
    pub selectors: Selectors,
    pub action: Action,
    pub mode: Mode,
}

/// A rule's circuit breaker: once it has acted on more than `distinct`
/// different executables, cgroups or processes within `window_ns`, it audits
/// instead of acting, until the next reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disarm {
    pub distinct: u32,
    pub window_ns: u64,
    pub by: DisarmBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisarmBy {
    Executable,
    Cgroup,
    Process,
}

impl DisarmBy {
    pub fn name(self) -> &'static str {
        match self {
            DisarmBy::Executable => "executable",
            DisarmBy::Cgroup => "cgroup",
            DisarmBy::Process => "process",
        }
    }
}

impl Rule {
    /// What the rule does, in words: the action, whom it reaches and when.
    pub fn describe(&self) -> String {
        let mut text = match (self.action, self.to) {
            (Action::Signal { signal, .. }, To::Parent) => format!("{signal} to the parent"),
            (Action::Signal { signal, .. }, To::Pid(pid)) => format!("{signal} to pid {pid}"),
            (action, _) => action.describe(),
        };
        if self.to != To::Caller {
            match self.value {
                SigValue::CallerPid => text.push_str(" (value: the caller's pid)"),
                SigValue::Number(0) => {}
                SigValue::Number(n) => text.push_str(&format!(" (value: {n})")),
            }
        }
        if let Some(ns) = self.pause_ns {
            text.push_str(&format!(", SIGCONT {} later", show_ns(ns)));
        }
        if let Some(r) = self.rate {
            text.push_str(&format!(
                ", past {} calls in {} per {}",
                r.over,
                show_ns(r.window_ns),
                r.by.name()
            ));
        }
        if let Some(d) = self.disarm {
            text.push_str(&format!(
                "; disarmed past {} distinct {}s in {}",
                d.distinct,
                d.by.name(),
                show_ns(d.window_ns)
            ));
        }
        text
    }
}

/// A measured duration, for people: `352.1 ms`, `1.52 s`, `870 ns`.
pub fn show_duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// A duration as policies write it: `1s`, `200ms`, `1500us`.
pub fn show_ns(ns: u64) -> String {
    const UNITS: [(u64, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let (unit, name) = UNITS
        .into_iter()
        .find(|(u, _)| ns % u == 0 && ns >= *u)
        .unwrap_or((1, "ns"));
    format!("{}{name}", ns / unit)
}

impl RateBy {
    pub fn name(self) -> &'static str {
        match self {
            RateBy::Process => "process",
            RateBy::Parent => "parent",
            RateBy::Session => "session",
            RateBy::Cgroup => "cgroup",
        }
    }
}

/// A sampling trigger: a perf event, `frequency` times a second on every CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub frequency: u64,
    pub event: SampleEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEvent {
    /// Software `cpu-clock`: everywhere.
    CpuClock,
    /// Hardware `cycles`: where the machine exposes counters.
    Cycles,
}

/// Conditions at a syscall's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The call took at least this long.
    pub slower_than_ns: Option<u64>,
    /// The call returned one of these (or none of them).
    pub returns: Option<Set<u64>>,
}

/// Act only when more than `over` matching calls happen within `window_ns`
/// in one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub over: u32,
    pub window_ns: u64,
    pub by: RateBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBy {
    Process,
    Parent,
    Session,
    Cgroup,
}

/// Whom a rule's signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum To {
    #[default]
    Caller,
    /// The caller's parent (real_parent).
    Parent,
    /// A process named when the policy loads.
    Pid(u32),
}

/// The si_value a signal to another task carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigValue {
    Number(u64),
    /// The pid of the process that triggered the rule.
    CallerPid,
}

impl Default for SigValue {
    fn default() -> Self {
        SigValue::Number(0)
    }
}

/// Processes no rule may signal, besides pid 1 and reflex itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protect {
    pub pids: Vec<u32>,
    pub executables: Vec<FileId>,
    pub cgroups: Vec<Cgroup>,
}

impl Protect {
    /// Whether the protected set must follow processes as they fork, exec
    /// and exit (pids alone need not).
    pub fn tracks_processes(&self) -> bool {
        !self.executables.is_empty() || !self.cgroups.is_empty()
    }
}

/// Rules in precedence order: the first rule that matches a call answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub protect: Protect,
    /// The files read, in order.
    pub sources: Vec<PathBuf>,
}

impl Policy {
    /// The built-in seed policy.
    pub fn seed() -> Policy {
        load_str(SEED, SEED_NAME.as_ref(), &Env::host())
            .expect("the built-in seed policy is valid")
            .policy
    }

    /// The rule that answers `call`, read rule by rule: the meaning of a
    /// policy, which the compiled tables and the kernel's matcher must agree
    /// with (their tests compare them on random calls).
    pub fn first_match(&self, call: &Call) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(call))
    }
}

/// A call as rules see it: where it is answered, the caller, the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub point: Point,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: Comm,
    /// (kernel dev_t, inode) of the caller's executable, and its parent's.
    pub exe: (u32, u64),
    pub parent_exe: (u32, u64),
    /// The caller's cgroup and its ancestors: the id at each level from the
    /// root (index 0).
    pub cgroups: Vec<u64>,
    /// The six argument registers.
    pub args: [u64; 6],
    /// At an exit: what the call returned, and how long it took (ns).
    pub ret: u64,
    pub duration_ns: u64,
    /// A hook's file, (kernel dev_t, inode); None where the hook has none.
    pub file: Option<(u32, u64)>,
    /// Pids in the protected set (for `protected` argument matchers).
    pub protected: Vec<u32>,
    /// The ancestors' pids, the parent first, and their executables
    /// ((kernel dev_t, inode); the same order).
    pub ancestors: Vec<u32>,
    pub ancestor_exes: Vec<(u32, u64)>,
}

impl Rule {
    /// Whether this rule, on its own, matches `call` (precedence aside).
    pub fn matches(&self, c: &Call) -> bool {
        let ids = |set: &Option<Set<u32>>, v: u32| set.as_ref().is_none_or(|s| s.accepts(&v));
        let file = |set: &Option<Set<FileId>>, (dev, ino): (u32, u64)| {
            set.as_ref()
                .is_none_or(|s| s.values.iter().any(|f| (f.dev, f.ino) == (dev, ino)) != s.negate)
        };
        let s = &self.selectors;
        let at_point = self.trigger.points().iter().any(|(p, _)| *p == c.point);
        // The kernel reads zeros where a hook has no file.
        let hook_file = match &self.trigger {
            Trigger::Hook { file: set, .. } => file(set, c.file.unwrap_or((0, 0))),
            _ => true,
        };
        let exit = match &self.trigger {
            Trigger::Exit { exit, .. } => {
                exit.returns.as_ref().is_none_or(|r| r.accepts(&c.ret))
                    && exit.slower_than_ns.is_none_or(|ns| c.duration_ns >= ns)
            }
            _ => true,
        };
        at_point
            && hook_file
            && exit
            && ids(&s.pid, c.pid)
            && ids(&s.ppid, c.ppid)
            && ids(&s.uid, c.uid)
            && ids(&s.gid, c.gid)
            && s.comm.as_ref().is_none_or(|x| x.accepts(&c.comm))
            && file(&s.executable, c.exe)
            && file(&s.parent_executable, c.parent_exe)
            && s.ancestor.as_ref().is_none_or(|x| {
                let any = c
                    .ancestors
                    .iter()
                    .take(ANCESTOR_DEPTH)
                    .any(|a| x.values.contains(a));
                any != x.negate
            })
            && s.ancestor_executable.as_ref().is_none_or(|x| {
                let any = c
                    .ancestor_exes
                    .iter()
                    .take(ANCESTOR_DEPTH)
                    .any(|&(dev, ino)| x.values.iter().any(|f| (f.dev, f.ino) == (dev, ino)));
                any != x.negate
            })
            && s.cgroup.as_ref().is_none_or(|x| {
                let inside = x
                    .values
                    .iter()
                    .any(|g| c.cgroups.get(g.level as usize) == Some(&g.id));
                inside != x.negate
            })
            && self.args.iter().all(|m| {
                let v = c.args[usize::from(m.index)];
                match &m.cond {
                    ArgCond::In(set) => set.accepts(&v),
                    ArgCond::Bits(Bits::Any, b) => v & b != 0,
                    ArgCond::Bits(Bits::All, b) => v & b == *b,
                    ArgCond::Bits(Bits::None, b) => v & b == 0,
                    ArgCond::Range { lo, hi, outside } => (lo..=hi).contains(&&v) != *outside,
                    ArgCond::Protected { negate } => {
                        let protected = v != 0
                            && u32::try_from(v).is_ok_and(|p| p == 1 || c.protected.contains(&p));
                        protected != *negate
                    }
                }
            })
    }
}
