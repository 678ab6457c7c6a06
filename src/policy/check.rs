//! From policy files as written to a checked [`Policy`]: every name resolved,
//! every error reported with its place and a fix, all errors of all files at
//! once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::constants;
use super::degrade;
use super::diag::{Diagnostic, Diagnostics, Location, shown};
use super::file::RawTo;
use super::file::{self, BitsKind, RawAction, RawArg, RawFile, RawMatch, RawRule, Scalar, Values};
use super::files;
use super::hooks::{self, Hook};
use super::{
    Action, ArgCond, ArgMatch, Bits, Cgroup, Comm, Exit, FileId, Mode, Policy, Protect, Rate,
    RateBy, Rule, Sample, SampleEvent, Selectors, Set, SigValue, Syscall, Target, To,
};
use crate::kernel::types;
use crate::signal::Signal;
use crate::syscall::{self, Arch};

/// Most values one selector or argument matcher may list.
pub const MAX_VALUES: usize = 256;
/// Longest rule name.
pub const MAX_NAME: usize = 64;
/// Highest sampling frequency (each sample may send a signal).
pub const MAX_SAMPLE_HZ: u64 = 1000;

fn args_of(r: &RawRule) -> Vec<String> {
    r.args
        .as_ref()
        .map(|a| a.0.iter().map(|(k, _)| k.value.clone()).collect())
        .unwrap_or_default()
}

/// A duration as written: `200ms`, `1.5s`, `500us`, `2m`, `1h`, `10ns`.
pub fn duration(s: &Scalar) -> Result<u64, String> {
    let text = match s {
        Scalar::Str(t) => t.trim().to_string(),
        Scalar::Int(n) => {
            return Err(format!("'{n}' needs a unit: write {n}ms, {n}s, …"));
        }
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("'{text}' needs a unit: ns, us, ms, s, m or h"))?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 200ms, 1.5s)"))?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use ns, us, ms, s, m or h"
            ));
        }
    };
    Ok((n * scale).round() as u64)
}

/// A return value: a number, or `-ENAME` for an error.
fn return_value(s: &Scalar) -> Result<u64, String> {
    match s {
        Scalar::Int(n) if *n >= i128::from(i64::MIN) && *n <= i128::from(i64::MAX) => {
            Ok(*n as i64 as u64)
        }
        Scalar::Int(n) => Err(format!("{n} is out of range")),
        Scalar::Str(t) => {
            let name = t.trim().strip_prefix('-').unwrap_or(t.trim());
            constants::errno(name)
                .map(|e| (-i64::from(e)) as u64)
                .ok_or_else(|| {
                    format!("'{t}' is not a return value: a number, or an error such as -EACCES")
                })
        }
    }
}

/// What names are resolved against.
#[derive(Debug, Clone)]
pub struct Env {
    /// Syscall table to use.
    pub arch: Arch,
    /// Where cgroup v2 is mounted.
    pub cgroup_root: PathBuf,
}

impl Env {
    pub fn host() -> Env {
        Env {
            arch: Arch::host(),
            cgroup_root: cgroup2_root(),
        }
    }
}

/// A checked policy and what deserves attention without being wrong.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Reads policy files and directories (their `*.yaml` and `*.yml` files, by
/// name), in order: earlier rules take precedence.
pub fn load(paths: &[PathBuf], env: &Env) -> Result<Loaded, Diagnostics> {
    let mut diags = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        let at = Location::file(&shown(path));
        if path.is_dir() {
            let mut found: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    .collect(),
                Err(e) => {
                    diags.push(Diagnostic::error(
                        at,
                        format!("cannot read the directory: {e}"),
                    ));
                    continue;
                }
            };
            if found.is_empty() {
                diags.push(Diagnostic::error(
                    at,
                    "the directory holds no policy files (*.yaml or *.yml)",
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut checker = Checker::new(env);
    for path in &files {
        let file = shown(path);
        match std::fs::read_to_string(path) {
            Ok(text) => checker.file(&text, &file),
            Err(e) => diags.push(Diagnostic::error(
                Location::file(&file),
                format!("cannot read the policy file: {e}"),
            )),
        }
    }
    diags.append(&mut checker.diags);
    checker.finish(files, diags)
}

/// Checks one policy given as text (the built-in seed, tests).
pub fn load_str(text: &str, name: &Path, env: &Env) -> Result<Loaded, Diagnostics> {
    let mut checker = Checker::new(env);
    checker.file(text, &shown(name));
    let diags = std::mem::take(&mut checker.diags);
    checker.finish(vec![name.to_path_buf()], diags)
}

struct Checker<'e> {
    env: &'e Env,
    /// The perf event of the first sampling rule: all share it.
    sampling: Option<Sample>,
    diags: Vec<Diagnostic>,
    rules: Vec<Rule>,
    /// Every rule's name and place, valid or not: duplicates are found even
    /// among rules with other errors.
    names: Vec<(String, Location)>,
    protect: Protect,
}

/// The message of a YAML error without its own "line N column M" prefix and
/// snippet: we print the place ourselves.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let text = match text.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") => rest,
        _ => text,
    };
    let first = text.lines().next().unwrap_or_default();
    // Some messages end with their own " at line N, column M".
    match first.rsplit_once(" at line ") {
        Some((msg, place)) if place.contains(", column ") => msg.to_string(),
        _ => first.to_string(),
    }
}

impl<'e> Checker<'e> {
    fn new(env: &'e Env) -> Self {
        Checker {
            env,
            sampling: None,
            diags: Vec::new(),
            rules: Vec::new(),
            names: Vec::new(),
            protect: Protect::default(),
        }
    }

