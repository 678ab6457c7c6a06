//! What this kernel lets reflex do, found by looking (capabilities, files
//! under /sys, the kernel's BTF) and by loading tiny programs
//! (`bpf/probe.bpf.c`). Everything that decides reads one [`Features`]
//! value: `check` prints it, `validate` and `run` refuse or degrade rules by
//! it, the loader picks programs by it, and a reload asks it again without
//! probing again.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapType, ProgramType};
use nix::errno::Errno;

pub mod btf;
mod btf_types;

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/probe.skel.rs"));
}

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";
const SECURITYFS: &str = "/sys/kernel/security";

const CAP_KILL: u32 = 5;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capabilities that matter for BPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    pub uid: u32,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
    /// Signals to other users' processes from user space (the SIGCONT that
    /// ends a pause).
    pub cap_kill: bool,
}

impl Privileges {
    pub fn current() -> Privileges {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
        Privileges {
            uid: nix::unistd::geteuid().as_raw(),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_kill: has(CAP_KILL),
        }
    }

    /// Enough to load and attach tracing programs and send signals from them.
    pub fn can_load(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    /// What is missing, in words, or None when enough is there.
    pub fn missing(&self) -> Option<String> {
        if self.can_load() {
            return None;
        }
        let mut lacking = Vec::new();
        if !self.cap_bpf {
            lacking.push("CAP_BPF");
        }
        if !self.cap_perfmon {
            lacking.push("CAP_PERFMON");
        }
        Some(format!(
            "uid {} lacks {} (and CAP_SYS_ADMIN, which would cover both)",
            self.uid,
            lacking.join(" and ")
        ))
    }
}

/// Kernel release, e.g. `6.18.44`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// (major, minor) of the running kernel.
/// Whether every program kind may call the task kfuncs (bpf_task_from_pid):
/// Linux 6.13 or newer, by the version (no BTF to parse at start).
pub fn task_kfuncs() -> bool {
    kernel_version().is_some_and(|v| v >= (6, 13))
}

pub fn kernel_version() -> Option<(u32, u32)> {
    parse_version(&kernel_release())
}

fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn has_btf() -> bool {
    Path::new(BTF_PATH).exists()
}

/// Where the tracing filesystem is, mounting it at /sys/kernel/tracing when
/// it is nowhere (libbpf needs it to attach tracepoints). `Ok((path, true))`
/// when this call mounted it.
pub fn tracefs(mount_if_absent: bool) -> io::Result<(PathBuf, bool)> {
    // libbpf prefers debugfs' tracing folder when it exists.
    for dir in [DEBUGFS_TRACING, TRACEFS] {
        if Path::new(dir).join("events").is_dir() {
            return Ok((dir.into(), false));
        }
    }
    if !mount_if_absent {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "tracefs is not mounted",
        ));
    }
    mount_fs("tracefs", TRACEFS)?;
    Ok((TRACEFS.into(), true))
}

/// The kernel's name for a syscall's tracepoint, where it differs from the
/// syscall's (the tracepoint is named after the kernel function).
pub fn tracepoint_name(syscall: &str) -> &str {
    match syscall {
        "umount2" => "umount",
        other => other,
    }
}

/// The number of arguments the kernel's `syscalls/sys_enter_<name>`
/// tracepoint records, or None when there is no such tracepoint (the syscall
/// is not built into this kernel, or has no tracepoint).
pub fn syscall_tracepoint(tracefs: &Path, syscall: &str) -> Option<u8> {
    let format = tracefs
        .join("events/syscalls")
        .join(format!("sys_enter_{}", tracepoint_name(syscall)))
        .join("format");
    recorded_args(&fs::read_to_string(format).ok()?)
}

/// The arguments a sys_enter tracepoint's format describes: the 8-byte
/// fields that follow `__syscall_nr`, one after another from offset 16.
/// Newer kernels (7.3 in the matrix; not 6.18) append the user strings an
/// argument points to (`__data_loc char[] __filename_val`): those are not
/// arguments, and a program that reads as far as their offset is refused at
/// attach (EACCES).
fn recorded_args(format: &str) -> Option<u8> {
    let after_nr = format.split("__syscall_nr;").nth(1)?;
    let mut n = 0u8;
    for field in after_nr
        .lines()
        .filter(|l| l.trim_start().starts_with("field:"))
    {
        let at = |key: &str| {
            field
                .split(';')
                .find_map(|part| part.trim().strip_prefix(key)?.parse::<u32>().ok())
        };
        if at("offset:") != Some(16 + 8 * u32::from(n)) || at("size:") != Some(8) {
            break;
        }
        n += 1;
    }
    Some(n)
}

