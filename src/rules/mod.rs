//! Stage 2 — compiled rules: the policy reduced to the plain values the kernel
//! programs look up.
//!
//! For each watched syscall, a rule gets a slot (a bit of a 64-bit mask, in
//! precedence order). For each selector (pid, uid, comm, an argument, …) and
//! each value some rule names, one entry says which slots list that value
//! (`pos`) and which exclude it (`neg`). Per syscall and selector, `free` holds
//! the slots that do not constrain the selector and `negated` those that
//! constrain it with `not`. The kernel then keeps, for each selector,
//! `free | pos | (negated & !neg)`: one lookup per selector, however many
//! rules there are.

mod encode;

pub use encode::{Handler, Uses, encode_match, encode_rule, encode_table};

use std::collections::BTreeMap;

pub use crate::abi::Point;
use crate::abi::types::{reflex_check_op as Op, reflex_dim as D};
use crate::abi::{
    DIMS, MAX_CHECKED, MAX_CHECKS, MAX_MATCHES, MAX_PROTECT_OBJECTS, MAX_PROTECTED, MAX_RULES,
    SLOTS,
};
use crate::policy::{
    self, Action, ArgCond, Bits, Diagnostic, Diagnostics, Location, Mode, Policy, Set, Trigger,
};

/// Where a call's duration is among the values a check reads (after the six
/// arguments and what the call returned).
const VALUE_DURATION: u8 = crate::abi::types::reflex_limit::REFLEX_VALUE_DURATION.0 as u8;

/// A selector dimension, as the kernel numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dim(pub u8);

impl Dim {
    pub const PID: Dim = Dim(D::REFLEX_DIM_PID.0 as u8);
    pub const PPID: Dim = Dim(D::REFLEX_DIM_PPID.0 as u8);
    pub const UID: Dim = Dim(D::REFLEX_DIM_UID.0 as u8);
    pub const GID: Dim = Dim(D::REFLEX_DIM_GID.0 as u8);
    pub const COMM: Dim = Dim(D::REFLEX_DIM_COMM.0 as u8);
    pub const CGROUP: Dim = Dim(D::REFLEX_DIM_CGROUP.0 as u8);
    pub const EXE: Dim = Dim(D::REFLEX_DIM_EXE.0 as u8);
    pub const PARENT_EXE: Dim = Dim(D::REFLEX_DIM_PARENT_EXE.0 as u8);
    /// A hook's file.
    pub const FILE: Dim = Dim(D::REFLEX_DIM_FILE.0 as u8);
    /// At a syscall's exit: what it returned.
    pub const RET: Dim = Dim(D::REFLEX_DIM_RET.0 as u8);
    /// Some ancestor's pid, or executable.
    pub const ANCESTOR: Dim = Dim(D::REFLEX_DIM_ANCESTOR.0 as u8);
    pub const ANCESTOR_EXE: Dim = Dim(D::REFLEX_DIM_ANCESTOR_EXE.0 as u8);

    pub fn arg(i: u8) -> Dim {
        Dim(D::REFLEX_DIM_ARG0.0 as u8 + i)
    }

    fn bit(self) -> u32 {
        1 << self.0
    }
}

/// What a compiled rule does: the policy's action, as it is.
pub type Verdict = Action;

/// An argument check done per candidate rule (what a lookup cannot do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub op: Op,
    pub arg: u8,
    pub a: u64,
    pub b: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRule {
    pub name: String,
    pub at: Location,
    pub verdict: Verdict,
    pub monitor: bool,
    pub checks: Vec<Check>,
    pub rate: Option<policy::Rate>,
    pub to: policy::To,
    pub value: policy::SigValue,
    pub pause_ns: u64,
    pub disarm: Option<policy::Disarm>,
}

/// The rules of one table entry (a syscall's entry or exit, a hook, the
/// sampler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The syscall's name (or the hook's, or `sample`).
    pub name: &'static str,
    /// Rule index per slot; slot order is precedence.
    pub slots: Vec<u16>,
    /// Slots whose rule has argument checks.
    pub checked: u64,
    pub free: [u64; DIMS],
    pub negated: [u64; DIMS],
    /// Dimensions some rule on this syscall constrains.
    pub dims: u32,
    /// Exit rules watch this syscall: each entry's time is recorded.
    pub timed: bool,
    pub cgroup_levels: u32,
}