    fn error(&mut self, at: Location, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(at, message));
    }

    fn file(&mut self, text: &str, file: &Arc<Path>) {
        let raw: RawFile = match file::parse(text) {
            Ok(raw) => raw,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| Location::of(file, &l))
                    .unwrap_or_else(|| Location::file(file));
                self.error(at, yaml_message(&e));
                return;
            }
        };
        let mode = match &raw.mode {
            None => Mode::Enforce,
            Some(m) => match m.value.as_str() {
                "enforce" => Mode::Enforce,
                "monitor" => Mode::Monitor,
                other => {
                    self.error(
                        Location::of(file, &m.referenced),
                        format!("unknown mode '{other}': use enforce or monitor"),
                    );
                    Mode::Enforce
                }
            },
        };
        if let Some(p) = &raw.protect {
            self.protect_block(p, file);
        }
        if raw.rules.is_empty() && raw.protect.is_none() {
            self.error(
                Location::file(file),
                "no rules: a policy file needs `rules:` (or at least `protect:`)",
            );
        }
        for r in &raw.rules {
            if let Some(rule) = self.rule(r, mode, file) {
                self.rules.push(rule);
            }
        }
    }

    fn protect_block(&mut self, p: &file::RawProtect, file: &Arc<Path>) {
        for pid in &p.pids {
            if pid.value == 0 {
                self.error(
                    Location::of(file, &pid.referenced),
                    "pid 0 is not a process",
                );
            } else {
                self.protect.pids.push(pid.value);
            }
        }
        for exe in &p.executables {
            let at = Location::of(file, &exe.referenced);
            if let Some(id) = self.executable(&exe.value, &at) {
                self.protect.executables.push(id);
            }
        }
        for cg in &p.cgroups {
            let at = Location::of(file, &cg.referenced);
            if let Some(c) = self.cgroup(&cg.value, &at) {
                self.protect.cgroups.push(c);
            }
        }
    }

    fn rule(&mut self, r: &RawRule, mode: Mode, file: &Arc<Path>) -> Option<Rule> {
        let at = Location::of(file, &r.name.referenced);
        let errors_before = self.diags.len();
        let name = r.name.value.trim().to_string();
        self.names.push((name.clone(), at.clone()));
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_whitespace) {
            self.error(
                at.clone(),
                format!("rule name '{name}' must be 1 to {MAX_NAME} characters without spaces"),
            );
        }

        let (syscalls, hook) = self.trigger(r, &at, file);
        let (args, file_set) = self.args(r, &syscalls, hook, file);
        let selectors = self.selectors(r.selectors.as_ref(), file);
        let action = self.action(&r.action, file);
        let fallback = r.fallback.as_ref().and_then(|f| self.action(f, file));
        // A rule that names an unknown hook has its error already.
        let syscall_rule = r.hook.is_none();
        if let (Some(Action::Deny { .. }), true) = (&action, syscall_rule) {
            let others: Vec<&str> = hooks::ALL[1..].iter().map(|h| h.name()).collect();
            self.error(
                Location::of(file, &r.action.referenced),
                format!(
                    "deny refuses an operation at a security hook: write `hook: ptrace` (or {}) \
                     instead of `syscall:`, or use kill to signal at syscall entry",
                    others.join(", ")
                ),
            );
        }
        if let Some(f) = &r.fallback {
            let at = Location::of(file, &f.referenced);
            match (hook, &fallback) {
                (None, _) if !syscall_rule => {}
                (None, _) => self.error(
                    at,
                    "fallback is for hook rules (where BPF-LSM is refused); a syscall rule needs none",
                ),
                (Some(_), Some(Action::Audit | Action::Deny { .. })) => self.error(
                    at,
                    "a fallback signals at syscall entry: use kill or {signal: NAME}",
                ),
                (Some(h), Some(_)) => self.fallback_translates(h, &args, file_set.is_some(), &at),
                _ => {}
            }
        }
        let sample = r.sample.as_ref().and_then(|s| self.sample(s, file));
        let exit = self.exit(r, file);
        let rate = r.rate.as_ref().and_then(|x| self.rate(x, file));
        let (to, value, pause_ns) = self.signal_extras(&r.action, file);
        let trigger_kind = if sample.is_some() {
            Some("sampling")
        } else if hook.is_some() {
            Some("hook")
        } else if exit.is_some() {
            Some("exit")
        } else {
            None
        };
        if matches!(trigger_kind, Some("sampling" | "exit")) && !args_of(r).is_empty() {
            self.error(
                at.clone(),
                "sampling and exit rules match no arguments (exit rules: `returns`, `slower_than`)",
            );
        }
        if to != To::Caller {
            if let Some(kind) = trigger_kind {
                self.error(
                    Location::of(file, &r.action.referenced),
                    format!(
                        "`to:` signals another task from syscall entry rules only, not from {kind} rules"
                    ),
                );
            }
        }
        if self.diags[errors_before..].iter().any(|d| d.is_error()) {
            return None;
        }
        Some(Rule {
            name,
            at,
            syscalls,
            hook,
            file: file_set,
            fallback,
            sample,
            exit,
            rate,
            to,
            value,
            pause_ns,
            args,
            selectors,
            action: action?,
            mode,
        })
    }

    fn sample(&mut self, s: &Spanned<file::RawSample>, file: &Arc<Path>) -> Option<Sample> {
        let at = Location::of(file, &s.value.frequency.referenced);
        let frequency = s.value.frequency.value;
        let max = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(100_000)
            .min(MAX_SAMPLE_HZ);
        if frequency == 0 || frequency > max {
            self.error(
                at,
                format!("sampling frequency {frequency} Hz: use 1 to {max} (a signal per sample)"),
            );
            return None;
        }
        let event = match s.value.event.as_ref().map(|e| e.value.as_str()) {
            None | Some("cpu-clock") => SampleEvent::CpuClock,
            Some("cycles") => SampleEvent::Cycles,
            Some(other) => {
                let eat = Location::of(file, &s.value.event.as_ref().expect("some").referenced);
                self.error(
                    eat,
                    format!(
                        "unknown event '{other}': use cpu-clock (software) or cycles (hardware)"
                    ),
                );
                return None;
            }
        };
        let this = Sample { frequency, event };
        match self.sampling {
            Some(first) if first != this => {
                self.error(
                    at,
                    format!(
                        "all sampling rules share one perf event: this one differs ({frequency} Hz vs {} Hz)",
                        first.frequency
                    ),
                );
                None
            }
            _ => {
                self.sampling = Some(this);
                Some(this)
            }
        }
    }

    /// `slower_than` and `returns`: the rule answers at the syscall's exit.
    fn exit(&mut self, r: &RawRule, file: &Arc<Path>) -> Option<Exit> {
        if r.slower_than.is_none() && r.returns.is_none() {
            return None;
        }
        let place_of = |l: &serde_saphyr::Location| Location::of(file, l);
        if r.syscall.is_none() {
            let at = r
                .slower_than
                .as_ref()
                .map(|s| place_of(&s.referenced))
                .or_else(|| r.returns.as_ref().map(|s| place_of(&s.referenced)))
                .expect("one is set");
            self.error(at, "`slower_than` and `returns` are for syscall rules");
            return None;
        }
        let slower_than_ns = match &r.slower_than {
            None => None,
            Some(d) => match duration(&d.value) {
                Ok(ns) if ns > 0 => Some(ns),
                Ok(_) => {
                    self.error(
                        place_of(&d.referenced),
                        "`slower_than: 0` matches every call: omit it",
                    );
                    return None;
                }
                Err(e) => {
                    self.error(place_of(&d.referenced), e);
                    return None;
                }
            },
        };
        let returns = match &r.returns {
            None => None,
            Some(v) => {
                let at = place_of(&v.referenced);
                Some(self.set(&v.value, &at, return_value)?)
            }
        };
        Some(Exit {
            slower_than_ns,
            returns,
        })
    }

    fn rate(&mut self, r: &Spanned<file::RawRate>, file: &Arc<Path>) -> Option<Rate> {
        let at = Location::of(file, &r.referenced);
        let over = r.value.over.value;
        if over == 0 || over > u64::from(u32::MAX) {
            self.error(
                Location::of(file, &r.value.over.referenced),
                "`over` counts calls: 1 or more (the rule acts on the calls past it)",
            );
            return None;
        }
        let window_ns = match duration(&r.value.per.value) {
            Ok(ns) if ns > 0 && ns <= 3_600_000_000_000 => ns,
            Ok(_) => {
                self.error(
                    Location::of(file, &r.value.per.referenced),
                    "`per` is a window from 1ns to 1h",
                );
                return None;
            }
            Err(e) => {
                self.error(Location::of(file, &r.value.per.referenced), e);
                return None;
            }
        };
        let by = match r.value.by.as_ref().map(|b| b.value.as_str()) {
            None | Some("process") => RateBy::Process,
            Some("parent") => RateBy::Parent,
            Some("session") => RateBy::Session,
            Some("cgroup") => RateBy::Cgroup,
            Some(other) => {
                self.error(
                    at,
                    format!("unknown group '{other}': count by process, parent, session or cgroup"),
                );
                return None;
            }
        };
        Some(Rate {
            over: over as u32,
            window_ns,
            by,
        })
    }

    /// `to`, `value` and `pause` of a signal action.
    fn signal_extras(
        &mut self,
        a: &Spanned<RawAction>,
        file: &Arc<Path>,
    ) -> (To, SigValue, Option<u64>) {
        let RawAction::Signal {
            signal,
            to,
            value,
            pause,
            ..
        } = &a.value
        else {
            return (To::Caller, SigValue::default(), None);
        };
        let at = |l: &serde_saphyr::Location| Location::of(file, l);
        let to_kind = match to.as_ref().map(|t| (&t.value, t.referenced)) {
            None => To::Caller,
            Some((RawTo::Parent, _)) => To::Parent,
            Some((RawTo::Pid(0), l)) => {
                self.error(at(&l), "pid 0 is not a process");
                To::Caller
            }
            Some((RawTo::Pid(p), _)) => To::Pid(*p),
            Some((RawTo::Pidfile(path), l)) => match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| t.trim().parse::<u32>().map_err(|e| e.to_string()))
            {
                Ok(pid) if pid > 0 => To::Pid(pid),
                Ok(_) => {
                    self.error(at(&l), format!("pidfile '{path}' names pid 0"));
                    To::Caller
                }
                Err(e) => {
                    self.error(at(&l), format!("pidfile '{path}': {e}"));
                    To::Caller
                }
            },
        };
        let value_kind = match value {
            None => SigValue::default(),
            Some(v) if to.is_none() => {
                self.error(
                    at(&v.referenced),
                    "`value` goes with `to:` (a signal to another task carries it)",
                );
                SigValue::default()
            }
            Some(v) => match &v.value {
                Scalar::Str(s) if s == "pid" => SigValue::CallerPid,
                Scalar::Int(n) if *n >= 0 && *n <= i128::from(u64::MAX) => {
                    SigValue::Number(*n as u64)
                }
                other => {
                    self.error(
                        at(&v.referenced),
                        format!("value '{other}': a number, or `pid` (the caller's)"),
                    );
                    SigValue::default()
                }
            },
        };
        let pause_ns = match pause {
            None => None,
            Some(p) => {
                if !matches!(&signal.value, Scalar::Str(s) if s.eq_ignore_ascii_case("SIGSTOP") || s.eq_ignore_ascii_case("STOP"))
                    && !matches!(&signal.value, Scalar::Int(19))
                {
                    self.error(
                        at(&p.referenced),
                        "`pause` stops with SIGSTOP: leave out `signal:`",
                    );
                }
                if to.is_some() {
                    self.error(
                        at(&p.referenced),
                        "`pause` stops the caller: it cannot go with `to:`",
                    );
                }
                match duration(&p.value) {
                    Ok(ns) if ns > 0 => Some(ns),
                    Ok(_) => {
                        self.error(at(&p.referenced), "`pause: 0` would not pause");
                        None
                    }
                    Err(e) => {
                        self.error(at(&p.referenced), e);
                        None
                    }
                }
            }
        };
        (to_kind, value_kind, pause_ns)
    }

    /// The rule's trigger: its syscalls, or its hook (as its table entry).
    fn trigger(
        &mut self,
        r: &RawRule,
        at: &Location,
        file: &Arc<Path>,
    ) -> (Vec<Syscall>, Option<Hook>) {
        if let Some(sample) = &r.sample {
            if r.syscall.is_some() || r.hook.is_some() {
                self.error(
                    Location::of(file, &sample.referenced),
                    "a rule has one trigger: `syscall:`, `hook:` or `sample:`",
                );
            }
            return (
                vec![Syscall {
                    name: "sample",
                    nr: types::reflex_hook::REFLEX_HOOK_SAMPLE.0 as i32,
                }],
                None,
            );
        }
        match (&r.syscall, &r.hook) {
            (Some(_), Some(h)) => {
                self.error(
                    Location::of(file, &h.referenced),
                    "a rule has one trigger: `syscall:` or `hook:`, not both",
                );
                (Vec::new(), None)
            }
            (None, None) => {
                self.error(
                    at.clone(),
                    format!(
                        "the rule has no trigger: add `syscall: NAME`, `hook: {}` or \
                         `sample: {{frequency: HZ}}`",
                        hooks::ALL.map(Hook::name).join("|")
                    ),
                );
                (Vec::new(), None)
            }
            (Some(_), None) => (self.syscalls(r, file), None),
            (None, Some(h)) => match Hook::from_name(h.value.trim()) {
                Some(hook) => (
                    vec![Syscall {
                        name: hook.lsm(),
                        nr: hook.nr(),
                    }],
                    Some(hook),
                ),
                None => {
                    let names = hooks::ALL.map(Hook::name);
                    let hint = crate::suggest::closest(&h.value, names)
                        .map(|n| format!(" — did you mean '{n}'?"))
                        .unwrap_or_default();
                    self.error(
                        Location::of(file, &h.referenced),
                        format!(
                            "unknown hook '{}'{hint}: hooks are {}",
                            h.value,
                            names.join(", ")
                        ),
                    );
                    (Vec::new(), None)
                }
            },
        }
    }

    /// A hook rule's fallback must mean the same at its syscalls' entry.
    fn fallback_translates(
        &mut self,
        hook: Hook,
        args: &[ArgMatch],
        has_file: bool,
        at: &Location,
    ) {
        if has_file {
            self.error(
                at.clone(),
                format!(
                    "this rule cannot fall back: `file` is not known at the entry of {}",
                    hook.fallback()
                        .iter()
                        .map(|f| f.syscall)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        for m in args {
            let name = hook
                .arg_names()
                .get(usize::from(m.index))
                .copied()
                .unwrap_or("?");
            if hook == Hook::Ptrace && name == "mode" {
                if !degrade::attach_mode(&m.cond) {
                    self.error(
                        m.at.clone(),
                        "this rule cannot fall back: at syscall entry only `mode: {any_bits: \
                         PTRACE_MODE_ATTACH}` is known (ptrace ATTACH/SEIZE, process_vm_readv/writev)",
                    );
                }
                continue;
            }
            let missing: Vec<&str> = hook
                .fallback()
                .iter()
                .filter(|f| !f.args.iter().any(|(a, _)| *a == name))
                .map(|f| f.syscall)
                .collect();
            // Syscalls that cannot show it are left out (and named at start),
            // as long as one can.
            if missing.len() == hook.fallback().len() {
                self.error(
                    m.at.clone(),
                    format!(
                        "this rule cannot fall back: `{name}` is not an argument of {}",
                        missing.join(", ")
                    ),
                );
            }
        }
    }

    fn syscalls(&mut self, r: &RawRule, file: &Arc<Path>) -> Vec<Syscall> {
        let Some(list) = &r.syscall else {
            return Vec::new();
        };
        let field = Location::of(file, &list.referenced);
        let mut out: Vec<Syscall> = Vec::new();
        if list.value.0.is_empty() {
            self.error(
                field.clone(),
                "empty syscall list: name at least one syscall",
            );
        }
        for name in &list.value.0 {
            let at = place(file, &name.referenced, &field);
            match syscall::resolve(self.env.arch, &name.value) {
                Ok((name, nr)) => {
                    if !(0..crate::rules::FIRST_HOOK).contains(&nr) {
                        self.error(
                            at,
                            format!(
                                "syscall '{name}' has number {nr}, beyond reflex's table of {}",
                                crate::rules::FIRST_HOOK
                            ),
                        );
                    } else if out.iter().any(|s| s.nr == nr) {
                        self.error(at, format!("syscall '{name}' is listed twice"));
                    } else {
                        out.push(Syscall { name, nr });
                    }
                }
                Err(e) => self.error(at, e.to_string()),
            }
        }
        out
    }

    fn args(
        &mut self,
        r: &RawRule,
        syscalls: &[Syscall],
        hook: Option<Hook>,
        file: &Arc<Path>,
    ) -> (Vec<ArgMatch>, Option<Set<FileId>>) {
        let Some(pairs) = &r.args else {
            return (Vec::new(), None);
        };
        let mut out: Vec<ArgMatch> = Vec::new();
        let mut files = None;
        for (name, matcher) in &pairs.0 {
            let at = Location::of(file, &name.referenced);
            if let (Some(h), "file") = (hook, name.value.as_str()) {
                let mat = Location::of(file, &matcher.referenced);
                match (&matcher.value, h.has_file()) {
                    (_, false) => {
                        self.error(at, format!("hook '{}' has no file to match", h.name()))
                    }
                    (RawArg::Values(v), true) => {
                        files = self.set(v, &mat, |s| file_id(&s.to_string()));
                    }
                    (_, true) => {
                        self.error(mat, "`file` takes a path, a list of paths, or {not: ...}")
                    }
                }
                continue;
            }
            let index = match hook {
                Some(h) => self.hook_arg_index(h, &name.value, &at),
                None => self.arg_index(&name.value, syscalls, &at),
            };
            let Some(index) = index else {
                continue;
            };
            if out.iter().any(|a| a.index == index) {
                self.error(
                    at,
                    format!("argument {index} is matched twice in this rule"),
                );
                continue;
            }
            let mat = Location::of(file, &matcher.referenced);
            let cond = match &matcher.value {
                RawArg::Values(v) => self.numbers(v, &mat).map(ArgCond::In),
                RawArg::Bits { kind, items } => {
                    let values = self.numbers(
                        &Values {
                            negate: false,
                            items: items.clone(),
                        },
                        &mat,
                    );
                    values.map(|v| {
                        let bits = v.values.iter().fold(0, |acc, b| acc | b);
                        let kind = match kind {
                            BitsKind::Any => Bits::Any,
                            BitsKind::All => Bits::All,
                            BitsKind::None => Bits::None,
                        };
                        ArgCond::Bits(kind, bits)
                    })
                }
                RawArg::Range { outside, bounds } => {
                    let values = self.numbers(
                        &Values {
                            negate: false,
                            items: bounds.clone(),
                        },
                        &mat,
                    );
                    match values.as_ref().map(|v| v.values.as_slice()) {
                        Some(&[lo, hi]) if lo <= hi => Some(ArgCond::Range {
                            lo,
                            hi,
                            outside: *outside,
                        }),
                        Some(&[lo, hi]) => {
                            self.error(
                                mat,
                                format!("range [{lo}, {hi}] is empty: write [low, high]"),
                            );
                            None
                        }
                        Some(_) => {
                            self.error(mat, "a range is two numbers: [low, high], both included");
                            None
                        }
                        None => None,
                    }
                }
                RawArg::Protected { negate } => Some(ArgCond::Protected { negate: *negate }),
            };
            if let Some(cond) = cond {
                out.push(ArgMatch { index, cond, at });
            }
        }
        (out, files)
    }

    fn hook_arg_index(&mut self, hook: Hook, name: &str, at: &Location) -> Option<u8> {
        let names: Vec<&str> = hook
            .arg_names()
            .iter()
            .copied()
            .filter(|n| !n.is_empty())
            .collect();
        if let Some(i) = hook
            .arg_names()
            .iter()
            .position(|n| !n.is_empty() && *n == name)
        {
            return Some(i as u8);
        }
        let mut known = names.clone();
        if hook.has_file() {
            known.push("file");
        }
        let hint = crate::suggest::closest(name, known.iter().copied())
            .map(|n| format!(" — did you mean '{n}'?"))
            .unwrap_or_else(|| match known.as_slice() {
                [] => " — it has none to match".into(),
                k => format!(" — it has {}", k.join(", ")),
            });
        self.error(
            at.clone(),
            format!(
                "'{name}' is not an argument of hook '{}'{hint}",
                hook.name()
            ),
        );
        None
    }

    /// The argument position `name` means for every syscall of the rule.
    fn arg_index(&mut self, name: &str, syscalls: &[Syscall], at: &Location) -> Option<u8> {
        let mut found: Option<(u8, &str)> = None;
        for s in syscalls {
            match constants::arg_index(s.name, name) {
                None => {
                    let known = constants::arg_names(s.name);
                    let hint = crate::suggest::closest(name, known.iter().copied())
                        .map(|n| format!(" — did you mean '{n}'?"))
                        .unwrap_or_else(|| match known {
                            [] => " — use arg0 to arg5".into(),
                            _ => format!(" — use {} or arg0 to arg5", known.join(", ")),
                        });
                    self.error(
                        at.clone(),
                        format!("'{name}' is not an argument of {}{hint}", s.name),
                    );
                    return None;
                }
                Some(i) => match found {
                    Some((j, other)) if i != j => {
                        self.error(
                            at.clone(),
                            format!(
                                "'{name}' is argument {j} of {other} but argument {i} of {}: \
                                 use arg{j} or arg{i}, or split the rule",
                                s.name
                            ),
                        );
                        return None;
                    }
                    _ => found = Some((i, s.name)),
                },
            }
        }
        found.map(|(i, _)| i)
    }

    /// Integer values: numbers, or constant names such as PTRACE_ATTACH.
    fn numbers(&mut self, v: &Values, field: &Location) -> Option<Set<u64>> {
        self.set(v, field, |s: &Scalar| match s {
            Scalar::Int(n) if *n >= i128::from(i64::MIN) && *n <= i128::from(u64::MAX) => {
                Ok(*n as u64)
            }
            Scalar::Int(n) => Err(format!("{n} does not fit in 64 bits")),
            Scalar::Str(name) => constants::value(name).ok_or_else(|| {
                let hint = constants::suggest(name)
                    .map(|n| format!(" — did you mean '{n}'?"))
                    .unwrap_or_else(|| {
                        " — use a number or a known constant (PTRACE_*, SIG*, O_*, CLONE_*, …)"
                            .into()
                    });
                format!("unknown constant '{name}'{hint}")
            }),
        })
    }

    /// Resolves every item of `v` with `f`, reporting each failure at its place.
    fn set<T: PartialEq>(
        &mut self,
        v: &Values,
        field: &Location,
        mut f: impl FnMut(&Scalar) -> Result<T, String>,
    ) -> Option<Set<T>> {
        if v.items.is_empty() {
            self.error(field.clone(), "empty list: it would match nothing");
            return None;
        }
        if v.items.len() > MAX_VALUES {
            self.error(
                field.clone(),
                format!(
                    "{} values: at most {MAX_VALUES} per selector",
                    v.items.len()
                ),
            );
            return None;
        }
        let mut values = Vec::new();
        let mut ok = true;
        for item in &v.items {
            match f(&item.value) {
                Ok(x) => {
                    if !values.contains(&x) {
                        values.push(x);
                    }
                }
                Err(msg) => {
                    ok = false;
                    let at = place(&field.file, &item.referenced, field);
                    self.error(at, msg);
                }
            }
        }
        ok.then_some(Set {
            negate: v.negate,
            values,
        })
    }

    fn selectors(&mut self, m: Option<&RawMatch>, file: &Arc<Path>) -> Selectors {
        let Some(m) = m else {
            return Selectors::default();
        };
        let at = |s: &Spanned<Values>| Location::of(file, &s.referenced);
        let mut out = Selectors::default();
        if let Some(v) = &m.pid {
            out.pid = self.set(&v.value, &at(v), |s| pid(s, "pid"));
        }
        if let Some(v) = &m.ppid {
            out.ppid = self.set(&v.value, &at(v), |s| pid(s, "ppid"));
        }
        if let Some(v) = &m.uid {
            out.uid = self.set(&v.value, &at(v), user);
        }
        if let Some(v) = &m.gid {
            out.gid = self.set(&v.value, &at(v), group);
        }
        if let Some(v) = &m.comm {
            out.comm = self.set(&v.value, &at(v), comm);
        }
        if let Some(v) = &m.executable {
            out.executable = self.set(&v.value, &at(v), |s| file_id(&s.to_string()));
        }
        if let Some(v) = &m.parent_executable {
            out.parent_executable = self.set(&v.value, &at(v), |s| file_id(&s.to_string()));
        }
        if let Some(v) = &m.cgroup {
            let root = self.env.cgroup_root.clone();
            out.cgroup = self.set(&v.value, &at(v), |s| cgroup(&root, &s.to_string()));
        }
        out
    }

    fn executable(&mut self, path: &str, at: &Location) -> Option<FileId> {
        file_id(path).map_err(|e| self.error(at.clone(), e)).ok()
    }

    fn cgroup(&mut self, path: &str, at: &Location) -> Option<Cgroup> {
        cgroup(&self.env.cgroup_root, path)
            .map_err(|e| self.error(at.clone(), e))
            .ok()
    }

    fn action(&mut self, a: &Spanned<RawAction>, file: &Arc<Path>) -> Option<Action> {
        let at = Location::of(file, &a.referenced);
        match &a.value {
            RawAction::Kill => Some(Action::Signal {
                signal: Signal::KILL,
                target: Target::Process,
            }),
            RawAction::Audit => Some(Action::Audit),
            RawAction::Deny {
                error,
                signal,
                thread,
            } => {
                let error = match error {
                    None => Some(libc::EPERM),
                    Some(e) => {
                        let eat = place(file, &e.referenced, &at);
                        let found = match &e.value {
                            Scalar::Int(n) if *n > 0 && *n < 4096 => Some(*n as i32),
                            Scalar::Str(name) => constants::errno(name),
                            _ => None,
                        };
                        if found.is_none() {
                            let hint = crate::suggest::closest(
                                &e.value.to_string(),
                                constants::errno_names(),
                            )
                            .map(|n| format!(" — did you mean {n}?"))
                            .unwrap_or_default();
                            self.error(
                                eat,
                                format!(
                                    "'{}' is not an errno reflex knows{hint}: use EPERM (the default), EACCES, … or a number",
                                    e.value
                                ),
                            );
                        }
                        found
                    }
                };
                let signal = match signal {
                    None => Some(None),
                    Some(sig) => {
                        let sat = place(file, &sig.referenced, &at);
                        self.signal(&sig.value, &sat).map(Some)
                    }
                };
                Some(Action::Deny {
                    error: error?,
                    signal: signal?,
                    target: if *thread {
                        Target::Thread
                    } else {
                        Target::Process
                    },
                })
            }
            RawAction::Signal { signal, thread, .. } => {
                let sat = place(file, &signal.referenced, &at);
                let sig = self.signal(&signal.value, &sat)?;
                if *thread && [libc::SIGKILL, libc::SIGSTOP].contains(&sig.number()) {
                    self.diags.push(Diagnostic::warning(
                        sat,
                        format!(
                            "{sig} always acts on the whole process: `thread: true` changes nothing"
                        ),
                    ));
                }
                Some(Action::Signal {
                    signal: sig,
                    target: if *thread {
                        Target::Thread
                    } else {
                        Target::Process
                    },
                })
            }
        }
    }

    fn signal(&mut self, value: &Scalar, at: &Location) -> Option<Signal> {
        let parsed = match value {
            Scalar::Int(n) => n.to_string().parse::<Signal>(),
            Scalar::Str(s) => s.parse::<Signal>(),
        };
        parsed
            .map_err(|e| self.error(at.clone(), e.to_string()))
            .ok()
    }

    fn finish(
        mut self,
        sources: Vec<PathBuf>,
        mut diags: Vec<Diagnostic>,
    ) -> Result<Loaded, Diagnostics> {
        let mut seen: HashMap<&str, &Location> = HashMap::new();
        for (name, at) in &self.names {
            match seen.get(name.as_str()) {
                Some(first) => diags.push(Diagnostic::error(
                    at.clone(),
                    format!("rule name '{name}' is already used at {first}: names must be unique"),
                )),
                None => {
                    seen.insert(name, at);
                }
            }
        }
        diags.extend(conflicts(&self.rules));
        self.protect.pids.sort_unstable();
        self.protect.pids.dedup();
        if diags.iter().any(Diagnostic::is_error) {
            diags.sort_by(|a, b| (a.severity, &a.at).cmp(&(b.severity, &b.at)));
            return Err(Diagnostics(diags));
        }
        Ok(Loaded {
            policy: Policy {
                rules: self.rules,
                protect: self.protect,
                sources,
            },
            warnings: diags,
        })
    }
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup on unified systems,
/// /sys/fs/cgroup/unified on hybrid ones.
pub fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
                (fstype == "cgroup2").then(|| PathBuf::from(at))
            })
        })
        .unwrap_or_else(|| "/sys/fs/cgroup".into())
}

