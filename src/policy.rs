//! Stage 1 — the policy: what the user asked for, in their words.
//!
//! In v0 the only policy is the seed's job (SIGKILL every caller of `ptrace`),
//! adjusted by `reflex run` flags.

use crate::signal::Signal;

/// Which task the signal is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The whole thread group (`bpf_send_signal`).
    Process,
    /// Only the thread that made the call (`bpf_send_signal_thread`).
    Thread,
}

/// Whether decisions are carried out or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Report what enforce would do, send nothing.
    Monitor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// Syscall whose entry triggers the rule.
    pub syscall: String,
    /// Only callers whose parent (`real_parent->tgid`) is this process.
    pub ppid: Option<u32>,
    pub signal: Signal,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub mode: Mode,
    /// Processes no rule may signal, besides pid 1 and reflex itself.
    pub protect: Vec<u32>,
}

impl Policy {
    /// The seed's job: every caller of `ptrace` gets SIGKILL.
    pub fn seed() -> Policy {
        Policy {
            rules: vec![Rule {
                name: "no-ptrace".into(),
                syscall: "ptrace".into(),
                ppid: None,
                signal: Signal::KILL,
                target: Target::Process,
            }],
            mode: Mode::Enforce,
            protect: Vec::new(),
        }
    }
}
