#!/usr/bin/env python3
"""A real syscall caller for reflex tests, via ctypes.

usage: caller.py MODE ...

  handler NR        catch SIGUSR1, make syscall NR (no arguments), print
                    {"caught": [...], "tid": T}
  threads NR        block SIGUSR1 everywhere, make syscall NR from a second
                    thread, then print which signals are pending on each
                    thread and on the process:
                    {"main": TID, "caller": TID, "pending": {TID: mask}, "shared": mask}
  call NR [ARG...] [-- NR [ARG...]]...
                    make each syscall once, in order, and print
                    {"ret": R, "errno": E} for each
  repeat N NR [ARG...]
                    make it N times as fast as it can, print {"calls": N}
  paced N SECONDS NR [ARG...]
                    make it N times, spread evenly over about SECONDS
  phases N DIR M NR [ARG...]
                    make it N times, create DIR/first, wait for DIR/second,
                    make it M more times, print {"calls": N + M}
  pidfdkill PID SIG pidfd_open(PID), then pidfd_send_signal(fd, SIG), print
                    {"ret": R, "errno": E}
  readmem PID       read a byte of /proc/PID/mem, print {"errno": E}
  slowread MS       read from a pipe that gets data after MS ms (SIGQUIT
                    caught), print {"caught": [...], "took_ms": T}
  openfile PATH     open PATH for reading, print {"errno": E}
  spin SECONDS      busy loop, counting SIGPROF, print {"signals": N, "seconds": S}
  named NAME NR     set its name (comm) to NAME (Python escapes: "\x1b[2J"),
                    make syscall NR, print {"ret": R, "errno": E}
  parentcatch NR    fork a child that makes syscall NR; wait for SIGUSR1 and
                    print {"signo": S, "code": C, "value": V, "child": PID}
  init_module       init_module() of 100 zero bytes (never a valid module),
                    print {"ret": R, "errno": E}
  bpfload           bpf(BPF_PROG_LOAD) of a socket filter that returns 0,
                    print {"ret": FD, "errno": E}
  bpfmap            bpf(BPF_MAP_CREATE) of a one-entry array, print the same

In handler and threads modes the call is ptrace(PTRACE_PEEKTEXT, 0, 0, 0): it
fails with ESRCH and touches nothing; its syscall entry is what reflex watches.
"""
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PTRACE_PEEKTEXT = 1


def syscall(nr, *args):
    """syscall(nr, args...) -> (return value, errno)"""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ret, ctypes.get_errno()


def call_ptrace():
    return syscall(int(sys.argv[2]), PTRACE_PEEKTEXT, 0, 0, 0)


def status_mask(path, field):
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    raise KeyError(field)


def handler_mode():
    caught = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
    call_ptrace()
    deadline = time.monotonic() + 2
    while not caught and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"caught": caught, "tid": threading.get_native_id()}), flush=True)


def threads_mode():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    called = threading.Event()
    release = threading.Event()
    caller = {}

    def worker():
        caller["tid"] = threading.get_native_id()
        call_ptrace()
        called.set()
        release.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    called.wait(10)
    time.sleep(0.2)  # let any signal settle in its queue
    pid = os.getpid()
    main = threading.get_native_id()
    pending = {
        str(tid): status_mask(f"/proc/{pid}/task/{tid}/status", "SigPnd")
        for tid in (main, caller["tid"])
    }
    shared = status_mask(f"/proc/{pid}/status", "ShdPnd")
    release.set()
    t.join()
    print(json.dumps({"main": main, "caller": caller["tid"], "pending": pending, "shared": shared}), flush=True)


def call_mode():
    calls, current = [], []
    for word in sys.argv[2:]:
        if word == "--":
            calls.append(current)
            current = []
        else:
            current.append(int(word, 0))
    calls.append(current)
    for nr, *args in calls:
        ret, err = syscall(nr, *args)
        print(json.dumps({"ret": ret, "errno": err}), flush=True)


def pidfdkill_mode():
    fd = os.pidfd_open(int(sys.argv[2]))
    try:
        signal.pidfd_send_signal(fd, int(sys.argv[3]))
        ret, err = 0, 0
    except OSError as e:
        ret, err = -1, e.errno
    print(json.dumps({"ret": ret, "errno": err}), flush=True)


def repeat_mode():
    n, nr, args = int(sys.argv[2]), int(sys.argv[3]), [int(a, 0) for a in sys.argv[4:]]
    for _ in range(n):
        syscall(nr, *args)
    print(json.dumps({"calls": n}), flush=True)


def paced_mode():
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    nr, args = int(sys.argv[4]), [int(a, 0) for a in sys.argv[5:]]
    batch = 100
    start = time.monotonic()
    for i in range(n):
        syscall(nr, *args)
        if i % batch == batch - 1:
            due = start + seconds * (i + 1) / n
            time.sleep(max(0.0, due - time.monotonic()))
    print(json.dumps({"calls": n}), flush=True)


def phases_mode():
    # N calls, then `DIR/first` made; once `DIR/second` exists, M calls.
    n, gate, m = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    nr, args = int(sys.argv[5]), [int(a, 0) for a in sys.argv[6:]]
    for _ in range(n):
        syscall(nr, *args)
    open(os.path.join(gate, "first"), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(gate, "second")):
        if time.monotonic() > deadline:
            sys.exit("phases: no go-ahead for the second phase in 60 s")
        time.sleep(0.01)
    for _ in range(m):
        syscall(nr, *args)
    print(json.dumps({"calls": n + m}), flush=True)


