//! reflex's BPF object: opened with the load-time settings written in
//! (`const volatile` rodata), loaded with libbpf's log kept for errors, and
//! loaded again in instances of their own that share the first one's maps,
//! so that start-up verifies only the programs the rule set needs.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, PrintLevel};

use super::Settings;
use crate::abi::skel::{self, ReflexSkel};
use crate::features::Features;
use crate::rules::Uses;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("opening the embedded BPF object failed: {0}")]
    Open(#[source] libbpf_rs::Error),
    #[error("{}", explain_load(.source, .log))]
    Load {
        source: libbpf_rs::Error,
        /// What libbpf printed while loading, including the verifier log.
        log: String,
    },
    #[error("attaching {program} to {hook} failed: {source}{}", attach_hint(.source))]
    Attach {
        program: &'static str,
        hook: String,
        source: libbpf_rs::Error,
    },
    #[error("writing the {map} map failed: {source}")]
    Map {
        map: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("{0}")]
    Unavailable(String),
}

fn explain_load(source: &libbpf_rs::Error, log: &str) -> String {
    let verifier = log.contains("-- BEGIN PROG LOAD LOG --");
    let mut text = if verifier {
        let program = log
            .lines()
            .find_map(|l| l.strip_prefix("libbpf: prog '")?.split('\'').next())
            .unwrap_or("?");
        format!(
            "the kernel's verifier rejected reflex's program '{program}' ({source}): \
             this is a bug in reflex for this kernel; please report it with the log below"
        )
    } else {
        format!("the kernel refused reflex's BPF programs: {source}")
    };
    if !verifier && source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
        text.push_str(
            "\n  Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root. \
             If you are root, kernel lockdown or a security module may forbid BPF; \
             `reflex check` says which.",
        );
    }
    let log = log.trim();
    if !log.is_empty() {
        text.push_str("\n  libbpf and verifier log:\n");
        for line in log.lines() {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn attach_hint(source: &libbpf_rs::Error) -> &'static str {
    match source.kind() {
        libbpf_rs::ErrorKind::NotFound => {
            " (is tracefs mounted? `mount -t tracefs tracefs /sys/kernel/tracing`; \
             does the kernel have CONFIG_FTRACE_SYSCALLS?)"
        }
        libbpf_rs::ErrorKind::PermissionDenied if nix::unistd::geteuid().is_root() => {
            " (refused although reflex runs as root: the kernel refuses a program for a \
             tracepoint whose record is shorter than what it reads, a bug in reflex for this \
             kernel; please report it)"
        }
        libbpf_rs::ErrorKind::PermissionDenied => " (attaching needs CAP_PERFMON or root)",
        _ => "",
    }
}

/// Why a map write failed, naming the map.
pub(super) fn map_err(map: &'static str) -> impl Fn(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Map { map, source }
}

/// Opens the object with `settings` written in, only `programs` to load,
/// and their evaluation verified for rule sets that use `uses`.
fn open_object<'a>(
    storage: &'a mut MaybeUninit<OpenObject>,
    settings: &Settings,
    features: &Features,
    programs: &[&str],
    uses: Uses,
) -> Result<skel::OpenReflexSkel<'a>, LoadError> {
    // The kernel's BTF cut to what the relocations need: libbpf's search
    // for each relocated type's candidates then walks a few thousand types,
    // not all of the kernel's.
    let core = features.core_btf(crate::abi::CORE_ROOTS, crate::abi::CORE_RELO_KINDS);
    crate::timings::mark("kernel BTF cut for CO-RE");
    let mut open = open_skel(storage, core).map_err(LoadError::Open)?;
    open.maps
        .events
        .set_max_entries(settings.ring_buffer_bytes)
        .map_err(map_err("events"))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("reflex.bpf.c has const volatile globals");
    rodata.reflex_tgid = std::process::id();
    rodata.helper_tgid = settings.helper_tgid;
    rodata.ancestor_helper = features.ancestor_helper();
    rodata.scope_ppid = settings.scope_ppid;
    rodata.scope_tree = settings.scope_tree;
    rodata.describe = settings.describe;
    // Kill and ptrace events name their target's comm and executable where
    // the tracepoint evaluator can look the task up: the task kfuncs of 6.13
    // (bpf_send_signal_task's release), where every program kind may call
    // them. By the version, not the BTF: parsing the kernel's BTF once more
    // costs a start ~20 ms here and seconds under emulation; a kernel
    // without the functions resolves them to nothing (bpf_ksym_exists).
    rodata.task_kfuncs = crate::features::task_kfuncs();
    rodata.eval_dims = uses.dims;
    rodata.eval_uses = uses.features;
    rodata.wake_at = if settings.wake_every_event {
        0
    } else {
        u64::from(settings.ring_buffer_bytes / 8)
    };
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let load = programs.contains(&name.as_str());
        prog.set_autoload(load);
        if load && crate::timings::enabled() {
            // The verifier's statistics: its time and instruction count.
            prog.set_log_level(4);
        }
    }
    Ok(open)
}

