//! The protected set's starting point: the processes that protection covers
//! right now, found in /proc. From then on the kernel follows forks, execs
//! and exits itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::abi::types::reflex_protect as P;
use crate::policy::files;
use crate::rules::Protection;

/// Protected thread group ids now, with why (REFLEX_PROTECT_* bits).
pub fn scan(p: &Protection) -> BTreeMap<u32, u8> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let mut why = 0u8;
        if p.pids.contains(&pid) {
            why |= P::REFLEX_PROTECT_PID.0 as u8;
        }
        if !p.executables.is_empty() {
            let exe = PathBuf::from(format!("/proc/{pid}/exe"));
            let mounts = PathBuf::from(format!("/proc/{pid}/mountinfo"));
            if let Ok(id) = files::identity_in(&exe, &mounts) {
                if p.executables.contains(&id) {
                    why |= P::REFLEX_PROTECT_EXE.0 as u8;
                }
            }
        }
        if !p.policy.cgroups.is_empty() {
            if let Some(path) = cgroup_of(pid) {
                let inside = p.policy.cgroups.iter().any(|c| {
                    c.path == "/" || path == c.path || path.starts_with(&format!("{}/", c.path))
                });
                if inside {
                    why |= P::REFLEX_PROTECT_CGROUP.0 as u8;
                }
            }
        }
        if why != 0 {
            found.insert(pid, why);
        }
    }
    found
}

/// The cgroup v2 path of a process, e.g. `/system.slice/sshd.service`.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Protect;

    #[test]
    fn finds_ourselves_by_pid_and_by_executable() {
        let me = std::process::id();
        let p = Protection {
            pids: vec![me],
            executables: vec![files::identity("/proc/self/exe".as_ref()).unwrap()],
            policy: Protect::default(),
            ..Protection::default()
        };
        let found = scan(&p);
        assert_eq!(
            found.get(&me).copied(),
            Some((P::REFLEX_PROTECT_PID.0 | P::REFLEX_PROTECT_EXE.0) as u8)
        );
    }
}
