//! A rule's argument matchers (`args`), by name or position, and the value
//! lists every matcher and selector is made of.

use std::path::Path;
use std::sync::Arc;

use super::selectors::file_id;
use super::{Checker, MAX_VALUES, place};
use crate::policy::diag::Location;
use crate::policy::file::{BitsKind, RawArg, RawRule, Scalar, Values};
use crate::policy::hooks::Hook;
use crate::policy::{ArgCond, ArgMatch, Bits, FileId, Set, Syscall, constants};

impl Checker<'_> {
    pub(super) fn args(
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
                        let host = std::sync::Arc::clone(&self.env.host);
                        files = self.set(v, &mat, |s| file_id(&*host, &s.to_string()));
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

    pub(super) fn hook_arg_index(&mut self, hook: Hook, name: &str, at: &Location) -> Option<u8> {
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
    pub(super) fn arg_index(
        &mut self,
        name: &str,
        syscalls: &[Syscall],
        at: &Location,
    ) -> Option<u8> {
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
    pub(super) fn numbers(&mut self, v: &Values, field: &Location) -> Option<Set<u64>> {
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
    pub(super) fn set<T: PartialEq>(
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
}
