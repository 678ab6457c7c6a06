//! Files as the kernel identifies them: `(device, inode)` where the device is
//! the superblock's (`inode->i_sb->s_dev`), which is what reflex's programs
//! read. `stat()` does not always say that: overlayfs (containers, live
//! systems) reports a per-layer pseudo device and btrfs a per-subvolume one.
//! The superblock's device is the one /proc/PID/mountinfo shows for the
//! file's mount, found with statx's mount id.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The kernel's dev_t for a major:minor pair.
pub fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xfffff)
}

/// The kernel's dev_t for a user-space st_dev.
pub fn kernel_dev_of(st_dev: u64) -> u32 {
    kernel_dev(libc::major(st_dev), libc::minor(st_dev))
}

/// `(device, inode)` of `path` (symlinks followed) as the kernel sees it.
/// `mountinfo` is the mount table the path is resolved in (for
/// /proc/PID/exe, the process's own: /proc/PID/mountinfo).
pub fn identity_in(path: &Path, mountinfo: &Path) -> io::Result<(u32, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: zeroed statx is valid; statx writes at most size_of::<statx>.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a valid out pointer.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            libc::STATX_INO | libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        if let Some(dev) = mount_dev(mountinfo, stx.stx_mnt_id) {
            return Ok((dev, stx.stx_ino));
        }
    }
    // Kernels before 5.8 have no mount id: stat's device is the best there is.
    let meta = std::fs::metadata(path)?;
    Ok((kernel_dev_of(meta.dev()), meta.ino()))
}

/// `(device, inode)` of `path` in this process's mount table.
pub fn identity(path: &Path) -> io::Result<(u32, u64)> {
    identity_in(path, Path::new("/proc/self/mountinfo"))
}

/// The superblock device of mount `id`, from a mountinfo table.
fn mount_dev(mountinfo: &Path, id: u64) -> Option<u32> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let mount_id: u64 = f.next()?.parse().ok()?;
        if mount_id != id {
            return None;
        }
        let (major, minor) = f.nth(1)?.split_once(':')?;
        Some(kernel_dev(major.parse().ok()?, minor.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_plain_filesystem_it_is_stat() {
        let meta = std::fs::metadata("/bin/sh").unwrap();
        let (dev, ino) = identity(Path::new("/bin/sh")).unwrap();
        assert_eq!(ino, meta.ino());
        // The mount's device is the file's, unless /bin/sh is on overlayfs or
        // btrfs; either way it is the device mountinfo names.
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f[2].split_once(':')
                    .is_some_and(|(a, b)| kernel_dev(a.parse().unwrap(), b.parse().unwrap()) == dev)
            }),
            "{dev:#x} is no mount's device"
        );
        assert!(identity(Path::new("/no/such/file")).is_err());
    }
}
