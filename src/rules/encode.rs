//! Compiled rules in the exact bytes the kernel reads: pure functions from a
//! [`CompiledRule`], a [`Table`] and a selector entry to the C structs of
//! reflex.h. The loader only writes what these return.

use super::{CompiledRule, MatchKey, MatchValue, Table};
use crate::abi::Point;
use crate::abi::types::{
    self, reflex_handler as H, reflex_rate_by as R, reflex_to as T, reflex_value as V,
    reflex_verdict as VD,
};
use crate::policy::{Action, DisarmBy, RateBy, SigValue, Target, To};

/// Which kind of program answers syscall entries and exits (hooks and the
/// sampler always have their own).
pub type Handler = H;

fn aim(target: Target) -> u8 {
    (match target {
        Target::Process => types::reflex_target::REFLEX_TARGET_PROCESS,
        Target::Thread => types::reflex_target::REFLEX_TARGET_THREAD,
    })
    .0 as u8
}

/// Rule `id` of an install (`generation`), as the `rules` map holds it.
pub fn encode_rule(id: u32, rule: &CompiledRule, generation: u32) -> types::reflex_rule {
    let mut r = types::reflex_rule {
        id,
        generation,
        monitor: u8::from(rule.monitor),
        nchecks: rule.checks.len() as u8,
        pause_ns: rule.pause_ns,
        ..Default::default()
    };
    match rule.verdict {
        Action::Audit => r.verdict = VD::REFLEX_VERDICT_AUDIT.0 as u8,
        Action::Signal { signal, target } => {
            r.verdict = VD::REFLEX_VERDICT_SIGNAL.0 as u8;
            r.signal = signal.number();
            r.target = aim(target);
        }
        Action::Deny {
            error,
            signal,
            target,
        } => {
            r.verdict = VD::REFLEX_VERDICT_DENY.0 as u8;
            r.error = error;
            r.signal = signal.map_or(0, |s| s.number());
            r.target = aim(target);
        }
    }
    if let Some(rate) = rule.rate {
        r.rate_window_ns = rate.window_ns;
        r.rate_over = rate.over;
        r.rate_by = (match rate.by {
            RateBy::Process => R::REFLEX_RATE_PROCESS,
            RateBy::Parent => R::REFLEX_RATE_PARENT,
            RateBy::Session => R::REFLEX_RATE_SESSION,
            RateBy::Cgroup => R::REFLEX_RATE_CGROUP,
        })
        .0 as u8;
    }
    (r.to, r.to_pid) = match rule.to {
        To::Caller => (T::REFLEX_TO_CALLER.0 as u8, 0),
        To::Parent => (T::REFLEX_TO_PARENT.0 as u8, 0),
        To::Pid(pid) => (T::REFLEX_TO_PID.0 as u8, pid),
    };
    (r.value_kind, r.value) = match rule.value {
        SigValue::Number(n) => (V::REFLEX_VALUE_NUMBER.0 as u8, n),
        SigValue::CallerPid => (V::REFLEX_VALUE_CALLER_PID.0 as u8, 0),
    };
    if let Some(d) = rule.disarm {
        r.disarm_distinct = d.distinct;
        r.disarm_window_ns = d.window_ns;
        r.disarm_by = (match d.by {
            DisarmBy::Executable => types::reflex_disarm_by::REFLEX_DISARM_EXECUTABLE,
            DisarmBy::Cgroup => types::reflex_disarm_by::REFLEX_DISARM_CGROUP,
            DisarmBy::Process => types::reflex_disarm_by::REFLEX_DISARM_PROCESS,
        })
        .0 as u8;
    }
    for (dst, c) in r.checks.iter_mut().zip(&rule.checks) {
        *dst = types::reflex_check {
            op: c.op.0 as u8,
            arg: c.arg,
            a: c.a,
            b: c.b,
            ..Default::default()
        };
    }
    r
}

