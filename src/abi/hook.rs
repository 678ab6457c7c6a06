//! The security hooks (BPF-LSM) reflex has programs for: their kernel names,
//! their entries in the rule table, and what each program puts in the rule
//! arguments (`enum reflex_hook` in reflex.h).

use super::types::reflex_hook as H;

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

    /// Its entry in the rule table, after the syscalls.
    pub(super) fn index(self) -> i32 {
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

    pub(super) fn from_index(index: i32) -> Option<Hook> {
        ALL.into_iter().find(|h| h.index() == index)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes_round_trip() {
        for h in ALL {
            assert_eq!(Hook::from_name(h.name()), Some(h));
            assert_eq!(Hook::from_index(h.index()), Some(h));
        }
        assert_eq!(Hook::from_index(libc::SYS_ptrace as i32), None);
        assert_eq!(Hook::from_name("exce"), None);
    }
}