fn mount_fs(fstype: &str, at: &str) -> io::Result<()> {
    use nix::mount::{MsFlags, mount};
    mount(
        Some(fstype),
        at,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("mount -t {fstype} {fstype} {at}: {e}")))
}

/// A file under securityfs, mounting securityfs if needed and allowed.
fn securityfs_file(name: &str, mount_if_absent: bool) -> Option<String> {
    let path = Path::new(SECURITYFS).join(name);
    if !path.exists() && mount_if_absent && !Path::new(SECURITYFS).join("lsm").exists() {
        let _ = mount_fs("securityfs", SECURITYFS);
    }
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The active LSMs in order, e.g. `lockdown,capability,bpf`.
pub fn lsm_list(mount_if_absent: bool) -> Option<String> {
    securityfs_file("lsm", mount_if_absent)
}

/// The lockdown mode in force: `none`, `integrity` or `confidentiality`.
pub fn lockdown(mount_if_absent: bool) -> Option<String> {
    let text = securityfs_file("lockdown", mount_if_absent)?;
    text.split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']).to_string())
}

/// The answer of a probe that asks the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No(String),
    /// The kernel could not be asked (usually: not privileged).
    Unknown(String),
}

impl Answer {
    pub fn yes(&self) -> bool {
        *self == Answer::Yes
    }

    /// Why not, when the answer is not yes.
    pub fn refused(&self) -> Option<&str> {
        match self {
            Answer::Yes => None,
            Answer::No(why) | Answer::Unknown(why) => Some(why),
        }
    }
}

/// What this kernel and this process may do, probed once: each question is
/// asked of the kernel the first time something needs the answer (some load
/// a program, some parse megabytes of BTF, some need privileges that
/// `validate` does not have), and answered from here ever after.
#[derive(Debug, Default)]
pub struct Features {
    privileges: OnceLock<Privileges>,
    ringbuf: OnceLock<Answer>,
    send_signal: OnceLock<Answer>,
    send_signal_thread: OnceLock<Answer>,
    signal_task: OnceLock<Answer>,
    tp_btf: OnceLock<Answer>,
    lsm: OnceLock<Answer>,
    fentry: OnceLock<Answer>,
    ancestor_helper: OnceLock<bool>,
    bpf_hook_kernel_flag: OnceLock<bool>,
    identity: OnceLock<IdentityFields>,
    core_btf: OnceLock<Option<CoreBtf>>,
    kernel_btf: std::sync::Mutex<Option<Arc<btf::Kernel>>>,
}

/// The kernel's BTF cut to what an object's CO-RE relocations need
/// ([`btf::core_subset`]), in a memory file libbpf reads as the object's
/// target BTF.
#[derive(Debug)]
pub struct CoreBtf {
    file: std::fs::File,
    /// Its size in bytes.
    pub bytes: usize,
}

impl CoreBtf {
    /// Where libbpf can open it.
    pub fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }
}

/// What the kernel lets an event say about a process, past what every
/// supported kernel has (from its BTF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityFields {
    /// bpf_task_pt_regs (5.15+): an exec hook reads the new argv from the
    /// syscall's registers.
    pub exec_argv: bool,
    /// task_struct.loginuid (CONFIG_AUDIT): `auid`.
    pub login_uid: bool,
}

impl Features {
    pub fn new() -> Features {
        Features::default()
    }

    /// The effective capabilities that matter for BPF.
    pub fn privileges(&self) -> Privileges {
        *self.privileges.get_or_init(Privileges::current)
    }

    /// A BPF ring buffer for events (5.8+).
    pub fn ringbuf(&self) -> &Answer {
        self.ringbuf.get_or_init(ringbuf)
    }

    /// bpf_send_signal (5.3+): signalling the calling process.
    pub fn send_signal(&self) -> &Answer {
        self.send_signal.get_or_init(send_signal)
    }

    /// bpf_send_signal_thread (5.5+): signalling the calling thread only.
    pub fn send_signal_thread(&self) -> &Answer {
        self.send_signal_thread.get_or_init(send_signal_thread)
    }

    /// The kfuncs that signal another task (6.13+), from the kernel's BTF.
    pub fn signal_task(&self) -> &Answer {
        self.signal_task.get_or_init(signal_task)
    }

    /// tp_btf programs: the raw syscall hook and the protected-set followers.
    pub fn tp_btf(&self) -> &Answer {
        self.tp_btf.get_or_init(|| program(ProgramKind::TpBtf))
    }

    /// BPF-LSM: `bpf` in the LSM list and an LSM program that attaches.
    pub fn lsm(&self) -> &Answer {
        self.lsm.get_or_init(lsm)
    }

