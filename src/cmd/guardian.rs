//! The guardian: a small process of reflex's own that makes "nothing stays
//! stopped" hold even when reflex cannot keep it — `kill -9`, a crash, the
//! OOM killer. `run` starts it before loading anything (so rules know its
//! pid and never signal it), hands it the kernel's list of stopped processes
//! (the `paused` map) over a socket, and tells it "done" after a clean stop.
//! If the socket closes without "done", reflex died: the guardian waits
//! until reflex has exited (its programs are detached with its descriptors),
//! resumes every process still listed, says which, and exits.
//!
//! It runs `reflex guardian` (hidden) from /proc/self/exe, in a process group
//! of its own (a Ctrl-C at reflex's terminal is not for it), with the socket
//! as fd 3 and nothing else of reflex's.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The socket's number in the guardian.
const FD: RawFd = 3;
const DONE: &[u8] = b"done";

/// reflex's side of its guardian.
pub struct Guardian {
    sock: OwnedFd,
    child: Child,
}

impl Guardian {
    /// Starts the guardian.
    pub fn spawn() -> io::Result<Guardian> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg("guardian")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec, only async-signal-safe calls: dup2
        // (which clears close-on-exec on the copy) or fcntl.
        unsafe {
            cmd.pre_exec(move || {
                let r = if fd == FD {
                    libc::fcntl(FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, FD)
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok(Guardian { sock: ours, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Hands the guardian the list of stopped processes.
    pub fn keep(&self, paused: BorrowedFd<'_>) -> io::Result<()> {
        let fds = [paused.as_raw_fd()];
        let iov = [io::IoSlice::new(b"map")];
        sendmsg::<()>(
            self.sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )?;
        Ok(())
    }

    /// reflex's end of the guardian's socket: readable (closed) once the
    /// guardian has exited.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Whether the guardian is still there to guard.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// After a clean stop (everything resumed): the guardian has nothing to
    /// do; waits up to a second for it to exit.
    pub fn release(mut self) {
        let _ = nix::sys::socket::send(self.sock.as_raw_fd(), DONE, MsgFlags::empty());
        drop(self.sock);
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The guardian's side: `reflex guardian`.
pub fn guardian() -> ExitCode {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTSTP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: ignoring a signal installs no handler.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: fd 3 is the socket reflex handed over (nothing else is open
    // there: every other descriptor of reflex's is close-on-exec).
    let sock = unsafe { OwnedFd::from_raw_fd(FD) };
    let reflex = nix::unistd::getppid().as_raw();
    // SAFETY: pidfd_open(2) with plain integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, reflex, 0) };
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });

    let mut map: Option<OwnedFd> = None;
    loop {
        let mut buf = [0u8; 16];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        if msg.bytes == 0 {
            break; // reflex is gone without saying done
        }
        for cmsg in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just gave us this descriptor.
                    map = Some(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if msg.bytes == DONE.len() && buf[..DONE.len()] == *DONE {
            return ExitCode::SUCCESS;
        }
    }
    let Some(map) = map else {
        return ExitCode::SUCCESS; // it died before anything was loaded
    };
    // Once reflex has exited, its descriptors are closed and its programs
    // detached; a moment more for a run already under way to end.
    if let Some(pidfd) = &pidfd {
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut resumed = resume_all(map.as_fd());
    std::thread::sleep(Duration::from_millis(100));
    resumed.extend(resume_all(map.as_fd()));
    if !resumed.is_empty() {
        let pids: Vec<String> = resumed.iter().map(u32::to_string).collect();
        eprintln!(
            "reflex guardian: reflex (pid {reflex}) ended without stopping cleanly; resumed the {} \
             process(es) it had stopped: {}",
            resumed.len(),
            pids.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// Sends SIGCONT to every pid in the `paused` map and takes it out.
fn resume_all(map: BorrowedFd<'_>) -> Vec<u32> {
    use libbpf_rs::libbpf_sys::{bpf_map_delete_elem, bpf_map_get_next_key};
    let mut pids = Vec::new();
    let mut key: Option<u32> = None;
    loop {
        let mut next = 0u32;
        let prev = key
            .as_ref()
            .map_or(std::ptr::null(), |k| (k as *const u32).cast());
        // SAFETY: a u32-keyed map; `next` has room for one key.
        let r = unsafe { bpf_map_get_next_key(map.as_raw_fd(), prev, (&raw mut next).cast()) };
        if r != 0 {
            break;
        }
        pids.push(next);
        key = Some(next);
    }
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        // SAFETY: a u32 key of the map.
        unsafe { bpf_map_delete_elem(map.as_raw_fd(), (pid as *const u32).cast()) };
    }
    pids
}