/// The item's own place, or the field's when the parser kept none.
fn place(file: &Arc<Path>, loc: &serde_saphyr::Location, field: &Location) -> Location {
    if loc.line() == 0 {
        field.clone()
    } else {
        Location::of(file, loc)
    }
}

fn pid(s: &Scalar, what: &str) -> Result<u32, String> {
    match s {
        Scalar::Int(n) if *n >= 1 && *n <= i128::from(u32::MAX) => Ok(*n as u32),
        Scalar::Int(n) => Err(format!("{what} {n} is not a process id (1 to 4294967295)")),
        Scalar::Str(s) => Err(format!("{what} '{s}' is not a number")),
    }
}

fn user(s: &Scalar) -> Result<u32, String> {
    match s {
        Scalar::Int(n) if *n >= 0 && *n <= i128::from(u32::MAX) => Ok(*n as u32),
        Scalar::Int(n) => Err(format!("uid {n} is out of range")),
        Scalar::Str(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            _ => Err(format!(
                "no user named '{name}' on this machine: use a name from /etc/passwd or a number"
            )),
        },
    }
}

fn group(s: &Scalar) -> Result<u32, String> {
    match s {
        Scalar::Int(n) if *n >= 0 && *n <= i128::from(u32::MAX) => Ok(*n as u32),
        Scalar::Int(n) => Err(format!("gid {n} is out of range")),
        Scalar::Str(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            _ => Err(format!(
                "no group named '{name}' on this machine: use a name from /etc/group or a number"
            )),
        },
    }
}

