#!/bin/bash
# Runs inside a matrix VM (or natively for the host's kernel): reflex check,
# then every integration test binary given, results into $1 ($2: the reflex
# binary the tests were built with). `guest.sh --args FILE` reads the same
# arguments from FILE, one per line: vm/matrix's way, because the kernel's
# command line, which carries the guest's command, holds 2047 bytes, and nine
# test binaries' paths under a long checkout passed that (CI's 6.12 boots cut
# it short, init= with it, and never reached this script).
if [ "$1" = "--args" ]; then mapfile -t args < "$2"; set -- "${args[@]}"; fi
out=$1; reflex=$2; shift 2
mountpoint -q /sys/kernel/security 2>/dev/null || mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
grep -q " cgroup2 " /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
export REFLEX_REQUIRE_ROOT_TESTS=1
# tests/stop.rs starts reflex 2 x N times per trigger kind: 10 natively, 2
# under emulation, where each start takes seconds.
[ -n "${REFLEX_MATRIX_VM:-}" ] && export REFLEX_STOP_REPETITIONS=2
cd "$(dirname "$0")/.."
uname -r > "$out/kernel"
"$reflex" check > "$out/check.txt" 2> "$out/check-stderr.txt"
echo $? > "$out/check.rc"
# The tests take their paths from this check (one reflex start fewer per
# test binary; each takes seconds under emulation).
export REFLEX_TEST_CHECK="$out/check.txt"
for bin in "$@"; do
  name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
  # A hang must not hold the whole matrix: each binary gets 20 minutes.
  # Which path each test took where `reflex check` decides it.
  export REFLEX_TEST_NOTES="$out/notes-$name.txt"
  # Tests vm/matrix leaves to the host's suite (its HOST_ONLY).
  skip=()
  if [ -f "$out/skip-$name.txt" ]; then
    while read -r t; do skip+=(--skip "$t"); done < "$out/skip-$name.txt"
    [ ${#skip[@]} -gt 0 ] && skip+=(--exact)
  fi
  timeout 1200 "$bin" --test-threads=2 "${skip[@]}" > "$out/test-$name.txt" 2>&1
  echo $? > "$out/test-$name.rc"
done
echo done > "$out/finished"
