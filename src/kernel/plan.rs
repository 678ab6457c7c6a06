//! Which program answers the watched syscalls: a measured choice.
//!
//! Measured on the development machine (Linux 6.18, 2 cores), per call:
//! - once any syscall tracepoint is enabled, every syscall of every task takes
//!   the slow path: +41 ns (getppid 171 → 212 ns);
//! - a `tp/syscalls/sys_enter_X` program adds ~250 ns to each X call;
//! - one `tp_btf/sys_enter` program with an early syscall-id check adds
//!   ~120 ns to watched calls and ~80 ns to all others.
//!
//! So per-syscall tracepoints cost least when the watched syscalls are rare
//! (ptrace, kill, execve…: the rest of the machine pays only the slow path),
//! and the raw tracepoint costs least when a watched syscall is hot (read,
//! openat…): it saves ~130 ns on each watched call and costs ~39 ns more on
//! the others, so it wins once watched calls are over ~23% of all calls.
//! `reflex bench` measures both side by side.
//!
//! Both are beaten where the kernel lets reflex attach fentry programs to the
//! syscalls' own functions (`__x64_sys_<name>`): no tracepoint is enabled, so
//! the rest of the machine's syscalls pay nothing at all, and a watched call
//! pays a BPF trampoline. `auto` prefers it wherever it loads.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::features::btf::Function;
use crate::kernel::FENTRY_TEMPLATE_SYSCALL as TEMPLATE;
use crate::rules::RuleSet;

/// How watched syscalls are hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One `tp/syscalls/sys_enter_<name>` link per watched syscall.
    Tracepoint,
    /// One `tp_btf/sys_enter` link; unwatched syscalls return at once.
    Raw,
    /// One `fentry/__x64_sys_<name>` link per watched syscall (`fexit` for
    /// exit rules).
    Fentry,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Tracepoint => "tracepoint",
            Strategy::Raw => "raw",
            Strategy::Fentry => "fentry",
        })
    }
}

/// What the user asked for with `--attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    #[default]
    Auto,
    Only(Strategy),
}

impl FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Choice, String> {
        match s {
            "auto" => Ok(Choice::Auto),
            "tracepoint" | "tp" => Ok(Choice::Only(Strategy::Tracepoint)),
            "raw" | "tp_btf" => Ok(Choice::Only(Strategy::Raw)),
            "fentry" => Ok(Choice::Only(Strategy::Fentry)),
            other => Err(format!(
                "unknown attach strategy '{other}': use auto, tracepoint (one tracepoint per syscall), \
                 raw (one tp_btf/sys_enter program) or fentry (one fentry program per syscall function)"
            )),
        }
    }
}

/// What this kernel offers, found at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// Why the raw (tp_btf) program is unavailable, if it is.
    pub raw_refused: Option<String>,
    /// Watched syscalls that have no `syscalls/sys_enter_<name>` tracepoint.
    pub without_tracepoint: Vec<&'static str>,
    /// How many arguments each watched syscall takes, as its tracepoint
    /// records them.
    pub args: BTreeMap<&'static str, u8>,
    /// The kernel has bpf_send_signal_task (6.13+).
    pub kfuncs: bool,
    /// Why fentry programs are unavailable, if they are (None: not asked,
    /// or they load).
    pub fentry_refused: Option<String>,
    /// The watched syscalls' functions, for fentry (empty when not asked).
    pub functions: BTreeMap<&'static str, Function>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub strategy: Strategy,
    /// Why, in a sentence people can read.
    pub reason: String,
    /// Arguments each syscall takes (6 when unknown).
    pub args: BTreeMap<&'static str, u8>,
    /// The watched syscalls' functions (fentry only).
    pub functions: BTreeMap<&'static str, Function>,
}

/// Syscalls that are commonly a large share of all calls.
const HOT: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "openat",
    "open",
    "close",
    "fstat",
    "newfstatat",
    "statx",
    "lseek",
    "mmap",
    "munmap",
    "mprotect",
    "brk",
    "futex",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "select",
    "pselect6",
    "recvfrom",
    "recvmsg",
    "sendto",
    "sendmsg",
    "getpid",
    "gettid",
    "getppid",
    "clock_gettime",
    "nanosleep",
    "clock_nanosleep",
    "ioctl",
    "fcntl",
    "rt_sigprocmask",
    "rt_sigaction",
    "sched_yield",
    "getrandom",
    "access",
    "faccessat",
    "faccessat2",
    "getdents64",
    "madvise",
];

/// Above this many watched syscalls the raw tracepoint is used: the policy
/// watches broadly, and one link is simpler than dozens.
const MANY: usize = 32;