fn comm(s: &Scalar) -> Result<Comm, String> {
    let text = s.to_string();
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("an empty comm matches nothing".into());
    }
    if bytes.len() > 15 {
        let cut = String::from_utf8_lossy(&bytes[..15]);
        return Err(format!(
            "comm '{text}' is longer than the kernel keeps (15 bytes): the process is seen as '{cut}'; \
             write that, or match `executable:`"
        ));
    }
    let mut out = [0u8; 16];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

fn file_id(path: &str) -> Result<FileId, String> {
    if !path.starts_with('/') {
        return Err(format!("file '{path}' must be an absolute path"));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("file '{path}': {e}"))?;
    if !meta.is_file() {
        return Err(format!("file '{path}' is not a regular file"));
    }
    let (dev, ino) = files::identity(Path::new(path)).map_err(|e| format!("file '{path}': {e}"))?;
    Ok(FileId {
        dev,
        ino,
        path: path.into(),
    })
}

fn cgroup(root: &Path, path: &str) -> Result<Cgroup, String> {
    let rel = path
        .strip_prefix(root.to_str().unwrap_or("/sys/fs/cgroup"))
        .unwrap_or(path)
        .trim_matches('/');
    if !root.join("cgroup.controllers").exists() {
        return Err(format!(
            "cgroup selectors need cgroup v2, and none is mounted (looked at {})",
            root.display()
        ));
    }
    let dir = root.join(rel);
    let meta = std::fs::metadata(&dir).map_err(|e| {
        format!(
            "cgroup '{path}': {} ({e}); list them with `ls {}`",
            dir.display(),
            root.display()
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "cgroup '{path}': {} is not a cgroup directory",
            dir.display()
        ));
    }
    let level = rel.split('/').filter(|c| !c.is_empty()).count() as u32;
    if level as usize >= crate::rules::CGROUP_LEVELS {
        return Err(format!(
            "cgroup '{path}' is {level} levels deep: reflex matches cgroups up to {} levels",
            crate::rules::CGROUP_LEVELS - 1
        ));
    }
    Ok(Cgroup {
        id: meta.ino(),
        level,
        path: format!("/{rel}"),
    })
}

