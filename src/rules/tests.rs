//! The compiler, checked two ways: the map entries it writes for small
//! policies, and — for many random calls — that the kernel's lookup algorithm,
//! copied here in Rust, run over the compiled entries picks the same rule as
//! reading the policy directly (`tests/matcher.rs` runs the kernel's own).

use super::*;
use crate::abi::CGROUP_LEVELS;
use crate::policy::{ANCESTOR_DEPTH, Call, Env, Target, load_str};
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

/// A syscall's entry point.
fn entry(name: &str) -> Point {
    Point::Entry(nr(name))
}

#[test]
fn the_seed_is_one_unconstrained_rule_on_ptrace() {
    let set = compile(&Policy::seed(), Options::default()).unwrap();
    let t = &set.tables[&entry("ptrace")];
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
    let (p, k) = (entry("ptrace"), entry("kill"));
    let t = &set.tables[&p];
    assert_eq!(t.slots, vec![0, 1]);
    assert_eq!(t.dims, Dim::UID.bit());
    let uid = usize::from(Dim::UID.0);
    assert_eq!(t.free[uid], 0, "both rules constrain uid");
    assert_eq!(t.negated[uid], 0b10);
    assert_eq!(t.free[usize::from(Dim::PID.0)], 0b11);
    let entry = |point, v| {
        set.matches[&MatchKey {
            point,
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
    assert_eq!(set.tables[&k].slots, vec![1]);
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
    assert_eq!(set.tables[&entry("kill")].dims.count_ones(), 1);
    assert_eq!(set.matches.len(), SLOTS);
}

// ---- the kernel's algorithm, in Rust, against the policy read directly ----

/// What `find_rule()` in match.h computes, in Rust (`tests/matcher.rs` runs
/// the C itself, in the kernel).
fn kernel(set: &RuleSet, c: &Call) -> Option<usize> {
    let t = set.tables.get(&c.point)?;
    let mut cand = t.rules_mask();
    let mut narrow = |dim: Dim, value: [u64; 2]| {
        if t.dims & dim.bit() != 0 {
            let m = set
                .matches
                .get(&MatchKey {
                    point: c.point,
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
    let (dev, ino) = c.file.unwrap_or((0, 0));
    narrow(Dim::FILE, [ino, u64::from(dev)]);
    narrow(Dim::COMM, comm_value(&c.comm));
    narrow(Dim::EXE, [c.exe.1, u64::from(c.exe.0)]);
    narrow(Dim::PARENT_EXE, [c.parent_exe.1, u64::from(c.parent_exe.0)]);
    narrow(Dim::RET, [c.ret, 0]);
    // Any ancestor, the parent first, as deep as the kernel looks.
    for (dim, keys) in [
        (
            Dim::ANCESTOR,
            c.ancestors
                .iter()
                .map(|&p| [u64::from(p), 0])
                .collect::<Vec<_>>(),
        ),
        (
            Dim::ANCESTOR_EXE,
            c.ancestor_exes
                .iter()
                .map(|&(dev, ino)| [ino, u64::from(dev)])
                .collect(),
        ),
    ] {
        if t.dims & dim.bit() != 0 {
            let (mut pos, mut neg) = (0, 0);
            for value in keys.into_iter().take(ANCESTOR_DEPTH) {
                if let Some(m) = set.matches.get(&MatchKey {
                    point: c.point,
                    dim,
                    value,
                }) {
                    pos |= m.pos;
                    neg |= m.neg;
                }
            }
            let d = usize::from(dim.0);
            cand &= t.free[d] | pos | (t.negated[d] & !neg);
        }
    }
    if t.dims & Dim::CGROUP.bit() != 0 {
        let (mut pos, mut neg) = (0, 0);
        for level in 0..CGROUP_LEVELS {
            if t.cgroup_levels & (1 << level) != 0 {
                if let Some(&id) = c.cgroups.get(level) {
                    if let Some(m) = set.matches.get(&MatchKey {
                        point: c.point,
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
            let values = [
                c.args[0],
                c.args[1],
                c.args[2],
                c.args[3],
                c.args[4],
                c.args[5],
                c.ret,
                c.duration_ns,
            ];
            let v = values[usize::from(k.arg)];
            // As is_protected_pid: pid 1 always is.
            let prot = v != 0 && u32::try_from(v).is_ok_and(|p| p == 1 || c.protected.contains(&p));
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

#[test]
fn lookups_agree_with_the_policy_on_random_calls() {
    let p = super::calls::policy();
    let set = compile(&p, Options::default()).unwrap();
    let mut calls = super::calls::Calls::new(42);
    let mut hits = vec![0usize; p.rules.len() + 1];
    for _ in 0..20_000 {
        let c = calls.next(&[]);
        let (k, d) = (kernel(&set, &c), p.first_match(&c));
        assert_eq!(
            k, d,
            "the compiled lookups and the policy disagree on {c:#?}"
        );
        hits[k.unwrap_or(p.rules.len())] += 1;
    }
    // Every rule (and "no rule") was exercised.
    assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
}

#[test]
fn an_evaluator_is_asked_for_exactly_what_the_rules_use() {
    use crate::abi::types::{reflex_dim as D, reflex_use as U};
    let uses = |yaml: &str| compile(&policy(yaml), Options::default()).unwrap().uses();
    // The seed's job: no selector, no feature.
    let seed = compile(&Policy::seed(), Options::default()).unwrap().uses();
    assert_eq!((seed.dims, seed.features), (0, 0));
    let all = uses(concat!(
        "rules:\n",
        "  - {name: a, syscall: ptrace, args: {request: {range: [16, 17]}}, match: {uid: 1000},\n",
        "     action: {pause: 1s}}\n",
        "  - {name: b, syscall: getppid, rate: {over: 5, per: 1m}, action: audit}\n",
        "  - {name: c, syscall: kill, action: {signal: SIGUSR1, to: parent}}\n",
        "  - {name: d, syscall: execve, action: kill, disarm: {distinct: 3, per: 10m, by: executable}}\n",
    ));
    let bit = |u: U| u.0;
    assert_eq!(
        all.features,
        bit(U::REFLEX_USE_CHECKS)
            | bit(U::REFLEX_USE_STOP)
            | bit(U::REFLEX_USE_RATE)
            | bit(U::REFLEX_USE_TO)
            | bit(U::REFLEX_USE_DISARM)
    );
    assert_eq!(all.dims, 1 << D::REFLEX_DIM_UID.0);
    // An evaluator for everything covers it; one for the seed does not.
    assert!(crate::rules::Uses::ALL.covers(&all));
    assert!(!seed.covers(&all));
    assert!(all.covers(&seed));
    // A stop without a pause is a stop too: its resumption must be listed.
    let stop = uses("rules:\n  - {name: s, syscall: getppid, action: {signal: SIGSTOP}}\n");
    assert_eq!(stop.features, bit(U::REFLEX_USE_STOP));
}