impl Table {
    pub fn rules_mask(&self) -> u64 {
        match self.slots.len() {
            SLOTS => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }
}

/// `(point, dim, value)`: the key of a selector entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchKey {
    pub point: Point,
    pub dim: Dim,
    pub value: [u64; 2],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchValue {
    pub pos: u64,
    pub neg: u64,
}

/// The protected set's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    pub pids: Vec<u32>,
    /// (kernel dev_t, inode)
    pub executables: Vec<(u32, u64)>,
    /// cgroup ids
    pub cgroups: Vec<u64>,
    pub cgroup_levels: u32,
    /// Executables or cgroups are protected: processes must be followed.
    pub track: bool,
    pub policy: policy::Protect,
}

/// Everything one rule set holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// Indexed by rule id.
    pub rules: Vec<CompiledRule>,
    /// By where they answer.
    pub tables: BTreeMap<Point, Table>,
    pub matches: BTreeMap<MatchKey, MatchValue>,
    pub protect: Protection,
    /// The perf event of sampling rules, if there are any.
    pub sampling: Option<policy::Sample>,
}

impl RuleSet {
    /// What an evaluator must handle to answer this set.
    pub fn uses(&self) -> Uses {
        Uses::of(&self.rules, self.tables.values())
    }

    /// The syscalls watched at entry.
    pub fn syscall_names(&self) -> Vec<&'static str> {
        self.names(|p| matches!(p, Point::Entry(_)))
    }

    /// The syscalls watched at exit.
    pub fn exit_names(&self) -> Vec<&'static str> {
        self.names(|p| matches!(p, Point::Exit(_)))
    }

    fn names(&self, want: impl Fn(Point) -> bool) -> Vec<&'static str> {
        self.tables
            .iter()
            .filter(|(p, _)| want(**p))
            .map(|(_, t)| t.name)
            .collect()
    }

    /// The security hooks rules are on.
    pub fn hooks(&self) -> Vec<policy::Hook> {
        self.tables
            .keys()
            .filter_map(|p| match p {
                Point::Hook(h) => Some(*h),
                _ => None,
            })
            .collect()
    }

    /// Some rule signals a task other than the caller (`to:`), which needs
    /// the `bpf_task_from_pid` and `bpf_send_signal_task` kfuncs.
    pub fn needs_kfuncs(&self) -> bool {
        self.rules.iter().any(|r| r.to != policy::To::Caller)
    }
}

/// How a policy is compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Every rule in monitor mode (`run --dry-run`).
    pub monitor_all: bool,
}

fn comm_value(c: &[u8; 16]) -> [u64; 2] {
    let (lo, hi) = c.split_at(8);
    [
        u64::from_ne_bytes(lo.try_into().expect("8 bytes")),
        u64::from_ne_bytes(hi.try_into().expect("8 bytes")),
    ]
}

