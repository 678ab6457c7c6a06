//! Syscall names and numbers, from the maintained `syscalls` crate tables:
//! the machine's own architecture, and x86_64 or aarch64 on request (so a
//! policy can be checked for the other one).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(format!(
                "unknown architecture '{other}': use x86_64 or aarch64"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown syscall '{name}'{hint}")]
pub struct UnknownSyscall {
    pub name: String,
    hint: String,
}

fn lookup(arch: Arch, name: &str) -> Option<(&'static str, i32)> {
    match arch {
        Arch::X86_64 => name
            .parse::<::syscalls::x86_64::Sysno>()
            .ok()
            .map(|s| (s.name(), s.id())),
        Arch::Aarch64 => name
            .parse::<::syscalls::aarch64::Sysno>()
            .ok()
            .map(|s| (s.name(), s.id())),
    }
}

fn names(arch: Arch) -> Vec<&'static str> {
    match arch {
        Arch::X86_64 => ::syscalls::x86_64::Sysno::iter()
            .map(|s| s.name())
            .collect(),
        Arch::Aarch64 => ::syscalls::aarch64::Sysno::iter()
            .map(|s| s.name())
            .collect(),
    }
}

/// Canonical name and number of a syscall given by name, on `arch`.
pub fn resolve(arch: Arch, name: &str) -> Result<(&'static str, i32), UnknownSyscall> {
    let wanted = name.trim();
    if let Some(found) = lookup(arch, wanted) {
        return Ok(found);
    }
    let hint = match crate::suggest::closest(wanted, names(arch)) {
        Some(s) => format!(" — did you mean '{s}'?"),
        None => format!(" on {arch}"),
    };
    Err(UnknownSyscall {
        name: wanted.to_string(),
        hint,
    })
}

/// Name of a syscall number on the machine's architecture.
pub fn name(nr: i32) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    match Arch::host() {
        Arch::X86_64 => ::syscalls::x86_64::Sysno::new(nr).map(|s| s.name()),
        Arch::Aarch64 => ::syscalls::aarch64::Sysno::new(nr).map(|s| s.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let (name, nr) = resolve(Arch::host(), "ptrace").unwrap();
        assert_eq!(name, "ptrace");
        assert_eq!(nr, libc::SYS_ptrace as i32);
        assert_eq!(super::name(nr), Some("ptrace"));
        assert_eq!(super::name(-1), None);
        assert_eq!(super::name(100_000), None);
    }

    #[test]
    fn both_architectures() {
        assert_eq!(resolve(Arch::X86_64, "ptrace").unwrap().1, 101);
        assert_eq!(resolve(Arch::Aarch64, "ptrace").unwrap().1, 117);
        assert_eq!(resolve(Arch::X86_64, "open").unwrap().1, 2);
        let err = resolve(Arch::Aarch64, "open").unwrap_err().to_string();
        assert!(err.starts_with("unknown syscall 'open'"), "{err}");
    }

    #[test]
    fn typos_get_a_suggestion() {
        let err = resolve(Arch::X86_64, "ptrce").unwrap_err().to_string();
        assert_eq!(err, "unknown syscall 'ptrce' — did you mean 'ptrace'?");
        let err = resolve(Arch::X86_64, "zzzzzzzzzz").unwrap_err().to_string();
        assert_eq!(err, "unknown syscall 'zzzzzzzzzz' on x86_64");
    }
}

/// Which of a syscall's arguments point at what its events name: a path
/// (read from the caller's memory at the syscall's entry), an exec's argv
/// array, the pid acted on. Argument indexes; `None`: no such argument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pointers {
    pub path: Option<u8>,
    pub argv: Option<u8>,
    pub target: Option<u8>,
}

/// The [`Pointers`] of syscall `name` (the same on every architecture).
pub fn pointers(name: &str) -> Pointers {
    let path = match name {
        "open" | "creat" | "execve" | "truncate" | "unlink" | "rmdir" | "mkdir" | "rename"
        | "link" | "chmod" | "chown" | "lchown" | "mknod" | "access" | "stat" | "lstat"
        | "readlink" | "chdir" | "chroot" | "umount2" | "pivot_root" | "swapon" | "swapoff"
        | "acct" | "uselib" | "utime" | "utimes" | "setxattr" | "lsetxattr" | "getxattr"
        | "lgetxattr" | "removexattr" | "lremovexattr" | "statfs" => Some(0),
        "openat" | "openat2" | "execveat" | "unlinkat" | "mkdirat" | "renameat" | "renameat2"
        | "linkat" | "fchmodat" | "fchmodat2" | "fchownat" | "mknodat" | "faccessat"
        | "faccessat2" | "newfstatat" | "statx" | "readlinkat" | "utimensat" | "futimesat"
        | "symlink" | "mount" | "open_tree" | "name_to_handle_at" => Some(1),
        "symlinkat" => Some(2),
        _ => None,
    };
    let argv = match name {
        "execve" => Some(1),
        "execveat" => Some(2),
        _ => None,
    };
    let target = match name {
        "ptrace" | "tgkill" | "rt_tgsigqueueinfo" => Some(1),
        "kill" | "tkill" | "rt_sigqueueinfo" | "process_vm_readv" | "process_vm_writev"
        | "pidfd_open" | "prlimit64" | "kcmp" | "sched_setaffinity" | "sched_setscheduler"
        | "sched_setattr" => Some(0),
        _ => None,
    };
    Pointers { path, argv, target }
}
