//! One pass over the kernel's BTF for the functions reflex attaches fentry
//! and fexit programs to: their type ids and prototypes. libbpf's parser
//! indexes every type (milliseconds natively, seconds under emulation);
//! finding a few functions needs only a walk over the type headers.

use std::collections::BTreeMap;
use std::io;

const MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;

/// A function in the kernel's BTF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Its BTF type id (a program's attach target).
    pub id: u32,
    /// Its prototype's type id: the kernel tail-calls only between programs
    /// attached to functions of one prototype.
    pub proto: u32,
    /// Its prototype's parameters, and whether the first is a pointer.
    pub params: u16,
    pub first_is_pointer: bool,
    /// The syscall's body `__do_sys_<name>` (see [`syscall_functions`]).
    pub aliased: bool,
}

impl Function {
    /// Its name, for syscall `syscall`.
    pub fn name(&self, syscall: &str) -> String {
        match self.aliased {
            true => format!("{ALIASED}{syscall}"),
            false => format!("{}{syscall}", syscall_prefix().unwrap_or("?")),
        }
    }
}

/// The prefix of a syscall's function on this architecture
/// (`__x64_sys_ptrace`), if reflex knows it.
pub fn syscall_prefix() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("__x64_sys_"),
        "aarch64" => Some("__arm64_sys_"),
        _ => None,
    }
}

/// The functions named `names` that the BTF in `data` has, by name.
pub fn functions(data: &[u8], names: &[&str]) -> io::Result<BTreeMap<String, Function>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("BTF: {what}"));
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    if u16_at(0) != Some(MAGIC) {
        return Err(bad("not BTF in this machine's byte order"));
    }
    let header = |i: usize| u32_at(8 + 4 * i).map(|v| v as usize);
    let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) = (
        u32_at(4).map(|v| v as usize),
        header(0),
        header(1),
        header(2),
        header(3),
    ) else {
        return Err(bad("short header"));
    };
    let types = hdr_len + type_off;
    let strings = hdr_len + str_off;
    if data.len() < types + type_len || data.len() < strings + str_len {
        return Err(bad("sections past the end"));
    }
    let strings = &data[strings..strings + str_len];
    let name_at = |off: usize| -> &[u8] {
        let s = strings.get(off..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    let mut found = BTreeMap::new();
    // Where each type starts, by id (a function's prototype may come after
    // it).
    let mut offsets: Vec<u32> = vec![0];
    let (mut at, end, mut id) = (types, types + type_len, 1u32);
    while at + 12 <= end {
        offsets.push(at as u32);
        let (name_off, info, size_or_type) = (
            u32_at(at).unwrap_or(0) as usize,
            u32_at(at + 4).unwrap_or(0),
            u32_at(at + 8).unwrap_or(0),
        );
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == KIND_FUNC {
            let name = name_at(name_off);
            if let Some(n) = names.iter().find(|n| n.as_bytes() == name) {
                found.insert(
                    n.to_string(),
                    Function {
                        id,
                        proto: size_or_type,
                        params: 0,
                        first_is_pointer: false,
                        aliased: false,
                    },
                );
            }
        }
        // What follows each kind's header.
        at += 12
            + match kind {
                1 | 14 | 17 => 4,             // int, var, decl tag
                3 => 12,                      // array
                4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
                6 | 13 => 8 * vlen,           // enum, function prototype
                0 | 2 | 7..=12 | 16 | 18 => 0,
                other => return Err(bad(&format!("unknown kind {other}"))),
            };
        id += 1;
    }
    let kind_at = |id: u32| {
        offsets
            .get(id as usize)
            .and_then(|&o| u32_at(o as usize + 4))
            .map(|info| ((info >> 24) & 0x1f, info & 0xffff))
    };
    for f in found.values_mut() {
        let Some(&o) = offsets.get(f.proto as usize) else {
            continue;
        };
        if let Some((13, vlen)) = kind_at(f.proto) {
            f.params = vlen as u16;
            // The first parameter: name_off, then its type.
            let first = u32_at(o as usize + 12 + 4).unwrap_or(0);
            f.first_is_pointer = vlen > 0 && matches!(kind_at(first), Some((2, _)));
        }
    }
    Ok(found)
}

/// The functions of these syscalls in the running kernel's BTF, by
/// syscall name.
pub fn syscall_functions(syscalls: &[&str]) -> io::Result<BTreeMap<String, Function>> {
    let prefix = syscall_prefix().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "reflex does not know the syscall functions of {}",
                std::env::consts::ARCH
            ),
        )
    })?;
    let data = Mapped::open(super::BTF_PATH)?;
    // A syscall without arguments has no `__x64_sys_<name>` of its own in
    // BTF: it is an alias of `__do_sys_<name>`, which takes the registers.
    let wanted: Vec<String> = syscalls
        .iter()
        .flat_map(|s| [format!("{prefix}{s}"), format!("{ALIASED}{s}")])
        .collect();
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let found = functions(data.bytes(), &refs)?;
    Ok(syscalls
        .iter()
        .filter_map(|s| {
            let own = found.get(&format!("{prefix}{s}")).copied();
            let aliased = found
                .get(&format!("{ALIASED}{s}"))
                .copied()
                .filter(|f| f.params == 1 && f.first_is_pointer)
                .map(|f| Function { aliased: true, ..f });
            Some((s.to_string(), own.or(aliased)?))
        })
        .collect())
}

/// Where a syscall without arguments has its body (see [`syscall_functions`]).
pub const ALIASED: &str = "__do_sys_";

/// The kernel's BTF, mapped (as libbpf does: reading its 5 MB takes a few
/// milliseconds, mapping it none), or read where it cannot be mapped.
enum Mapped {
    Map(*const u8, usize),
    Read(Vec<u8>),
}

impl Mapped {
    fn open(path: &str) -> io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        // SAFETY: a private read-only mapping of the whole file, unmapped
        // on drop; the kernel's BTF does not change while it runs.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED || len == 0 {
            return Ok(Mapped::Read(std::fs::read(path)?));
        }
        Ok(Mapped::Map(at as *const u8, len))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: mapped above for `len` bytes, until drop.
            Mapped::Map(at, len) => unsafe { std::slice::from_raw_parts(*at, *len) },
            Mapped::Read(v) => v,
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Mapped::Map(at, len) = *self {
            // SAFETY: mapped in `open`, not used after this.
            unsafe { libc::munmap(at as *mut libc::c_void, len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as libbpf's parser, on this machine's kernel.
    #[test]
    fn agrees_with_libbpf() {
        let Ok(data) = std::fs::read(crate::features::BTF_PATH) else {
            return;
        };
        let names = [
            "__x64_sys_ptrace",
            "__x64_sys_getppid",
            "vfs_read",
            "no_such_fn",
        ];
        let found = functions(&data, &names).unwrap();
        let btf = libbpf_rs::btf::Btf::from_vmlinux().unwrap();
        for name in names {
            let theirs = btf.type_by_name::<libbpf_rs::btf::types::Func<'_>>(name);
            assert_eq!(
                found.get(name).map(|f| f.id),
                theirs.map(|f| f.type_id().into()),
                "{name}"
            );
        }
        assert!(found.contains_key("vfs_read"));
        // Every syscall has a function to attach to: its own or, without
        // arguments, the body its function is an alias of.
        let all = syscall_functions(&["ptrace", "getppid", "read"]).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all["getppid"].params == 1 && all["getppid"].first_is_pointer);
    }
}
