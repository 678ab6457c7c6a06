//! fentry on each watched syscall's own function (`__x64_sys_<name>`), and
//! fexit on it for exit rules. No tracepoint is enabled, so the machine's
//! other syscalls pay nothing; a watched call pays a BPF trampoline.
//!
//! A tracing program's attach target is fixed when it is loaded, so each
//! function gets a program of its own: the main object's `reflex_fentry`
//! stub, relocated once by libbpf, is loaded again with each function as its
//! target (a few hundred instructions: well under a millisecond). Each stub
//! hands the call to the evaluator by tail call; the kernel tail-calls only
//! between programs attached to functions of one prototype (6.11+), and
//! syscall functions have two (`regs` and, without arguments, `__unused`),
//! so there is one evaluator and one program array per prototype. Exit
//! rules' `reflex_fexit` is loaded on first use and again for each
//! function, as the stubs are. Everything loaded stays loaded for reloads.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use libbpf_rs::AsRawLibbpf;
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::Skel;

use super::Attachment;
use crate::abi::Point;
use crate::features::btf::Function;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::{Plan, Strategy};
use crate::rules::RuleSet;

/// The syscall whose function the main object's fentry programs were
/// verified against (their `SEC`).
pub const TEMPLATE_SYSCALL: &str = "ptrace";

const EXIT_PROGRAMS: &[&str] = &["reflex_fexit"];

/// One function prototype's evaluator, and the program array its stubs
/// tail-call through.
struct Group {
    /// None: the main object's `fentry_eval` (the templates' prototype).
    array: Option<OwnedFd>,
    /// The evaluator loaded for this prototype (None: a loaded object's).
    eval: Option<OwnedFd>,
    /// Whether its evaluator handles every rule set.
    wide: bool,
    /// Whether the array holds its evaluator.
    ready: bool,
}

#[derive(Default)]
pub(crate) struct Fentry {
    /// Loaded programs by entry or exit point, with where they attach.
    programs: BTreeMap<Point, (String, OwnedFd)>,
    /// Attached programs by entry or exit point.
    links: BTreeMap<Point, OwnedFd>,
    groups: BTreeMap<u32, Group>,
    exit: Option<Extra>,
}

fn refused(what: String, errno: i32) -> LoadError {
    LoadError::Unavailable(format!(
        "{what}: {}",
        std::io::Error::from_raw_os_error(errno)
    ))
}

/// Loads `prog`'s instructions (relocated by libbpf) again as a tracing
/// program of `attach_type` attached to `target`, with each reference to the
/// map `from` made to the map `to`.
fn load_again(
    object: &libbpf_rs::Object,
    prog: &libbpf_rs::Program<'_>,
    attach_type: libbpf_sys::bpf_attach_type,
    target: u32,
    swap_map: Option<(RawFd, RawFd)>,
) -> Result<OwnedFd, LoadError> {
    let mut insns = prog.insns().to_vec();
    if let Some((from, to)) = swap_map {
        let mut swapped = 0;
        for insn in insns.iter_mut() {
            if insn.code == (libbpf_sys::BPF_LD | libbpf_sys::BPF_IMM | libbpf_sys::BPF_DW) as u8
                && u32::from(insn.src_reg()) == libbpf_sys::BPF_PSEUDO_MAP_FD
                && insn.imm == from
            {
                insn.imm = to;
                swapped += 1;
            }
        }
        if swapped == 0 {
            return Err(LoadError::Unavailable(
                "reflex_fentry does not refer to its program array by descriptor".into(),
            ));
        }
    }
    let raw = prog.as_libbpf_object().as_ptr();
    // SAFETY: `raw` is a loaded program of `object`; the getters read it.
    let (func_info, func_info_cnt, btf_fd) = unsafe {
        (
            libbpf_sys::bpf_program__func_info(raw),
            libbpf_sys::bpf_program__func_info_cnt(raw),
            libbpf_sys::bpf_object__btf_fd(object.as_libbpf_object().as_ptr()),
        )
    };
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: attach_type,
        attach_btf_id: target,
        prog_btf_fd: if btf_fd >= 0 && !func_info.is_null() {
            btf_fd as u32
        } else {
            0
        },
        func_info: if btf_fd >= 0 {
            func_info.cast()
        } else {
            std::ptr::null()
        },
        func_info_cnt: if btf_fd >= 0 && !func_info.is_null() {
            func_info_cnt
        } else {
            0
        },
        func_info_rec_size: std::mem::size_of::<libbpf_sys::bpf_func_info>() as u32,
        ..Default::default()
    };
    let name = std::ffi::CString::new(prog.name().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: every pointer is valid for the call: the name and license are
    // NUL-terminated, `insns` holds `len` instructions, `func_info` is
    // libbpf's own array of `func_info_cnt` records.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            name.as_ptr(),
            c"Dual BSD/GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(refused(
            format!(
                "loading {} again for BTF function {target} failed",
                name.to_string_lossy()
            ),
            -fd,
        ));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches a loaded tracing program to its function: the link's descriptor.
