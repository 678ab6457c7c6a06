//! The protected set's followers: tp_btf programs on fork, exec and exit
//! that keep children of protected executables and cgroups protected from
//! birth. Attached only while the rules protect executables or cgroups.

use libbpf_rs::Link;

use super::Attachment;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::Plan;
use crate::rules::RuleSet;

pub(crate) const PROGRAMS: &[&str] = &["reflex_fork", "reflex_exec", "reflex_exit"];

#[derive(Default)]
pub(crate) struct Followers {
    extra: Option<Extra>,
    links: Vec<Link>,
}

impl Attachment for Followers {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        _plan: &Plan,
    ) -> Result<(), LoadError> {
        if !set.protect.track || !self.links.is_empty() {
            return Ok(());
        }
        if self.extra.is_none() {
            self.extra = Some(objects.load_extra(PROGRAMS)?);
        }
        let progs = &self.extra.as_ref().expect("loaded above").skel.progs;
        for (program, prog) in [
            ("reflex_fork", &progs.reflex_fork),
            ("reflex_exec", &progs.reflex_exec),
            ("reflex_exit", &progs.reflex_exit),
        ] {
            let link = prog.attach().map_err(|source| LoadError::Attach {
                program,
                hook: format!("tp_btf/sched_process_{}", &program["reflex_".len()..]),
                source,
            })?;
            self.links.push(link);
        }
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        if in_force.is_none_or(|(set, _)| !set.protect.track) {
            self.links.clear();
        }
    }

    fn detach(&mut self) {
        self.links.clear();
    }

    fn describe(&self) -> Vec<String> {
        if self.links.is_empty() {
            Vec::new()
        } else {
            vec!["tp_btf/sched_process_{fork,exec,exit}".into()]
        }
    }

    fn missed(&self) -> Vec<(String, u64)> {
        self.extra.as_ref().map(Extra::missed).unwrap_or_default()
    }
}