/// Warnings for pairs of rules that can match the same call but act
/// differently: the earlier one takes precedence.
fn conflicts(rules: &[Rule]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (j, b) in rules.iter().enumerate() {
        for a in &rules[..j] {
            if (a.action, a.mode) == (b.action, b.mode) && a.describe() == b.describe() {
                continue;
            }
            // Entry and exit rules on one syscall answer at different points.
            if a.exit.is_some() != b.exit.is_some() {
                continue;
            }
            let shared: Vec<&str> = b
                .syscalls
                .iter()
                .filter(|s| a.syscalls.contains(s))
                .map(|s| s.name)
                .collect();
            if shared.is_empty() || !may_overlap(a, b) {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<Loaded, Diagnostics> {
        load_str(yaml, Path::new("p.yaml"), &Env::host())
    }

    #[track_caller]
    fn errors(yaml: &str) -> Vec<String> {
        check(yaml)
            .expect_err("the policy should be refused")
            .0
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[track_caller]
    fn one_error(yaml: &str) -> String {
        let e = errors(yaml);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    const HEAD: &str = "rules:\n  - name: r\n";

    #[test]
    fn the_seed_is_valid() {
        let p = Policy::seed();
        assert_eq!(p.rules.len(), 1);
        let r = &p.rules[0];
        assert_eq!(r.name, "no-ptrace");
        assert_eq!(r.syscalls[0].name, "ptrace");
        assert_eq!(
            r.action,
            Action::Signal {
                signal: Signal::KILL,
                target: Target::Process
            }
        );
        assert_eq!(r.mode, Mode::Enforce);
    }

    #[test]
    fn a_full_rule() {
        let yaml = concat!(
            "mode: monitor\n",
            "protect:\n  pids: [4242]\n  executables: [/bin/sh]\n",
            "rules:\n",
            "  - name: guard\n",
            "    syscall: [kill, tkill]\n",
            "    args:\n      sig: [SIGKILL, 15]\n      arg0: protected\n",
            "    match:\n      uid: {not: [root]}\n      comm: [bash, python3]\n      executable: /bin/sh\n",
            "    action: {signal: SIGSTOP}\n",
        );
        let p = check(yaml).unwrap().policy;
        let r = &p.rules[0];
        assert_eq!(r.mode, Mode::Monitor);
        assert_eq!(r.syscalls.len(), 2);
        assert_eq!(r.args[0].index, 1);
        assert_eq!(
            r.args[0].cond,
            ArgCond::In(Set {
                negate: false,
                values: vec![9, 15]
            })
        );
        assert_eq!(r.args[1].cond, ArgCond::Protected { negate: false });
        assert_eq!(
            r.selectors.uid,
            Some(Set {
                negate: true,
                values: vec![0]
            })
        );
        assert_eq!(
            &r.selectors.comm.as_ref().unwrap().values[0][..5],
            b"bash\0"
        );
        assert!(r.selectors.executable.as_ref().unwrap().values[0].ino > 0);
        assert_eq!(p.protect.pids, vec![4242]);
        assert_eq!(p.protect.executables.len(), 1);
        assert!(p.protect.tracks_processes());
        assert_eq!(r.at.to_string(), "p.yaml:6:11");
    }

    #[test]
    fn an_unknown_hook_is_one_error_not_three() {
        let e = one_error(&format!(
            "{HEAD}    hook: bfp\n    action: deny\n    fallback: kill\n"
        ));
        assert_eq!(
            e,
            "p.yaml:3:11: error: unknown hook 'bfp' — did you mean 'bpf'?: hooks are ptrace, \
             exec, open, kill, module, bpf"
        );
        let e = one_error(&format!("{HEAD}    syscall: bpf\n    action: deny\n"));
        assert!(
            e.contains("write `hook: ptrace` (or exec, open, kill, module, bpf)"),
            "{e}"
        );
    }

    #[test]
    fn unknown_syscall_with_suggestion_and_place() {
        let e = one_error(&format!("{HEAD}    syscall: ptrce\n    action: kill\n"));
        assert_eq!(
            e,
            "p.yaml:3:14: error: unknown syscall 'ptrce' — did you mean 'ptrace'?"
        );
        let e = one_error(&format!(
            "{HEAD}    syscall: [kill, ptrce]\n    action: kill\n"
        ));
        assert!(
            e.starts_with("p.yaml:3:21: error: unknown syscall 'ptrce'"),
            "{e}"
        );
    }

    #[test]
    fn every_error_of_a_rule_is_reported() {
        let yaml = format!(
            "{HEAD}    syscall: kill\n    args:\n      sgi: 9\n      pid: PTRACE_ATACH\n      arg2: {{range: [5, 1]}}\n    match:\n      uid: nosuchuserhere\n      comm: averyveryverylongname\n      pid: [0]\n      executable: relative/path\n    action: {{signal: SIGFOO}}\n"
        );
        let e = errors(&yaml);
        let all = e.join("\n");
        for want in [
            "p.yaml:5:7: error: 'sgi' is not an argument of kill — did you mean 'sig'?",
            "p.yaml:6:12: error: unknown constant 'PTRACE_ATACH' — did you mean 'PTRACE_ATTACH'?",
            "p.yaml:7:13: error: range [5, 1] is empty",
            "p.yaml:9:12: error: no user named 'nosuchuserhere'",
            "p.yaml:10:13: error: comm 'averyveryverylongname' is longer than the kernel keeps (15 bytes): the process is seen as 'averyveryverylo'",
            "p.yaml:11:13: error: pid 0 is not a process id",
            "p.yaml:12:19: error: file 'relative/path' must be an absolute path",
            "p.yaml:13:22: error: unknown signal 'SIGFOO'",
        ] {
            assert!(all.contains(want), "missing\n  {want}\nin\n{all}");
        }
        assert_eq!(e.len(), 8, "{all}");
    }

    #[test]
    fn shape_errors() {
        let e = one_error("rules:\n  - name: r\n    syscal: kill\n    action: kill\n");
        assert!(
            e.starts_with("p.yaml:3:5: error: unknown field `syscal`"),
            "{e}"
        );
        let e = one_error("mode: enforcing\nrules: []\nprotect: {pids: [1]}\n");
        assert_eq!(
            e,
            "p.yaml:1:7: error: unknown mode 'enforcing': use enforce or monitor"
        );
        let e = one_error("# nothing\n{}\n");
        assert!(e.contains("no rules"), "{e}");
        let e = one_error(&format!(
            "{HEAD}    syscall: kill\n    action: kill\n    match:\n      uid: []\n"
        ));
        assert!(e.contains("p.yaml:6:12: error: empty list"), "{e}");
    }

    #[test]
    fn argument_names_must_agree_across_syscalls() {
        let e = one_error(&format!(
            "{HEAD}    syscall: [kill, tgkill]\n    args:\n      sig: SIGKILL\n    action: kill\n"
        ));
        assert!(
            e.contains("'sig' is argument 1 of kill but argument 2 of tgkill"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let e = one_error(
            "rules:\n  - {name: a, syscall: kill, action: kill}\n  - {name: a, syscall: ptrace, action: kill}\n",
        );
        assert!(
            e.contains("rule name 'a' is already used at p.yaml:2:12"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_rules_with_different_actions_are_warned_about() {
        let yaml = concat!(
            "rules:\n",
            "  - {name: audit-all, syscall: ptrace, action: audit}\n",
            "  - {name: kill-root, syscall: ptrace, match: {uid: 0}, action: kill}\n",
            "  - {name: kill-alice, syscall: ptrace, match: {uid: {not: [0]}}, action: kill}\n",
            "  - {name: stop-kill, syscall: kill, action: {signal: SIGSTOP}}\n",
        );
        let loaded = check(yaml).unwrap();
        let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("rule 'kill-root' (SIGKILL to the process) and rule 'audit-all' (audit, at p.yaml:2:12) can match the same ptrace calls; 'audit-all' comes first"), "{}", w[0]);
        // kill-root and kill-alice act alike; uid 0 vs not 0 never overlap anyway.
        assert!(w[1].contains("rule 'kill-alice'"), "{}", w[1]);
    }

    #[test]
    fn disjoint_selectors_do_not_overlap() {
        let yaml = concat!(
            "rules:\n",
            "  - {name: a, syscall: ptrace, match: {uid: [1, 2]}, action: audit}\n",
            "  - {name: b, syscall: ptrace, match: {uid: [3]}, action: kill}\n",
            "  - {name: c, syscall: ptrace, match: {uid: {not: [1, 2, 3]}}, args: {request: 16}, action: {signal: SIGUSR1}}\n",
        );
        assert!(check(yaml).unwrap().warnings.is_empty());
    }

    #[test]
    fn thread_on_sigkill_is_pointless() {
        let loaded = check(&format!(
            "{HEAD}    syscall: kill\n    action: {{signal: SIGKILL, thread: true}}\n"
        ))
        .unwrap();
        assert!(loaded.warnings[0].message.contains("changes nothing"));
    }

    #[test]
    fn cgroups_resolve_to_ids_and_levels() {
        let root = cgroup2_root();
        let p = check(&format!(
            "{HEAD}    syscall: kill\n    match:\n      cgroup: [/, {}]\n    action: audit\n",
            root.display()
        ))
        .unwrap()
        .policy;
        let set = p.rules[0].selectors.cgroup.as_ref().unwrap();
        assert_eq!(set.values.len(), 1, "the same cgroup twice is one value");
        assert_eq!(set.values[0].level, 0);
        let e = one_error(&format!(
            "{HEAD}    syscall: kill\n    match:\n      cgroup: /no/such.slice\n    action: audit\n"
        ));
        assert!(e.contains("cgroup '/no/such.slice'"), "{e}");
    }

    #[test]
    fn files_and_directories() {
        let dir = std::env::temp_dir().join(format!("reflex-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("20-b.yaml"),
            "rules: [{name: b, syscall: kill, action: audit}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("10-a.yml"),
            "rules: [{name: a, syscall: ptrace, action: kill}]\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
        let loaded = load(std::slice::from_ref(&dir), &Env::host()).unwrap();
        let names: Vec<&str> = loaded
            .policy
            .rules
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"], "files are read in name order");
        let err = load(&[dir.join("missing.yaml")], &Env::host()).unwrap_err();
        assert!(
            err.to_string()
                .contains("missing.yaml: error: cannot read the policy file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
