//! The subcommands: `run` (the data path end to end, its reloads and its
//! orderly stop), `validate` and `check`; `watch` notices policy changes.

pub mod check;
pub mod docs;
pub mod guardian;
pub mod run;
pub mod validate;
mod wakeups;
mod watch;
