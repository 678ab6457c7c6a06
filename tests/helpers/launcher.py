#!/usr/bin/env python3
"""The parent of every process a reflex test triggers.

Tests scope reflex's rules with --ppid <this launcher's pid>, so nothing else
on the machine can match. The launcher:

1. becomes a child subreaper, so orphans (strace's tracee, when strace is
   killed) come back to it instead of to pid 1;
2. forks the command's process, which moves into cgroup DIR if given
   (`--cgroup DIR`) and waits for the go-ahead before exec;
3. prints `launcher {"launcher": PID, "child": PID}` on stdout;
4. waits for a line on stdin, then lets the child exec the command;
5. waits for the child and prints `launcher {"exit": N}`, `launcher {"signal": N}`
   or, if it stops, `launcher {"stopped": N}` (and kills it) — unless
   `--through-stops` is given: then a stop is waited out (a pause test's
   process is stopped and continued by reflex);
6. kills and reaps every descendant still there, and exits.

`python3 …/caller.py ARGS` is run in the forked child itself, without an exec
(caller.py is imported before the fork): the same process, name, parent and
executable, and one Python start fewer per test (seconds under emulation).

The child's own stdout passes through, line by line, between those two lines.
"""
import ctypes
import json
import os
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def say(obj):
    sys.stdout.write("launcher " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def children():
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces and parentheses: split after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[1] == me:
            found.append(int(entry))
    return found


def reap_all():
    """Kill and reap every descendant (they are all our children by now)."""
    while True:
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def main():
    args = sys.argv[1:]
    cgroup = None
    through_stops = False
    while args[:1] in (["--cgroup"], ["--through-stops"]):
        if args[0] == "--cgroup":
            cgroup, args = args[1], args[2:]
        else:
            through_stops, args = True, args[1:]
    if not args:
        sys.exit("usage: launcher.py [--cgroup DIR] [--through-stops] COMMAND [ARGS...]")
    # The caller, run in-process (see above).
    caller = None
    if len(args) >= 2 and os.path.basename(args[0]) == "python3" \
            and os.path.basename(args[1]) == "caller.py":
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[1])))
        import caller
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    gate_r, gate_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(gate_w)
        try:
            if cgroup:
                with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
        except OSError as e:
            sys.stderr.write(f"launcher: cannot join cgroup {cgroup}: {e}\n")
            os._exit(121)
        if os.read(gate_r, 1) != b"g":
            os._exit(120)
        if caller:
            code = 0
            try:
                caller.main(args[1:])
            except SystemExit as e:
                if isinstance(e.code, str):
                    sys.stderr.write(e.code + "\n")
                    code = 1
                else:
                    code = e.code or 0
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        try:
            os.execvp(args[0], args)
        finally:
            os._exit(127)
    os.close(gate_r)
    say({"launcher": os.getpid(), "child": child})
    if not sys.stdin.readline():
        # the test went away before the go-ahead: run nothing
        os.kill(child, signal.SIGKILL)
        reap_all()
        sys.exit(1)
    os.write(gate_w, b"g")
    os.close(gate_w)
    _, status = os.waitpid(child, 0 if through_stops else os.WUNTRACED)
    if os.WIFSTOPPED(status):
        say({"stopped": os.WSTOPSIG(status)})
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    elif os.WIFSIGNALED(status):
        say({"signal": os.WTERMSIG(status)})
    else:
        say({"exit": os.WEXITSTATUS(status)})
    reap_all()


if __name__ == "__main__":
    main()
