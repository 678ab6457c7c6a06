//! BPF-LSM programs, one set per security hook a rule is on, each loaded on
//! first use (only where the kernel allows BPF-LSM: elsewhere hook rules
//! were turned into syscall rules, or refused, before this).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use libbpf_rs::Link;
use libbpf_rs::skel::Skel;

use super::Attachment;
use crate::abi::Hook;
use crate::features::Features;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::Plan;
use crate::rules::RuleSet;

/// The programs of a hook.
fn programs(hook: Hook, features: &Features) -> &'static [&'static str] {
    match hook {
        Hook::Ptrace => &["reflex_lsm_ptrace"],
        Hook::Exec => &["reflex_lsm_exec"],
        Hook::Open => &["reflex_lsm_open"],
        Hook::Kill => &["reflex_lsm_kill"],
        Hook::Module => &["reflex_lsm_module_file", "reflex_lsm_module_data"],
        // 6.15 added a `kernel` flag before `ret`: the program that reads
        // `ret` where this kernel's BTF puts it.
        Hook::Bpf if features.bpf_hook_kernel_flag() => &["reflex_lsm_bpf_kernel_flag"],
        Hook::Bpf => &["reflex_lsm_bpf"],
    }
}

#[derive(Default)]
pub(crate) struct Lsm {
    hooks: BTreeMap<Hook, (Extra, Vec<Link>)>,
}

impl Attachment for Lsm {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        _plan: &Plan,
    ) -> Result<(), LoadError> {
        for hook in set.hooks() {
            let names = programs(hook, &objects.features);
            let (extra, links) = match self.hooks.entry(hook) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert((objects.load_extra(names)?, Vec::new())),
            };
            if !links.is_empty() {
                continue;
            }
            for prog in extra.skel.object().progs_mut() {
                let name = prog.name().to_string_lossy().into_owned();
                if !names.contains(&name.as_str()) {
                    continue;
                }
                let link = prog.attach().map_err(|source| LoadError::Attach {
                    program: names[0],
                    hook: hook.lsm().into(),
                    source,
                })?;
                links.push(link);
            }
        }
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        let used = in_force.map(|(set, _)| set.hooks()).unwrap_or_default();
        for (hook, (_, links)) in self.hooks.iter_mut() {
            if !used.contains(hook) {
                links.clear();
            }
        }
    }

    fn detach(&mut self) {
        for (_, links) in self.hooks.values_mut() {
            links.clear();
        }
    }

    fn describe(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|(_, (_, links))| !links.is_empty())
            .map(|(hook, _)| hook.lsm().to_string())
            .collect()
    }

    fn missed(&self) -> Vec<(String, u64)> {
        self.hooks
            .values()
            .flat_map(|(extra, _)| extra.missed())
            .collect()
    }
}