    /// fentry programs (BPF trampolines).
    pub fn fentry(&self) -> &Answer {
        self.fentry.get_or_init(|| program(ProgramKind::Fentry))
    }

    /// Tracepoint programs may call bpf_get_current_ancestor_cgroup_id.
    pub fn ancestor_helper(&self) -> bool {
        *self.ancestor_helper.get_or_init(ancestor_helper)
    }

    /// What events can say about a process on this kernel.
    pub fn identity(&self) -> IdentityFields {
        *self.identity.get_or_init(identity_fields)
    }

    /// The running kernel's BTF, mapped and walked: once until
    /// [`Features::forget_kernel_btf`].
    pub fn kernel_btf(&self) -> std::io::Result<Arc<btf::Kernel>> {
        let mut held = self.kernel_btf.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = held.as_ref() {
            return Ok(Arc::clone(k));
        }
        let k = Arc::new(btf::Kernel::open()?);
        *held = Some(Arc::clone(&k));
        Ok(k)
    }

    /// Lets go of the kernel's BTF (5 MB mapped); whatever needs it next
    /// maps it again.
    pub fn forget_kernel_btf(&self) {
        *self.kernel_btf.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The kernel's BTF cut to what CO-RE relocations relative to `roots`
    /// need, for relocations of the kinds in `kinds` (one bit each); made
    /// once, for the first object that asks (reflex has one). None where it
    /// cannot serve: libbpf then searches the whole of the kernel's BTF.
    /// The cut is the last thing start-up asks of the kernel's BTF: it is let
    /// go here, before libbpf maps and indexes a copy of its own.
    pub fn core_btf(&self, roots: &[&str], kinds: u32) -> Option<&CoreBtf> {
        self.core_btf
            .get_or_init(|| {
                let cut = core_btf(self, roots, kinds);
                self.forget_kernel_btf();
                cut
            })
            .as_ref()
    }

    /// The `bpf` LSM hook has 6.15's `kernel` flag.
    pub fn bpf_hook_kernel_flag(&self) -> bool {
        *self
            .bpf_hook_kernel_flag
            .get_or_init(bpf_hook_has_kernel_flag)
    }
}

fn from_supported(r: Result<bool, libbpf_rs::Error>, what: &str) -> Answer {
    match r {
        Ok(true) => Answer::Yes,
        Ok(false) => Answer::No(format!("this kernel has no {what}")),
        Err(e) => Answer::Unknown(e.to_string()),
    }
}

fn ringbuf() -> Answer {
    from_supported(MapType::RingBuf.is_supported(), "BPF ring buffer (5.8+)")
}

fn send_signal() -> Answer {
    from_supported(
        ProgramType::Tracepoint.is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_send_signal),
        "bpf_send_signal helper (5.3+)",
    )
}

fn send_signal_thread() -> Answer {
    from_supported(
        ProgramType::Tracepoint
            .is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_send_signal_thread),
        "bpf_send_signal_thread helper (5.5+)",
    )
}

/// Which of the probe object's programs to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProgramKind {
    /// BPF-LSM (`lsm/file_open`), loaded and attached.
    Lsm,
    /// fentry (`fentry/vfs_read`), loaded and attached.
    Fentry,
    /// BTF-typed raw tracepoint (`tp_btf/sys_enter`), loaded and attached.
    TpBtf,
}

/// Loads (and attaches, then at once detaches) one tiny program of `kind`.
/// The programs return at once and decide nothing.
fn program(kind: ProgramKind) -> Answer {
    let mut storage = MaybeUninit::uninit();
    let mut open = match skel::ProbeSkelBuilder::default().open(&mut storage) {
        Ok(open) => open,
        Err(e) => return Answer::Unknown(format!("opening the probe object: {e}")),
    };
    let prog = match kind {
        ProgramKind::Lsm => &mut open.progs.probe_lsm,
        ProgramKind::Fentry => &mut open.progs.probe_fentry,
        ProgramKind::TpBtf => &mut open.progs.probe_tp_btf,
    };
    prog.set_autoload(true);
    let skel = match quiet(|| open.load()) {
        Ok(skel) => skel,
        Err(e) => return refused("load", &e),
    };
    let attached = match kind {
        ProgramKind::Lsm => skel.progs.probe_lsm.attach(),
        ProgramKind::Fentry => skel.progs.probe_fentry.attach(),
        ProgramKind::TpBtf => skel.progs.probe_tp_btf.attach(),
    };
    match attached {
        Ok(_link) => Answer::Yes,
        Err(e) => refused("attach", &e),
    }
}

