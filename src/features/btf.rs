//! One pass over the kernel's BTF for the functions reflex attaches fentry
//! and fexit programs to: their type ids and prototypes. libbpf's parser
//! indexes every type (milliseconds natively, seconds under emulation);
//! finding a few functions needs only a walk over the type headers.

use std::collections::BTreeMap;
use std::io;

use super::btf_types::{self as t, Types};

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

/// The functions named `names` among `types`, by name.
pub fn functions(types: &Types<'_>, names: &[&str]) -> BTreeMap<String, Function> {
    use std::collections::{HashMap, HashSet};
    let wanted: HashMap<&[u8], &str> = names.iter().map(|n| (n.as_bytes(), *n)).collect();
    // Their first four bytes: nearly every other function differs there.
    let heads: HashSet<&[u8]> = names
        .iter()
        .map(|n| &n.as_bytes()[..n.len().min(4)])
        .collect();
    let mut found = BTreeMap::new();
    for id in 1..types.len() as u32 {
        if types.kind(id) != t::FUNC || !heads.contains(types.head(id, 4)) {
            continue;
        }
        let Some(n) = wanted.get(types.name(id)) else {
            continue;
        };
        let proto = types.size_or_type(id);
        let (mut params, mut first_is_pointer) = (0, false);
        if types.kind(proto) == t::FUNC_PROTO {
            params = types.vlen(proto) as u16;
            // The first parameter: its name, then its type.
            let first = t::u32_at(types.record(proto), 12 + 4);
            first_is_pointer = params > 0 && types.kind(first) == t::PTR;
        }
        found.insert(
            n.to_string(),
            Function {
                id,
                proto,
                params,
                first_is_pointer,
                aliased: false,
            },
        );
    }
    found
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("BTF: {what}"))
}

/// The part of a kernel's BTF (`data`) that CO-RE relocations relative to
/// types named `roots` can need, as a BTF blob of its own: every type whose
/// name (without its flavour) is a root's, and what those are made of — their
/// members, array elements, typedefs and qualifiers — down to the first
/// pointer, whose target is left out (void). A relocation never looks through
/// a pointer: each dereference is a relocation of its own, on a root type of
/// its own, and a pointer field matches any pointer (libbpf's
/// `bpf_core_fields_are_compat`). That holds for field relocations and enum
/// value ones, the kinds [`CORE_SUBSET_KINDS`] names; a type-based one
/// (`bpf_core_type_matches`) compares what pointers point to.
///
/// libbpf looks for each root's candidates among every type of its target
/// BTF: with the whole kernel's (~150,000 types here) that is ~1 ms a root,
/// with this a few thousand types in all. None where a root has no type
/// here: libbpf would look in the modules' BTF for it, which a target BTF of
/// reflex's rules out.
pub fn core_subset<'d>(types: &Types<'d>, roots: &[&str]) -> Option<Vec<u8>> {
    use std::collections::{HashMap, HashSet};
    let n = types.len();
    // The roots by their first byte: most names differ from all of them there.
    let mut wanted: [Vec<&[u8]>; 256] = std::array::from_fn(|_| Vec::new());
    let mut count = 0;
    for root in roots.iter().map(|r| t::essential(r.as_bytes())) {
        let first = &mut wanted[root.first().copied().unwrap_or(0) as usize];
        if !root.is_empty() && !first.contains(&root) {
            first.push(root);
            count += 1;
        }
    }
    let mut found = HashSet::new();
    let mut keep = vec![false; n];
    let mut todo = Vec::new();
    for id in 1..n as u32 {
        // The kinds libbpf takes a candidate of (btf_kind_core_compat).
        if !matches!(
            types.kind(id),
            t::INT | t::STRUCT | t::UNION | t::ENUM | t::ENUM64 | t::FWD | t::TYPEDEF | t::FLOAT
        ) {
            continue;
        }
        let first = types.head(id, 1).first().copied().unwrap_or(0);
        if let Some(&root) = wanted[first as usize].iter().find(|w| types.named(id, w)) {
            found.insert(root);
            keep[id as usize] = true;
            todo.push(id);
        }
    }
    if found.len() != count {
        return None;
    }
    let u32_at = t::u32_at;
    // What each kept type is made of, but what a pointer points to.
    while let Some(id) = todo.pop() {
        let rec = types.record(id);
        let mut refers = |to: u32| {
            if let Some(k) = keep.get_mut(to as usize).filter(|k| to != 0 && !**k) {
                *k = true;
                todo.push(to);
            }
        };
        match types.kind(id) {
            t::STRUCT | t::UNION => {
                for m in 0..types.vlen(id) {
                    refers(u32_at(rec, 12 + 12 * m + 4));
                }
            }
            t::ARRAY => {
                refers(u32_at(rec, 12));
                refers(u32_at(rec, 16));
            }
            t::TYPEDEF | t::VOLATILE | t::CONST | t::RESTRICT | t::TYPE_TAG => {
                refers(types.size_or_type(id))
            }
            t::FUNC_PROTO => {
                refers(types.size_or_type(id));
                for p in 0..types.vlen(id) {
                    refers(u32_at(rec, 12 + 8 * p + 4));
                }
            }
            _ => {}
        }
    }
    // Renumbered in their order, with a string table of their own.
    let mut new_id = vec![0u32; n];
    let mut next = 1;
    for id in 1..n {
        if keep[id] {
            new_id[id] = next;
            next += 1;
        }
    }
    let mut strings = vec![0u8];
    let mut offsets: HashMap<&'d [u8], u32> = HashMap::new();
    let mut string = |s: &'d [u8]| -> u32 {
        if s.is_empty() {
            return 0;
        }
        *offsets.entry(s).or_insert_with(|| {
            let at = strings.len() as u32;
            strings.extend_from_slice(s);
            strings.push(0);
            at
        })
    };
    let put = |r: &mut [u8], at: usize, v: u32| r[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let mut out = Vec::new();
    for id in (1..n as u32).filter(|&id| keep[id as usize]) {
        let rec = types.record(id);
        let mut r = rec.to_vec();
        let remap = |old: u32| new_id.get(old as usize).copied().unwrap_or(0);
        put(&mut r, 0, string(types.name(id)));
        match types.kind(id) {
            t::PTR => put(&mut r, 8, 0),
            t::TYPEDEF | t::VOLATILE | t::CONST | t::RESTRICT | t::TYPE_TAG => {
                put(&mut r, 8, remap(types.size_or_type(id)))
            }
            t::ARRAY => {
                put(&mut r, 12, remap(u32_at(rec, 12)));
                put(&mut r, 16, remap(u32_at(rec, 16)));
            }
            t::STRUCT | t::UNION => {
                for m in 0..types.vlen(id) {
                    let at = 12 + 12 * m;
                    put(&mut r, at, string(types.string(u32_at(rec, at))));
                    put(&mut r, at + 4, remap(u32_at(rec, at + 4)));
                }
            }
            t::ENUM | t::ENUM64 => {
                let size = if types.kind(id) == t::ENUM { 8 } else { 12 };
                for v in 0..types.vlen(id) {
                    let at = 12 + size * v;
                    put(&mut r, at, string(types.string(u32_at(rec, at))));
                }
            }
            t::FUNC_PROTO => {
                put(&mut r, 8, remap(types.size_or_type(id)));
                for p in 0..types.vlen(id) {
                    let at = 12 + 8 * p;
                    put(&mut r, at, string(types.string(u32_at(rec, at))));
                    put(&mut r, at + 4, remap(u32_at(rec, at + 4)));
                }
            }
            _ => {} // int, forward declaration, float: nothing refers on
        }
        out.extend_from_slice(&r);
    }
    let mut blob = Vec::with_capacity(t::HEADER_LEN + out.len() + strings.len());
    blob.extend_from_slice(&t::MAGIC.to_ne_bytes());
    blob.extend_from_slice(&[1, 0]); // version, flags
    for v in [t::HEADER_LEN, 0, out.len(), out.len(), strings.len()] {
        blob.extend_from_slice(&(v as u32).to_ne_bytes());
    }
    blob.extend_from_slice(&out);
    blob.extend_from_slice(&strings);
    Some(blob)
}

