//! Per-syscall tracepoints: `tp/syscalls/sys_enter_<name>` for each watched
//! syscall (a stub per argument count in the main object, which hands the
//! call to the evaluator by tail call), and `sys_exit_<name>` for syscalls
//! exit rules time (one program, loaded on first use).

use std::collections::BTreeMap;

use libbpf_rs::{Link, TracepointCategory};

use super::Attachment;
use crate::abi::Point;
use crate::abi::skel::ReflexProgs;
use crate::features::tracepoint_name;
use crate::kernel::TP_STUBS;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::{Plan, Strategy};
use crate::rules::RuleSet;

/// Loaded on first use: its verification is as long as the evaluator's.
const EXIT_PROGRAMS: &[&str] = &["reflex_tp_exit"];

#[derive(Default)]
pub(crate) struct Tracepoints {
    /// By entry or exit point: the syscall's name and the link.
    links: BTreeMap<Point, (&'static str, Link)>,
    exit: Option<Extra>,
    /// Every entry stub, once a reload needed one start-up did not load.
    stubs: Option<Extra>,
}

/// The number of arguments whose stub enters `syscall` under `plan`.
pub(crate) fn stub_arity(plan: &Plan, syscall: &str) -> u8 {
    plan.args.get(syscall).copied().unwrap_or(6).min(6)
}

fn stub<'p, 'o>(progs: &'p ReflexProgs<'o>, nargs: u8) -> &'p libbpf_rs::ProgramMut<'o> {
    match nargs {
        0 => &progs.reflex_tp0,
        1 => &progs.reflex_tp1,
        2 => &progs.reflex_tp2,
        3 => &progs.reflex_tp3,
        4 => &progs.reflex_tp4,
        5 => &progs.reflex_tp5,
        _ => &progs.reflex_tp6,
    }
}

fn attach_error(program: &'static str, hook: String) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Attach {
        program,
        hook,
        source,
    }
}

impl Attachment for Tracepoints {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        plan: &Plan,
    ) -> Result<(), LoadError> {
        if plan.strategy != Strategy::Tracepoint {
            return Ok(());
        }
        for (&point, table) in &set.tables {
            if self.links.contains_key(&point) {
                continue;
            }
            let tp = tracepoint_name(table.name);
            let link = match point {
                Point::Entry(_) => {
                    let name = format!("sys_enter_{tp}");
                    let nargs = stub_arity(plan, table.name);
                    let program = TP_STUBS[nargs as usize];
                    // Start-up loaded the stubs its rules needed; another
                    // comes from an instance of its own with all of them.
                    let mut prog = stub(&objects.main.progs, nargs);
                    if !prog.autoload() {
                        if self.stubs.is_none() {
                            self.stubs = Some(objects.load_extra(&TP_STUBS)?);
                        }
                        let extra = self.stubs.as_ref().expect("loaded above");
                        prog = stub(&extra.skel.progs, nargs);
                    }
                    prog.attach_tracepoint(TracepointCategory::Syscalls, &name)
                        .map_err(attach_error(program, format!("tp/syscalls/{name}")))?
                }
                Point::Exit(_) => {
                    let name = format!("sys_exit_{tp}");
                    if self.exit.is_none() {
                        self.exit = Some(objects.load_extra(EXIT_PROGRAMS)?);
                    }
                    let extra = self.exit.as_ref().expect("loaded above");
                    extra
                        .skel
                        .progs
                        .reflex_tp_exit
                        .attach_tracepoint(TracepointCategory::Syscalls, &name)
                        .map_err(attach_error(
                            "reflex_tp_exit",
                            format!("tp/syscalls/{name}"),
                        ))?
                }
                Point::Hook(_) | Point::Sample => continue,
            };
            self.links.insert(point, (table.name, link));
        }
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        match in_force {
            Some((set, plan)) if plan.strategy == Strategy::Tracepoint => {
                self.links.retain(|point, _| set.tables.contains_key(point))
            }
            _ => self.links.clear(),
        }
    }

    fn detach(&mut self) {
        self.links.clear();
    }

    fn describe(&self) -> Vec<String> {
        self.links
            .iter()
            .map(|(point, (name, _))| {
                let at = match point {
                    Point::Exit(_) => "exit",
                    _ => "enter",
                };
                format!("tp/syscalls/sys_{at}_{}", tracepoint_name(name))
            })
            .collect()
    }

    fn missed(&self) -> Vec<(String, u64)> {
        // The entry stubs and the evaluator are the main object's, counted
        // with it.
        [&self.exit, &self.stubs]
            .into_iter()
            .flatten()
            .flat_map(Extra::missed)
            .collect()
    }
}