/// Whether an fentry program loads on `function` (a program that does
/// nothing, loaded and closed at once: the kernel refuses fentry at load
/// where it refuses it at all). Cheaper than [`Features::fentry`], which
/// loads an object (libbpf parses the kernel's BTF for it) and attaches.
pub fn fentry_loads(function: btf::Function) -> Result<(), String> {
    use libbpf_rs::libbpf_sys;
    // r0 = 0; exit
    let mut insns = [
        libbpf_sys::bpf_insn::default(),
        libbpf_sys::bpf_insn::default(),
    ];
    insns[0].code = (libbpf_sys::BPF_ALU64 | libbpf_sys::BPF_MOV | libbpf_sys::BPF_K) as u8;
    insns[1].code = (libbpf_sys::BPF_JMP | libbpf_sys::BPF_EXIT) as u8;
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type: libbpf_sys::BPF_TRACE_FENTRY,
        attach_btf_id: function.id,
        ..Default::default()
    };
    // SAFETY: valid name, license and two instructions; the descriptor is
    // closed below.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_TRACING,
            c"reflex_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            2,
            &mut opts,
        )
    };
    if fd < 0 {
        let e = Errno::from_raw(-fd);
        return Err(format!("fentry load refused with {e:?} ({})", e.desc()));
    }
    // SAFETY: our own new descriptor.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    Ok(())
}

/// Whether the kernel has these kfuncs (its BTF names the functions). The
/// kernel's BTF is a few megabytes to parse: ask for all names at once.
pub fn kfuncs(names: &[&str]) -> bool {
    libbpf_rs::btf::Btf::from_vmlinux().ok().is_some_and(|btf| {
        names.iter().all(|name| {
            btf.type_by_name::<libbpf_rs::btf::types::Func<'_>>(name)
                .is_some()
        })
    })
}

/// Whether the kernel's `bpf` LSM hook has the `kernel` flag of Linux 6.15
/// (`bpf_lsm_bpf(cmd, attr, size, kernel)`): its programs find `ret` one
/// argument further.
fn bpf_hook_has_kernel_flag() -> bool {
    use libbpf_rs::btf::ReferencesType;
    use libbpf_rs::btf::types::{Func, FuncProto};
    libbpf_rs::btf::Btf::from_vmlinux().ok().is_some_and(|btf| {
        btf.type_by_name::<Func<'_>>("bpf_lsm_bpf")
            .and_then(|f| FuncProto::try_from(f.referenced_type()).ok())
            .is_some_and(|proto| proto.len() >= 4)
    })
}

fn core_btf(features: &Features, roots: &[&str], kinds: u32) -> Option<CoreBtf> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    if kinds & !btf::CORE_SUBSET_KINDS != 0 {
        tracing::debug!(
            "the object has CO-RE relocations of kinds {kinds:#x}; the kernel's BTF is cut \
             only for {:#x}: libbpf searches all of it",
            btf::CORE_SUBSET_KINDS
        );
        return None;
    }
    let blob = match features
        .kernel_btf()
        .map(|k| btf::core_subset(k.types(), roots))
    {
        Ok(Some(blob)) => blob,
        Ok(None) => {
            tracing::debug!(
                "a CO-RE root type is not in the kernel's BTF: libbpf searches all of it"
            );
            return None;
        }
        Err(e) => {
            tracing::debug!(
                "the kernel's BTF could not be cut for CO-RE ({e}): libbpf searches all of it"
            );
            return None;
        }
    };
    // SAFETY: memfd_create(2) with a NUL-terminated name; the descriptor is
    // ours.
    let fd = unsafe { libc::memfd_create(c"reflex-core-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        tracing::debug!("memfd_create: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: just created, owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&blob).ok()?;
    Some(CoreBtf {
        file,
        bytes: blob.len(),
    })
}

fn identity_fields() -> IdentityFields {
    use libbpf_rs::btf::types::{Enum, Struct};
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return IdentityFields::default();
    };
    let exec_argv = btf
        .type_by_name::<Enum<'_>>("bpf_func_id")
        .is_some_and(|e| {
            e.iter()
                .any(|v| v.name.is_some_and(|n| n == "BPF_FUNC_task_pt_regs"))
        });
    let login_uid = btf
        .type_by_name::<Struct<'_>>("task_struct")
        .is_some_and(|t| t.iter().any(|m| m.name.is_some_and(|n| n == "loginuid")));
    IdentityFields {
        exec_argv,
        login_uid,
    }
}

