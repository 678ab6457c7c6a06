#!/usr/bin/env python3
"""A bounded fork bomb for reflex's tests: every process forks as fast as it
can for SECONDS, its children join in, then all exit. Bounded twice more by
the test: it runs under a low RLIMIT_NPROC as an unprivileged user, in a
cgroup of its own."""
import os
import sys
import time

end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        if os.fork() == 0:
            continue  # the child forks too
    except OSError:
        time.sleep(0.01)
os._exit(0)
