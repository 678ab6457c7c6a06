//! Stage 2 — compiled rules: the policy reduced to the plain values the kernel
//! programs read.

use crate::policy::{Mode, Policy, Target};
use crate::signal::Signal;
use crate::syscall;

/// The configuration of the kernel side, ready to be written into its
/// read-only data and maps before load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Name of the rule, reported with each event.
    pub rule: String,
    pub syscall: &'static str,
    pub syscall_nr: i32,
    /// 0 means any parent.
    pub target_ppid: u32,
    pub signal: Signal,
    pub target: Target,
    pub dry_run: bool,
    pub protect: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("this version of reflex runs exactly one rule; the policy has {0}")]
    RuleCount(usize),
    #[error("rule '{rule}': {source}")]
    Syscall {
        rule: String,
        source: syscall::UnknownSyscall,
    },
    #[error(
        "rule '{rule}': syscall '{syscall}' has no tracepoint program in this version (only ptrace)"
    )]
    Unsupported { rule: String, syscall: String },
    #[error("--ppid 0 would match nothing real: omit --ppid to match every parent")]
    PpidZero,
    #[error("pid 0 cannot be protected: pids start at 1")]
    ProtectZero,
}

pub fn compile(policy: &Policy) -> Result<Compiled, CompileError> {
    let [rule] = policy.rules.as_slice() else {
        return Err(CompileError::RuleCount(policy.rules.len()));
    };
    let (syscall, syscall_nr) =
        syscall::resolve(&rule.syscall).map_err(|source| CompileError::Syscall {
            rule: rule.name.clone(),
            source,
        })?;
    if syscall != "ptrace" {
        return Err(CompileError::Unsupported {
            rule: rule.name.clone(),
            syscall: syscall.into(),
        });
    }
    if rule.ppid == Some(0) {
        return Err(CompileError::PpidZero);
    }
    if policy.protect.contains(&0) {
        return Err(CompileError::ProtectZero);
    }
    Ok(Compiled {
        rule: rule.name.clone(),
        syscall,
        syscall_nr,
        target_ppid: rule.ppid.unwrap_or(0),
        signal: rule.signal,
        target: rule.target,
        dry_run: policy.mode == Mode::Monitor,
        protect: policy.protect.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_compiles_to_sigkill_on_ptrace_for_everyone() {
        let c = compile(&Policy::seed()).unwrap();
        assert_eq!(c.syscall, "ptrace");
        assert_eq!(c.syscall_nr, syscall::resolve("ptrace").unwrap().1);
        assert_eq!(c.target_ppid, 0);
        assert_eq!(c.signal, Signal::KILL);
        assert_eq!(c.target, Target::Process);
        assert!(!c.dry_run);
    }

    #[test]
    fn monitor_mode_is_a_dry_run() {
        let mut p = Policy::seed();
        p.mode = Mode::Monitor;
        p.rules[0].ppid = Some(42);
        let c = compile(&p).unwrap();
        assert!(c.dry_run);
        assert_eq!(c.target_ppid, 42);
    }

    #[test]
    fn errors() {
        let mut p = Policy::seed();
        p.rules[0].ppid = Some(0);
        assert_eq!(compile(&p), Err(CompileError::PpidZero));

        let mut p = Policy::seed();
        p.protect = vec![0];
        assert_eq!(compile(&p), Err(CompileError::ProtectZero));

        let mut p = Policy::seed();
        p.rules.push(p.rules[0].clone());
        assert_eq!(compile(&p), Err(CompileError::RuleCount(2)));

        let mut p = Policy::seed();
        p.rules[0].syscall = "ptrce".into();
        let err = compile(&p).unwrap_err().to_string();
        assert!(err.contains("did you mean 'ptrace'?"), "{err}");

        let mut p = Policy::seed();
        p.rules[0].syscall = "kill".into();
        assert!(matches!(compile(&p), Err(CompileError::Unsupported { .. })));
    }
}
