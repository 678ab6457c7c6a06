//! Who a rule is for (`match`: pids, users, groups, names, executables,
//! cgroups) and who no rule may touch (`protect`): every name resolved on
//! the host.

use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Checker;
use crate::policy::diag::Location;
use crate::policy::file::{self, RawAncestor, RawMatch, Scalar, Values};
use crate::policy::host::{FileError, Host};
use crate::policy::{Cgroup, Comm, FileId, Selectors};

impl Checker<'_> {
    pub(super) fn protect_block(&mut self, p: &file::RawProtect, file: &Arc<Path>) {
        for pid in &p.pids {
            if let Some(pid) = self.bounded(pid, file, "protected pid", 1, super::MAX_PID) {
                self.protect.pids.push(pid as u32);
            }
        }
        for exe in &p.executables {
            let at = Location::of(file, &exe.referenced);
            if let Some(id) = self.executable(&exe.value, &at) {
                self.protect.executables.push(id);
            }
        }
        for cg in &p.cgroups {
            let at = Location::of(file, &cg.referenced);
            if let Some(c) = self.cgroup(&cg.value, &at) {
                self.protect.cgroups.push(c);
            }
        }
    }

    pub(super) fn selectors(&mut self, m: Option<&RawMatch>, file: &Arc<Path>) -> Selectors {
        let Some(m) = m else {
            return Selectors::default();
        };
        let at = |s: &Spanned<Values>| Location::of(file, &s.referenced);
        let mut out = Selectors::default();
        if let Some(v) = &m.pid {
            out.pid = self.set(&v.value, &at(v), |s| pid(s, "pid"));
        }
        if let Some(v) = &m.ppid {
            out.ppid = self.set(&v.value, &at(v), |s| pid(s, "ppid"));
        }
        let host = std::sync::Arc::clone(&self.env.host);
        if let Some(v) = &m.uid {
            out.uid = self.set(&v.value, &at(v), |s| id(s, "uid", |n| host.user(n)));
        }
        if let Some(v) = &m.gid {
            out.gid = self.set(&v.value, &at(v), |s| id(s, "gid", |n| host.group(n)));
        }
        if let Some(v) = &m.comm {
            out.comm = self.set(&v.value, &at(v), comm);
        }
        if let Some(v) = &m.executable {
            out.executable = self.set(&v.value, &at(v), |s| file_id(&*host, &s.to_string()));
        }
        if let Some(v) = &m.parent_executable {
            out.parent_executable = self.set(&v.value, &at(v), |s| file_id(&*host, &s.to_string()));
        }
        if let Some(v) = &m.cgroup {
            out.cgroup = self.set(&v.value, &at(v), |s| cgroup(&*host, &s.to_string()));
        }
        if let Some(v) = &m.ancestor {
            let at = Location::of(file, &v.referenced);
            match &v.value {
                RawAncestor::Pids(pids) => {
                    out.ancestor = self.set(pids, &at, |s| pid(s, "ancestor"));
                }
                RawAncestor::Executables(paths) => {
                    out.ancestor_executable =
                        self.set(paths, &at, |s| file_id(&*host, &s.to_string()));
                }
            }
        }
        out
    }

    pub(super) fn executable(&mut self, path: &str, at: &Location) -> Option<FileId> {
        file_id(&*self.env.host, path)
            .map_err(|e| self.error(at.clone(), e))
            .ok()
    }

    pub(super) fn cgroup(&mut self, path: &str, at: &Location) -> Option<Cgroup> {
        cgroup(&*self.env.host, path)
            .map_err(|e| self.error(at.clone(), e))
            .ok()
    }
}

fn pid(s: &Scalar, what: &str) -> Result<u32, String> {
    match s {
        Scalar::Int(n) if *n >= 1 && *n <= i128::from(u32::MAX) => Ok(*n as u32),
        Scalar::Int(n) => Err(format!("{what} {n} is not a process id (1 to 4294967295)")),
        Scalar::Str(s) => Err(format!("{what} '{s}' is not a number")),
    }
}

/// A uid or gid: a number, or a name the host knows.
fn id(s: &Scalar, what: &str, by_name: impl Fn(&str) -> Option<u32>) -> Result<u32, String> {
    let (db, kind) = match what {
        "uid" => ("/etc/passwd", "user"),
        _ => ("/etc/group", "group"),
    };
    match s {
        Scalar::Int(n) if *n >= 0 && *n <= i128::from(u32::MAX) => Ok(*n as u32),
        Scalar::Int(n) => Err(format!("{what} {n} is out of range")),
        Scalar::Str(name) => by_name(name).ok_or_else(|| {
            format!("no {kind} named '{name}' on this machine: use a name from {db} or a number")
        }),
    }
}

fn comm(s: &Scalar) -> Result<Comm, String> {
    let text = s.to_string();
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err("an empty comm matches nothing".into());
    }
    if bytes.len() > 15 {
        return Err(match std::str::from_utf8(&bytes[..15]) {
            Ok(cut) => format!(
                "comm '{text}' is longer than the kernel keeps (15 bytes): the process is seen \
                 as '{cut}'; write that, or match `executable:`"
            ),
            Err(_) => format!(
                "comm '{text}' is longer than the kernel keeps (15 bytes), and the kernel cuts \
                 it inside a character: match `executable:` instead"
            ),
        });
    }
    let mut out = [0u8; 16];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// A file a rule names, as the kernel identifies it on `host`.
pub(super) fn file_id(host: &dyn Host, path: &str) -> Result<FileId, String> {
    if !path.starts_with('/') {
        return Err(format!("file '{path}' must be an absolute path"));
    }
    let (dev, ino) = host.file(path).map_err(|e| match e {
        FileError::Io(e) => format!("file '{path}': {e}"),
        FileError::NotAFile => format!("file '{path}' is not a regular file"),
    })?;
    Ok(FileId {
        dev,
        ino,
        path: path.into(),
    })
}

/// A cgroup v2, by its path under the mount (or the mount's own path).
fn cgroup(host: &dyn Host, path: &str) -> Result<Cgroup, String> {
    let Some(root) = host.cgroup_root() else {
        return Err(
            "cgroup selectors need cgroup v2, and none is mounted (looked at /proc/self/mounts)"
                .into(),
        );
    };
    let rel = path
        .strip_prefix(root.to_str().unwrap_or("/sys/fs/cgroup"))
        .unwrap_or(path)
        .trim_matches('/');
    let dir = root.join(rel);
    let id = host.cgroup(rel).map_err(|e| match e {
        FileError::Io(e) => format!(
            "cgroup '{path}': {} ({e}); list them with `ls {}`",
            dir.display(),
            root.display()
        ),
        FileError::NotAFile => format!(
            "cgroup '{path}': {} is not a cgroup directory",
            dir.display()
        ),
    })?;
    let level = rel.split('/').filter(|c| !c.is_empty()).count() as u32;
    if level as usize >= crate::abi::CGROUP_LEVELS {
        return Err(format!(
            "cgroup '{path}' is {level} levels deep: reflex matches cgroups up to {} levels",
            crate::abi::CGROUP_LEVELS - 1
        ));
    }
    Ok(Cgroup {
        id,
        level,
        path: format!("/{rel}"),
    })
}