def readmem_mode():
    try:
        with open(f"/proc/{int(sys.argv[2])}/mem", "rb") as f:
            f.read(1)
        err = 0
    except OSError as e:
        err = e.errno
    print(json.dumps({"errno": err}), flush=True)


def slowread_mode():
    caught = []
    signal.signal(signal.SIGQUIT, lambda signum, frame: caught.append(signum))
    ms = int(sys.argv[2])
    r, w = os.pipe()

    def later():
        time.sleep(ms / 1000)
        os.write(w, b"x")

    threading.Thread(target=later, daemon=True).start()
    start = time.monotonic()
    os.read(r, 1)
    took = (time.monotonic() - start) * 1000
    deadline = time.monotonic() + 2
    while not caught and ms > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"caught": caught, "took_ms": took}), flush=True)


def openfile_mode():
    try:
        open(sys.argv[2], "rb").close()
        err = 0
    except OSError as e:
        err = e.errno
    print(json.dumps({"errno": err}), flush=True)


def set_comm(name):
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NAME = 15
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def spin_mode():
    count = [0]
    signal.signal(signal.SIGPROF, lambda signum, frame: count.__setitem__(0, count[0] + 1))
    # Sampling rules select this name: none fires before the handler is set.
    set_comm(b"reflex-spinner")
    seconds = float(sys.argv[2])
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
    # Leave the selection before Python's shutdown resets SIGPROF's handler.
    set_comm(b"python3")
    print(json.dumps({"signals": count[0], "seconds": seconds}), flush=True)


def named_mode():
    name = sys.argv[2].encode().decode("unicode_escape").encode("latin-1")
    set_comm(name)
    ret, err = syscall(int(sys.argv[3]))
    print(json.dumps({"ret": ret, "errno": err}), flush=True)


class SigInfo(ctypes.Structure):
    _fields_ = [("signo", ctypes.c_int), ("errno", ctypes.c_int), ("code", ctypes.c_int),
                ("pad", ctypes.c_int), ("pid", ctypes.c_int), ("uid", ctypes.c_uint),
                ("value", ctypes.c_uint64), ("rest", ctypes.c_byte * 96)]


def parentcatch_mode():
    nr = int(sys.argv[2])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    child = os.fork()
    if child == 0:
        syscall(nr)
        os._exit(0)
    mask = ctypes.c_uint64(1 << (signal.SIGUSR1 - 1))
    info = SigInfo()
    ts = (ctypes.c_long * 2)(5, 0)
    got = libc.sigtimedwait(ctypes.byref(mask), ctypes.byref(info), ts)
    os.waitpid(child, 0)
    print(json.dumps({"signo": got, "code": info.code, "value": info.value, "child": child}), flush=True)


def init_module_mode():
    image = ctypes.create_string_buffer(100)
    ret, err = syscall(SYS_INIT_MODULE, ctypes.addressof(image), 100, ctypes.addressof(ctypes.create_string_buffer(b"")))
    print(json.dumps({"ret": ret, "errno": err}), flush=True)


SYS_INIT_MODULE = {"x86_64": 175, "aarch64": 105}[os.uname().machine]
SYS_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
BPF_MAP_CREATE, BPF_PROG_LOAD = 0, 5


def bpf(cmd, attr):
    """bpf(cmd, attr): attr is a list of (offset, ctypes value) in a zeroed union bpf_attr."""
    # Before 5.11 BPF memory counts against RLIMIT_MEMLOCK: EPERM past it.
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):  # a hard limit we may not raise: take all of it
        hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    buf = ctypes.create_string_buffer(128)
    for offset, value in attr:
        ctypes.memmove(ctypes.addressof(buf) + offset, ctypes.addressof(value), ctypes.sizeof(value))
    ret, err = syscall(SYS_BPF, cmd, ctypes.addressof(buf), 128)
    if ret >= 0:
        os.close(ret)
    print(json.dumps({"ret": ret, "errno": err}), flush=True)


def bpfload_mode():
    # r0 = 0; exit
    insns = ctypes.create_string_buffer(bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]))
    license = ctypes.create_string_buffer(b"GPL")
    bpf(BPF_PROG_LOAD, [
        (0, ctypes.c_uint32(1)),  # prog_type: BPF_PROG_TYPE_SOCKET_FILTER
        (4, ctypes.c_uint32(2)),  # insn_cnt
        (8, ctypes.c_uint64(ctypes.addressof(insns))),
        (16, ctypes.c_uint64(ctypes.addressof(license))),
    ])


def bpfmap_mode():
    bpf(BPF_MAP_CREATE, [
        (0, ctypes.c_uint32(2)),  # map_type: BPF_MAP_TYPE_ARRAY
        (4, ctypes.c_uint32(4)),  # key_size
        (8, ctypes.c_uint32(4)),  # value_size
        (12, ctypes.c_uint32(1)),  # max_entries
    ])


MODES = {
    "slowread": slowread_mode,
    "openfile": openfile_mode,
    "spin": spin_mode,
    "named": named_mode,
    "parentcatch": parentcatch_mode,
    "readmem": readmem_mode,
    "init_module": init_module_mode,
    "bpfload": bpfload_mode,
    "bpfmap": bpfmap_mode,
    "handler": handler_mode,
    "threads": threads_mode,
    "call": call_mode,
    "pidfdkill": pidfdkill_mode,
    "repeat": repeat_mode,
    "paced": paced_mode,
    "phases": phases_mode,
}


def main(argv):
    """Runs MODE ARGS... as if `caller.py` had been run with `argv`."""
    sys.argv = argv
    MODES[argv[1]]()


if __name__ == "__main__":
    main(sys.argv)