/// Whether rules may signal other tasks: bpf_task_from_pid and
/// bpf_send_signal_task (6.13+).
fn signal_task() -> Answer {
    if kfuncs(&[
        "bpf_send_signal_task",
        "bpf_task_from_pid",
        "bpf_task_release",
    ]) {
        Answer::Yes
    } else {
        Answer::No("the kernel has no bpf_send_signal_task kfunc (Linux 6.13+)".into())
    }
}

/// Whether tracepoint programs may call bpf_get_current_ancestor_cgroup_id
/// (5.10 does not let them: reflex then reads the ancestors itself). When
/// the kernel cannot be asked, the helper is assumed.
fn ancestor_helper() -> bool {
    // SAFETY: a plain query; no options.
    let r = unsafe {
        libbpf_rs::libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_rs::libbpf_sys::BPF_PROG_TYPE_TRACEPOINT,
            libbpf_rs::libbpf_sys::BPF_FUNC_get_current_ancestor_cgroup_id,
            std::ptr::null(),
        )
    };
    r != 0
}

/// Whether BPF-LSM programs can enforce here: `bpf` in the active LSM list
/// and a tiny LSM program that loads and attaches.
fn lsm() -> Answer {
    if let Some(list) = lsm_list(true) {
        if !list.split(',').any(|l| l == "bpf") {
            return Answer::No(format!(
                "'bpf' is not in the active LSM list ({list}); boot with lsm={list},bpf"
            ));
        }
    }
    match program(ProgramKind::Lsm) {
        Answer::No(why) => Answer::No(match lockdown(true) {
            Some(mode) if mode != "none" => {
                format!("LSM program {why}; kernel lockdown is '{mode}'")
            }
            _ => format!("LSM program {why}"),
        }),
        other => other,
    }
}

fn refused(step: &str, e: &libbpf_rs::Error) -> Answer {
    let errno = errno_of(e);
    let text = match errno {
        Some(n) => format!(
            "{step} refused with {:?} ({})",
            Errno::from_raw(n),
            Errno::from_raw(n).desc()
        ),
        None => format!("{step} failed: {e}"),
    };
    Answer::No(text)
}

/// The errno inside a libbpf-rs error, when there is one.
pub fn errno_of(e: &libbpf_rs::Error) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        source = err.source();
    }
    let text = e.to_string();
    let n = text.rsplit_once("(os error ")?.1.trim_end_matches(')');
    n.parse().ok()
}

/// Runs `f` with libbpf's own printing silenced (probes expect refusals).
fn quiet<T>(f: impl FnOnce() -> T) -> T {
    let previous = libbpf_rs::set_print(None);
    let r = f();
    libbpf_rs::set_print(previous);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_arguments_are_the_fields_before_any_user_string() {
        let fields = |rows: &[&str]| {
            let mut text = String::from(
                "name: sys_enter_x\nformat:\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n",
            );
            for r in rows {
                text.push_str(&format!("\t{r}\n"));
            }
            text + "\nprint fmt: \"...\"\n"
        };
        // 6.18 and older: the arguments only.
        let read = fields(&[
            "field:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;",
            "field:char * buf;\toffset:24;\tsize:8;\tsigned:0;",
            "field:size_t count;\toffset:32;\tsize:8;\tsigned:0;",
        ]);
        assert_eq!(recorded_args(&read), Some(3));
        // Newer kernels (7.3): the string an argument points to, after them.
        let execve = fields(&[
            "field:const char * filename;\toffset:16;\tsize:8;\tsigned:0;",
            "field:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;",
            "field:const char *const * envp;\toffset:32;\tsize:8;\tsigned:0;",
            "field:__data_loc char[] __filename_val;\toffset:40;\tsize:4;\tsigned:0;",
        ]);
        assert_eq!(recorded_args(&execve), Some(3));
        assert_eq!(recorded_args(&fields(&[])), Some(0));
        assert_eq!(recorded_args("no such format"), None);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_version("5.10.0-30-amd64"), Some((5, 10)));
        assert_eq!(parse_version("weird"), None);
    }

    #[test]
    fn privileges_explain_what_is_missing() {
        let none = Privileges {
            uid: 1000,
            cap_bpf: false,
            cap_perfmon: false,
            cap_sys_admin: false,
            cap_kill: false,
        };
        assert!(!none.can_load());
        assert_eq!(
            none.missing().unwrap(),
            "uid 1000 lacks CAP_BPF and CAP_PERFMON (and CAP_SYS_ADMIN, which would cover both)"
        );
        let split = Privileges {
            cap_bpf: true,
            cap_perfmon: true,
            ..none
        };
        assert!(split.can_load());
        assert_eq!(split.missing(), None);
        let admin = Privileges {
            cap_sys_admin: true,
            ..none
        };
        assert!(admin.can_load());
    }
}