fn attach_traced(prog: &OwnedFd, what: &str) -> Result<OwnedFd, LoadError> {
    // SAFETY: a NULL name attaches a tracing program to its own target.
    let fd = unsafe { libbpf_sys::bpf_raw_tracepoint_open(std::ptr::null(), prog.as_raw_fd()) };
    if fd < 0 {
        return Err(refused(format!("attaching {what} failed"), -fd));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn function(plan: &Plan, name: &str) -> Result<Function, LoadError> {
    plan.functions.get(name).copied().ok_or_else(|| {
        LoadError::Unavailable(format!(
            "the kernel's BTF has no function for {name}: fentry cannot watch it"
        ))
    })
}

impl Fentry {
    /// The program array the stubs of functions of `function`'s prototype
    /// tail-call through, its evaluator in place: the main object's own
    /// (the templates' prototype) or one loaded for this prototype; the one
    /// that handles every rule set once a set has needed it.
    fn array_for(
        &mut self,
        objects: &Objects<'_>,
        plan: &Plan,
        function: Function,
        at: &str,
    ) -> Result<RawFd, LoadError> {
        let main = &objects.main;
        let template_proto = plan.functions.get(TEMPLATE_SYSCALL).map(|f| f.proto);
        let wide = objects.wide_eval.as_ref();
        let group = self.groups.entry(function.proto).or_insert(Group {
            array: None,
            eval: None,
            wide: false,
            ready: false,
        });
        if group.array.is_none() && template_proto != Some(function.proto) {
            let name = c"reflex_fentry_e";
            // SAFETY: a plain map creation with no options.
            let fd = unsafe {
                libbpf_sys::bpf_map_create(
                    libbpf_sys::BPF_MAP_TYPE_PROG_ARRAY,
                    name.as_ptr(),
                    4,
                    4,
                    1,
                    std::ptr::null(),
                )
            };
            if fd < 0 {
                return Err(refused("creating a program array failed".into(), -fd));
            }
            // SAFETY: a new descriptor that nothing else owns.
            group.array = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let array = match &group.array {
            Some(fd) => fd.as_raw_fd(),
            None => main.maps.fentry_eval.as_fd().as_raw_fd(),
        };
        if group.ready && group.wide == wide.is_some() {
            return Ok(array);
        }
        let (object, prog) = match wide {
            Some(extra) => (extra.skel.object(), &extra.skel.progs.reflex_fentry_eval),
            None => (main.object(), &main.progs.reflex_fentry_eval),
        };
        let own = match group.array {
            // The templates' prototype: the loaded evaluator itself.
            None => None,
            // (Debian's 5.10 refuses this load with EACCES: `auto` does
            // not choose fentry for such a set; `--attach fentry` says why.)
            Some(_) => Some(
                load_again(
                    object,
                    prog,
                    libbpf_sys::BPF_TRACE_FENTRY,
                    function.id,
                    None,
                )
                .map_err(|e| {
                    LoadError::Unavailable(format!(
                        "{at}: its function has another prototype than {TEMPLATE_SYSCALL}'s, \
                         and the evaluator verified for it was refused ({e}); \
                         `--attach auto` or `--attach raw` watch it"
                    ))
                })?,
            ),
        };
        let eval = match &own {
            Some(fd) => fd.as_raw_fd(),
            None => prog.as_fd().as_raw_fd(),
        };
        write_slot(array, eval)?;
        group.eval = own;
        group.wide = wide.is_some();
        group.ready = true;
        Ok(array)
    }
}

fn write_slot(array: RawFd, prog: RawFd) -> Result<(), LoadError> {
    let key = 0u32;
    // SAFETY: key and value are 4-byte values, as the array was made.
    let ret = unsafe {
        libbpf_sys::bpf_map_update_elem(
            array,
            (&raw const key).cast(),
            (&raw const prog).cast(),
            libbpf_sys::BPF_ANY as u64,
        )
    };
    if ret < 0 {
        return Err(refused(
            "putting the evaluator in its program array failed".into(),
            -ret,
        ));
    }
    Ok(())
}

impl Attachment for Fentry {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        plan: &Plan,
    ) -> Result<(), LoadError> {
        if plan.strategy != Strategy::Fentry {
            return Ok(());
        }
        for (&point, table) in &set.tables {
            if matches!(point, Point::Hook(_) | Point::Sample) {
                continue;
            }
            let function = function(plan, table.name)?;
            let is_exit = matches!(point, Point::Exit(_));
            let at = format!(
                "{}/{}",
                if is_exit { "fexit" } else { "fentry" },
                function.name(table.name)
            );
            // Every set's evaluator, even for a set that loaded no stub.
            if !is_exit {
                self.array_for(objects, plan, function, &at)?;
            }
            if !self.programs.contains_key(&point) {
                let prog = if is_exit {
                    if self.exit.is_none() {
                        self.exit = Some(objects.load_extra(EXIT_PROGRAMS)?);
                    }
                    let extra = self.exit.as_ref().expect("loaded above");
                    load_again(
                        extra.skel.object(),
                        &extra.skel.progs.reflex_fexit,
                        libbpf_sys::BPF_TRACE_FEXIT,
                        function.id,
                        None,
                    )?
                } else {
                    let array = self.array_for(objects, plan, function, &at)?;
                    let main = &objects.main;
                    load_again(
                        main.object(),
                        &main.progs.reflex_fentry,
                        libbpf_sys::BPF_TRACE_FENTRY,
                        function.id,
                        Some((main.maps.fentry_eval.as_fd().as_raw_fd(), array)),
                    )?
                };
                self.programs.insert(point, (at.clone(), prog));
            }
            if !self.links.contains_key(&point) {
                let (_, prog) = &self.programs[&point];
                self.links.insert(point, attach_traced(prog, &at)?);
            }
        }
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        match in_force {
            Some((set, plan)) if plan.strategy == Strategy::Fentry => {
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
            .keys()
            .map(|point| self.programs[point].0.clone())
            .collect()
    }

    fn missed(&self) -> Vec<(String, u64)> {
        self.programs
            .iter()
            .map(|(_, (at, fd))| {
                (
                    format!("reflex_{at}"),
                    crate::kernel::object::recursion_misses(fd.as_fd()),
                )
            })
            .collect()
    }
}
