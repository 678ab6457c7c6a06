//! Stage 4 — events: kernel records decoded into what people and programs
//! read, each named by the install that decided it, with who, what and where
//! as the kernel saw them at the decision ([`identity`]).

pub mod identity;

pub use identity::{Container, Identity, Process, Relative};

use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::time::{ClockId, clock_gettime};

use crate::abi::types::{reflex_action as A, reflex_event, reflex_skip as K, reflex_target};
use crate::abi::{self, Hook, Point};
use crate::kernel::RuleNames;
use crate::policy::Target;
use crate::signal::Signal;
use crate::syscall;

/// What the kernel did about one matched call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Signalled,
    /// The helper returned this error.
    Failed(Errno),
    /// Dry run: this is what would have been sent.
    WouldSignal,
    /// A safety rule stopped the signal.
    Skipped(SkipReason),
    /// The rule only reports.
    Audited,
    /// A security hook refused the operation with this error.
    Denied(Errno),
    /// Monitor mode: the hook would have refused with this error.
    WouldDeny(Errno),
    /// reflex sent the SIGCONT that ends a pause.
    Resumed,
    /// The rule's circuit breaker is open: audited instead of acting.
    Disarmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Init,
    KernelThread,
    Reflex,
    Protected,
    /// The same, of the task a `to:` rule would have signalled.
    TargetInit,
    TargetKernelThread,
    TargetReflex,
    TargetProtected,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Init => "pid 1 is never signalled",
            SkipReason::KernelThread => "kernel threads are never signalled",
            SkipReason::Reflex => "reflex never signals itself",
            SkipReason::Protected => "process is in the protected list",
            SkipReason::TargetInit => "the target is pid 1, which is never signalled",
            SkipReason::TargetKernelThread => "the target is a kernel thread, never signalled",
            SkipReason::TargetReflex => "the target is reflex, which never signals itself",
            SkipReason::TargetProtected => "the target is in the protected list",
        }
    }
}

impl Outcome {
    /// The `action` field of JSON output.
    pub fn action(self) -> &'static str {
        match self {
            Outcome::Signalled => "signalled",
            Outcome::Failed(_) => "failed",
            Outcome::WouldSignal => "would-signal",
            Outcome::Skipped(_) => "skipped",
            Outcome::Audited => "audited",
            Outcome::Denied(_) => "denied",
            Outcome::WouldDeny(_) => "would-deny",
            Outcome::Resumed => "resumed",
            Outcome::Disarmed => "disarmed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: SystemTime,
    pub rule: String,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// The syscall, or for hook rules the LSM hook (`lsm/file_open`).
    pub syscall: String,
    /// Set when the event comes from a security hook.
    pub hook: Option<Hook>,
    /// Exit rules: what the syscall returned and how long it took.
    pub exit: Option<ExitInfo>,
    /// Rate rules: the matching calls counted in the window, and the window.
    pub rate: Option<(u64, u64)>,
    /// The process signalled, when it is not the caller (`to:`).
    pub to_pid: Option<u32>,
    pub args: [u64; 6],
    pub cgroup_id: u64,
    /// None for audit rules.
    pub signal: Option<Signal>,
    pub target: Target,
    pub outcome: Outcome,
    /// Who, what, where (empty for events reflex makes itself).
    pub identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub ret: i64,
    pub duration_ns: u64,
}

/// The `action` name (as in events) of a kernel action code, as the
/// kernel's per-rule counters are indexed.
pub fn action_name(code: u8) -> &'static str {
    match A(u32::from(code)) {
        A::REFLEX_ACTION_SIGNALLED => "signalled",
        A::REFLEX_ACTION_FAILED => "failed",
        A::REFLEX_ACTION_WOULD_SIGNAL => "would-signal",
        A::REFLEX_ACTION_SKIPPED => "skipped",
        A::REFLEX_ACTION_AUDITED => "audited",
        A::REFLEX_ACTION_DENIED => "denied",
        A::REFLEX_ACTION_WOULD_DENY => "would-deny",
        A::REFLEX_ACTION_DISARMED => "disarmed",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record of {got} bytes, expected {want}: reflex and its BPF object disagree")]
    Size { got: usize, want: usize },
    #[error("event record has unknown {field} value {value}")]
    Field { field: &'static str, value: i64 },
}

/// Turns the kernel's boot-time clock into wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock time at boot, in ns since the epoch.
    boot_epoch_ns: i128,
}

impl Clock {
    pub fn new() -> Clock {
        let ns = |id| {
            let t = clock_gettime(id).expect("CLOCK_REALTIME and CLOCK_BOOTTIME exist");
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        Clock {
            boot_epoch_ns: ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME),
        }
    }

