//! `--output FILE`: events as JSON lines appended to a file, written by a
//! thread of its own ([`Detached`]), and reopened on request (SIGUSR1) so
//! that logrotate can move the file away: what was queued before the
//! reopen goes to the old file, what comes after to the new one.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Detached, Output};

pub struct FileOutput {
    path: PathBuf,
    current: Detached,
    /// Writers of files reopened away from, until their queue is written.
    retired: Vec<Detached>,
    /// Undelivered by writers finished and dropped.
    undelivered_before: u64,
}

fn open(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

impl FileOutput {
    pub fn create(path: &Path) -> io::Result<FileOutput> {
        let file = open(path)?;
        Ok(FileOutput {
            path: path.to_path_buf(),
            current: Detached::new("output file", Box::new(file)),
            retired: Vec::new(),
            undelivered_before: 0,
        })
    }

    /// Opens the path again (a new file if it was moved away).
    pub fn reopen_file(&mut self) -> io::Result<()> {
        let file = open(&self.path)?;
        let _ = self.current.flush();
        let old = std::mem::replace(
            &mut self.current,
            Detached::new("output file", Box::new(file)),
        );
        self.retired.push(old);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tidy(&mut self) {
        let mut keep = Vec::new();
        for mut d in self.retired.drain(..) {
            if d.finish(Duration::ZERO) {
                self.undelivered_before += d.undelivered();
            } else {
                keep.push(d);
            }
        }
        self.retired = keep;
    }
}

impl Write for FileOutput {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.current.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tidy();
        self.current.flush()
    }
}

impl Output for FileOutput {
    fn undelivered(&self) -> u64 {
        self.undelivered_before
            + self.current.undelivered()
            + self.retired.iter().map(Detached::undelivered).sum::<u64>()
    }

    fn take_error(&self) -> Option<(String, u64)> {
        self.current
            .take_error()
            .map(|(e, n)| (format!("{e} ({})", self.path.display()), n))
    }

    fn reopen(&mut self) -> Option<io::Result<String>> {
        Some(self.reopen_file().map(|()| self.path.display().to_string()))
    }

    fn finish(&mut self, wait: Duration) -> bool {
        let mut all = self.current.finish(wait);
        for d in &mut self.retired {
            all &= d.finish(wait);
        }
        all
    }
}
