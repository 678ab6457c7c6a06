//! The BTF format (the kernel's Documentation/bpf/btf.rst), walked: each
//! type's record by id, its kind, name and what follows its header. No other
//! part of reflex: the build script reads the object's CO-RE relocations
//! with it too.

pub const MAGIC: u16 = 0xeb9f;
/// The header this version of the format has (and reflex writes).
pub const HEADER_LEN: usize = 24;

pub const INT: u32 = 1;
pub const PTR: u32 = 2;
pub const ARRAY: u32 = 3;
pub const STRUCT: u32 = 4;
pub const UNION: u32 = 5;
pub const ENUM: u32 = 6;
pub const FWD: u32 = 7;
pub const TYPEDEF: u32 = 8;
pub const VOLATILE: u32 = 9;
pub const CONST: u32 = 10;
pub const RESTRICT: u32 = 11;
pub const FUNC: u32 = 12;
pub const FUNC_PROTO: u32 = 13;
pub const FLOAT: u32 = 16;
pub const TYPE_TAG: u32 = 18;
pub const ENUM64: u32 = 19;

/// The bytes after a type's 12-byte header, by kind; None for a kind this
/// walker does not know.
pub fn trailing(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // int, var, decl tag
        3 => 12,                      // array
        4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
        6 | 13 => 8 * vlen,           // enum, function prototype
        0 | 2 | 7..=12 | 16 | 18 => 0,
        _ => return None,
    })
}

/// A name without its CO-RE flavour (`kernfs_node___old` is a
/// `kernfs_node`), as libbpf's `bpf_core_essential_name_len` cuts it.
pub fn essential(name: &[u8]) -> &[u8] {
    let n = name.len();
    for i in (0..n.saturating_sub(4)).rev() {
        let s = &name[i..];
        if s[0] != b'_' && s[1..4] == *b"___" && s[4] != b'_' {
            return &name[..i + 1];
        }
    }
    name
}

/// A native-endian u32 at `at` of `data` (0 past its end).
pub fn u32_at(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
}

/// A BTF blob's types, by id (0 is void).
pub struct Types<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Where each type's record starts in `types`, by id.
    offsets: Vec<u32>,
}

impl<'a> Types<'a> {
    /// Walks the BTF in `data` (this machine's byte order).
    pub fn parse(data: &'a [u8]) -> Result<Types<'a>, String> {
        if data.get(..2).map(|m| u16::from_ne_bytes([m[0], m[1]])) != Some(MAGIC) {
            return Err("not BTF in this machine's byte order".into());
        }
        let field = |i: usize| u32_at(data, 8 + 4 * i) as usize;
        let hdr_len = u32_at(data, 4) as usize;
        let (type_off, type_len, str_off, str_len) = (field(0), field(1), field(2), field(3));
        let (t, s) = (hdr_len + type_off, hdr_len + str_off);
        if hdr_len < HEADER_LEN || data.len() < t + type_len || data.len() < s + str_len {
            return Err("sections past the end".into());
        }
        let types = &data[t..t + type_len];
        let mut offsets = Vec::with_capacity(type_len / 16);
        offsets.push(0);
        let mut at = 0;
        while at + 12 <= types.len() {
            offsets.push(at as u32);
            let info = u32_at(types, at + 4);
            let kind = (info >> 24) & 0x1f;
            at += 12
                + trailing(kind, (info & 0xffff) as usize)
                    .ok_or_else(|| format!("unknown kind {kind}"))?;
        }
        if at != types.len() {
            return Err("a type runs past the type section".into());
        }
        Ok(Types {
            types,
            strings: &data[s..s + str_len],
            offsets,
        })
    }

    /// Ids run from 0 (void) to `len() - 1`.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    fn at(&self, id: u32) -> Option<usize> {
        (id != 0)
            .then(|| self.offsets.get(id as usize).map(|&o| o as usize))
            .flatten()
    }

    pub fn info(&self, id: u32) -> u32 {
        self.at(id).map_or(0, |o| u32_at(self.types, o + 4))
    }

    pub fn kind(&self, id: u32) -> u32 {
        (self.info(id) >> 24) & 0x1f
    }

    pub fn vlen(&self, id: u32) -> usize {
        (self.info(id) & 0xffff) as usize
    }

    /// The header's third word: a size, or the type referred to.
    pub fn size_or_type(&self, id: u32) -> u32 {
        self.at(id).map_or(0, |o| u32_at(self.types, o + 8))
    }

    /// The type's whole record: its header and what follows it.
    pub fn record(&self, id: u32) -> &'a [u8] {
        let Some(o) = self.at(id) else {
            return &[];
        };
        let info = u32_at(self.types, o + 4);
        let len = 12 + trailing((info >> 24) & 0x1f, (info & 0xffff) as usize).unwrap_or(0);
        &self.types[o..o + len]
    }

    pub fn name(&self, id: u32) -> &'a [u8] {
        self.head(id, usize::MAX)
    }

    /// The string section from the type's name on (empty for none).
    fn strings_at_name(&self, id: u32) -> &'a [u8] {
        self.at(id).map_or(&[][..], |o| {
            let off = u32_at(self.types, o) as usize;
            self.strings.get(off..).unwrap_or_default()
        })
    }

    /// Up to the first `n` bytes of the type's name, not measuring the rest.
    pub fn head(&self, id: u32, n: usize) -> &'a [u8] {
        let rest = self.strings_at_name(id);
        let rest = &rest[..rest.len().min(n)];
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// Whether the type's name is `name` or a flavour of it (`name___old`),
    /// compared where it lies: no length is measured for a name that
    /// differs in its first bytes.
    pub fn named(&self, id: u32, name: &[u8]) -> bool {
        let rest = self.strings_at_name(id);
        if !rest.starts_with(name) {
            return false;
        }
        match rest.get(name.len()) {
            Some(0) | None => true,
            Some(_) => essential(self.name(id)) == name,
        }
    }

    /// The string at `off` of the string section.
    pub fn string(&self, off: u32) -> &'a [u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::essential;

    #[test]
    fn flavours_are_cut_as_libbpf_cuts_them() {
        assert_eq!(essential(b"kernfs_node___old"), b"kernfs_node");
        assert_eq!(essential(b"cgroup___ids"), b"cgroup");
        assert_eq!(essential(b"task_struct"), b"task_struct");
        // Not a flavour: four underscores, or nothing after them.
        assert_eq!(essential(b"a____b"), b"a____b");
        assert_eq!(essential(b"abc___"), b"abc___");
        assert_eq!(essential(b"___x"), b"___x");
    }
}
