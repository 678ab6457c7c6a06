//! Notices changes to policy files: inotify on their folders (so editors
//! that replace files by renaming are seen too), and on each folder's own
//! parent, so that a folder removed and made again (a package, a deploy
//! tool) is watched again, and says so; and the `..data` symlink swap by
//! which kubelet updates a ConfigMap volume. Never blocks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// One folder that holds policy files.
struct Folder {
    dir: PathBuf,
    /// The file that matters, or None for any policy file in it.
    file: Option<OsString>,
    /// Its watch, while it exists.
    wd: Option<WatchDescriptor>,
    /// Its parent's watch: sees the folder come back.
    parent: Option<WatchDescriptor>,
}

pub struct Watcher {
    inotify: Inotify,
    folders: Vec<Folder>,
}

const IN_DIR: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);
const IN_PARENT: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_ONLYDIR);

/// The symlink a Kubernetes ConfigMap (or Secret, projected) volume swaps
/// to deliver a new version of its files.
const KUBERNETES_DATA: &str = "..data";

fn is_policy(name: &Path) -> bool {
    name.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

impl Watcher {
    pub fn new(paths: &[PathBuf]) -> nix::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut folders = Vec::new();
        for path in paths {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let (dir, file) = if path.is_dir() {
                (path, None)
            } else {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => Path::new("/").to_path_buf(),
                };
                (dir, path.file_name().map(|n| n.to_os_string()))
            };
            let wd = Some(inotify.add_watch(&dir, IN_DIR)?);
            let parent = dir
                .parent()
                .and_then(|p| inotify.add_watch(p, IN_PARENT).ok());
            folders.push(Folder {
                dir,
                file,
                wd,
                parent,
            });
        }
        Ok(Watcher { inotify, folders })
    }

    /// The descriptor that is readable when something changed.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.inotify.as_fd()
    }

    /// Whether a watched folder is missing (it is looked for again at each
    /// call, besides its parent's events).
    pub fn missing(&self) -> bool {
        self.folders.iter().any(|f| f.wd.is_none())
    }

    /// Whether a policy file changed since the last call (a folder that
    /// went away, or came back, counts).
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                for f in &mut self.folders {
                    if f.wd == Some(e.wd) {
                        let gone = AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF;
                        if e.mask.intersects(gone) {
                            if f.wd.take().is_some() {
                                tracing::warn!(
                                    "policy folder {} was removed or moved: its rules stay in \
                                     force, and reflex watches for it to come back",
                                    f.dir.display()
                                );
                            }
                            changed = true;
                            continue;
                        }
                        let Some(name) = &e.name else { continue };
                        // Kubernetes updates a ConfigMap volume by renaming
                        // a new `..data` symlink over the old one (the files
                        // are symlinks through it): one change.
                        changed |= name == KUBERNETES_DATA
                            || match &f.file {
                                Some(file) => file == name,
                                None => is_policy(Path::new(name)),
                            };
                    } else if f.parent == Some(e.wd)
                        && e.name.as_deref() == f.dir.file_name()
                        && f.wd.is_none()
                    {
                        changed |= Self::rewatch(&self.inotify, f);
                    }
                }
            }
        }
        // A folder may also come back between a parent's event and the
        // watch: look again for those still missing.
        for f in self.folders.iter_mut().filter(|f| f.wd.is_none()) {
            changed |= Self::rewatch(&self.inotify, f);
        }
        changed
    }

    /// Watches a folder that came back; true when it did.
    fn rewatch(inotify: &Inotify, f: &mut Folder) -> bool {
        match inotify.add_watch(&f.dir, IN_DIR) {
            Ok(wd) => {
                f.wd = Some(wd);
                tracing::info!(
                    "policy folder {} is back: watching it again",
                    f.dir.display()
                );
                true
            }
            Err(_) => false,
        }
    }
}
