//! reflex: kernel-speed reflexes for Linux processes.
//!
//! The data path, stage by stage:
//! [`policy`] (what the user asked) → [`rules`] (compiled, plain data) →
//! [`kernel`] (maps and BPF programs) → [`events`] (decoded decisions) →
//! [`sinks`] (table, JSON lines, summary).
//! [`probe`] finds what the kernel allows; [`cmd`] holds the subcommands.

// Lets test-support files shared with tests/ (rules/calls.rs) name the
// crate as `reflex::` from inside it too.
extern crate self as reflex;

pub mod abi;
pub mod cli;
pub mod cmd;
pub mod events;
pub mod features;
pub mod kernel;
pub mod policy;
pub mod rules;
pub mod signal;
pub mod sinks;
pub mod suggest;
pub mod syscall;
