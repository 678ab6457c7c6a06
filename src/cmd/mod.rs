//! The subcommands.

pub mod check;
pub mod run;
pub mod validate;
mod watch;
