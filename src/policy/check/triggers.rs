//! A rule's trigger: its syscalls (at entry, or at exit with conditions),
//! its security hook (and what it falls back to), or its sampling event.

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Checker, MAX_SAMPLE_HZ, place};
use crate::policy::diag::Location;
use crate::policy::file::{self, RawRule, Scalar};
use crate::policy::hooks::{self, Hook};
use crate::policy::{ArgMatch, Exit, Sample, SampleEvent, Syscall, constants, degrade};
use crate::syscall;

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

impl Checker<'_> {
    /// The rule's trigger: its syscalls (none for a sampling rule), or its hook.
    pub(super) fn trigger(
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
            return (Vec::new(), None);
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
                        crate::abi::hook::ALL.map(Hook::name).join("|")
                    ),
                );
                (Vec::new(), None)
            }
            (Some(_), None) => (self.syscalls(r, file), None),
            (None, Some(h)) => match Hook::from_name(h.value.trim()) {
                Some(hook) => (Vec::new(), Some(hook)),
                None => {
                    let names = crate::abi::hook::ALL.map(Hook::name);
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

    pub(super) fn syscalls(&mut self, r: &RawRule, file: &Arc<Path>) -> Vec<Syscall> {
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
                    if !(0..crate::abi::MAX_SYSCALL).contains(&nr) {
                        self.error(
                            at,
                            format!(
                                "syscall '{name}' has number {nr}, beyond reflex's table of {}",
                                crate::abi::MAX_SYSCALL
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

    pub(super) fn sample(
        &mut self,
        s: &Spanned<file::RawSample>,
        file: &Arc<Path>,
    ) -> Option<Sample> {
        let at = Location::of(file, &s.value.frequency.referenced);
        let frequency = self.bounded(
            &s.value.frequency,
            file,
            "sampling frequency",
            1,
            u64::from(u32::MAX),
        )?;
        let max = self
            .env
            .host
            .max_sample_rate()
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
    pub(super) fn exit(&mut self, r: &RawRule, file: &Arc<Path>) -> Option<Exit> {
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
                Ok(0) => {
                    self.error(
                        place_of(&d.referenced),
                        "`slower_than: 0` matches every call: omit it",
                    );
                    return None;
                }
                Ok(ns) if ns > super::MAX_WINDOW_NS => {
                    self.error(
                        place_of(&d.referenced),
                        format!(
                            "`slower_than: {}` is longer than {}, the most reflex times a call",
                            crate::policy::file::excerpt(&d.value.to_string()),
                            crate::policy::show_ns(super::MAX_WINDOW_NS)
                        ),
                    );
                    return None;
                }
                Ok(ns) => Some(ns),
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

    /// A hook rule's fallback must mean the same at its syscalls' entry.
    pub(super) fn fallback_translates(
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
                    hooks::fallback(hook)
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
            let missing: Vec<&str> = hooks::fallback(hook)
                .iter()
                .filter(|f| !f.args.iter().any(|(a, _)| *a == name))
                .map(|f| f.syscall)
                .collect();
            // Syscalls that cannot show it are left out (and named at start),
            // as long as one can.
            if missing.len() == hooks::fallback(hook).len() {
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
}
