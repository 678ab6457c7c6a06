//! The syscalls a hook rule falls back to where BPF-LSM is refused, and where
//! the hook's arguments are found at their entry. (The hooks themselves, and
//! what their programs fill in, are the kernel's: [`crate::abi::Hook`].)

pub use crate::abi::Hook;
pub use crate::abi::hook::ALL;

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

/// The syscalls a rule on `hook` falls back to, with where its arguments
/// are found there. `file` never translates.
pub fn fallback(hook: Hook) -> &'static [Fallback] {
    match hook {
        Hook::Ptrace => PTRACE_FALLBACK,
        Hook::Kill => KILL_FALLBACK,
        Hook::Exec => EXEC_FALLBACK,
        Hook::Open => OPEN_FALLBACK,
        Hook::Module => MODULE_FALLBACK,
        Hook::Bpf => BPF_FALLBACK,
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
    fn fallbacks_name_real_syscalls() {
        for h in ALL {
            for f in fallback(h) {
                crate::syscall::resolve(crate::syscall::Arch::host(), f.syscall).unwrap();
                assert!(f.attach_mode == AttachMode::None || h == Hook::Ptrace);
                for (arg, _) in f.args {
                    assert!(h.arg_names().contains(arg), "{h:?} {arg}");
                }
            }
        }
    }
}
