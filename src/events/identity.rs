//! Who, what and where an event names: the strings and numbers the kernel
//! read at the decision (`identity.h`), decoded; and the container a cgroup
//! path names.

use std::time::SystemTime;

use crate::abi::types::{
    reflex_event, reflex_identity as I, reflex_limit as L, reflex_string as S,
};

use super::Clock;

const STRING_MAX: usize = L::REFLEX_STRING_MAX.0 as usize;
const ANCESTORS: usize = L::REFLEX_ANCESTORS.0 as usize;

/// The process that made the call, as the kernel saw it then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Absolute path of its executable (None: a kernel thread, or unread).
    pub exe: Option<String>,
    /// Its command line (the first [`ARGV_BYTES`] bytes of it).
    pub argv: Vec<String>,
    /// When it started, and the same on the boot-time clock (ns): with the
    /// pid, what tells it from a later process given the same pid.
    pub start: Option<SystemTime>,
    pub start_boot_ns: u64,
    pub euid: u32,
    /// Login uid; None when unset (a process not started from a login).
    pub auid: Option<u32>,
    /// Session id.
    pub sid: u32,
    /// Its cgroup v2 path, from the root (`/system.slice/ssh.service`).
    pub cgroup: Option<String>,
    pub container: Option<Container>,
}