/// What an evaluator must handle for a rule set (`eval_dims` and
/// `eval_uses` in the programs' state.h): the selector dimensions its tables
/// look up and the features its rules use. The kernel's evaluator is
/// verified for exactly these, so one loaded for less than a rule set uses
/// must never answer it (it would, say, stop a process without listing it
/// for resumption): [`Uses::covers`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    pub dims: u32,
    pub features: u32,
}

impl Uses {
    /// Everything: an evaluator for any rule set.
    pub const ALL: Uses = Uses {
        dims: !0,
        features: !0,
    };

    /// Of `rules` and `tables` (a rule set's).
    pub fn of<'a>(
        rules: impl IntoIterator<Item = &'a CompiledRule>,
        tables: impl IntoIterator<Item = &'a Table>,
    ) -> Uses {
        use types::reflex_use as U;
        let mut features = 0u32;
        for rule in rules {
            let r = encode_rule(0, rule, 0);
            let stops =
                [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&r.signal);
            for (used, bit) in [
                (r.nchecks > 0, U::REFLEX_USE_CHECKS),
                (r.rate_window_ns > 0, U::REFLEX_USE_RATE),
                (r.to != T::REFLEX_TO_CALLER.0 as u8, U::REFLEX_USE_TO),
                (r.disarm_distinct > 0, U::REFLEX_USE_DISARM),
                (stops, U::REFLEX_USE_STOP),
            ] {
                if used {
                    features |= bit.0;
                }
            }
        }
        Uses {
            dims: tables.into_iter().fold(0, |d, t| d | t.dims),
            features,
        }
    }

    /// Whether an evaluator for `self` can answer a rule set that uses `other`.
    pub fn covers(&self, other: &Uses) -> bool {
        self.dims & other.dims == other.dims && self.features & other.features == other.features
    }
}

/// The `syscalls` map entry of `point`: syscall points are answered by
/// `syscalls` (the hook kind in force), hooks by their LSM programs, the
/// sampler by its perf program. `nargs`: arguments the syscall takes.
pub fn encode_table(
    point: Point,
    table: &Table,
    syscalls: Handler,
    nargs: u8,
) -> types::reflex_syscall {
    let handler = match point {
        Point::Hook(_) => H::REFLEX_HANDLER_LSM,
        Point::Sample => H::REFLEX_HANDLER_PERF,
        Point::Entry(_) | Point::Exit(_) => syscalls,
    };
    // What the syscall's arguments point to, for its events.
    let pointers = match point {
        Point::Entry(_) | Point::Exit(_) => crate::syscall::pointers(table.name),
        Point::Hook(_) | Point::Sample => crate::syscall::Pointers::default(),
    };
    let none = types::reflex_arg_kind::REFLEX_ARG_NONE.0 as u8;
    let mut s = types::reflex_syscall {
        rules: table.rules_mask(),
        path_arg: pointers.path.unwrap_or(none),
        argv_arg: pointers.argv.unwrap_or(none),
        target_arg: pointers.target.unwrap_or(none),
        checked: table.checked,
        free: table.free,
        negated: table.negated,
        dims: table.dims,
        cgroup_levels: table.cgroup_levels,
        handler: handler.0 as u8,
        nargs,
        timed: u8::from(table.timed),
        ..Default::default()
    };
    s.rule[..table.slots.len()].copy_from_slice(&table.slots);
    s
}