/// The object opened, its CO-RE relocations to be made against `core` or,
/// without it, all of the kernel's BTF.
fn open_skel<'a>(
    storage: &'a mut MaybeUninit<OpenObject>,
    core: Option<&crate::features::CoreBtf>,
) -> Result<skel::OpenReflexSkel<'a>, libbpf_rs::Error> {
    let Some(core) = core else {
        return skel::ReflexSkelBuilder::default().open(storage);
    };
    let path = std::ffi::CString::new(core.path()).expect("a path without NUL");
    let opts = libbpf_rs::libbpf_sys::bpf_object_open_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_object_open_opts>() as _,
        btf_custom_path: path.as_ptr(),
        ..Default::default()
    };
    // libbpf copies the path.
    skel::ReflexSkelBuilder::default().open_opts(opts, storage)
}

/// Every program of the object as libbpf relocates it for this kernel, by
/// name: its instructions, relocated against the kernel's BTF cut for CO-RE
/// (`cut`) or against all of it. What tests/identity.rs compares. Nothing is
/// loaded: libbpf's prepare step creates the maps and relocates.
pub fn relocated(features: &Features, cut: bool) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let core = match cut {
        true => Some(
            features
                .core_btf(crate::abi::CORE_ROOTS, crate::abi::CORE_RELO_KINDS)
                .ok_or("the kernel's BTF could not be cut for CO-RE (reflex -v says why)")?,
        ),
        false => None,
    };
    let mut storage = MaybeUninit::uninit();
    let mut open = open_skel(&mut storage, core).map_err(|e| e.to_string())?;
    let object = open.open_object_mut();
    // SAFETY: an opened object, prepared once, read only after.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_object__prepare(
            libbpf_rs::AsRawLibbpf::as_libbpf_object(object).as_ptr(),
        )
    };
    if ret != 0 {
        return Err(format!(
            "preparing the object: {}",
            std::io::Error::from_raw_os_error(-ret)
        ));
    }
    // A map is named in an instruction by its descriptor, which differs
    // between two preparations (another thread may open files between
    // them): by its place in the object instead.
    let maps: std::collections::HashMap<i32, u32> = object
        .maps()
        .enumerate()
        .map(|(i, m)| {
            let map = libbpf_rs::AsRawLibbpf::as_libbpf_object(&m).as_ptr();
            // SAFETY: a map of the prepared object.
            (unsafe { libbpf_rs::libbpf_sys::bpf_map__fd(map) }, i as u32)
        })
        .collect();
    Ok(object
        .progs()
        .map(|p| {
            let insns = p.insns();
            // SAFETY: plain 8-byte instructions, read as bytes.
            let mut bytes = unsafe {
                std::slice::from_raw_parts(
                    insns.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(insns),
                )
            }
            .to_vec();
            for insn in bytes.chunks_exact_mut(8) {
                // BPF_LD | BPF_IMM | BPF_DW with BPF_PSEUDO_MAP_FD or
                // BPF_PSEUDO_MAP_VALUE: the map's descriptor in `imm`.
                if insn[0] == 0x18 && matches!(insn[1] >> 4, 1 | 2) {
                    let fd = i32::from_ne_bytes(insn[4..8].try_into().expect("4 bytes"));
                    let place = maps.get(&fd).copied().unwrap_or(u32::MAX);
                    insn[4..8].copy_from_slice(&place.to_ne_bytes());
                }
            }
            (p.name().to_string_lossy().into_owned(), bytes)
        })
        .collect())
}

/// The main object, with what every kind of attachment needs to load its
/// own programs.
pub(super) struct Objects<'obj> {
    /// The maps every program shares, and the tracepoint programs.
    pub main: ReflexSkel<'obj>,
    pub settings: Settings,
    pub features: Arc<Features>,
    /// The evaluator that handles every rule set, once a set has needed
    /// more than the main object's handles.
    pub wide_eval: Option<Extra>,
}

/// Programs loaded only when a rule set first needs them, in an instance of
/// the object of their own that shares every map with the main one. Loaded
/// once for the life of the process.
pub(super) struct Extra {
    pub skel: ReflexSkel<'static>,
}

impl Extra {
    /// Runs of its programs the kernel skipped ([`recursion_misses`]), by
    /// program.
    pub fn missed(&self) -> Vec<(String, u64)> {
        missed(self.skel.object())
    }
}

/// Runs of `object`'s loaded programs the kernel skipped, by program.
pub(super) fn missed(object: &libbpf_rs::Object) -> Vec<(String, u64)> {
    object
        .progs()
        .filter(|p| p.autoload())
        .map(|p| {
            (
                p.name().to_string_lossy().into_owned(),
                recursion_misses(p.as_fd()),
            )
        })
        .collect()
}