/// The kinds of CO-RE relocation (enum bpf_core_relo_kind, one bit each)
/// that [`core_subset`] keeps what they need of: a field's offset, size,
/// existence, signedness and shifts; an enum value's existence and value.
pub const CORE_SUBSET_KINDS: u32 = 0b1100_0011_1111;

/// The running kernel's BTF, mapped and walked once for all that start-up
/// asks of it (the fentry ask, the cut for CO-RE), then let go.
pub struct Kernel {
    /// Borrows `_map`: declared first, dropped first.
    types: Types<'static>,
    _map: Mapped,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kernel BTF ({} types)", self.types.len())
    }
}

impl Kernel {
    pub fn open() -> io::Result<Kernel> {
        let map = Mapped::open(super::BTF_PATH)?;
        let bytes = map.bytes();
        // SAFETY: the bytes stay where they are (a mapping, or a Vec's heap
        // buffer) until `_map` drops, after `types`; nothing hands out
        // `types` for longer than a borrow of the `Kernel`.
        let bytes: &'static [u8] =
            unsafe { std::slice::from_raw_parts(bytes.as_ptr(), bytes.len()) };
        Ok(Kernel {
            types: Types::parse(bytes).map_err(bad)?,
            _map: map,
        })
    }

    pub fn types(&self) -> &Types<'_> {
        &self.types
    }
}

/// The functions of these syscalls in the running kernel's BTF, by
/// syscall name.
pub fn syscall_functions(
    kernel: &Kernel,
    syscalls: &[&str],
) -> io::Result<BTreeMap<String, Function>> {
    let prefix = syscall_prefix().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "reflex does not know the syscall functions of {}",
                std::env::consts::ARCH
            ),
        )
    })?;
    // A syscall without arguments has no `__x64_sys_<name>` of its own in
    // BTF: it is an alias of `__do_sys_<name>`, which takes the registers.
    let wanted: Vec<String> = syscalls
        .iter()
        .flat_map(|s| [format!("{prefix}{s}"), format!("{ALIASED}{s}")])
        .collect();
    let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let found = functions(kernel.types(), &refs);
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

// SAFETY: a read-only mapping (or buffer), never written after `open`.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

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
        let found = functions(&Types::parse(&data).unwrap(), &names);
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
        let kernel = Kernel::open().unwrap();
        let all = syscall_functions(&kernel, &["ptrace", "getppid", "read"]).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all["getppid"].params == 1 && all["getppid"].first_is_pointer);
    }
}
