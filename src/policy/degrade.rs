//! Where BPF-LSM is refused: hook rules become signals at the entry of the
//! hook's syscalls, if they say so (`fallback:`), or the policy is refused
//! with the reason. Never silently.

use super::hooks::{self, AttachMode, Fallback, Hook};
use super::{
    Action, ArgCond, ArgMatch, Bits, Diagnostic, Diagnostics, Policy, Rule, Set, Syscall, Trigger,
};
use crate::syscall::{self, Arch};

/// A hook rule that runs as something less where BPF-LSM is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    pub rule: String,
    /// What it does instead, briefly (`SIGKILL to the process at the entry
    /// of ptrace`).
    pub instead: String,
    /// The whole story, for the DEGRADED line.
    pub note: String,
}

/// The policy without hook rules: each one with a fallback replaced by its
/// syscall form, each one without refused. Returns what degraded, in words.
pub fn without_lsm(
    policy: &Policy,
    why: &str,
    arch: Arch,
) -> Result<(Policy, Vec<Degraded>), Diagnostics> {
    let mut out = policy.clone();
    out.rules.clear();
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for rule in &policy.rules {
        let Trigger::Hook {
            hook,
            file,
            fallback,
        } = &rule.trigger
        else {
            out.rules.push(rule.clone());
            continue;
        };
        let hook = *hook;
        match fallback {
            None if file.is_some() => errors.push(Diagnostic::error(
                rule.at.clone(),
                format!(
                    "rule '{}' needs BPF-LSM on hook '{}', which this kernel refuses ({why}); \
                     it cannot fall back (its `file` is not known at syscall entry): run it on \
                     a kernel that allows BPF-LSM (`reflex check`)",
                    rule.name,
                    hook.name(),
                ),
            )),
            None => errors.push(Diagnostic::error(
                rule.at.clone(),
                format!(
                    "rule '{}' needs BPF-LSM on hook '{}', which this kernel refuses ({why}); \
                     add `fallback: kill` (or another signal) to signal at the entry of {} \
                     instead, or run on a kernel that allows it (`reflex check`)",
                    rule.name,
                    hook.name(),
                    syscalls_of(hook).join(", ")
                ),
            )),
            Some(fallback) => {
                let fallback = *fallback;
                let (rules, unseen) = translate(rule, hook, fallback, arch);
                let on: Vec<&str> = rules
                    .iter()
                    .flat_map(|r| r.trigger.syscalls().iter().map(|s| s.name))
                    .collect();
                let instead = format!("{} at the entry of {}", fallback.describe(), on.join(", "));
                let note = format!(
                    "rule '{}' degraded: BPF-LSM is refused ({why}), so instead of {} at {} it \
                     sends {} at the entry of {} — the operation itself is not refused{}{}",
                    rule.name,
                    rule.action.describe(),
                    hook.lsm(),
                    fallback.describe(),
                    on.join(", "),
                    if unseen.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", and {} cannot show what it matches and {} not seen",
                            unseen.join(", "),
                            if unseen.len() == 1 { "is" } else { "are" }
                        )
                    },
                    by_thread(rule, hook, &on),
                );
                notes.push(Degraded {
                    rule: rule.name.clone(),
                    instead,
                    note,
                });
                out.rules.extend(rules);
            }
        }
    }
    if errors.is_empty() {
        Ok((out, notes))
    } else {
        Err(Diagnostics(errors))
    }
}

/// What a rule matching `target` misses at the syscalls it falls back to
/// whose target is a thread: the threads other than the main one.
fn by_thread(rule: &Rule, hook: Hook, on: &[&str]) -> String {
    let names_target = rule
        .args
        .iter()
        .any(|m| hook.arg_names().get(usize::from(m.index)) == Some(&"target"));
    let thread: Vec<&str> = hooks::fallback(hook)
        .iter()
        .filter(|f| names_target && f.target_is_thread && on.contains(&f.syscall))
        .map(|f| f.syscall)
        .collect();
    if thread.is_empty() {
        String::new()
    } else {
        format!(
            "; a {} aimed at a thread other than the main one is not seen either",
            thread.join(" or ")
        )
    }
}

fn syscalls_of(hook: Hook) -> Vec<&'static str> {
    hooks::fallback(hook).iter().map(|f| f.syscall).collect()
}

/// Whether a `mode` matcher asks for attaching (which syscalls can show).
pub fn attach_mode(cond: &ArgCond) -> bool {
    matches!(cond, ArgCond::Bits(Bits::Any, bits) if *bits == PTRACE_MODE_ATTACH)
}

const PTRACE_MODE_ATTACH: u64 = 0x02;

/// A hook rule's argument matchers as they read at a fallback syscall, or
/// None if the syscall cannot show what the rule matches.
fn at_syscall(rule: &Rule, hook: Hook, f: &Fallback) -> Option<Vec<ArgMatch>> {
    let mut out = Vec::new();
    for m in &rule.args {
        let name = hook.arg_names()[usize::from(m.index)];
        if hook == Hook::Ptrace && name == "mode" {
            match f.attach_mode {
                AttachMode::Request => out.push(ArgMatch {
                    index: 0,
                    cond: ArgCond::In(Set {
                        negate: false,
                        values: vec![libc::PTRACE_ATTACH as u64, libc::PTRACE_SEIZE as u64],
                    }),
                    ..m.clone()
                }),
                AttachMode::Always | AttachMode::None => {}
            }
            continue;
        }
        let index = f.args.iter().find(|(a, _)| *a == name).map(|(_, i)| *i)?;
        out.push(ArgMatch { index, ..m.clone() });
    }
    Some(out)
}

