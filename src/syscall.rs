//! Syscall names and numbers for the architecture reflex runs on, from the
//! maintained `syscalls` crate tables (x86_64 and aarch64).

#[cfg(target_arch = "aarch64")]
use ::syscalls::aarch64::Sysno;
#[cfg(target_arch = "x86_64")]
use ::syscalls::x86_64::Sysno;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown syscall '{name}'{hint}")]
pub struct UnknownSyscall {
    pub name: String,
    hint: String,
}

/// Canonical name and number of a syscall given by name.
pub fn resolve(name: &str) -> Result<(&'static str, i32), UnknownSyscall> {
    let wanted = name.trim();
    if let Ok(sysno) = wanted.parse::<Sysno>() {
        return Ok((sysno.name(), sysno.id()));
    }
    let hint = crate::suggest::closest(wanted, Sysno::iter().map(|s| s.name()))
        .map(|s| format!(" — did you mean '{s}'?"))
        .unwrap_or_else(|| format!(" on {}", std::env::consts::ARCH));
    Err(UnknownSyscall {
        name: wanted.to_string(),
        hint,
    })
}

/// Name of a syscall number, if this architecture has one.
pub fn name(nr: i32) -> Option<&'static str> {
    Sysno::new(usize::try_from(nr).ok()?).map(|s| s.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let (name, nr) = resolve("ptrace").unwrap();
        assert_eq!(name, "ptrace");
        assert_eq!(nr, libc::SYS_ptrace as i32);
        assert_eq!(super::name(nr), Some("ptrace"));
        assert_eq!(super::name(-1), None);
        assert_eq!(super::name(100_000), None);
    }

    #[test]
    fn typos_get_a_suggestion() {
        let err = resolve("ptrce").unwrap_err().to_string();
        assert_eq!(err, "unknown syscall 'ptrce' — did you mean 'ptrace'?");
        let err = resolve("zzzzzzzzzz").unwrap_err().to_string();
        assert!(err.starts_with("unknown syscall 'zzzzzzzzzz' on "), "{err}");
    }
}