pub fn compile(policy: &Policy, options: Options) -> Result<RuleSet, Diagnostics> {
    let mut set = RuleSet::default();
    let mut diags = Vec::new();
    if policy.rules.len() > MAX_RULES {
        diags.push(Diagnostic::error(
            policy.rules[MAX_RULES].at.clone(),
            format!(
                "{} rules: reflex holds at most {MAX_RULES}; this is rule {}",
                policy.rules.len(),
                MAX_RULES + 1
            ),
        ));
        return Err(Diagnostics(diags));
    }
    for (id, rule) in policy.rules.iter().enumerate() {
        let verdict = rule.action;
        let mut checks = Vec::new();
        // Lookups (dim, set) this rule needs on each of its syscalls.
        let mut lookups: Vec<(Dim, bool, Vec<[u64; 2]>)> = Vec::new();
        let s = &rule.selectors;
        let mut add = |dim: Dim, set: &Option<Set<[u64; 2]>>| {
            if let Some(set) = set {
                lookups.push((dim, set.negate, set.values.clone()));
            }
        };
        let ids = |set: &Option<Set<u32>>| {
            set.as_ref().map(|s| Set {
                negate: s.negate,
                values: s.values.iter().map(|&v| [u64::from(v), 0]).collect(),
            })
        };
        add(Dim::PID, &ids(&s.pid));
        add(Dim::PPID, &ids(&s.ppid));
        add(Dim::UID, &ids(&s.uid));
        add(Dim::GID, &ids(&s.gid));
        add(
            Dim::COMM,
            &s.comm.as_ref().map(|c| Set {
                negate: c.negate,
                values: c.values.iter().map(comm_value).collect(),
            }),
        );
        let files = |set: &Option<Set<policy::FileId>>| {
            set.as_ref().map(|s| Set {
                negate: s.negate,
                values: s.values.iter().map(|f| [f.ino, u64::from(f.dev)]).collect(),
            })
        };
        add(Dim::EXE, &files(&s.executable));
        add(Dim::PARENT_EXE, &files(&s.parent_executable));
        add(Dim::ANCESTOR, &ids(&s.ancestor));
        add(Dim::ANCESTOR_EXE, &files(&s.ancestor_executable));
        if let Trigger::Hook { file, .. } = &rule.trigger {
            add(Dim::FILE, &files(file));
        }
        add(
            Dim::CGROUP,
            &s.cgroup.as_ref().map(|c| Set {
                negate: c.negate,
                values: c.values.iter().map(|g| [g.id, 0]).collect(),
            }),
        );
        for m in &rule.args {
            let arg = m.index;
            let check = |op: Op, a: u64, b: u64| Check { op, arg, a, b };
            match &m.cond {
                ArgCond::In(set) => lookups.push((
                    Dim::arg(arg),
                    set.negate,
                    set.values.iter().map(|&v| [v, 0]).collect(),
                )),
                ArgCond::Bits(Bits::Any, bits) => {
                    checks.push(check(Op::REFLEX_CHECK_MASK_ANY, *bits, 0))
                }
                ArgCond::Bits(Bits::All, bits) => {
                    checks.push(check(Op::REFLEX_CHECK_MASK_ALL, *bits, 0))
                }
                ArgCond::Bits(Bits::None, bits) => {
                    checks.push(check(Op::REFLEX_CHECK_MASK_NONE, *bits, 0))
                }
                ArgCond::Range { lo, hi, outside } => checks.push(check(
                    if *outside {
                        Op::REFLEX_CHECK_NOT_RANGE
                    } else {
                        Op::REFLEX_CHECK_RANGE
                    },
                    *lo,
                    *hi,
                )),
                ArgCond::Protected { negate } => checks.push(check(
                    if *negate {
                        Op::REFLEX_CHECK_NOT_PROTECTED
                    } else {
                        Op::REFLEX_CHECK_PROTECTED
                    },
                    0,
                    0,
                )),
            }
        }
        if checks.len() > MAX_CHECKS {
            diags.push(Diagnostic::error(
                rule.at.clone(),
                format!(
                    "rule '{}' has {} mask, range or protected argument matchers: at most {MAX_CHECKS}",
                    rule.name,
                    checks.len()
                ),
            ));
        }
        let cgroup_levels = s
            .cgroup
            .as_ref()
            .map(|c| c.values.iter().fold(0u32, |acc, g| acc | (1 << g.level)))
            .unwrap_or(0);

        // Exit rules sit on the syscalls' exit entries; their entries are timed.
        if let Trigger::Exit { syscalls, exit } = &rule.trigger {
            if let Some(values) = &exit.returns {
                lookups.push((
                    Dim::RET,
                    values.negate,
                    values.values.iter().map(|&v| [v, 0]).collect(),
                ));
            }
            if let Some(ns) = exit.slower_than_ns {
                checks.push(Check {
                    op: Op::REFLEX_CHECK_RANGE,
                    arg: VALUE_DURATION,
                    a: ns,
                    b: u64::MAX,
                });
            }
            for sc in syscalls {
                table_for(&mut set.tables, Point::Entry(sc.nr), sc.name).timed = true;
            }
        }
        for (point, name) in rule.trigger.points() {
            let table = table_for(&mut set.tables, point, name);
            let slot = table.slots.len();
            if slot == SLOTS {
                diags.push(Diagnostic::error(
                    rule.at.clone(),
                    format!(
                        "rule '{}' is rule {} on {name}: at most {SLOTS} rules may watch one syscall",
                        rule.name,
                        slot + 1,
                    ),
                ));
                continue;
            }
            table.slots.push(id as u16);
            let bit = 1u64 << slot;
            if !checks.is_empty() {
                if table.checked.count_ones() as usize == MAX_CHECKED {
                    diags.push(Diagnostic::error(
                        rule.at.clone(),
                        format!(
                            "rule '{}' is the {}th rule on {} with mask, range or protected \
                             argument matchers: at most {MAX_CHECKED} per syscall",
                            rule.name,
                            MAX_CHECKED + 1,
                            name
                        ),
                    ));
                }
                table.checked |= bit;
            }
            let constrained: Vec<Dim> = lookups.iter().map(|(d, _, _)| *d).collect();
            for d in 0..DIMS as u8 {
                if !constrained.contains(&Dim(d)) {
                    table.free[usize::from(d)] |= bit;
                }
            }
            for (dim, negate, values) in &lookups {
                table.dims |= dim.bit();
                if *negate {
                    table.negated[usize::from(dim.0)] |= bit;
                }
                for value in values {
                    let entry = set
                        .matches
                        .entry(MatchKey {
                            point,
                            dim: *dim,
                            value: *value,
                        })
                        .or_default();
                    if *negate {
                        entry.neg |= bit;
                    } else {
                        entry.pos |= bit;
                    }
                }
            }
            table.cgroup_levels |= cgroup_levels;
        }
        set.rules.push(CompiledRule {
            name: rule.name.clone(),
            at: rule.at.clone(),
            verdict,
            monitor: options.monitor_all || rule.mode == Mode::Monitor,
            checks,
            rate: rule.rate,
            to: rule.to,
            value: rule.value,
            pause_ns: rule.pause_ns.unwrap_or(0),
            disarm: rule.disarm,
        });
    }
    if set.matches.len() > MAX_MATCHES {
        let at = policy
            .rules
            .last()
            .map(|r| r.at.clone())
            .expect("entries come from rules");
        diags.push(Diagnostic::error(
            at,
            format!(
                "the selectors need {} (syscall, selector, value) entries: at most {MAX_MATCHES}; \
                 list fewer values, or share rules between syscalls less",
                set.matches.len()
            ),
        ));
    }
    set.protect = protection(&policy.protect, &mut diags, policy);
    set.sampling = policy.rules.iter().find_map(|r| match r.trigger {
        Trigger::Sample(s) => Some(s),
        _ => None,
    });
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diags));
    }
    Ok(set)
}

