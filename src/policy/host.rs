//! Every question a policy asks the machine, behind one seam: users and
//! groups by name, files by path (as the kernel identifies them), cgroups by
//! path, pidfiles, and the kernel's sampling limit. Checking a policy asks
//! only this, so it can be tested — and run — against a given view of a host
//! ([`Fixture`]) as well as the live one ([`Live`]) — which, in a container,
//! is the host's: paths, users and groups resolved through /proc/1/root (or
//! `--host-root`), since the kernel's programs see the host's files.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

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
    /// Whose view names are resolved in, when it is not reflex's own (the
    /// host's, from a container): for the banner.
    fn view(&self) -> Option<String> {
        None
    }
}

/// The host's root filesystem seen from inside a container: paths resolve
/// in it as they do on the host (absolute symlinks included), and users and
/// groups come from its /etc/passwd and /etc/group.
#[derive(Debug, Clone)]
pub struct Root {
    /// `/proc/1/root`, or where the host's `/` is mounted (`--host-root`).
    dir: PathBuf,
    fd: Arc<OwnedFd>,
    /// The mount table paths under it resolve in.
    mountinfo: PathBuf,
}

const PID1_ROOT: &str = "/proc/1/root";

impl Root {
    pub fn open(dir: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let mountinfo = if dir == Path::new(PID1_ROOT) {
            "/proc/1/mountinfo"
        } else {
            "/proc/self/mountinfo"
        };
        Ok(Root {
            dir: dir.to_path_buf(),
            fd: Arc::new(fd),
            mountinfo: mountinfo.into(),
        })
    }

    /// `path` opened as the host resolves it: `..` and absolute symlinks stay
    /// inside the root.
    fn open_in(&self, path: &str, flags: OFlag) -> std::io::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        Ok(openat2(&*self.fd, path, how)?)
    }

    fn read(&self, path: &str) -> std::io::Result<String> {
        let mut text = String::new();
        std::fs::File::from(self.open_in(path, OFlag::O_RDONLY)?).read_to_string(&mut text)?;
        Ok(text)
    }

    /// An id by name from an /etc/passwd or /etc/group of the root.
    fn id(&self, table: &str, name: &str) -> Option<u32> {
        id_in(&self.read(table).ok()?, name)
    }

    /// Where the host mounts cgroup v2, under this root.
    fn cgroup2(&self) -> Option<PathBuf> {
        let mounts = if self.dir == Path::new(PID1_ROOT) {
            std::fs::read_to_string("/proc/1/mounts").ok()
        } else {
            None
        };
        let at = mounts
            .as_deref()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let mut f = l.split_whitespace();
                    let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
                    (fstype == "cgroup2").then(|| at.to_string())
                })
            })
            .unwrap_or_else(|| "/sys/fs/cgroup".into());
        Some(self.dir.join(at.trim_start_matches('/')))
    }
}

/// An id by name in the text of an /etc/passwd or /etc/group
/// (`name:password:id:…`).
fn id_in(table: &str, name: &str) -> Option<u32> {
    table.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// A user or group by name in this system's own tables. The static build
/// reads the files: a statically linked C library's name service loads
/// modules it cannot, and crashed (a unit test met it).
#[cfg(feature = "static")]
fn own_id(table: &str, name: &str) -> Option<u32> {
    id_in(&std::fs::read_to_string(table).ok()?, name)
}

/// Whether reflex runs in a mount namespace other than pid 1's: in a
/// container, where its own paths are not the host's.
pub fn in_container() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(own), Ok(init)) => own != init,
        _ => false,
    }
}

/// This machine, as reflex sees it, or as its host does (`root`).
#[derive(Debug, Clone)]
pub struct Live {
    cgroup_root: Option<PathBuf>,
    root: Option<Root>,
    /// Why a container's reflex resolves in its own view after all.
    own_view_why: Option<String>,
}

