//! The compiler, checked two ways: the map entries it writes for small
//! policies, and — for many random calls — that the kernel's lookup algorithm
//! run over the compiled entries picks the same rule as reading the policy
//! directly.

use super::*;
use crate::policy::{Env, FileId, Target, load_str};
use crate::signal::Signal;

fn policy(yaml: &str) -> Policy {
    load_str(yaml, "p.yaml".as_ref(), &Env::host())
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

fn nr(name: &str) -> i32 {
    crate::syscall::resolve(crate::syscall::Arch::host(), name)
        .unwrap()
        .1
}

#[test]
fn the_seed_is_one_unconstrained_rule_on_ptrace() {
    let set = compile(&Policy::seed(), Options::default()).unwrap();
    let t = &set.syscalls[&nr("ptrace")];
    assert_eq!(t.slots, vec![0]);
    assert_eq!(t.rules_mask(), 1);
    assert_eq!(t.dims, 0, "no selector: no lookups");
    assert!(t.free.iter().all(|&f| f == 1));
    assert!(set.matches.is_empty());
    assert_eq!(
        set.rules[0].verdict,
        Verdict::Signal {
            signal: Signal::KILL,
            target: Target::Process
        }
    );
    assert!(!set.rules[0].monitor);
    assert!(
        compile(&Policy::seed(), Options { monitor_all: true })
            .unwrap()
            .rules[0]
            .monitor
    );
}

#[test]
fn selectors_become_entries() {
    let set = compile(
        &policy(concat!(
            "rules:\n",
            "  - {name: a, syscall: ptrace, match: {uid: [1000, 1001]}, action: kill}\n",
            "  - {name: b, syscall: [ptrace, kill], match: {uid: {not: 1000}}, args: {arg0: {any_bits: 3}}, action: audit}\n",
        )),
        Options::default(),
    )
    .unwrap();
    let (p, k) = (nr("ptrace"), nr("kill"));
    let t = &set.syscalls[&p];
    assert_eq!(t.slots, vec![0, 1]);
    assert_eq!(t.dims, Dim::UID.bit());
    let uid = usize::from(Dim::UID.0);
    assert_eq!(t.free[uid], 0, "both rules constrain uid");
    assert_eq!(t.negated[uid], 0b10);
    assert_eq!(t.free[usize::from(Dim::PID.0)], 0b11);
    let entry = |nr, v| {
        set.matches[&MatchKey {
            nr,
            dim: Dim::UID,
            value: [v, 0],
        }]
    };
    assert_eq!(
        entry(p, 1000),
        MatchValue {
            pos: 0b01,
            neg: 0b10
        }
    );
    assert_eq!(entry(p, 1001), MatchValue { pos: 0b01, neg: 0 });
    assert_eq!(
        entry(k, 1000),
        MatchValue { pos: 0, neg: 0b01 },
        "rule b is slot 0 on kill"
    );
    assert_eq!(set.syscalls[&k].slots, vec![1]);
    assert_eq!(set.rules[1].checks.len(), 1);
    assert_eq!(set.rules[1].checks[0].op, Op::REFLEX_CHECK_MASK_ANY);
}

#[test]
fn limits_are_errors_at_the_rule() {
    let mut yaml = String::from("rules:\n");
    for i in 0..=SLOTS {
        yaml.push_str(&format!(
            "  - {{name: r{i}, syscall: kill, match: {{uid: {i}}}, action: audit}}\n"
        ));
    }
    let err = compile(&policy(&yaml), Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("p.yaml:66:12: error: rule 'r64' is rule 65 on kill: at most 64 rules may watch one syscall"),
        "{err}"
    );

    let yaml = "rules:\n  - name: many\n    syscall: kill\n    args:\n      arg0: {any_bits: 1}\n      arg1: {range: [1, 2]}\n      arg2: {no_bits: 4}\n      arg3: protected\n      arg4: {all_bits: 8}\n    action: audit\n";
    let err = compile(&policy(yaml), Options::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rule 'many' has 5 mask, range or protected argument matchers: at most 4"),
        "{err}"
    );
}

#[test]
fn cost_does_not_grow_with_rules() {
    // 64 rules on one syscall, each on its own uid: still one lookup per call.
    let mut yaml = String::from("rules:\n");
    for i in 0..SLOTS {
        yaml.push_str(&format!(
            "  - {{name: r{i}, syscall: kill, match: {{uid: {i}}}, action: audit}}\n"
        ));
    }
    let set = compile(&policy(&yaml), Options::default()).unwrap();
    assert_eq!(set.syscalls[&nr("kill")].dims.count_ones(), 1);
    assert_eq!(set.matches.len(), SLOTS);
}

// ---- the kernel's algorithm, in Rust, against the policy read directly ----

#[derive(Debug, Clone)]
struct Call {
    nr: i32,
    pid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    comm: [u8; 16],
    exe: FileId,
    parent_exe: FileId,
    /// Cgroup id at each level from the root.
    cgroups: Vec<u64>,
    args: [u64; 6],
    protected: Vec<u32>,
}

/// What `evaluate()` in reflex.bpf.c computes.
fn kernel(set: &RuleSet, c: &Call) -> Option<usize> {
    let t = set.syscalls.get(&c.nr)?;
    let mut cand = t.rules_mask();
    let mut narrow = |dim: Dim, value: [u64; 2]| {
        if t.dims & dim.bit() != 0 {
            let m = set
                .matches
                .get(&MatchKey {
                    nr: c.nr,
                    dim,
                    value,
                })
                .copied()
                .unwrap_or_default();
            let d = usize::from(dim.0);
            cand &= t.free[d] | m.pos | (t.negated[d] & !m.neg);
        }
    };
    narrow(Dim::PID, [u64::from(c.pid), 0]);
    narrow(Dim::PPID, [u64::from(c.ppid), 0]);
    narrow(Dim::UID, [u64::from(c.uid), 0]);
    narrow(Dim::GID, [u64::from(c.gid), 0]);
    for i in 0..6 {
        narrow(Dim::arg(i), [c.args[usize::from(i)], 0]);
    }
    narrow(Dim::COMM, comm_value(&c.comm));
    narrow(Dim::EXE, [c.exe.ino, u64::from(c.exe.dev)]);
    narrow(
        Dim::PARENT_EXE,
        [c.parent_exe.ino, u64::from(c.parent_exe.dev)],
    );
    if t.dims & Dim::CGROUP.bit() != 0 {
        let (mut pos, mut neg) = (0, 0);
        for level in 0..CGROUP_LEVELS {
            if t.cgroup_levels & (1 << level) != 0 {
                if let Some(&id) = c.cgroups.get(level) {
                    if let Some(m) = set.matches.get(&MatchKey {
                        nr: c.nr,
                        dim: Dim::CGROUP,
                        value: [id, 0],
                    }) {
                        pos |= m.pos;
                        neg |= m.neg;
                    }
                }
            }
        }
        let d = usize::from(Dim::CGROUP.0);
        cand &= t.free[d] | pos | (t.negated[d] & !neg);
    }
    while cand != 0 {
        let slot = cand.trailing_zeros() as usize;
        cand &= cand - 1;
        let id = usize::from(t.slots[slot]);
        let passes = set.rules[id].checks.iter().all(|k| {
            let v = c.args[usize::from(k.arg)];
            let prot = v != 0 && c.protected.contains(&(v as u32));
            match k.op {
                Op::REFLEX_CHECK_MASK_ANY => v & k.a != 0,
                Op::REFLEX_CHECK_MASK_ALL => v & k.a == k.a,
                Op::REFLEX_CHECK_MASK_NONE => v & k.a == 0,
                Op::REFLEX_CHECK_RANGE => (k.a..=k.b).contains(&v),
                Op::REFLEX_CHECK_NOT_RANGE => !(k.a..=k.b).contains(&v),
                Op::REFLEX_CHECK_PROTECTED => prot,
                Op::REFLEX_CHECK_NOT_PROTECTED => !prot,
                _ => false,
            }
        });
        if passes {
            return Some(id);
        }
    }
    None
}

/// The policy's meaning, read rule by rule.
fn direct(p: &Policy, c: &Call) -> Option<usize> {
    let ok = |set: &Option<Set<u32>>, v: u32| set.as_ref().is_none_or(|s| s.accepts(&v));
    p.rules.iter().position(|r| {
        let s = &r.selectors;
        r.syscalls.iter().any(|sc| sc.nr == c.nr)
            && ok(&s.pid, c.pid)
            && ok(&s.ppid, c.ppid)
            && ok(&s.uid, c.uid)
            && ok(&s.gid, c.gid)
            && s.comm.as_ref().is_none_or(|x| x.accepts(&c.comm))
            && s.executable.as_ref().is_none_or(|x| x.accepts(&c.exe))
            && s.parent_executable
                .as_ref()
                .is_none_or(|x| x.accepts(&c.parent_exe))
            && s.cgroup.as_ref().is_none_or(|x| {
                let inside = x
                    .values
                    .iter()
                    .any(|g| c.cgroups.get(g.level as usize) == Some(&g.id));
                inside != x.negate
            })
            && r.args.iter().all(|m| {
                let v = c.args[usize::from(m.index)];
                match &m.cond {
                    ArgCond::In(set) => set.accepts(&v),
                    ArgCond::Bits(Bits::Any, b) => v & b != 0,
                    ArgCond::Bits(Bits::All, b) => v & b == *b,
                    ArgCond::Bits(Bits::None, b) => v & b == 0,
                    ArgCond::Range { lo, hi, outside } => (lo..=hi).contains(&&v) != *outside,
                    ArgCond::Protected { negate } => {
                        (v != 0 && c.protected.contains(&(v as u32))) != *negate
                    }
                }
            })
    })
}

/// A small deterministic generator (no dependency needed for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.next() as usize % from.len()].clone()
    }
}