    /// CLOCK_BOOTTIME now, in ns (the kernel's bpf_ktime_get_boot_ns).
    pub fn boot_now(&self) -> u64 {
        let t = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME exists");
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (self.boot_epoch_ns + i128::from(boot_ns)).max(0);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Event {
    /// The end of a pause: made by reflex, not by the kernel.
    pub fn resumed(pid: u32, rule: &str) -> Event {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        Event {
            time: SystemTime::now(),
            rule: rule.to_string(),
            pid,
            tid: pid,
            ppid: 0,
            uid: 0,
            gid: 0,
            comm,
            syscall: String::new(),
            hook: None,
            exit: None,
            rate: None,
            to_pid: None,
            args: [0; 6],
            cgroup_id: 0,
            signal: Signal::from_number(libc::SIGCONT),
            target: Target::Process,
            outcome: Outcome::Resumed,
            identity: Identity::default(),
        }
    }

    /// Decodes one ring buffer record; `rules` names the rules of each set.
    pub fn decode(bytes: &[u8], clock: &Clock, rules: &RuleNames) -> Result<Event, DecodeError> {
        // A record holds the header and the strings in use: at least the
        // header, at most the whole struct; the rest reads as zeros.
        let header = std::mem::offset_of!(reflex_event, strings);
        let whole = std::mem::size_of::<reflex_event>();
        if bytes.len() < header || bytes.len() > whole {
            return Err(DecodeError::Size {
                got: bytes.len(),
                want: whole,
            });
        }
        let raw: Box<reflex_event> = abi::read_prefix(bytes).expect("sized above");
        Event::from_raw(&raw, clock, rules)
    }

    pub fn from_raw(
        raw: &reflex_event,
        clock: &Clock,
        rules: &RuleNames,
    ) -> Result<Event, DecodeError> {
        let field = |field, value: i64| DecodeError::Field { field, value };
        let outcome = match A(u32::from(raw.action)) {
            A::REFLEX_ACTION_SIGNALLED => Outcome::Signalled,
            A::REFLEX_ACTION_FAILED => Outcome::Failed(Errno::from_raw(-raw.result)),
            A::REFLEX_ACTION_WOULD_SIGNAL => Outcome::WouldSignal,
            A::REFLEX_ACTION_AUDITED => Outcome::Audited,
            A::REFLEX_ACTION_DENIED => Outcome::Denied(Errno::from_raw(raw.error)),
            A::REFLEX_ACTION_WOULD_DENY => Outcome::WouldDeny(Errno::from_raw(raw.error)),
            A::REFLEX_ACTION_DISARMED => Outcome::Disarmed,
            A::REFLEX_ACTION_SKIPPED => Outcome::Skipped(match K(u32::from(raw.skip)) {
                K::REFLEX_SKIP_INIT => SkipReason::Init,
                K::REFLEX_SKIP_KTHREAD => SkipReason::KernelThread,
                K::REFLEX_SKIP_SELF => SkipReason::Reflex,
                K::REFLEX_SKIP_PROTECTED => SkipReason::Protected,
                K::REFLEX_SKIP_TARGET_INIT => SkipReason::TargetInit,
                K::REFLEX_SKIP_TARGET_KTHREAD => SkipReason::TargetKernelThread,
                K::REFLEX_SKIP_TARGET_SELF => SkipReason::TargetReflex,
                K::REFLEX_SKIP_TARGET_PROTECTED => SkipReason::TargetProtected,
                other => return Err(field("skip", other.0.into())),
            }),
            other => return Err(field("action", other.0.into())),
        };
        let target = match reflex_target(u32::from(raw.target)) {
            reflex_target::REFLEX_TARGET_PROCESS => Target::Process,
            reflex_target::REFLEX_TARGET_THREAD => Target::Thread,
            other => return Err(field("target", other.0.into())),
        };
        let signal = match (outcome, raw.signal) {
            (Outcome::Audited, _) | (_, 0) => None,
            (_, n) => Some(Signal::from_number(n).ok_or_else(|| field("signal", n.into()))?),
        };
        let point = Point::of(raw.syscall_nr);
        let hook = match point {
            Point::Hook(h) => Some(h),
            _ => None,
        };
        let rule = rules
            .get(raw.generation, raw.rule)
            .map(str::to_string)
            .unwrap_or_else(|| format!("rule #{} of install {}", raw.rule, raw.generation));
        let comm: Vec<u8> = raw
            .comm
            .iter()
            .map(|&c| c as u8)
            .take_while(|&c| c != 0)
            .collect();
        Ok(Event {
            time: clock.wall(raw.boot_ns),
            rule,
            pid: raw.pid,
            tid: raw.tid,
            ppid: raw.ppid,
            uid: raw.uid,
            gid: raw.gid,
            comm: String::from_utf8_lossy(&comm).into_owned(),
            syscall: match point {
                Point::Hook(h) => h.lsm().to_string(),
                Point::Sample => "sample".to_string(),
                Point::Entry(nr) | Point::Exit(nr) => syscall::name(nr)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("syscall_{nr}")),
            },
            hook,
            exit: (raw.exit != 0).then_some(ExitInfo {
                ret: raw.ret,
                duration_ns: raw.duration_ns,
            }),
            rate: (raw.window_ns != 0).then_some((raw.count, raw.window_ns)),
            to_pid: (raw.to_pid != 0).then_some(raw.to_pid),
            args: raw.args,
            cgroup_id: raw.cgroup_id,
            signal,
            target,
            outcome,
            identity: Identity::decode(raw, clock),
        })
    }

    /// The bpf() command of a `bpf` hook or syscall event (`BPF_PROG_LOAD`).
    pub fn bpf_cmd(&self) -> Option<&'static str> {
        (self.hook == Some(Hook::Bpf) || (self.hook.is_none() && self.syscall == "bpf"))
            .then(|| crate::policy::constants::bpf_cmd_name(self.args[0]))
            .flatten()
    }
}

/// This machine's host name, as events name it (`node`).
pub fn node_name() -> String {
    // In a container the host name is the container's: a DaemonSet names the
    // node with the downward API (`spec.nodeName`).
    if let Some(node) = std::env::var("REFLEX_NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
    {
        return node;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn names() -> RuleNames {
        let mut names = RuleNames::default();
        names.add(1, vec!["no-ptrace".to_string()]);
        names
    }

    /// A record as the kernel would write it for `strace` calling ptrace.
    pub(crate) fn raw_event() -> reflex_event {
        let mut raw = reflex_event {
            boot_ns: 1_000_000_000,
            pid: 4242,
            tid: 4243,
            ppid: 4000,
            uid: 1000,
            gid: 1000,
            syscall_nr: libc::SYS_ptrace as i32,
            generation: 1,
            signal: 9,
            result: 0,
            action: A::REFLEX_ACTION_SIGNALLED.0 as u8,
            ..Default::default()
        };
        for (dst, src) in raw.comm.iter_mut().zip(b"strace") {
            *dst = *src as i8;
        }
        raw
    }

    fn as_bytes(raw: &reflex_event) -> Vec<u8> {
        abi::bytes(raw).to_vec()
    }

    #[test]
    fn decodes_a_kernel_record() {
        let clock = Clock { boot_epoch_ns: 0 };
        let e = Event::decode(&as_bytes(&raw_event()), &clock, &names()).unwrap();
        assert_eq!(e.rule, "no-ptrace");
        assert_eq!(e.pid, 4242);
        assert_eq!(e.tid, 4243);
        assert_eq!(e.comm, "strace");
        assert_eq!(e.syscall, "ptrace");
        assert_eq!(e.signal, Some(Signal::KILL));
        assert_eq!(e.outcome, Outcome::Signalled);
        assert_eq!(e.time, SystemTime::UNIX_EPOCH + Duration::from_secs(1));
    }

    #[test]
    fn counters_and_events_name_actions_alike() {
        for code in 1..types_max() {
            let mut raw = raw_event();
            raw.action = code;
            raw.skip = crate::abi::types::reflex_skip::REFLEX_SKIP_INIT.0 as u8;
            let e = Event::from_raw(&raw, &Clock::new(), &names()).unwrap();
            assert_eq!(action_name(code), e.outcome.action(), "{code}");
        }
    }

    fn types_max() -> u8 {
        A::REFLEX_ACTION_MAX.0 as u8
    }

    #[test]
    fn failures_carry_the_errno() {
        let mut raw = raw_event();
        raw.action = A::REFLEX_ACTION_FAILED.0 as u8;
        raw.result = -libc::EAGAIN;
        let e = Event::from_raw(&raw, &Clock::new(), &names()).unwrap();
        assert_eq!(e.outcome, Outcome::Failed(Errno::EAGAIN));
    }

    #[test]
    fn a_record_carries_its_strings_in_use_only() {
        let raw = raw_event();
        let header = std::mem::offset_of!(reflex_event, strings);
        let e = Event::decode(&abi::bytes(&raw)[..header], &Clock::new(), &names()).unwrap();
        assert_eq!(e.pid, 4242);
        assert_eq!(e.identity.process.exe, None);
    }

    #[test]
    fn short_or_corrupt_records_are_errors() {
        let clock = Clock::new();
        assert!(matches!(
            Event::decode(&[0u8; 8], &clock, &names()),
            Err(DecodeError::Size { got: 8, .. })
        ));
        let mut raw = raw_event();
        raw.action = 99;
        assert_eq!(
            Event::from_raw(&raw, &clock, &names()),
            Err(DecodeError::Field {
                field: "action",
                value: 99
            })
        );
    }

    #[test]
    fn audits_carry_no_signal_and_unknown_rules_are_named_by_index() {
        let mut raw = raw_event();
        raw.action = A::REFLEX_ACTION_AUDITED.0 as u8;
        raw.signal = 0;
        raw.rule = 7;
        let e = Event::from_raw(&raw, &Clock::new(), &names()).unwrap();
        assert_eq!(e.outcome, Outcome::Audited);
        assert_eq!(e.signal, None);
        assert_eq!(e.rule, "rule #7 of install 1");
    }

    #[test]
    fn events_are_named_by_the_install_that_decided_them() {
        let mut names = names();
        names.add(2, vec!["newer".to_string()]);
        let mut raw = raw_event();
        assert_eq!(
            Event::from_raw(&raw, &Clock::new(), &names).unwrap().rule,
            "no-ptrace"
        );
        raw.generation = 2;
        assert_eq!(
            Event::from_raw(&raw, &Clock::new(), &names).unwrap().rule,
            "newer"
        );
        for g in 3..100 {
            names.add(g, vec![format!("r{g}")]);
        }
        raw.generation = 1;
        assert_eq!(
            Event::from_raw(&raw, &Clock::new(), &names).unwrap().rule,
            "rule #0 of install 1",
            "only recent installs are remembered"
        );
    }

    #[test]
    fn denials_name_their_hook_and_errno() {
        let mut raw = raw_event();
        raw.action = A::REFLEX_ACTION_DENIED.0 as u8;
        raw.error = libc::EPERM;
        raw.signal = 0;
        raw.syscall_nr = Point::Hook(Hook::Ptrace).index();
        let e = Event::from_raw(&raw, &Clock::new(), &names()).unwrap();
        assert_eq!(e.outcome, Outcome::Denied(Errno::EPERM));
        assert_eq!(e.hook, Some(Hook::Ptrace));
        assert_eq!(e.syscall, "lsm/ptrace_access_check");
        assert_eq!(e.signal, None);
    }

    #[test]
    fn exits_rates_and_other_targets() {
        let mut raw = raw_event();
        raw.syscall_nr = Point::Exit(libc::SYS_read as i32).index();
        raw.args[0] = 3;
        raw.exit = 1;
        raw.ret = -13;
        raw.duration_ns = 250_000_000;
        raw.count = 51;
        raw.window_ns = 1_000_000_000;
        raw.to_pid = 77;
        let e = Event::from_raw(&raw, &Clock::new(), &names()).unwrap();
        assert_eq!(e.syscall, "read");
        assert_eq!(
            e.exit,
            Some(ExitInfo {
                ret: -13,
                duration_ns: 250_000_000
            })
        );
        assert_eq!(e.args[0], 3, "an exit keeps its arguments");
        assert_eq!(e.rate, Some((51, 1_000_000_000)));
        assert_eq!(e.to_pid, Some(77));
    }

    #[test]
    fn clock_maps_boot_time_near_now() {
        let clock = Clock::new();
        let boot = clock_gettime(ClockId::CLOCK_BOOTTIME).unwrap();
        let boot_ns = boot.tv_sec() as u64 * 1_000_000_000 + boot.tv_nsec() as u64;
        let skew = clock
            .wall(boot_ns)
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(1), "{skew:?}");
    }
}
