//! Notices changes to policy files (inotify on their folders, so editors that
//! replace files by renaming are seen too).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

pub struct Watcher {
    inotify: Inotify,
    /// (watch descriptor's folder, the file name that matters or None for
    /// any policy file in it)
    watched: Vec<(nix::sys::inotify::WatchDescriptor, Option<OsString>)>,
}

impl Watcher {
    pub fn new(paths: &[PathBuf]) -> nix::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE;
        let mut watched = Vec::new();
        for path in paths {
            let (dir, name) = if path.is_dir() {
                (path.clone(), None)
            } else {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => Path::new(".").to_path_buf(),
                };
                (dir, path.file_name().map(|n| n.to_os_string()))
            };
            let wd = inotify.add_watch(&dir, flags)?;
            watched.push((wd, name));
        }
        Ok(Watcher { inotify, watched })
    }

    /// Whether a policy file changed since the last call.
    pub fn changed(&self) -> bool {
        let mut changed = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                let Some(name) = e.name else { continue };
                let relevant = self.watched.iter().any(|(wd, file)| {
                    *wd == e.wd
                        && match file {
                            Some(f) => *f == name,
                            None => {
                                let p = Path::new(&name);
                                p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                            }
                        }
                });
                changed |= relevant;
            }
        }
        changed
    }
}