fn file(ino: u64) -> FileId {
    FileId {
        dev: 0,
        ino,
        path: "/x".into(),
    }
}

#[test]
fn lookups_agree_with_the_policy_on_random_calls() {
    let sh = crate::policy::files::identity("/bin/sh".as_ref()).map(|(dev, ino)| FileId {
        dev,
        ino,
        path: "/bin/sh".into(),
    });
    let root_cgroup = std::fs::metadata("/sys/fs/cgroup").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let p = policy(concat!(
        "protect: {pids: [77]}\n",
        "rules:\n",
        "  - {name: attach, syscall: ptrace, args: {request: [PTRACE_ATTACH, PTRACE_SEIZE]}, match: {uid: {not: [0, 1000]}}, action: kill}\n",
        "  - {name: alice, syscall: ptrace, match: {uid: 1000, comm: [gdb, strace]}, action: audit}\n",
        "  - {name: sh-kill, syscall: [kill, tkill], args: {sig: SIGKILL}, match: {executable: /bin/sh}, action: {signal: SIGSTOP}}\n",
        "  - {name: guard, syscall: kill, args: {pid: protected, sig: {not: [0]}}, action: {signal: SIGSTOP}}\n",
        "  - {name: ranges, syscall: [kill, ptrace], args: {arg2: {range: [10, 20]}, arg3: {no_bits: 4}}, match: {ppid: {not: [1]}, gid: [5, 6]}, action: audit}\n",
        "  - {name: in-root, syscall: [kill, openat], match: {cgroup: /, parent_executable: {not: /bin/sh}}, action: audit}\n",
        "  - {name: catch-all, syscall: kill, action: audit}\n",
    ));
    let set = compile(&p, Options::default()).unwrap();
    let mut rng = Lcg(42);
    let sh = sh.unwrap_or_else(|_| file(9));
    let root = root_cgroup.unwrap_or(1);
    let comms: Vec<[u8; 16]> = ["gdb", "strace", "bash", "python3"]
        .iter()
        .map(|n| {
            let mut c = [0u8; 16];
            c[..n.len()].copy_from_slice(n.as_bytes());
            c
        })
        .collect();
    let nrs = [
        nr("ptrace"),
        nr("kill"),
        nr("tkill"),
        nr("openat"),
        nr("read"),
    ];
    let small = [0u64, 1, 4, 9, 12, 15, 16, 19, 25, 77, 0x4206];
    let mut hits = vec![0usize; p.rules.len() + 1];
    for _ in 0..20_000 {
        let c = Call {
            nr: rng.pick(&nrs),
            pid: rng.pick(&[2, 77, 500]),
            ppid: rng.pick(&[1, 2, 300]),
            uid: rng.pick(&[0, 1000, 1001]),
            gid: rng.pick(&[0, 5, 6, 7]),
            comm: rng.pick(&comms),
            exe: rng.pick(&[sh.clone(), file(3)]),
            parent_exe: rng.pick(&[sh.clone(), file(4)]),
            cgroups: rng.pick(&[vec![root, 11], vec![999, 11]]),
            args: std::array::from_fn(|_| rng.pick(&small)),
            protected: vec![77],
        };
        let (k, d) = (kernel(&set, &c), direct(&p, &c));
        assert_eq!(
            k, d,
            "the kernel's lookups and the policy disagree on {c:#?}"
        );
        hits[k.unwrap_or(p.rules.len())] += 1;
    }
    // Every rule (and "no rule") was exercised.
    assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
}
