//! From policy files as written to a checked [`Policy`]: every name resolved,
//! every error reported with its place and a fix, all errors of all files at
//! once. Split along the seams of a rule: its trigger (`triggers`), its
//! action (`actions`), its argument matchers (`args`), its selectors and the
//! protected set (`selectors`), and conflicts between rules (`conflicts`).
//! Every question to the machine goes through [`Host`].

mod actions;
mod args;
mod conflicts;
mod selectors;
mod triggers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use triggers::duration;

use super::diag::{Diagnostic, Diagnostics, Location, shown};
use super::file::{self, RawFile, RawRule, Scalar};
use super::host::{Host, Live};
use super::{Action, Mode, Policy, Protect, Rule, Sample, To, Trigger};
use crate::abi::hook::ALL as ALL_HOOKS;
use crate::syscall::Arch;
use serde_saphyr::Spanned;

/// Most values one selector or argument matcher may list.
pub const MAX_VALUES: usize = 256;
/// Longest rule name.
pub const MAX_NAME: usize = 64;
/// Highest sampling frequency (each sample may send a signal).
pub const MAX_SAMPLE_HZ: u64 = 1000;

/// What names are resolved against.
#[derive(Debug, Clone)]
pub struct Env {
    /// Syscall table to use.
    pub arch: Arch,
    /// Users, groups, files, cgroups: the machine the policy is for.
    pub host: Arc<dyn Host>,
}

impl Env {
    /// This machine (the host's view of it, in a container).
    pub fn host() -> Env {
        Env {
            arch: Arch::host(),
            host: Arc::new(Live::new()),
        }
    }

    /// This machine, with the host's `/` mounted at `root` (`--host-root`),
    /// or as [`Env::host`] decides.
    pub fn host_at(root: Option<&std::path::Path>) -> std::io::Result<Env> {
        let Some(root) = root else {
            return Ok(Env::host());
        };
        Ok(Env {
            arch: Arch::host(),
            host: Arc::new(Live::at(root)?),
        })
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
    load_with(paths, env, false)
}

/// [`load`] for a service: a directory with no policy files yet is a
/// warning (nothing is enforced until one is put there), not an error.
pub fn load_allowing_empty(paths: &[PathBuf], env: &Env) -> Result<Loaded, Diagnostics> {
    load_with(paths, env, true)
}

fn load_with(paths: &[PathBuf], env: &Env, empty_ok: bool) -> Result<Loaded, Diagnostics> {
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
            if found.is_empty() && empty_ok {
                diags.push(Diagnostic::warning(
                    at,
                    "the directory holds no policy files (*.yaml or *.yml) yet: nothing is \
                     enforced until one is put there (reflex watches it)",
                ));
            } else if found.is_empty() {
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
        match read_policy(path) {
            Ok(text) => checker.file(&text, &file),
            Err(e) => diags.push(Diagnostic::error(Location::file(&file), e)),
        }
    }
    diags.append(&mut checker.diags);
    checker.finish(files, diags)
}

/// Largest policy file reflex reads: 1 MiB (a thousand rules take about a
/// tenth of it).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A policy file's text: regular files only (a FIFO or a device would block
/// or never end), opened without blocking, at most [`MAX_FILE_BYTES`].
fn read_policy(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read the policy file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the policy file: {e}"))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(format!(
            "this is {what}: reflex reads policies from regular files only"
        ));
    }
    let too_large = || {
        format!(
            "the policy file is larger than {} KiB, the most reflex reads: split it into files in a directory",
            MAX_FILE_BYTES / 1024
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the policy file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the policy file is not UTF-8 text (byte {} is not): policies are YAML",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Checks one policy given as text (the built-in seed, tests).
pub fn load_str(text: &str, name: &Path, env: &Env) -> Result<Loaded, Diagnostics> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostics(vec![Diagnostic::error(
            Location::file(&shown(name)),
            format!(
                "the policy is larger than {} KiB, the most reflex reads",
                MAX_FILE_BYTES / 1024
            ),
        )]));
    }
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
    /// Pids `to:` rules signal, where, and how they were named.
    targets: Vec<(u32, Location, String)>,
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
    // The parser's words for what a policy author can fix, in theirs.
    if let Some(key) = first
        .strip_prefix("duplicate mapping key: ")
        .and_then(|k| k.split(", set DuplicateKeyPolicy").next())
    {
        return format!("`{key}` is given twice in one map: keep one");
    }
    if let Some(what) = first.split("budget breached").nth(1) {
        // `Nodes { nodes: 250001 } at line …`: the kind and the limit, in words.
        let words: Vec<&str> = what
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let detail = match words.as_slice() {
            [_, kind, n, ..] => match n.parse::<u64>() {
                Ok(n) => format!(": more than {} {kind}", n.saturating_sub(1)),
                Err(_) => String::new(),
            },
            _ => String::new(),
        };
        return format!(
            "the policy is too large or too deeply nested for reflex to read{detail}: split it, \
             or list fewer values"
        );
    }
    // Some messages end with their own " at line N, column M".
    match first.rsplit_once(" at line ") {
        Some((msg, place)) if place.contains(", column ") => msg.to_string(),
        _ => first.to_string(),
    }
}

