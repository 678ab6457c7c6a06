//! Stage 5 — sinks: where decisions go (a terminal table, JSON lines, the
//! summary counters). The benchmark's responder (`--features bench`) is one
//! too.

pub mod detached;
mod json;
#[cfg(feature = "bench")]
mod responder;
pub mod stderr;
mod summary;
mod text;

pub use detached::Detached;
pub use json::Json;
#[cfg(feature = "bench")]
pub use responder::Responder;
pub use summary::Summary;
pub use text::Text;

use std::io;
use std::time::Duration;

use crate::events::Event;

/// Where a sink's bytes go: written at once (a buffer in tests), or by a
/// thread of its own ([`Detached`]), which may fail to deliver some.
pub trait Output: io::Write {
    /// Records (lines) that could not be delivered.
    fn undelivered(&self) -> u64 {
        0
    }
    /// A write error not said yet, and how many there were.
    fn take_error(&self) -> Option<(String, u64)> {
        None
    }
    /// Waits up to `wait` for everything to be written.
    fn finish(&mut self, _wait: Duration) -> bool {
        true
    }
}

impl Output for Vec<u8> {}
impl Output for &mut Vec<u8> {}

impl Output for Detached {
    fn undelivered(&self) -> u64 {
        Detached::undelivered(self)
    }
    fn take_error(&self) -> Option<(String, u64)> {
        Detached::take_error(self)
    }
    fn finish(&mut self, wait: Duration) -> bool {
        Detached::finish(self, wait)
    }
}

/// A destination for events.
pub trait Sink {
    /// Called once, after the programs are attached and before any event.
    fn start(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn event(&mut self, event: &Event) -> io::Result<()>;
    /// Called after each batch of events: sinks may buffer until then.
    fn flush(&mut self) -> io::Result<()>;
    /// Events that could not be delivered.
    fn undelivered(&self) -> u64;
    /// A write error not said yet, and how many there were.
    fn take_error(&self) -> Option<(String, u64)>;
    /// Waits up to `wait` for everything to be written.
    fn finish(&mut self, wait: Duration) -> bool;
}