/// A process an event names besides the caller: its parent, an ancestor, or
/// the process acted on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relative {
    pub pid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub start: Option<SystemTime>,
}

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The 64 hex digits of the runtime's id.
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman` or `kubernetes` (a pod's
    /// container whose runtime the path does not name).
    pub runtime: &'static str,
}

/// Everything of an event past the call itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub process: Process,
    pub parent: Option<Relative>,
    /// The parent first; pid and executable.
    pub ancestors: Vec<Relative>,
    /// The file executed or opened: walked from the kernel's dentries for
    /// hooks, as the caller gave it for syscalls.
    pub file: Option<String>,
    /// An exec's new command line.
    pub exec_argv: Option<Vec<String>>,
    /// The process acted on (kill, ptrace): pid always, comm and executable
    /// where the program could look it up.
    pub target: Option<Relative>,
    /// The fields cut at their limit, by JSON name.
    pub truncated: Vec<&'static str>,
}

/// Bytes of the command line an event carries.
pub const ARGV_BYTES: usize = STRING_MAX;

fn bytes(raw: &reflex_event, s: S) -> &[u8] {
    let i = s.0 as usize;
    let len = usize::from(raw.len[i]).min(STRING_MAX);
    let at = usize::from(raw.off[i]).min(raw.strings.len() - len);
    let slot = &raw.strings[at..at + len];
    // SAFETY: c_char and u8 have the same size and alignment.
    unsafe { std::slice::from_raw_parts(slot.as_ptr().cast::<u8>(), len) }
}

fn cut(raw: &reflex_event, s: S) -> bool {
    raw.truncated & (1 << s.0) != 0
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A path kept leaf first ("python3\0bin\0usr\0"), root first; `.../` in
/// front when its top was cut.
pub fn path(leaf_first: &[u8], cut: bool) -> String {
    let parts: Vec<String> = leaf_first
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .rev()
        .map(text)
        .collect();
    format!("{}{}", if cut { ".../" } else { "/" }, parts.join("/"))
}

/// Words each followed by a NUL (the last one maybe not, when cut).
fn words(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0).map(text).collect()
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or_default()
}

fn comm(c: &[i8]) -> Option<String> {
    let b: Vec<u8> = c.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
    (!b.is_empty()).then(|| text(&b))
}

fn exe(raw: &reflex_event, s: S) -> Option<String> {
    let b = bytes(raw, s);
    (!b.is_empty()).then(|| path(b, cut(raw, s)))
}

/// JSON names of the strings, for `truncated`.
fn name(s: S) -> &'static str {
    match s {
        S::REFLEX_STR_EXE => "exe",
        S::REFLEX_STR_CGROUP => "cgroup",
        S::REFLEX_STR_FILE => "file",
        S::REFLEX_STR_EXEC_ARGV => "exec_argv",
        S::REFLEX_STR_TARGET_EXE => "target_process.exe",
        S::REFLEX_STR_ARGV => "argv",
        _ => "ancestors.exe",
    }
}

impl Identity {
    pub fn decode(raw: &reflex_event, clock: &Clock) -> Identity {
        let has = |bit: I| u32::from(raw.identity) & bit.0 != 0;
        let at = |ns: u64| (ns != 0).then(|| clock.wall(ns));
        let mut id = Identity::default();
        if has(I::REFLEX_ID_PROCESS) {
            let cgroup = path(
                bytes(raw, S::REFLEX_STR_CGROUP),
                cut(raw, S::REFLEX_STR_CGROUP),
            );
            id.process = Process {
                exe: exe(raw, S::REFLEX_STR_EXE),
                argv: words(bytes(raw, S::REFLEX_STR_ARGV)),
                start: at(raw.start_ns),
                start_boot_ns: raw.start_ns,
                euid: raw.euid,
                auid: (raw.auid != u32::MAX).then_some(raw.auid),
                sid: raw.sid,
                container: container(&cgroup),
                cgroup: Some(cgroup),
            };
        }
        if has(I::REFLEX_ID_ANCESTORS) {
            id.parent = Some(Relative {
                pid: raw.ppid,
                comm: comm(&raw.parent_comm),
                exe: exe(raw, S::REFLEX_STR_ANCESTOR_EXE),
                start: at(raw.parent_start_ns),
            });
            for (i, &pid) in raw.ancestors.iter().enumerate().take(ANCESTORS) {
                if pid == 0 {
                    break;
                }
                id.ancestors.push(Relative {
                    pid,
                    exe: exe(raw, S(S::REFLEX_STR_ANCESTOR_EXE.0 + i as u32)),
                    ..Default::default()
                });
            }
        }
        let file = bytes(raw, S::REFLEX_STR_FILE);
        if !file.is_empty() {
            id.file = Some(if raw.given & (1 << S::REFLEX_STR_FILE.0) != 0 {
                text(until_nul(file))
            } else {
                path(file, cut(raw, S::REFLEX_STR_FILE))
            });
        }
        let exec_argv = bytes(raw, S::REFLEX_STR_EXEC_ARGV);
        if !exec_argv.is_empty() {
            id.exec_argv = Some(words(exec_argv));
        }
        if raw.target_pid != 0 {
            id.target = Some(Relative {
                pid: raw.target_pid,
                comm: comm(&raw.target_comm),
                exe: exe(raw, S::REFLEX_STR_TARGET_EXE),
                start: None,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..S::REFLEX_STR_MAX.0 {
            let s = S(s);
            if cut(raw, s) && seen.insert(name(s)) {
                id.truncated.push(name(s));
            }
        }
        id
    }
}

fn hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container a cgroup path names, if it names one: the last component
/// that holds a 64-hex-digit id, in the forms container runtimes give their
/// cgroups (systemd's `<runtime>-<id>.scope` and cgroupfs's `/<runtime>/<id>`).
/// A runtime's own helper (`libpod-conmon-…`, `crio-conmon-…`) is not the
/// container.
pub fn container(cgroup: &str) -> Option<Container> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate().rev() {
        let stem = part.strip_suffix(".scope").unwrap_or(part);
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = stem.strip_prefix(prefix).filter(|id| hex64(id)) {
                return Some(Container {
                    id: id.to_string(),
                    runtime,
                });
            }
        }
        if hex64(stem) {
            let parent = if i > 0 { parts[i - 1] } else { "" };
            let runtime = if parent == "docker" {
                "docker"
            } else if parent.starts_with("libpod") || parent == "machine.slice" {
                "podman"
            } else if parts.iter().any(|p| p.starts_with("kubepods")) {
                "kubernetes"
            } else {
                "unknown"
            };
            return Some(Container {
                id: stem.to_string(),
                runtime,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

    #[test]
    fn paths_are_kept_leaf_first() {
        assert_eq!(path(b"python3\0bin\0usr\0", false), "/usr/bin/python3");
        assert_eq!(path(b"python3\0bin\0", true), ".../bin/python3");
        assert_eq!(path(b"", false), "/");
        assert_eq!(words(b"python3\0-c\0pass\0"), ["python3", "-c", "pass"]);
        assert_eq!(words(b"python3\0-c\0pa"), ["python3", "-c", "pa"]);
        assert!(words(b"").is_empty());
    }

    #[test]
    fn container_ids_in_the_runtimes_forms() {
        for (path, runtime) in [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
            ),
            (
                format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
                "cri-o",
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                "podman",
            ),
            (format!("/kubepods/besteffort/pod1/{ID}"), "kubernetes"),
        ] {
            let c = container(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((c.id.as_str(), c.runtime), (ID, runtime), "{path}");
        }
        assert_eq!(container("/system.slice/ssh.service"), None);
        assert_eq!(
            container(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(container("/user.slice/docker-1234.scope"), None);
    }
}
