//! Stage 5 — sinks: where decisions go (a terminal table, JSON lines, the
//! summary counters). The benchmark's responder (`--features bench`) is one
//! too.

pub mod detached;
mod file;
pub mod json;
#[cfg(feature = "bench")]
mod responder;
pub mod stderr;
mod summary;
mod text;

pub use detached::Detached;
pub use file::FileOutput;
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
    /// Opens its file again; None when it writes no file. The file's name.
    fn reopen(&mut self) -> Option<io::Result<String>> {
        None
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

/// Every event to several sinks (the table on a terminal and JSON lines in
/// a file, at once), each counted apart.
pub struct Fanout(pub Vec<(&'static str, Box<dyn Sink>)>);

impl Fanout {
    /// Undelivered events by sink.
    pub fn undelivered_by_sink(&self) -> Vec<(&'static str, u64)> {
        self.0.iter().map(|(n, s)| (*n, s.undelivered())).collect()
    }
}

impl Sink for Fanout {
    fn start(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|(_, s)| s.start())
    }
    fn event(&mut self, event: &Event) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|(_, s)| s.event(event))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|(_, s)| s.flush())
    }
    fn undelivered(&self) -> u64 {
        self.0.iter().map(|(_, s)| s.undelivered()).sum()
    }
    fn take_error(&self) -> Option<(String, u64)> {
        self.0.iter().find_map(|(_, s)| s.take_error())
    }
    fn finish(&mut self, wait: Duration) -> bool {
        self.0
            .iter_mut()
            .fold(true, |all, (_, s)| s.finish(wait) && all)
    }
    fn reopen(&mut self) -> Option<io::Result<String>> {
        self.0.iter_mut().find_map(|(_, s)| s.reopen())
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
    /// Opens its file again (SIGUSR1); None when it writes no file.
    fn reopen(&mut self) -> Option<io::Result<String>> {
        None
    }
}
