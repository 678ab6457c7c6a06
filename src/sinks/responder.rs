//! Benchmark only (`--features bench`): the old path the seed replaced. The kernel reports
//! (monitor mode), and user space sends the signal with kill() after reading
//! the event. `reflex run --userspace-kill` exists so that `reflex bench` can
//! compare it with the in-kernel signal on the same trigger.

use std::io;

use nix::sys::signal::{Signal as NixSignal, kill};
use nix::unistd::Pid;

use super::Sink;
use crate::events::{Event, Outcome};
use crate::policy::Target;

pub struct Responder {
    inner: Box<dyn Sink>,
}

impl Responder {
    pub fn new(inner: Box<dyn Sink>) -> Self {
        Responder { inner }
    }
}

impl Sink for Responder {
    fn start(&mut self) -> io::Result<()> {
        self.inner.start()
    }

    fn event(&mut self, event: &Event) -> io::Result<()> {
        if let (Outcome::WouldSignal, Some(signal)) = (event.outcome, event.signal) {
            if let Ok(sig) = NixSignal::try_from(signal.number()) {
                let _ = match event.target {
                    Target::Process => kill(Pid::from_raw(event.pid as i32), sig),
                    Target::Thread => {
                        // SAFETY: tgkill with plain integer arguments.
                        let r = unsafe {
                            libc::syscall(
                                libc::SYS_tgkill,
                                event.pid as libc::c_long,
                                event.tid as libc::c_long,
                                signal.number() as libc::c_long,
                            )
                        };
                        nix::errno::Errno::result(r).map(drop)
                    }
                };
            }
        }
        self.inner.event(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn undelivered(&self) -> u64 {
        self.inner.undelivered()
    }

    fn take_error(&self) -> Option<(String, u64)> {
        self.inner.take_error()
    }

    fn finish(&mut self, wait: std::time::Duration) -> bool {
        self.inner.finish(wait)
    }
}