impl Live {
    /// Reflex's own view on a host; the host's (through /proc/1/root) in a
    /// container.
    pub fn new() -> Live {
        if !in_container() {
            return Live::with_root(None);
        }
        match Root::open(Path::new(PID1_ROOT)) {
            Ok(root) => Live::with_root(Some(root)),
            Err(e) => Live {
                own_view_why: Some(format!(
                    "reflex's own: it runs in a container, but {PID1_ROOT} cannot be opened \
                     ({e}); mount the host's / and pass --host-root, or paths name the \
                     container's files"
                )),
                ..Live::with_root(None)
            },
        }
    }

    /// Names resolved under `dir`, the host's `/` mounted there.
    pub fn at(dir: &Path) -> std::io::Result<Live> {
        Ok(Live::with_root(Some(Root::open(dir)?)))
    }

    fn with_root(root: Option<Root>) -> Live {
        let cgroup_root = match &root {
            Some(r) => r.cgroup2(),
            None => cgroup2_root(),
        };
        Live {
            cgroup_root,
            root,
            own_view_why: None,
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
        if let Some(root) = &self.root {
            return root.id("/etc/passwd", name);
        }
        #[cfg(feature = "static")]
        return own_id("/etc/passwd", name);
        #[cfg(not(feature = "static"))]
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn group(&self, name: &str) -> Option<u32> {
        if let Some(root) = &self.root {
            return root.id("/etc/group", name);
        }
        #[cfg(feature = "static")]
        return own_id("/etc/group", name);
        #[cfg(not(feature = "static"))]
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }

    fn file(&self, path: &str) -> Result<(u32, u64), FileError> {
        let Some(root) = &self.root else {
            let meta = std::fs::metadata(path).map_err(io)?;
            if !meta.is_file() {
                return Err(FileError::NotAFile);
            }
            return files::identity(Path::new(path)).map_err(io);
        };
        // The file as the host resolves the path, looked at through the
        // descriptor.
        let fd = root.open_in(path, OFlag::O_PATH).map_err(io)?;
        let at = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if !std::fs::metadata(&at).map_err(io)?.is_file() {
            return Err(FileError::NotAFile);
        }
        files::identity_in(&at, &root.mountinfo).map_err(io)
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
        match &self.root {
            Some(root) => root.read(path),
            None => std::fs::read_to_string(path),
        }
        .map(|t| t.trim().to_string())
        .map_err(|e| e.to_string())
    }

    fn max_sample_rate(&self) -> Option<u64> {
        std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    }

    fn view(&self) -> Option<String> {
        let Some(root) = self.root.as_ref() else {
            return self.own_view_why.clone();
        };
        Some(if root.dir == Path::new(PID1_ROOT) {
            "the host's, through /proc/1/root (reflex runs in a container: its mount \
             namespace is not pid 1's)"
                .into()
        } else {
            format!("the host's, under --host-root {}", root.dir.display())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A root laid out as a host's: its absolute symlinks lead inside it, and
    /// its users are its own.
    #[test]
    fn a_host_root_resolves_inside_itself() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), "x").unwrap();
        std::os::unix::fs::symlink("/usr/bin", r.join("bin")).unwrap();
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nsvc:x:812:812::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/group"), "svc:x:913:\n").unwrap();
        std::fs::write(r.join("pid"), " 4242\n").unwrap();
        let live = Live::at(r).unwrap();
        let inside = files::identity(&r.join("usr/bin/tool")).unwrap();
        assert_eq!(
            live.file("/bin/tool"),
            Ok(inside),
            "/bin -> /usr/bin, in the root"
        );
        assert_eq!(
            live.file("/../../usr/bin/tool"),
            Ok(inside),
            ".. stops at the root"
        );
        assert_eq!(live.file("/usr/bin"), Err(FileError::NotAFile));
        assert!(matches!(live.file("/nowhere"), Err(FileError::Io(_))));
        assert_eq!(live.user("svc"), Some(812));
        assert_eq!(live.user("daemon-not-there"), None);
        assert_eq!(live.group("svc"), Some(913));
        assert_eq!(live.read("/pid"), Ok("4242".to_string()));
        assert!(live.view().unwrap().contains("--host-root"));
    }
}
