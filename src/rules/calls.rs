//! Random calls for the matcher tests (test support, not built into reflex):
//! a policy that uses every kind of trigger, selector and argument matcher,
//! checked against a fixed host view, and calls drawn from the values it
//! names and others, so that every rule, and "no rule", answers some.
//!
//! Shared by the compiler's unit test (`rules/tests.rs`: a Rust copy of the
//! lookups) and `tests/matcher.rs` (the kernel's own `find_rule`, run with
//! BPF_PROG_TEST_RUN); both compare with [`Policy::first_match`].

use std::collections::BTreeMap;
use std::sync::Arc;

use reflex::policy::host::Fixture;
use reflex::policy::{Call, Env, Hook, Point, Policy, load_str};
use reflex::syscall::{Arch, resolve};

/// The protected pid the policy names.
pub const PROTECTED: u32 = 77;
const SH: (u32, u64) = (8, 1234);
const ROOT: u64 = 1;
const SVC: u64 = 11;
const WEB: u64 = 12;

pub const POLICY: &str = concat!(
    "protect: {pids: [77]}\n",
    "rules:\n",
    "  - {name: attach, syscall: ptrace, args: {request: [PTRACE_ATTACH, PTRACE_SEIZE]}, match: {uid: {not: [0, alice]}}, action: kill}\n",
    "  - {name: alice, syscall: ptrace, match: {uid: alice, comm: [gdb, strace]}, action: audit}\n",
    "  - {name: sh-kill, syscall: [kill, tkill], args: {sig: SIGKILL}, match: {executable: /bin/sh}, action: {signal: SIGSTOP}}\n",
    "  - {name: guard, syscall: kill, args: {pid: protected, sig: {not: [0]}}, action: {signal: SIGSTOP}}\n",
    "  - {name: ranges, syscall: [kill, ptrace], args: {arg2: {range: [10, 20]}, arg3: {no_bits: 4}}, match: {ppid: {not: [1]}, gid: [5, 6]}, action: audit}\n",
    "  - {name: in-svc, syscall: [kill, openat], match: {cgroup: /svc, parent_executable: {not: /bin/sh}}, action: audit}\n",
    "  - {name: not-web, syscall: openat, match: {cgroup: {not: [/svc/web]}, pid: [2, 500]}, action: audit}\n",
    "  - {name: catch-all, syscall: kill, action: audit}\n",
    "  - {name: slow-reads, syscall: read, returns: [0, 1], slower_than: 12ns, match: {pid: {not: 500}}, action: audit}\n",
    "  - {name: opens, hook: open, args: {file: /bin/sh, flags: {any_bits: 1}}, match: {uid: {not: 0}}, action: deny}\n",
    "  - {name: samples, sample: {frequency: 10}, match: {comm: python3}, action: audit}\n",
    "  - {name: under-sh, syscall: [tkill, openat], match: {ancestor: {executable: /bin/sh}, uid: 1001}, action: audit}\n",
    "  - {name: under-300, syscall: [tkill, ptrace], match: {ancestor: [300, 301]}, action: audit}\n",
    "  - {name: not-under-8, syscall: [tkill, read], match: {ancestor: {not: 8}}, action: audit}\n",
);

/// The host the policy is checked against: names and ids that need not
/// exist on the machine running the test.
pub fn host() -> Env {
    let fixture = Fixture {
        users: BTreeMap::from([("alice".into(), 1000)]),
        files: BTreeMap::from([("/bin/sh".into(), SH)]),
        cgroup_root: Some("/sys/fs/cgroup".into()),
        cgroups: BTreeMap::from([
            ("".into(), ROOT),
            ("svc".into(), SVC),
            ("svc/web".into(), WEB),
        ]),
        max_sample_rate: Some(100_000),
        ..Fixture::default()
    };
    Env {
        arch: Arch::host(),
        host: Arc::new(fixture),
    }
}

pub fn policy() -> Policy {
    load_str(POLICY, "calls.yaml".as_ref(), &host())
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

/// A small deterministic generator (no dependency needed for this).
pub struct Calls(u64);

impl Calls {
    pub fn new(seed: u64) -> Calls {
        Calls(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.next_u64() as usize % from.len()].clone()
    }

    /// The next call; `protected` lists the pids the kernel side treats as
    /// protected besides the policy's (pid 1 always is).
    pub fn next(&mut self, protected: &[u32]) -> Call {
        let nr = |name| Point::Entry(resolve(Arch::host(), name).unwrap().1);
        let read = resolve(Arch::host(), "read").unwrap().1;
        let points = [
            nr("ptrace"),
            nr("kill"),
            nr("tkill"),
            nr("openat"),
            nr("read"),
            Point::Exit(read),
            Point::Hook(Hook::Open),
            Point::Sample,
        ];
        let comm = |n: &str| {
            let mut c = [0u8; 16];
            c[..n.len()].copy_from_slice(n.as_bytes());
            c
        };
        let comms = [comm("gdb"), comm("strace"), comm("bash"), comm("python3")];
        let small = [
            0u64,
            1,
            4,
            9,
            12,
            15,
            16,
            19,
            25,
            77,
            0x4206,
            (-13i64) as u64,
        ];
        let point = self.pick(&points);
        let file = match point {
            Point::Hook(_) => Some(self.pick(&[SH, (0, 3)])),
            _ => None,
        };
        let mut all_protected = vec![PROTECTED];
        all_protected.extend(protected);
        // A lineage, the parent first, ending at init; with the executable
        // each one runs.
        let ancestors: Vec<u32> = self.pick(&[
            vec![1],
            vec![2, 1],
            vec![300, 1],
            vec![2, 8, 300, 1],
            vec![2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 301],
        ]);
        let ancestor_exes: Vec<(u32, u64)> =
            ancestors.iter().map(|_| self.pick(&[SH, (0, 4)])).collect();
        Call {
            point,
            pid: self.pick(&[2, PROTECTED, 500]),
            ppid: ancestors[0],
            uid: self.pick(&[0, 1000, 1001]),
            gid: self.pick(&[0, 5, 6, 7]),
            comm: self.pick(&comms),
            exe: self.pick(&[SH, (0, 3)]),
            parent_exe: ancestor_exes[0],
            cgroups: self.pick(&[
                vec![ROOT, SVC, WEB],
                vec![ROOT, SVC],
                vec![ROOT, 999],
                vec![ROOT],
            ]),
            args: std::array::from_fn(|_| self.pick(&small)),
            ret: self.pick(&small),
            duration_ns: self.pick(&[0, 11, 12, 13, 1_000_000]),
            file,
            protected: all_protected,
            ancestors,
            ancestor_exes,
        }
    }
}
