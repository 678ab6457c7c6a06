//! A rule's action: what it does (kill, audit, a signal, deny), whom it
//! reaches (`to:`, `value:`), a `pause:`, and a `rate:` it acts past.

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Checker, place};
use super::{MAX_PAUSE_NS, MAX_PID, MAX_WINDOW_NS};
use crate::policy::diag::{Diagnostic, Location};
use crate::policy::file::{self, RawAction, RawTo, Scalar};
use crate::policy::{Action, Disarm, DisarmBy, Rate, RateBy, SigValue, Target, To, constants};
use crate::signal::Signal;

impl Checker<'_> {
    pub(super) fn action(&mut self, a: &Spanned<RawAction>, file: &Arc<Path>) -> Option<Action> {
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

    pub(super) fn signal(&mut self, value: &Scalar, at: &Location) -> Option<Signal> {
        let parsed = match value {
            Scalar::Int(n) => n.to_string().parse::<Signal>(),
            Scalar::Str(s) => s.parse::<Signal>(),
        };
        parsed
            .map_err(|e| self.error(at.clone(), e.to_string()))
            .ok()
    }

    /// A circuit breaker: `disarm: {distinct: N, per: T, by: executable|cgroup|process}`.
    pub(super) fn disarm(
        &mut self,
        d: &Spanned<file::RawDisarm>,
        action: Option<&Action>,
        file: &Arc<Path>,
    ) -> Option<Disarm> {
        let at = Location::of(file, &d.referenced);
        if matches!(action, Some(Action::Audit)) {
            self.error(
                at,
                "`disarm` is for rules that act: an audit rule has nothing to stop",
            );
            return None;
        }
        let distinct = self.bounded(
            &d.value.distinct,
            file,
            "`distinct`",
            1,
            crate::abi::MAX_DISARM_DISTINCT,
        );
        let window_ns = self.duration_within(&d.value.per, file, "per", 24 * MAX_WINDOW_NS);
        let by = match d.value.by.as_ref().map(|b| b.value.as_str()) {
            None | Some("executable") => DisarmBy::Executable,
            Some("cgroup") => DisarmBy::Cgroup,
            Some("process") => DisarmBy::Process,
            Some(other) => {
                let b = d.value.by.as_ref().expect("some");
                self.error(
                    Location::of(file, &b.referenced),
                    format!(
                        "unknown `by: {}`: a circuit breaker counts distinct executables, cgroups or processes",
                        file::excerpt(other)
                    ),
                );
                return None;
            }
        };
        Some(Disarm {
            distinct: distinct? as u32,
            window_ns: window_ns?,
            by,
        })
    }

    /// A pid a `to:` names: never pid 1 (said now); a protected one is
    /// refused once every file's `protect` is known (`finish`).
    fn target(&mut self, pid: u32, at: Location, what: &str) -> To {
        if pid == 1 {
            self.error(
                at,
                format!("{what} names pid 1, which reflex never signals: name another process"),
            );
            return To::Caller;
        }
        self.targets.push((pid, at, what.to_string()));
        To::Pid(pid)
    }

    /// `to`, `value` and `pause` of a signal action.
    pub(super) fn signal_extras(
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
            Some((RawTo::Pid(p), l)) => {
                let pid = Spanned::new(p.clone(), l, l);
                match self.bounded(&pid, file, "pid", 1, MAX_PID) {
                    Some(pid) => self.target(pid as u32, at(&l), "`to: {pid}`"),
                    None => To::Caller,
                }
            }
            Some((RawTo::Pidfile(path), l)) => match self
                .env
                .host
                .read(path)
                .and_then(|t| t.parse::<u32>().map_err(|e| e.to_string()))
            {
                Ok(pid) if pid > 0 && u64::from(pid) <= MAX_PID => {
                    self.target(pid, at(&l), &format!("pidfile '{}'", file::excerpt(path)))
                }
                Ok(pid) => {
                    self.error(
                        at(&l),
                        format!(
                            "pidfile '{}' names pid {pid}, which is not a process",
                            file::excerpt(path)
                        ),
                    );
                    To::Caller
                }
                Err(e) => {
                    self.error(at(&l), format!("pidfile '{}': {e}", file::excerpt(path)));
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
                // Longer than a day is a stop: `{signal: SIGSTOP}`, resumed
                // when reflex stops.
                self.duration_within(p, file, "pause", MAX_PAUSE_NS)
            }
        };
        (to_kind, value_kind, pause_ns)
    }

    pub(super) fn rate(&mut self, r: &Spanned<file::RawRate>, file: &Arc<Path>) -> Option<Rate> {
        let at = Location::of(file, &r.referenced);
        // `over` counts calls: the rule acts on the calls past it.
        let over = self.bounded(&r.value.over, file, "`over`", 1, u64::from(u32::MAX));
        let window_ns = self.duration_within(&r.value.per, file, "per", MAX_WINDOW_NS);
        let (over, window_ns) = (over?, window_ns?);
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
}