pub fn plan(set: &RuleSet, choice: Choice, offer: &Offer) -> Result<Plan, String> {
    if set.needs_kfuncs() {
        // Signalling another task is for the raw hook only (its program may
        // call kfuncs; tracepoint programs may not).
        if !offer.kfuncs {
            return Err(
                "a rule signals another task (`to:`), which needs the kfunc \
                        bpf_send_signal_task of Linux 6.13 or newer: this kernel lacks it \
                        (`reflex check`)"
                    .into(),
            );
        }
        if let Some(why) = &offer.raw_refused {
            return Err(format!(
                "a rule signals another task (`to:`), which needs the raw hook: {why}"
            ));
        }
        if let Choice::Only(other @ (Strategy::Tracepoint | Strategy::Fentry)) = choice {
            return Err(format!(
                "--attach {other}: a rule signals another task (`to:`), which needs the raw hook"
            ));
        }
        return Ok(Plan {
            strategy: Strategy::Raw,
            reason: "a rule signals another task (`to:`): only the raw hook can".into(),
            args: offer.args.clone(),
            functions: BTreeMap::new(),
        });
    }
    let names = set.syscall_names();
    let raw = |reason: String| -> Result<Plan, String> {
        match &offer.raw_refused {
            None => Ok(Plan {
                strategy: Strategy::Raw,
                reason,
                args: offer.args.clone(),
                functions: BTreeMap::new(),
            }),
            Some(why) => Err(why.clone()),
        }
    };
    let tracepoint = |reason: String| -> Result<Plan, String> {
        match offer.without_tracepoint.as_slice() {
            [] => Ok(Plan {
                strategy: Strategy::Tracepoint,
                reason,
                args: offer.args.clone(),
                functions: BTreeMap::new(),
            }),
            missing => Err(format!(
                "this kernel has no syscall tracepoint for {}",
                missing.join(", ")
            )),
        }
    };
    // fentry where every watched syscall's function is in the kernel's BTF.
    let fentry = || -> Result<Plan, String> {
        if let Some(why) = &offer.fentry_refused {
            return Err(why.clone());
        }
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !offer.functions.contains_key(n))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the kernel's BTF has no function for {}",
                missing.join(", ")
            ));
        }
        Ok(Plan {
            strategy: Strategy::Fentry,
            reason: String::new(),
            args: offer.args.clone(),
            functions: offer.functions.clone(),
        })
    };
    // Whether every watched syscall's function has the prototype the main
    // object's evaluator was verified for: another prototype needs the
    // evaluator loaded again, which Debian's 5.10 refuses (EACCES, seen in
    // the matrix); `auto` then keeps to the other hooks, `--attach fentry`
    // tries.
    let one_prototype = || {
        let template = offer.functions.get(TEMPLATE).map(|f| f.proto);
        names
            .iter()
            .all(|n| offer.functions.get(n).map(|f| f.proto) == template)
    };
    match choice {
        Choice::Only(Strategy::Fentry) => fentry()
            .map(|p| Plan {
                reason: "asked for with --attach fentry".into(),
                ..p
            })
            .map_err(|e| format!("--attach fentry: {e}")),
        Choice::Auto if !names.is_empty() && fentry().is_ok() && one_prototype() => {
            fentry().map(|p| Plan {
                reason: "fentry loads here: other syscalls pay nothing, watched ones a trampoline"
                    .into(),
                ..p
            })
        }
        Choice::Only(Strategy::Raw) => {
            raw("asked for with --attach raw".into()).map_err(|e| format!("--attach raw: {e}"))
        }
        Choice::Only(Strategy::Tracepoint) => {
            tracepoint("asked for with --attach tracepoint".into())
                .map_err(|e| format!("--attach tracepoint: {e}"))
        }
        Choice::Auto if names.is_empty() => tracepoint(
            "no syscall is watched (security hooks only): no syscall hook is attached".into(),
        ),
        Choice::Auto => {
            if !offer.without_tracepoint.is_empty() {
                return raw(format!(
                    "no per-syscall tracepoint for {}",
                    offer.without_tracepoint.join(", ")
                ))
                .map_err(|e| {
                    format!(
                        "no way to watch {}: {e}",
                        offer.without_tracepoint.join(", ")
                    )
                });
            }
            let hot: Vec<&str> = names.iter().copied().filter(|n| HOT.contains(n)).collect();
            let why_raw = if !hot.is_empty() {
                Some(format!(
                    "{} is called often: one raw tracepoint costs each watched call ~130 ns less",
                    hot.join(", ")
                ))
            } else if names.len() > MANY {
                Some(format!(
                    "{} syscalls are watched: one raw tracepoint serves them all",
                    names.len()
                ))
            } else {
                None
            };
            // Said only when fentry was asked about (start-up under `auto`,
            // a reload under fentry).
            let asked = offer.fentry_refused.is_some() || !offer.functions.is_empty();
            let no_fentry = match fentry() {
                Err(why) if asked => format!("; fentry is unavailable ({why})"),
                // (The arm above takes every set that fentry serves with
                // one prototype.)
                Ok(_) if asked && !one_prototype() => format!(
                    "; fentry not chosen: a watched syscall's function has another prototype \
                     than {TEMPLATE}'s (`--attach fentry` to try it)"
                ),
                _ => String::new(),
            };
            let with_fentry = |p: Plan| Plan {
                reason: format!("{}{no_fentry}", p.reason),
                ..p
            };
            match (why_raw, &offer.raw_refused) {
                (Some(why), None) => raw(why).map(with_fentry),
                (Some(why), Some(refused)) => tracepoint(format!(
                    "{why}, but the raw tracepoint is unavailable ({refused})"
                ))
                .map(with_fentry),
                (None, _) => tracepoint(format!(
                    "{} rarely called: other syscalls pay only the tracepoint slow path (~41 ns)",
                    if names.len() == 1 {
                        format!("{} is", names[0])
                    } else {
                        format!("{} are", names.join(", "))
                    }
                ))
                .map(with_fentry),
            }
        }
    }
}