/// The table of `point`, made empty if new.
fn table_for<'t>(
    tables: &'t mut BTreeMap<Point, Table>,
    point: Point,
    name: &'static str,
) -> &'t mut Table {
    tables.entry(point).or_insert_with(|| Table {
        name,
        slots: Vec::new(),
        checked: 0,
        free: [0; DIMS],
        negated: [0; DIMS],
        dims: 0,
        timed: false,
        cgroup_levels: 0,
    })
}

fn protection(p: &policy::Protect, diags: &mut Vec<Diagnostic>, policy: &Policy) -> Protection {
    let objects = p.executables.len() + p.cgroups.len();
    if p.pids.len() > MAX_PROTECTED || objects > MAX_PROTECT_OBJECTS {
        let at = policy
            .sources
            .first()
            .map(|f| Location::file(&policy::diag::shown(f)))
            .unwrap_or_else(|| Location::file(&policy::diag::shown("policy".as_ref())));
        diags.push(Diagnostic::error(
            at,
            format!(
                "protect lists {} pids and {objects} executables and cgroups: at most {MAX_PROTECTED} \
                 and {MAX_PROTECT_OBJECTS}",
                p.pids.len()
            ),
        ));
    }
    Protection {
        pids: p.pids.clone(),
        executables: p.executables.iter().map(|f| (f.dev, f.ino)).collect(),
        cgroups: p.cgroups.iter().map(|c| c.id).collect(),
        cgroup_levels: p.cgroups.iter().fold(0, |acc, c| acc | (1 << c.level)),
        track: p.tracks_processes(),
        policy: p.clone(),
    }
}

#[cfg(test)]
mod calls;
#[cfg(test)]
mod tests;
