//! Rules that can answer the same call differently: the earlier one takes
//! precedence, and `validate` says so.

use crate::policy::diag::Diagnostic;
use crate::policy::{ArgCond, Mode, Rule, Set};

/// Warnings for pairs of rules that can match the same call but act
/// differently: the earlier one takes precedence.
pub(super) fn conflicts(rules: &[Rule]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Once per rule, not per pair (a thousand rules are half a million pairs).
    let points: Vec<_> = rules.iter().map(|r| r.trigger.points()).collect();
    let does: Vec<String> = rules.iter().map(Rule::describe).collect();
    // Only rules at the same point answer the same call (an entry and an
    // exit of one syscall are two points): each rule is paired only with the
    // earlier rules at its points.
    let mut at_point: std::collections::BTreeMap<_, Vec<usize>> = Default::default();
    for (j, ps) in points.iter().enumerate() {
        for p in ps {
            at_point.entry(*p).or_default().push(j);
        }
    }
    for (j, b) in rules.iter().enumerate() {
        let mut earlier: Vec<usize> = points[j]
            .iter()
            .flat_map(|p| at_point[p].iter().copied().take_while(|&i| i < j))
            .collect();
        earlier.sort_unstable();
        earlier.dedup();
        for i in earlier {
            let a = &rules[i];
            if (a.action, a.mode) == (b.action, b.mode) && does[i] == does[j] {
                continue;
            }
            if !may_overlap(a, b) {
                continue;
            }
            let shared: Vec<&str> = points[j]
                .iter()
                .filter(|p| points[i].contains(p))
                .map(|(_, name)| *name)
                .collect();
            out.push(Diagnostic::warning(
                b.at.clone(),
                format!(
                    "rule '{}' ({}) and rule '{}' ({}, at {}) can match the same {} calls; \
                     '{}' comes first and takes precedence where both match",
                    b.name,
                    describe(b),
                    a.name,
                    describe(a),
                    a.at,
                    shared.join(", "),
                    a.name
                ),
            ));
        }
    }
    out
}

fn describe(r: &Rule) -> String {
    match r.mode {
        Mode::Enforce => r.describe(),
        Mode::Monitor => format!("{}, monitor", r.describe()),
    }
}

fn meets<T: PartialEq>(a: &Option<Set<T>>, b: &Option<Set<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.meets(b),
        _ => true,
    }
}

/// Whether some call could satisfy both rules (conservative: true when unsure).
fn may_overlap(a: &Rule, b: &Rule) -> bool {
    let (x, y) = (&a.selectors, &b.selectors);
    let selectors = meets(&x.pid, &y.pid)
        && meets(&x.ppid, &y.ppid)
        && meets(&x.uid, &y.uid)
        && meets(&x.gid, &y.gid)
        && meets(&x.comm, &y.comm)
        && meets(&x.executable, &y.executable)
        && meets(&x.parent_executable, &y.parent_executable);
    selectors
        && a.args.iter().all(|m| {
            b.args
                .iter()
                .filter(|n| n.index == m.index)
                .all(|n| match (&m.cond, &n.cond) {
                    (ArgCond::In(p), ArgCond::In(q)) => p.meets(q),
                    (ArgCond::Protected { negate: p }, ArgCond::Protected { negate: q }) => p == q,
                    _ => true,
                })
        })
}