/// The plan for a reload: the hooks chosen at start stay. Each kind of hook
/// reads the active rule set at its own moment of a call, so switching kinds
/// while calls are in flight could answer a call twice or not at all; a
/// reload never switches, and says when another kind would now cost less.
pub fn replan(set: &RuleSet, in_force: Strategy, offer: &Offer) -> Result<Plan, String> {
    let mut kept = plan(set, Choice::Only(in_force), offer).map_err(|e| {
        let e = e
            .split_once(": ")
            .map(|(_, why)| why)
            .unwrap_or(&e)
            .to_string();
        format!(
            "the {in_force} hooks chosen at start cannot serve these rules ({e}): restart reflex"
        )
    })?;
    kept.reason = match plan(set, Choice::Auto, offer) {
        Ok(best) if best.strategy != in_force => format!(
            "kept from start; {} would now cost less ({}): restart reflex to switch",
            best.strategy, best.reason
        ),
        _ => "kept from start".into(),
    };
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Env, load_str};
    use crate::rules::{Options, compile};

    fn set(syscalls: &str) -> RuleSet {
        let yaml = format!("rules: [{{name: r, syscall: [{syscalls}], action: audit}}]\n");
        let p = load_str(&yaml, "p.yaml".as_ref(), &Env::host())
            .unwrap()
            .policy;
        compile(&p, Options::default()).unwrap()
    }

    #[test]
    fn rare_syscalls_get_tracepoints() {
        let p = plan(&set("ptrace, kill"), Choice::Auto, &Offer::default()).unwrap();
        assert_eq!(p.strategy, Strategy::Tracepoint);
        assert!(
            p.reason.contains("kill, ptrace are rarely called"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn hot_syscalls_get_the_raw_tracepoint() {
        let p = plan(&set("ptrace, openat"), Choice::Auto, &Offer::default()).unwrap();
        assert_eq!(p.strategy, Strategy::Raw);
        assert!(p.reason.contains("openat is called often"), "{}", p.reason);
    }

    #[test]
    fn refusals_fall_back_or_explain() {
        let no_raw = Offer {
            raw_refused: Some("tp_btf load refused with EPERM".into()),
            ..Offer::default()
        };
        let p = plan(&set("openat"), Choice::Auto, &no_raw).unwrap();
        assert_eq!(p.strategy, Strategy::Tracepoint);
        assert!(
            p.reason
                .contains("unavailable (tp_btf load refused with EPERM)"),
            "{}",
            p.reason
        );
        let err = plan(&set("openat"), Choice::Only(Strategy::Raw), &no_raw).unwrap_err();
        assert_eq!(err, "--attach raw: tp_btf load refused with EPERM");

        let no_tp = Offer {
            without_tracepoint: vec!["kill"],
            ..Offer::default()
        };
        let p = plan(&set("kill"), Choice::Auto, &no_tp).unwrap();
        assert_eq!(p.strategy, Strategy::Raw);
        let err = plan(
            &set("kill"),
            Choice::Auto,
            &Offer {
                raw_refused: Some("refused".into()),
                without_tracepoint: vec!["kill"],
                ..Offer::default()
            },
        )
        .unwrap_err();
        assert!(err.starts_with("no way to watch kill"), "{err}");
    }

    #[test]
    fn reloads_keep_the_hooks() {
        let p = replan(&set("openat"), Strategy::Tracepoint, &Offer::default()).unwrap();
        assert_eq!(p.strategy, Strategy::Tracepoint);
        assert!(
            p.reason
                .starts_with("kept from start; raw would now cost less"),
            "{}",
            p.reason
        );
        let p = replan(&set("kill"), Strategy::Tracepoint, &Offer::default()).unwrap();
        assert_eq!(p.reason, "kept from start");
        let no_tp = Offer {
            without_tracepoint: vec!["kill"],
            ..Offer::default()
        };
        let err = replan(&set("kill"), Strategy::Tracepoint, &no_tp).unwrap_err();
        assert!(
            err.contains(
                "cannot serve these rules (this kernel has no syscall tracepoint for kill): restart"
            ),
            "{err}"
        );
    }

    #[test]
    fn signalling_other_tasks_needs_the_raw_hook_and_the_kfunc() {
        let yaml = "rules: [{name: r, syscall: kill, action: {signal: SIGUSR1, to: parent, value: pid}}]\n";
        let p = load_str(yaml, "p.yaml".as_ref(), &Env::host())
            .unwrap()
            .policy;
        let set = compile(&p, Options::default()).unwrap();
        let err = plan(&set, Choice::Auto, &Offer::default()).unwrap_err();
        assert!(err.contains("bpf_send_signal_task of Linux 6.13"), "{err}");
        let with = Offer {
            kfuncs: true,
            ..Offer::default()
        };
        assert_eq!(
            plan(&set, Choice::Auto, &with).unwrap().strategy,
            Strategy::Raw
        );
        assert!(plan(&set, Choice::Only(Strategy::Tracepoint), &with).is_err());
        // fentry neither: asked for, or kept at a reload.
        let err = plan(&set, Choice::Only(Strategy::Fentry), &with).unwrap_err();
        assert!(
            err.starts_with("--attach fentry: a rule signals another task"),
            "{err}"
        );
        let err = replan(&set, Strategy::Fentry, &with).unwrap_err();
        assert!(
            err.contains("the fentry hooks chosen at start cannot serve"),
            "{err}"
        );
    }

    #[test]
    fn a_reload_under_fentry_keeps_it() {
        // The functions of the new set's syscalls are what a reload asks for.
        let p = replan(
            &set("ptrace, getppid"),
            Strategy::Fentry,
            &with_fentry(&["ptrace", "getppid"]),
        )
        .unwrap();
        assert_eq!(p.strategy, Strategy::Fentry);
        assert_eq!(p.reason, "kept from start");
        assert_eq!(p.functions.len(), 2);
        let err = replan(
            &set("ptrace, getppid"),
            Strategy::Fentry,
            &with_fentry(&["ptrace"]),
        )
        .unwrap_err();
        assert!(err.contains("no function for getppid"), "{err}");
        // Not asked about (another hook in force): not said to be missing.
        let p = replan(&set("openat"), Strategy::Tracepoint, &Offer::default()).unwrap();
        assert!(!p.reason.contains("fentry"), "{}", p.reason);
    }

    fn with_fentry(names: &[&'static str]) -> Offer {
        let f = Function {
            id: 1,
            proto: 2,
            params: 1,
            first_is_pointer: true,
            aliased: false,
        };
        Offer {
            functions: names.iter().map(|n| (*n, f)).collect(),
            ..Offer::default()
        }
    }

    #[test]
    fn auto_prefers_fentry_where_it_loads() {
        let p = plan(
            &set("ptrace, openat"),
            Choice::Auto,
            &with_fentry(&["ptrace", "openat"]),
        )
        .unwrap();
        assert_eq!(p.strategy, Strategy::Fentry);
        assert!(p.reason.contains("fentry loads here"), "{}", p.reason);
        // A syscall without a function in BTF: the old choice, and why.
        let p = plan(
            &set("ptrace, openat"),
            Choice::Auto,
            &with_fentry(&["ptrace"]),
        )
        .unwrap();
        assert_eq!(p.strategy, Strategy::Raw);
        assert!(
            p.reason
                .contains("fentry is unavailable (the kernel's BTF has no function for openat)"),
            "{}",
            p.reason
        );
        let refused = Offer {
            fentry_refused: Some("fentry load refused with EPERM".into()),
            ..with_fentry(&["kill"])
        };
        let p = plan(&set("kill"), Choice::Auto, &refused).unwrap();
        assert_eq!(p.strategy, Strategy::Tracepoint);
        assert!(
            p.reason.ends_with("(fentry load refused with EPERM)"),
            "{}",
            p.reason
        );
        let err = plan(&set("kill"), Choice::Only(Strategy::Fentry), &refused).unwrap_err();
        assert_eq!(err, "--attach fentry: fentry load refused with EPERM");
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
        assert_eq!("tp_btf".parse::<Choice>(), Ok(Choice::Only(Strategy::Raw)));
        assert_eq!(
            "fentry".parse::<Choice>(),
            Ok(Choice::Only(Strategy::Fentry))
        );
        assert!(
            "kprobe"
                .parse::<Choice>()
                .unwrap_err()
                .contains("unknown attach strategy")
        );
    }
}
