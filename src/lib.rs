//! reflex: kernel-speed reflexes for Linux processes.
//!
//! The data path, stage by stage, each importing only the stages before it:
//! [`policy`] (what the user asked) → [`rules`] (compiled, plain data, and
//! its encoding in the kernel's structs) → [`kernel`] (maps, BPF programs
//! and where they are attached) → [`events`] (decoded decisions) →
//! [`sinks`] (table, JSON lines, summary).
//!
//! Beneath them all: [`abi`], the kernel/user boundary (the generated types,
//! limits, the rule-table index), which imports nothing; [`features`], what
//! this kernel allows, probed once; and small leaves ([`signal`],
//! [`syscall`], [`suggest`]). Above them: [`cli`] and [`cmd`], the
//! subcommands.

// Lets test-support files shared with tests/ (rules/calls.rs) name the
// crate as `reflex::` from inside it too.
extern crate self as reflex;

pub mod abi;
pub mod cli;
pub mod cmd;
pub mod escape;
pub mod events;
pub mod features;
pub mod kernel;
pub mod policy;
pub mod rules;
pub mod service;
pub mod signal;
pub mod sinks;
pub mod suggest;
pub mod syscall;
pub mod timings;