/// Longest duration a `pause:` may have: longer is a stop (`{signal: SIGSTOP}`).
pub const MAX_PAUSE_NS: u64 = 24 * 3600 * 1_000_000_000;
/// Longest window of a rate or circuit breaker, and longest `slower_than`.
pub const MAX_WINDOW_NS: u64 = 3600 * 1_000_000_000;
/// The highest pid Linux can give (PID_MAX_LIMIT).
pub const MAX_PID: u64 = 4_194_304;

impl Checker<'_> {
    /// A whole number `what` from `lo` to `hi`, or an error at its place
    /// that says the bounds.
    fn bounded(
        &mut self,
        v: &Spanned<Scalar>,
        file: &Arc<Path>,
        what: &str,
        lo: u64,
        hi: u64,
    ) -> Option<u64> {
        let at = Location::of(file, &v.referenced);
        match &v.value {
            Scalar::Int(n) if *n >= i128::from(lo) && *n <= i128::from(hi) => Some(*n as u64),
            Scalar::Int(n) => {
                self.error(at, format!("{what} {n} is out of range: {lo} to {hi}"));
                None
            }
            Scalar::Str(s) => {
                self.error(
                    at,
                    format!(
                        "{what} '{}' is not a number ({lo} to {hi})",
                        file::excerpt(s)
                    ),
                );
                None
            }
        }
    }

    /// A duration `what` from 1 ns to `max_ns`, or an error at its place.
    fn duration_within(
        &mut self,
        v: &Spanned<Scalar>,
        file: &Arc<Path>,
        what: &str,
        max_ns: u64,
    ) -> Option<u64> {
        let at = Location::of(file, &v.referenced);
        match triggers::duration(&v.value) {
            Ok(0) => {
                self.error(at, format!("`{what}: 0`: a duration must be more than 0"));
                None
            }
            Ok(ns) if ns > max_ns => {
                self.error(
                    at,
                    format!(
                        "`{what}: {}` is longer than {}, the most reflex allows here",
                        file::excerpt(&v.value.to_string()),
                        super::show_ns(max_ns)
                    ),
                );
                None
            }
            Ok(ns) => Some(ns),
            Err(e) => {
                self.error(at, e);
                None
            }
        }
    }
}

fn args_of(r: &RawRule) -> Vec<String> {
    r.args
        .as_ref()
        .map(|a| a.0.iter().map(|(k, _)| k.value.clone()).collect())
        .unwrap_or_default()
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
            targets: Vec::new(),
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

    fn rule(&mut self, r: &RawRule, mode: Mode, file: &Arc<Path>) -> Option<Rule> {
        let at = Location::of(file, &r.name.referenced);
        let errors_before = self.diags.len();
        let name = r.name.value.trim().to_string();
        self.names.push((name.clone(), at.clone()));
        if name.is_empty()
            || name.len() > MAX_NAME
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.error(
                at.clone(),
                format!(
                    "rule name '{}' must be 1 to {MAX_NAME} characters, without spaces or control characters",
                    super::file::excerpt(&name)
                ),
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
            let others: Vec<&str> = ALL_HOOKS[1..].iter().map(|h| h.name()).collect();
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
        let disarm = r
            .disarm
            .as_ref()
            .and_then(|d| self.disarm(d, action.as_ref(), file));
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
        let trigger = match (sample, hook, exit) {
            (Some(sample), _, _) => Trigger::Sample(sample),
            (None, Some(hook), _) => Trigger::Hook {
                hook,
                file: file_set,
                fallback,
            },
            (None, None, Some(exit)) => Trigger::Exit { syscalls, exit },
            (None, None, None) => Trigger::Entry(syscalls),
        };
        Some(Rule {
            name,
            at,
            trigger,
            rate,
            to,
            value,
            pause_ns,
            disarm,
            args,
            selectors,
            action: action?,
            mode,
        })
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
        diags.extend(conflicts::conflicts(&self.rules));
        for (pid, at, what) in &self.targets {
            if self.protect.pids.contains(pid) {
                diags.push(Diagnostic::error(
                    at.clone(),
                    format!(
                        "{what} names pid {pid}, which `protect` lists: reflex never signals a \
                         protected process; name another, or unprotect it"
                    ),
                ));
            }
        }
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

/// The item's own place, or the field's when the parser kept none.
fn place(file: &Arc<Path>, loc: &serde_saphyr::Location, field: &Location) -> Location {
    if loc.line() == 0 {
        field.clone()
    } else {
        Location::of(file, loc)
    }
}

#[cfg(test)]
mod tests;
