#!/usr/bin/env python3
"""A real ptrace caller for reflex tests, via ctypes.

usage: ptrace_caller.py SYS_ptrace MODE [N]

The call is ptrace(PTRACE_PEEKTEXT, 0, 0, 0): it fails with ESRCH and touches
nothing, but its syscall entry is what reflex watches.

MODE
  handler   catch SIGUSR1, call ptrace, print {"caught": [...], "tid": T}
  threads   block SIGUSR1 everywhere, call ptrace from a second thread, then
            print which signals are pending on each thread and on the process:
            {"main": TID, "caller": TID, "pending": {TID: mask}, "shared": mask}
  burst N   call ptrace N times as fast as it can, print {"calls": N}
"""
import ctypes
import json
import os
import signal
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_PTRACE = int(sys.argv[1])
PTRACE_PEEKTEXT = 1


def call_ptrace():
    return libc.syscall(
        ctypes.c_long(SYS_PTRACE), ctypes.c_long(PTRACE_PEEKTEXT), ctypes.c_long(0), None, None
    )


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


def burst_mode():
    n = int(sys.argv[3])
    for _ in range(n):
        call_ptrace()
    print(json.dumps({"calls": n}), flush=True)


if __name__ == "__main__":
    {"handler": handler_mode, "threads": threads_mode, "burst": burst_mode}[sys.argv[2]]()
