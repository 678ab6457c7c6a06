//! Stage 5 — sinks: where decisions go (a terminal table, JSON lines, the
//! summary counters). The benchmark's responder (`--features bench`) is one
//! too.

mod json;
#[cfg(feature = "bench")]
mod responder;
mod summary;
mod text;

pub use json::Json;
#[cfg(feature = "bench")]
pub use responder::Responder;
pub use summary::Summary;
pub use text::Text;

use std::io;

use crate::events::Event;

/// A destination for events.
pub trait Sink {
    /// Called once, after the programs are attached and before any event.
    fn start(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn event(&mut self, event: &Event) -> io::Result<()>;
    /// Called after each batch of events: sinks may buffer until then.
    fn flush(&mut self) -> io::Result<()>;
}
