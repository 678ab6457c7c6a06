//! The raw syscall hook: one `tp_btf/sys_enter` program for every watched
//! syscall (it drops the others first), and `tp_btf/sys_exit` while exit
//! rules are in force.

use libbpf_rs::Link;

use super::Attachment;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::{Plan, Strategy};
use crate::rules::RuleSet;

const PROGRAMS: &[&str] = &["reflex_raw", "reflex_raw_exit"];
/// The variant able to signal other tasks (kfuncs, 6.13+).
const PROGRAMS_K: &[&str] = &["reflex_raw_k", "reflex_raw_exit"];

#[derive(Default)]
pub(crate) struct Raw {
    extra: Option<Extra>,
    enter: Option<Link>,
    exit: Option<Link>,
}

fn has_exits(set: &RuleSet) -> bool {
    !set.exit_names().is_empty()
}

impl Attachment for Raw {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        plan: &Plan,
    ) -> Result<(), LoadError> {
        if plan.strategy != Strategy::Raw {
            return Ok(());
        }
        // The variant able to signal other tasks where the kernel has the
        // kfuncs: then reloads never need to switch.
        let kfuncs = objects.settings.kfuncs;
        let programs = if kfuncs { PROGRAMS_K } else { PROGRAMS };
        if self.extra.is_none() {
            self.extra = Some(objects.load_extra(programs)?);
        }
        let progs = &self.extra.as_ref().expect("loaded above").skel.progs;
        if self.enter.is_none() {
            let prog = if kfuncs {
                &progs.reflex_raw_k
            } else {
                &progs.reflex_raw
            };
            self.enter = Some(prog.attach().map_err(|source| LoadError::Attach {
                program: programs[0],
                hook: "tp_btf/sys_enter".into(),
                source,
            })?);
        }
        if has_exits(set) && self.exit.is_none() {
            self.exit =
                Some(
                    progs
                        .reflex_raw_exit
                        .attach()
                        .map_err(|source| LoadError::Attach {
                            program: "reflex_raw_exit",
                            hook: "tp_btf/sys_exit".into(),
                            source,
                        })?,
                );
        }
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        match in_force {
            Some((set, plan)) if plan.strategy == Strategy::Raw => {
                if !has_exits(set) {
                    self.exit = None;
                }
            }
            _ => self.detach(),
        }
    }

    fn detach(&mut self) {
        self.enter = None;
        self.exit = None;
    }

    fn describe(&self) -> Vec<String> {
        let mut at = Vec::new();
        if self.enter.is_some() {
            at.push("tp_btf/sys_enter".to_string());
        }
        if self.exit.is_some() {
            at.push("tp_btf/sys_exit".to_string());
        }
        at
    }

    fn missed(&self) -> Vec<(String, u64)> {
        self.extra.as_ref().map(Extra::missed).unwrap_or_default()
    }
}
