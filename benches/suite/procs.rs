//! Processes the benchmarks start: victims that trigger and spin, loads that
//! saturate the cores. Forked from this (single-threaded) process, so they
//! are its children: rules scoped with `--ppid <this pid>` reach them and
//! nothing else. Every one is reaped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Memory shared with forked victims.
#[repr(C)]
pub struct Shared {
    /// CLOCK_MONOTONIC just before the triggering syscall.
    pub t0: AtomicU64,
    /// Loop iterations the victim ran after the syscall returned.
    pub iterations: AtomicU64,
    /// Calls made (stream generator).
    pub calls: AtomicU64,
}

pub fn shared() -> &'static Shared {
    // SAFETY: a fresh anonymous shared mapping, zeroed, never unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        &*(p as *const Shared)
    }
}

/// The syscall the seed watches, made harmlessly: ptrace(PTRACE_PEEKTEXT, 0)
/// fails with ESRCH.
pub fn ptrace_peek() {
    // SAFETY: a syscall with integer arguments.
    unsafe { libc::syscall(libc::SYS_ptrace, 1, 0, 0, 0) };
}

pub fn getppid() {
    // SAFETY: a syscall without arguments.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

/// Forks a victim: records t0, calls ptrace, then counts loop iterations
/// until it is killed.
pub fn victim(shm: &'static Shared) -> i32 {
    shm.iterations.store(0, Ordering::SeqCst);
    // SAFETY: the child only touches the shared mapping and makes syscalls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        shm.t0.store(now_ns(), Ordering::SeqCst);
        ptrace_peek();
        loop {
            shm.iterations.fetch_add(1, Ordering::Relaxed);
        }
    }
    pid
}

/// Forks a child that calls ptrace once and exits 0 (unless killed).
pub fn probe_victim() -> i32 {
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        ptrace_peek();
        // SAFETY: exit without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Forks a child that calls getppid in a loop for `secs`, counting.
pub fn generator(shm: &'static Shared, secs: f64) -> i32 {
    shm.calls.store(0, Ordering::SeqCst);
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let end = now_ns() + (secs * 1e9) as u64;
        while now_ns() < end {
            for _ in 0..100 {
                getppid();
            }
            shm.calls.fetch_add(100, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Killed(i32),
    Exited(i32),
    /// Still running at the deadline (then killed).
    Timeout,
}

/// Waits for `pid` to end (at most `timeout`); returns the end and
/// CLOCK_MONOTONIC when this process saw it.
pub fn wait_end(pid: i32, timeout: Duration) -> (End, u64) {
    // SAFETY: pidfd_open on our own child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open");
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    let seen = now_ns();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    if ready == 0 {
        // SAFETY: killing our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let end = if ready == 0 {
        End::Timeout
    } else if libc::WIFSIGNALED(status) {
        End::Killed(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    };
    (end, seen)
}

/// Busy processes, one per core, until dropped.
pub struct Load(Vec<i32>);

impl Load {
    pub fn saturate() -> Load {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Load(
            (0..cores)
                .map(|_| {
                    // SAFETY: the child spins without touching anything.
                    let pid = unsafe { libc::fork() };
                    assert!(pid >= 0, "fork");
                    if pid == 0 {
                        let x = AtomicU64::new(0);
                        loop {
                            x.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    pid
                })
                .collect(),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: killing and reaping our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}