impl<'obj> Objects<'obj> {
    /// Loads the main object with `programs`, their evaluation for rule
    /// sets that use `uses`.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        settings: &Settings,
        features: Arc<Features>,
        programs: &[&str],
        uses: Uses,
    ) -> Result<Objects<'obj>, LoadError> {
        let open = open_object(storage, settings, &features, programs, uses)?;
        crate::timings::mark("object opened");
        let main = with_libbpf_log(|| open.load())
            .map_err(|(source, log)| LoadError::Load { source, log })?;
        crate::timings::mark("object loaded (kernel BTF, maps, programs)");
        Ok(Objects {
            main,
            settings: *settings,
            features,
            wide_eval: None,
        })
    }

    /// Loads `programs` in a second instance of the object that uses the
    /// main one's maps, able to answer any rule set.
    pub fn load_extra(&self, programs: &[&str]) -> Result<Extra, LoadError> {
        let btf = programs
            .iter()
            .any(|p| p.starts_with("reflex_raw") || super::attach::FOLLOWER_PROGRAMS.contains(p));
        if let (true, Some(why)) = (btf, self.features.tp_btf().refused()) {
            return Err(LoadError::Unavailable(format!(
                "{} cannot load here (tp_btf programs are refused: {why}), so the raw syscall \
                 hook and the following of protected executables and cgroups are unavailable",
                programs.join(", ")
            )));
        }
        // Loaded once for the life of the process; the storage lives as long.
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = open_object(storage, &self.settings, &self.features, programs, Uses::ALL)?;
        for mut map in open.open_object_mut().maps_mut() {
            let name = map.name().to_os_string();
            // This instance's own .rodata and .bss, which libbpf names
            // after the object ("reflex_b.rodata"): a map declared in C has
            // no dot in its name.
            if name.to_string_lossy().contains('.') {
                continue;
            }
            if let Some(shared) = self.main.object().maps().find(|m| m.name() == name) {
                map.reuse_fd(shared.as_fd())
                    .map_err(map_err("shared maps"))?;
            }
        }
        let skel = with_libbpf_log(|| open.load())
            .map_err(|(source, log)| LoadError::Load { source, log })?;
        crate::timings::mark("programs loaded");
        Ok(Extra { skel })
    }
}

/// A loaded program's `recursion_misses` (0 where the kernel has no such count).
pub(crate) fn recursion_misses(prog: BorrowedFd<'_>) -> u64 {
    use libbpf_rs::libbpf_sys;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a plain C struct of `len` bytes, which is all the
    // kernel writes.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(prog.as_raw_fd(), (&raw mut info).cast(), &mut len)
    };
    if ret == 0 { info.recursion_misses } else { 0 }
}

/// libbpf's messages while `f` runs (the verifier log among them), returned
/// with `f`'s error; at other times they go to `tracing` at debug level.
///
/// The signals reflex handles are blocked meanwhile: the verifier gives up
/// with EAGAIN when a signal arrives during a long verification (SIGHUPs
/// sent in quick succession would make a reload fail). They are delivered
/// when `f` returns.
pub(super) fn with_libbpf_log<T>(
    f: impl FnOnce() -> Result<T, libbpf_rs::Error>,
) -> Result<T, (libbpf_rs::Error, String)> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut handled = SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        handled.add(sig);
    }
    let mut before = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled), Some(&mut before)).is_ok();
    let result = capture_libbpf_log(f);
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    result
}

fn capture_libbpf_log<T>(
    f: impl FnOnce() -> Result<T, libbpf_rs::Error>,
) -> Result<T, (libbpf_rs::Error, String)> {
    static CAPTURED: Mutex<Option<String>> = Mutex::new(None);
    fn capture(level: PrintLevel, msg: String) {
        let mut captured = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
        match captured.as_mut() {
            Some(buf) => buf.push_str(&msg),
            None => tracing::debug!(target: "libbpf", ?level, "{}", msg.trim_end()),
        }
    }
    *CAPTURED.lock().unwrap_or_else(|e| e.into_inner()) = Some(String::new());
    // With --timings, the verifier's statistics come at libbpf's debug level.
    let level = match crate::timings::enabled() {
        true => PrintLevel::Debug,
        false => PrintLevel::Info,
    };
    libbpf_rs::set_print(Some((level, capture)));
    let result = f();
    let log = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    if result.is_ok() && crate::timings::enabled() {
        for section in log.split("-- END PROG LOAD LOG --") {
            if let Some((head, body)) = section.split_once("-- BEGIN PROG LOAD LOG --") {
                let name = head
                    .rsplit("prog '")
                    .next()
                    .and_then(|r| r.split('\'').next());
                crate::timings::verifier_log(name.unwrap_or("?"), body);
            }
        }
    }
    result.map_err(|e| (e, log))
}
