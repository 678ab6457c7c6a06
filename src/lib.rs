//! reflex: kernel-speed reflexes for Linux processes.
//!
//! The data path, stage by stage:
//! [`policy`] (what the user asked) → [`rules`] (compiled, plain data) →
//! [`kernel`] (maps and BPF programs) → [`events`] (decoded decisions) →
//! [`sinks`] (table, JSON lines, summary).
//! [`probe`] finds what the kernel allows; [`cmd`] holds the subcommands.

pub mod cli;
pub mod cmd;
pub mod events;
pub mod kernel;
pub mod policy;
pub mod probe;
pub mod rules;
pub mod signal;
pub mod sinks;
pub mod suggest;
pub mod syscall;
