//! reflex's own lines (the banner, warnings, the summary) and its logs, on
//! stderr through a [`Detached`] writer: a stderr nobody reads (a full pipe)
//! never holds the loop that enforces. [`finish`] waits a little for them to
//! be written before reflex exits.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::detached::Detached;

static STDERR: Mutex<Option<Detached>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Detached) -> T) -> T {
    let mut guard = STDERR.lock().unwrap_or_else(|e| e.into_inner());
    let d = guard.get_or_insert_with(|| Detached::new("stderr", Box::new(std::io::stderr())));
    f(d)
}

/// One line on stderr (a newline is added).
pub fn line(text: &str) {
    with(|d| {
        let _ = d.write_all(text.as_bytes());
        let _ = d.write_all(b"\n");
        let _ = d.flush();
    });
}

/// Lines that could not be written to stderr.
pub fn undelivered() -> u64 {
    with(|d| d.undelivered())
}

/// Waits up to `wait` for everything said to be written.
pub fn finish(wait: Duration) -> bool {
    let taken = STDERR.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.is_none_or(|mut d| d.finish(wait))
}

/// A writer for `tracing`: each formatted record is one line.
pub struct Logs;

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        with(|d| {
            let _ = d.write_all(bytes);
            if bytes.ends_with(b"\n") {
                let _ = d.flush();
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        with(|d| d.flush())
    }
}

/// `println!`-like, to stderr, never blocking: `say!("reflex: {x}")`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::sinks::stderr::line(&format!($($arg)*))
    };
}
