//! What wakes the serving loop, as descriptors in one epoll set: the event
//! ring buffer, a pipe the signal handlers write to, the policy watcher's
//! inotify, the metrics endpoint asking for fresh figures, and the
//! guardian's socket (closed when it exits). When nothing happens, reflex
//! sleeps: a timeout exists only for what is due at a known time (a pause
//! to resume, a reload to settle, systemd's watchdog, events that wait
//! below the ring buffer's wake-up threshold).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// One source of wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Source {
    Events = 1,
    Signals = 2,
    Policies = 3,
    Metrics = 4,
    Guardian = 5,
}

impl Source {
    fn from_u64(v: u64) -> Option<Source> {
        Some(match v {
            1 => Source::Events,
            2 => Source::Signals,
            3 => Source::Policies,
            4 => Source::Metrics,
            5 => Source::Guardian,
            _ => return None,
        })
    }
}

pub struct Wakeups {
    epoll: Epoll,
    /// The signal handlers' end writes a byte per signal; this end is read.
    signals: UnixStream,
    _handlers_end: UnixStream,
}

/// The set of sources that woke the loop.
#[derive(Debug, Default, Clone, Copy)]
pub struct Woken(u8);

impl Woken {
    pub fn by(&self, s: Source) -> bool {
        self.0 & (1 << s as u8) != 0
    }
}

impl Wakeups {
    /// A set with the signal pipe, written by a handler of each of `signals`
    /// (besides any handler they already have).
    pub fn new(signals: &[i32]) -> io::Result<Wakeups> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        theirs.set_nonblocking(true)?;
        for &sig in signals {
            signal_hook::low_level::pipe::register(sig, theirs.try_clone()?)?;
        }
        let w = Wakeups {
            epoll,
            signals: ours,
            _handlers_end: theirs,
        };
        w.add(w.signals.as_fd(), Source::Signals)?;
        Ok(w)
    }

    /// Wakes the loop when `fd` is readable (or closed).
    pub fn add(&self, fd: BorrowedFd<'_>, source: Source) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        self.epoll
            .add(fd, EpollEvent::new(flags, source as u64))
            .map_err(io::Error::from)
    }

    /// No longer wakes the loop for `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// Sleeps until a source is ready or `timeout` (None: no timeout) passes.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<Woken> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => {
                // Rounded up: a wait cut short by rounding would turn the
                // loop again for nothing.
                let ms = d.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
            }
        };
        let mut ready = [EpollEvent::empty(); 8];
        let n = match self.epoll.wait(&mut ready, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut woken = Woken::default();
        for e in &ready[..n] {
            if let Some(s) = Source::from_u64(e.data()) {
                woken.0 |= 1 << s as u8;
            }
        }
        if woken.by(Source::Signals) {
            let mut buf = [0u8; 64];
            while matches!((&self.signals).read(&mut buf), Ok(n) if n > 0) {}
        }
        Ok(woken)
    }
}
