//! Output that never makes its writer wait: bytes handed to a thread of
//! their own, which writes them to the destination (stdout, stderr, a file).
//! The loop that decides and resumes only appends to a buffer and hands it
//! over; a destination that blocks (a pipe nobody reads, a stalled disk) or
//! fails (EPIPE, ENOSPC) costs it nothing. What could not be queued or
//! written is counted, by records (lines), as undelivered.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes waiting for a destination before more are dropped.
pub const MAX_QUEUED: u64 = 16 << 20;

#[derive(Debug, Default)]
struct Shared {
    /// Bytes handed over and not yet written.
    queued: AtomicU64,
    /// Records handed over and not yet written.
    queued_records: AtomicU64,
    /// Records that could not be queued or written.
    undelivered: AtomicU64,
    /// The first write error, until someone takes it to say it.
    error: Mutex<Option<io::Error>>,
    /// Write errors so far.
    errors: AtomicU64,
}

/// A destination written by its own thread. Implements [`Write`]: writes
/// are buffered, and `flush` hands the buffer to the thread.
pub struct Detached {
    name: String,
    tx: Option<Sender<Vec<u8>>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    buf: Vec<u8>,
}

fn records(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

fn writer(mut out: Box<dyn Write + Send>, rx: Receiver<Vec<u8>>, shared: Arc<Shared>) {
    let mut gone = false;
    for chunk in rx {
        let n = chunk.len() as u64;
        let r = records(&chunk);
        if !gone {
            let result = out.write_all(&chunk).and_then(|()| out.flush());
            if let Err(e) = result {
                // A reader that went away does not come back; a full disk
                // may recover: try again with the next batch.
                gone = e.kind() == io::ErrorKind::BrokenPipe;
                shared.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(e);
                shared
                    .undelivered
                    .fetch_add(records(&chunk), Ordering::Relaxed);
            }
        } else {
            shared
                .undelivered
                .fetch_add(records(&chunk), Ordering::Relaxed);
        }
        shared.queued.fetch_sub(n, Ordering::Relaxed);
        shared.queued_records.fetch_sub(r, Ordering::Relaxed);
    }
}

impl Detached {
    /// `out`, written from now on by a thread named `name`.
    pub fn new(name: &str, out: Box<dyn Write + Send>) -> Detached {
        let (tx, rx) = channel();
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name(format!("reflex-{name}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || writer(out, rx, shared)
            })
            .ok();
        Detached {
            name: name.to_string(),
            tx: thread.as_ref().map(|_| tx),
            shared,
            thread,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Records (lines) that could not be written so far.
    pub fn undelivered(&self) -> u64 {
        self.shared.undelivered.load(Ordering::Relaxed)
    }

    /// A write error not said yet, with how many errors there were in all:
    /// for the owner to say once.
    pub fn take_error(&self) -> Option<(String, u64)> {
        let mut first = self.shared.error.lock().unwrap_or_else(|e| e.into_inner());
        first.take().map(|e| {
            (
                format!("{}: {e}", self.name),
                self.shared.errors.load(Ordering::Relaxed),
            )
        })
    }

    /// Hands what is buffered over; drops it (counted) when the destination
    /// is too far behind.
    fn hand_over(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.buf);
        let n = chunk.len() as u64;
        let room = self.shared.queued.load(Ordering::Relaxed) + n <= MAX_QUEUED;
        match self.tx.as_ref() {
            Some(tx) if room => {
                let r = records(&chunk);
                self.shared.queued.fetch_add(n, Ordering::Relaxed);
                self.shared.queued_records.fetch_add(r, Ordering::Relaxed);
                if let Err(e) = tx.send(chunk) {
                    self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                    self.shared.queued_records.fetch_sub(r, Ordering::Relaxed);
                    self.shared
                        .undelivered
                        .fetch_add(records(&e.0), Ordering::Relaxed);
                }
            }
            _ => {
                self.shared
                    .undelivered
                    .fetch_add(records(&chunk), Ordering::Relaxed);
            }
        }
    }

    /// Hands everything over and waits up to `wait` for it to be written;
    /// true when it was.
    pub fn finish(&mut self, wait: Duration) -> bool {
        self.hand_over();
        self.tx = None;
        let deadline = Instant::now() + wait;
        while let Some(t) = self.thread.as_ref() {
            if t.is_finished() {
                let _ = self.thread.take().map(JoinHandle::join);
                return true;
            }
            if Instant::now() >= deadline {
                // What is still queued will not be written in time: it is
                // undelivered (the thread goes with the process).
                let left = self.shared.queued_records.swap(0, Ordering::Relaxed);
                self.shared.undelivered.fetch_add(left, Ordering::Relaxed);
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

impl Write for Detached {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over();
        Ok(())
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.hand_over();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that blocks until told, then fails.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_destination_never_holds_the_writer() {
        let (release, rx) = std::sync::mpsc::channel();
        let mut d = Detached::new("test", Box::new(Stuck(rx)));
        let started = Instant::now();
        // Far more than the queue takes: the writer is never held.
        let line = vec![b'x'; 1023];
        for _ in 0..(MAX_QUEUED / 1024 + 100) {
            d.write_all(&line).unwrap();
            d.write_all(b"\n").unwrap();
            d.flush().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(d.undelivered() >= 99, "{}", d.undelivered());
        drop(release);
        assert!(d.finish(Duration::from_secs(5)));
        // Every line is accounted for: the queued ones failed too.
        assert_eq!(d.undelivered(), MAX_QUEUED / 1024 + 100);
        let (error, n) = d.take_error().unwrap();
        assert!(error.starts_with("test: "), "{error}");
        assert_eq!(n, 1, "a gone reader is tried once");
        assert!(d.take_error().is_none(), "said once");
    }
}
