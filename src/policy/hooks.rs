//! Security hooks (BPF-LSM) a rule can be triggered by, what each offers to
//! match on, and the syscalls a rule falls back to where BPF-LSM is refused.

use crate::kernel::types::reflex_hook as H;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `ptrace_access_check`: attaching (ptrace ATTACH/SEIZE), reading
    /// /proc/PID/mem, process_vm_readv/writev, …
    Ptrace,
    /// `bprm_check_security`: executing a file.
    Exec,
    /// `file_open`: opening a file.
    Open,
    /// `task_kill`: sending a signal.
    Kill,
    /// `kernel_read_file` / `kernel_load_data`: loading a kernel module.
    Module,
    /// `bpf`: the bpf() syscall (loading programs, creating maps, …).
    Bpf,
}

pub const ALL: [Hook; 6] = [
    Hook::Ptrace,
    Hook::Exec,
    Hook::Open,
    Hook::Kill,
    Hook::Module,
    Hook::Bpf,
];

/// How a hook argument is found at a fallback syscall's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    pub syscall: &'static str,
    /// (hook argument name, syscall argument index)
    pub args: &'static [(&'static str, u8)],
    /// ptrace's `mode` has no argument of its own: at `ptrace` an attaching
    /// mode is the request (ATTACH or SEIZE, argument 0); process_vm_readv
    /// and writev always attach.
    pub attach_mode: AttachMode,
    /// Its `target` is a thread id, which reads as the process only for the
    /// main thread (whose id is the pid).
    pub target_is_thread: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// No translation of `mode`.
    None,
    /// The ptrace request (argument 0) is PTRACE_ATTACH or PTRACE_SEIZE.
    Request,
    /// This syscall always checks in attach mode.
    Always,
}

impl Hook {
    pub fn from_name(name: &str) -> Option<Hook> {
        ALL.into_iter().find(|h| h.name() == name)
    }

    /// As written in policies.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Ptrace => "ptrace",
            Hook::Exec => "exec",
            Hook::Open => "open",
            Hook::Kill => "kill",
            Hook::Module => "module",
            Hook::Bpf => "bpf",
        }
    }

    /// The kernel's LSM hook, as events name it.
    pub fn lsm(self) -> &'static str {
        match self {
            Hook::Ptrace => "lsm/ptrace_access_check",
            Hook::Exec => "lsm/bprm_check_security",
            Hook::Open => "lsm/file_open",
            Hook::Kill => "lsm/task_kill",
            Hook::Module => "lsm/kernel_read_file",
            Hook::Bpf => "lsm/bpf",
        }
    }

    /// Its entry in the rule tables, after the syscalls.
    pub fn nr(self) -> i32 {
        (match self {
            Hook::Ptrace => H::REFLEX_HOOK_PTRACE,
            Hook::Exec => H::REFLEX_HOOK_EXEC,
            Hook::Open => H::REFLEX_HOOK_OPEN,
            Hook::Kill => H::REFLEX_HOOK_KILL,
            Hook::Module => H::REFLEX_HOOK_MODULE,
            Hook::Bpf => H::REFLEX_HOOK_BPF,
        })
        .0 as i32
    }

    pub fn from_nr(nr: i32) -> Option<Hook> {
        ALL.into_iter().find(|h| h.nr() == nr)
    }

    /// Names of the integer arguments the hook's program fills, by index.
    pub fn arg_names(self) -> &'static [&'static str] {
        match self {
            Hook::Ptrace => &["target", "mode"],
            Hook::Kill => &["target", "sig"],
            Hook::Open => &["", "flags"],
            Hook::Bpf => &["cmd"],
            Hook::Exec | Hook::Module => &[],
        }
    }

    /// Whether the hook has a file that `file:` can match.
    pub fn has_file(self) -> bool {
        matches!(self, Hook::Exec | Hook::Open | Hook::Module)
    }

    /// The syscalls a rule on this hook falls back to, with where its
    /// arguments are found there. `file` never translates.
    pub fn fallback(self) -> &'static [Fallback] {
        match self {
            Hook::Ptrace => PTRACE_FALLBACK,
            Hook::Kill => KILL_FALLBACK,
            Hook::Exec => EXEC_FALLBACK,
            Hook::Open => OPEN_FALLBACK,
            Hook::Module => MODULE_FALLBACK,
            Hook::Bpf => BPF_FALLBACK,
        }
    }
}

const fn f(syscall: &'static str, args: &'static [(&'static str, u8)]) -> Fallback {
    Fallback {
        syscall,
        args,
        attach_mode: AttachMode::None,
        target_is_thread: false,
    }
}

const fn by_thread(syscall: &'static str, args: &'static [(&'static str, u8)]) -> Fallback {
    Fallback {
        target_is_thread: true,
        ..f(syscall, args)
    }
}

const fn with_mode(
    syscall: &'static str,
    args: &'static [(&'static str, u8)],
    m: AttachMode,
) -> Fallback {
    Fallback {
        attach_mode: m,
        ..f(syscall, args)
    }
}

const PTRACE_FALLBACK: &[Fallback] = &[
    with_mode("ptrace", &[("target", 1)], AttachMode::Request),
    with_mode("process_vm_readv", &[("target", 0)], AttachMode::Always),
    with_mode("process_vm_writev", &[("target", 0)], AttachMode::Always),
];
// pidfd_send_signal names its target by a file descriptor: a rule that
// matches `target` leaves it out (and says so).
const KILL_FALLBACK: &[Fallback] = &[
    f("kill", &[("target", 0), ("sig", 1)]),
    by_thread("tkill", &[("target", 0), ("sig", 1)]),
    f("tgkill", &[("target", 0), ("sig", 2)]),
    f("rt_sigqueueinfo", &[("target", 0), ("sig", 1)]),
    f("rt_tgsigqueueinfo", &[("target", 0), ("sig", 2)]),
    f("pidfd_send_signal", &[("sig", 1)]),
];
const EXEC_FALLBACK: &[Fallback] = &[f("execve", &[]), f("execveat", &[])];
const OPEN_FALLBACK: &[Fallback] = &[f("open", &[]), f("openat", &[]), f("creat", &[])];
const MODULE_FALLBACK: &[Fallback] = &[f("init_module", &[]), f("finit_module", &[])];
const BPF_FALLBACK: &[Fallback] = &[f("bpf", &[("cmd", 0)])];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for h in ALL {
            assert_eq!(Hook::from_name(h.name()), Some(h));
            assert_eq!(Hook::from_nr(h.nr()), Some(h));
        }
        assert_eq!(Hook::from_nr(libc::SYS_ptrace as i32), None);
        assert_eq!(Hook::from_name("exce"), None);
    }

    #[test]
    fn fallbacks_name_real_syscalls() {
        for h in ALL {
            for f in h.fallback() {
                crate::syscall::resolve(crate::syscall::Arch::host(), f.syscall).unwrap();
                assert!(f.attach_mode == AttachMode::None || h == Hook::Ptrace);
                for (arg, _) in f.args {
                    assert!(h.arg_names().contains(arg), "{h:?} {arg}");
                }
            }
        }
    }
}
