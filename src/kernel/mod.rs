//! Stage 3 — maps and kernel programs: load the BPF object, write the compiled
//! rules into it, attach, and hand out its event stream and counters.
//!
//! Dropping [`Kernel`] detaches every program: enforcement lives exactly as
//! long as the reflex process that loaded it (nothing is pinned).

use std::mem::MaybeUninit;
use std::sync::Mutex;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject, PrintLevel};

use crate::policy::Target;
use crate::rules::Compiled;

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/reflex.skel.rs"));
}

/// The kernel/user boundary types, generated from `bpf/reflex.h` via BTF.
pub use skel::types;

/// Sums of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub matched: u64,
    pub signalled: u64,
    pub failed: u64,
    pub would_signal: u64,
    pub skipped: u64,
    /// Events the kernel could not reserve room for in the ring buffer.
    pub dropped: u64,
}

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
        hook: &'static str,
        source: libbpf_rs::Error,
    },
    #[error("setting up the {map} map failed: {source}")]
    Map {
        map: &'static str,
        source: libbpf_rs::Error,
    },
}

fn explain_load(source: &libbpf_rs::Error, log: &str) -> String {
    let mut text = format!("the kernel refused reflex's BPF programs: {source}");
    if source.kind() == libbpf_rs::ErrorKind::PermissionDenied {
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
        libbpf_rs::ErrorKind::PermissionDenied => " (attaching needs CAP_PERFMON or root)",
        _ => "",
    }
}

/// How the kernel side is sized; not part of any rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Size of the event ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ring_buffer_bytes: 256 * 1024,
        }
    }
}

/// reflex's programs, loaded and attached.
pub struct Kernel<'obj> {
    skel: skel::ReflexSkel<'obj>,
}

impl<'obj> Kernel<'obj> {
    /// Loads the object with `rules` baked in; nothing runs until [`attach`].
    /// Nothing stays loaded if any step fails.
    ///
    /// [`attach`]: Kernel::attach
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        rules: &Compiled,
        settings: &Settings,
    ) -> Result<Kernel<'obj>, LoadError> {
        let mut open = skel::ReflexSkelBuilder::default()
            .open(storage)
            .map_err(LoadError::Open)?;
        open.maps
            .events
            .set_max_entries(settings.ring_buffer_bytes)
            .map_err(|source| LoadError::Map {
                map: "events",
                source,
            })?;
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .expect("reflex.bpf.c has const volatile globals");
        rodata.target_ppid = rules.target_ppid;
        rodata.signal_nr = rules.signal.number();
        rodata.target = match rules.target {
            Target::Process => types::reflex_target::REFLEX_TARGET_PROCESS.0 as u8,
            Target::Thread => types::reflex_target::REFLEX_TARGET_THREAD.0 as u8,
        };
        rodata.dry_run = rules.dry_run;
        rodata.reflex_tgid = std::process::id();

        let skel = with_libbpf_log(|| open.load())
            .map_err(|(source, log)| LoadError::Load { source, log })?;
        let kernel = Kernel { skel };
        for pid in &rules.protect {
            kernel
                .skel
                .maps
                .protected_pids
                .update(&pid.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(|source| LoadError::Map {
                    map: "protected_pids",
                    source,
                })?;
        }
        Ok(kernel)
    }

    /// Attaches the programs: from here on, rules are enforced.
    pub fn attach(&mut self) -> Result<(), LoadError> {
        let link = self
            .skel
            .progs
            .reflex_sys_enter_ptrace
            .attach()
            .map_err(|source| LoadError::Attach {
                program: "reflex_sys_enter_ptrace",
                hook: "tp/syscalls/sys_enter_ptrace",
                source,
            })?;
        self.skel.links.reflex_sys_enter_ptrace = Some(link);
        Ok(())
    }

    /// Where the programs are attached, for people to read.
    pub fn hooks(&self) -> Vec<&'static str> {
        let mut hooks = Vec::new();
        if self.skel.links.reflex_sys_enter_ptrace.is_some() {
            hooks.push("tp/syscalls/sys_enter_ptrace");
        }
        hooks
    }

    /// Detaches every program; events already in the ring buffer stay readable.
    pub fn detach(&mut self) {
        self.skel.links = Default::default();
    }

    /// The ring buffer carrying [`types::reflex_event`] records.
    pub fn events_map(&self) -> &dyn MapCore {
        &self.skel.maps.events
    }

    pub fn stats(&self) -> Result<Stats, libbpf_rs::Error> {
        let per_cpu = self
            .skel
            .maps
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        let mut sum = [0u64; types::reflex_stat::REFLEX_STAT_MAX.0 as usize];
        for cpu in per_cpu {
            for (i, total) in sum.iter_mut().enumerate() {
                let at = i * 8;
                if let Some(bytes) = cpu.get(at..at + 8) {
                    *total += u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
                }
            }
        }
        use types::reflex_stat as S;
        let get = |s: S| sum[s.0 as usize];
        Ok(Stats {
            matched: get(S::REFLEX_STAT_MATCHED),
            signalled: get(S::REFLEX_STAT_SIGNALLED),
            failed: get(S::REFLEX_STAT_FAILED),
            would_signal: get(S::REFLEX_STAT_WOULD_SIGNAL),
            skipped: get(S::REFLEX_STAT_SKIPPED),
            dropped: get(S::REFLEX_STAT_DROPPED),
        })
    }
}

/// libbpf's messages while `f` runs (the verifier log among them), returned
/// with `f`'s error; at other times they go to `tracing` at debug level.
fn with_libbpf_log<T>(
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
    libbpf_rs::set_print(Some((PrintLevel::Info, capture)));
    let result = f();
    let log = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default();
    result.map_err(|e| (e, log))
}