/// A selector entry of rule set `set`, as the `matches` map holds it.
pub fn encode_match(
    key: &MatchKey,
    value: &MatchValue,
    set: u8,
) -> (types::reflex_match_key, types::reflex_match) {
    (
        types::reflex_match_key {
            nr: key.point.index() as u32,
            set,
            dim: key.dim.0,
            value: key.value,
            ..Default::default()
        },
        types::reflex_match {
            pos: value.pos,
            neg: value.neg,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Env, load_str};
    use crate::rules::{Options, compile};

    fn set(yaml: &str) -> crate::rules::RuleSet {
        let p = load_str(yaml, "p.yaml".as_ref(), &Env::host())
            .unwrap_or_else(|e| panic!("{e}"))
            .policy;
        compile(&p, Options::default()).unwrap()
    }

    #[test]
    fn a_rule_in_kernel_bytes() {
        let s = set(concat!(
            "rules:\n",
            "  - {name: a, syscall: kill, rate: {over: 5, per: 1s, by: cgroup}, args: {sig: {any_bits: 8}}, action: {signal: SIGUSR1, thread: true}}\n",
            "  - {name: b, syscall: getppid, action: {signal: SIGUSR2, to: {pid: 77}, value: pid}}\n",
            "  - {name: c, hook: kill, action: {deny: EACCES, signal: SIGSTOP}}\n",
            "  - {name: d, syscall: getpid, action: {pause: 2s}}\n",
        ));
        let a = encode_rule(0, &s.rules[0], 3);
        assert_eq!((a.id, a.generation), (0, 3));
        assert_eq!(a.verdict, VD::REFLEX_VERDICT_SIGNAL.0 as u8);
        assert_eq!(a.signal, libc::SIGUSR1);
        assert_eq!(a.target, types::reflex_target::REFLEX_TARGET_THREAD.0 as u8);
        assert_eq!((a.rate_over, a.rate_window_ns), (5, 1_000_000_000));
        assert_eq!(a.rate_by, R::REFLEX_RATE_CGROUP.0 as u8);
        assert_eq!(a.nchecks, 1);
        assert_eq!(
            a.checks[0].op,
            types::reflex_check_op::REFLEX_CHECK_MASK_ANY.0 as u8
        );
        assert_eq!((a.checks[0].arg, a.checks[0].a), (1, 8));
        let b = encode_rule(1, &s.rules[1], 3);
        assert_eq!((b.to, b.to_pid), (T::REFLEX_TO_PID.0 as u8, 77));
        assert_eq!(b.value_kind, V::REFLEX_VALUE_CALLER_PID.0 as u8);
        let c = encode_rule(2, &s.rules[2], 3);
        assert_eq!(c.verdict, VD::REFLEX_VERDICT_DENY.0 as u8);
        assert_eq!((c.error, c.signal), (libc::EACCES, libc::SIGSTOP));
        let d = encode_rule(3, &s.rules[3], 3);
        assert_eq!((d.signal, d.pause_ns), (libc::SIGSTOP, 2_000_000_000));
    }

    #[test]
    fn tables_say_which_program_answers() {
        let s = set(concat!(
            "rules:\n",
            "  - {name: a, syscall: kill, match: {uid: 0}, action: audit}\n",
            "  - {name: b, syscall: kill, action: kill}\n",
            "  - {name: c, hook: ptrace, action: deny}\n",
            "  - {name: d, sample: {frequency: 10}, action: audit}\n",
        ));
        let kill = Point::Entry(libc::SYS_kill as i32);
        let t = encode_table(kill, &s.tables[&kill], H::REFLEX_HANDLER_RAW, 2);
        assert_eq!(
            (t.rules, t.handler, t.nargs),
            (0b11, H::REFLEX_HANDLER_RAW.0 as u8, 2)
        );
        assert_eq!(&t.rule[..2], &[0, 1]);
        let uid = types::reflex_dim::REFLEX_DIM_UID.0 as usize;
        assert_eq!(t.dims, 1 << uid);
        assert_eq!(t.free[uid], 0b10);
        let hook = Point::Hook(crate::policy::Hook::Ptrace);
        let h = encode_table(hook, &s.tables[&hook], H::REFLEX_HANDLER_RAW, 6);
        assert_eq!(h.handler, H::REFLEX_HANDLER_LSM.0 as u8);
        let p = encode_table(
            Point::Sample,
            &s.tables[&Point::Sample],
            H::REFLEX_HANDLER_RAW,
            0,
        );
        assert_eq!(p.handler, H::REFLEX_HANDLER_PERF.0 as u8);
        let (key, value) = s.matches.iter().next().unwrap();
        let (k, v) = encode_match(key, value, 1);
        assert_eq!((k.nr, k.set, k.dim), (kill.index() as u32, 1, uid as u8));
        assert_eq!(k.value, [0, 0]);
        assert_eq!((v.pos, v.neg), (0b01, 0));
    }
}