/// The syscall form of a hook rule, and the fallback syscalls left out
/// because they cannot show an argument it matches (the checker made sure at
/// least one can: `fallback_translates`). Matchers may read differently at
/// different syscalls (`sig` is kill's second argument, tgkill's third): one
/// rule per reading, the first keeping the rule's name, the others named
/// `name@syscalls`.
fn translate(
    rule: &Rule,
    hook: Hook,
    fallback: Action,
    arch: Arch,
) -> (Vec<Rule>, Vec<&'static str>) {
    let mut groups: Vec<(Vec<ArgMatch>, Vec<Syscall>)> = Vec::new();
    let mut unseen = Vec::new();
    for f in hooks::fallback(hook) {
        let Ok((name, nr)) = syscall::resolve(arch, f.syscall) else {
            continue; // not on this architecture
        };
        let Some(args) = at_syscall(rule, hook, f) else {
            unseen.push(name);
            continue;
        };
        match groups.iter_mut().find(|(a, _)| *a == args) {
            Some((_, syscalls)) => syscalls.push(Syscall { name, nr }),
            None => groups.push((args, vec![Syscall { name, nr }])),
        }
    }
    let rules = groups
        .into_iter()
        .enumerate()
        .map(|(i, (args, syscalls))| Rule {
            name: if i == 0 {
                rule.name.clone()
            } else {
                let names: Vec<&str> = syscalls.iter().map(|s| s.name).collect();
                format!("{}@{}", rule.name, names.join("+"))
            },
            trigger: Trigger::Entry(syscalls),
            args,
            action: fallback,
            ..rule.clone()
        })
        .collect();
    (rules, unseen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Env, load_str};

    fn policy(yaml: &str) -> Policy {
        load_str(yaml, "p.yaml".as_ref(), &Env::host())
            .unwrap_or_else(|e| panic!("{e}"))
            .policy
    }

    #[test]
    fn hook_rules_without_fallback_are_refused_with_the_reason() {
        let p = policy("rules:\n  - {name: no-attach, hook: ptrace, action: deny}\n");
        let err = without_lsm(&p, "load refused with EPERM", Arch::host())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rule 'no-attach' needs BPF-LSM on hook 'ptrace', which this kernel refuses (load refused with EPERM); add `fallback: kill`"),
            "{err}"
        );
    }

    #[test]
    fn an_attaching_mode_falls_back_to_attaching_requests() {
        let p = policy(concat!(
            "rules:\n",
            "  - {name: no-attach, hook: ptrace, args: {mode: {any_bits: PTRACE_MODE_ATTACH}}, match: {uid: {not: 1000}}, action: deny, fallback: kill}\n",
        ));
        let (d, _) = without_lsm(&p, "refused", Arch::X86_64).unwrap();
        assert_eq!(d.rules.len(), 2);
        assert_eq!(d.rules[0].trigger.syscalls()[0].name, "ptrace");
        assert_eq!(
            d.rules[0].args[0].cond,
            ArgCond::In(Set {
                negate: false,
                values: vec![16, 0x4206]
            })
        );
        assert_eq!(
            d.rules[1].name,
            "no-attach@process_vm_readv+process_vm_writev"
        );
        assert!(d.rules[1].args.is_empty());
        assert!(d.rules.iter().all(|r| r.selectors.uid.is_some()));
    }

    #[test]
    fn fallbacks_become_syscall_rules() {
        let p = policy(concat!(
            "rules:\n",
            "  - {name: guard, hook: kill, args: {target: protected, sig: SIGKILL}, action: deny, fallback: {signal: SIGSTOP}}\n",
            "  - {name: plain, syscall: getpid, action: audit}\n",
        ));
        let (d, notes) = without_lsm(&p, "refused", Arch::X86_64).unwrap();
        let names: Vec<&str> = d.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["guard", "guard@tgkill+rt_tgsigqueueinfo", "plain"]);
        let kill = &d.rules[0];
        let on: Vec<&str> = kill.trigger.syscalls().iter().map(|s| s.name).collect();
        assert_eq!(on, ["kill", "tkill", "rt_sigqueueinfo"]);
        assert_eq!(kill.args[0].index, 0);
        assert_eq!(kill.args[0].cond, ArgCond::Protected { negate: false });
        assert_eq!(kill.args[1].index, 1);
        assert_eq!(
            d.rules[1].args[1].index, 2,
            "tgkill's signal is its third argument"
        );
        assert!(d.rules.iter().all(|r| r.trigger.hook().is_none()));
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0]
                .note
                .contains("the operation itself is not refused")
                && notes[0]
                    .note
                    .contains("and pidfd_send_signal cannot show what it matches")
                && notes[0].note.contains("a tkill aimed at a thread"),
            "{}",
            notes[0].note
        );
    }

    #[test]
    fn a_kill_rule_without_a_target_sees_every_kill_call() {
        let p = policy(concat!(
            "rules:\n",
            "  - {name: no-kill9, hook: kill, args: {sig: SIGKILL}, action: deny, fallback: kill}\n",
        ));
        let (d, notes) = without_lsm(&p, "refused", Arch::X86_64).unwrap();
        let on: Vec<&str> = d.rules[0]
            .trigger
            .syscalls()
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            on,
            ["kill", "tkill", "rt_sigqueueinfo", "pidfd_send_signal"]
        );
        assert!(!notes[0].note.contains("not seen"), "{}", notes[0].note);
    }
}
