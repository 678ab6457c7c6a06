//! Every question a policy asks the machine, behind one seam: users and
//! groups by name, files by path (as the kernel identifies them), cgroups by
//! path, pidfiles, and the kernel's sampling limit. Checking a policy asks
//! only this, so it can be tested — and run — against a given view of a host
//! ([`Fixture`]) as well as the live one ([`Live`]).

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::files;

/// Why a path is not a file a rule can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// It could not be looked at (the error, as the system says it).
    Io(String),
    /// It exists, and is not a regular file.
    NotAFile,
}

/// What policies resolve names against.
pub trait Host: fmt::Debug + Send + Sync {
    /// A user's uid, by name.
    fn user(&self, name: &str) -> Option<u32>;
    /// A group's gid, by name.
    fn group(&self, name: &str) -> Option<u32>;
    /// `(device, inode)` of the regular file at absolute `path`, as the
    /// kernel sees it (symlinks followed).
    fn file(&self, path: &str) -> Result<(u32, u64), FileError>;
    /// Where cgroup v2 is mounted, or None when it is not.
    fn cgroup_root(&self) -> Option<PathBuf>;
    /// The id of the cgroup at `rel` below the cgroup v2 root (`""` is the
    /// root): its directory's inode.
    fn cgroup(&self, rel: &str) -> Result<u64, FileError>;
    /// What a file holds (pidfiles), trimmed.
    fn read(&self, path: &str) -> Result<String, String>;
    /// The kernel's highest perf sampling rate
    /// (`/proc/sys/kernel/perf_event_max_sample_rate`), if it says.
    fn max_sample_rate(&self) -> Option<u64>;
}

/// This machine, as reflex sees it.
#[derive(Debug, Clone)]
pub struct Live {
    cgroup_root: Option<PathBuf>,
}

impl Live {
    pub fn new() -> Live {
        Live {
            cgroup_root: cgroup2_root(),
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup on unified systems,
/// /sys/fs/cgroup/unified on hybrid ones.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(at))
    })
}

fn io(e: std::io::Error) -> FileError {
    FileError::Io(e.to_string())
}

impl Host for Live {
    fn user(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn group(&self, name: &str) -> Option<u32> {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }

    fn file(&self, path: &str) -> Result<(u32, u64), FileError> {
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile);
        }
        files::identity(Path::new(path)).map_err(io)
    }

    fn cgroup_root(&self) -> Option<PathBuf> {
        self.cgroup_root
            .clone()
            .filter(|root| root.join("cgroup.controllers").exists())
    }

    fn cgroup(&self, rel: &str) -> Result<u64, FileError> {
        let root = self
            .cgroup_root
            .as_deref()
            .unwrap_or(Path::new("/sys/fs/cgroup"));
        let meta = std::fs::metadata(root.join(rel)).map_err(io)?;
        if !meta.is_dir() {
            return Err(FileError::NotAFile);
        }
        Ok(meta.ino())
    }

    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| e.to_string())
    }

    fn max_sample_rate(&self) -> Option<u64> {
        std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A host described in full by its tables: for tests, and for checking a
/// policy against a machine other than this one.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    pub users: BTreeMap<String, u32>,
    pub groups: BTreeMap<String, u32>,
    /// path → (device, inode)
    pub files: BTreeMap<String, (u32, u64)>,
    /// None: no cgroup v2.
    pub cgroup_root: Option<PathBuf>,
    /// path below the root (`""` for the root) → id
    pub cgroups: BTreeMap<String, u64>,
    /// path → contents
    pub texts: BTreeMap<String, String>,
    pub max_sample_rate: Option<u64>,
}

const ENOENT: &str = "No such file or directory (os error 2)";

impl Host for Fixture {
    fn user(&self, name: &str) -> Option<u32> {
        self.users.get(name).copied()
    }

    fn group(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied()
    }

    fn file(&self, path: &str) -> Result<(u32, u64), FileError> {
        match self.files.get(path) {
            Some(id) => Ok(*id),
            None if self.cgroups.contains_key(path) => Err(FileError::NotAFile),
            None => Err(FileError::Io(ENOENT.into())),
        }
    }

    fn cgroup_root(&self) -> Option<PathBuf> {
        self.cgroup_root.clone()
    }

    fn cgroup(&self, rel: &str) -> Result<u64, FileError> {
        self.cgroups
            .get(rel)
            .copied()
            .ok_or_else(|| FileError::Io(ENOENT.into()))
    }

    fn read(&self, path: &str) -> Result<String, String> {
        self.texts
            .get(path)
            .map(|t| t.trim().to_string())
            .ok_or_else(|| ENOENT.into())
    }

    fn max_sample_rate(&self) -> Option<u64> {
        self.max_sample_rate
    }
}
