//! The bottom layer: the kernel/user boundary, and nothing else.
//!
//! Every struct, enum and limit that crosses it is defined once, in
//! `src/kernel/bpf/reflex.h`; libbpf-cargo generates the Rust side from the
//! object's BTF ([`types`]). This module gives those types one raw-bytes view
//! ([`bytes`], [`read`]), names the limits, and owns the table-index encoding
//! ([`Point`]: which rule table a syscall entry, a syscall exit, a security
//! hook or the sampler uses). It imports nothing from the rest of reflex.

pub mod hook;

pub use hook::Hook;

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
pub(crate) mod skel {
    include!(concat!(env!("OUT_DIR"), "/reflex.skel.rs"));
}

/// What the object's CO-RE relocations are relative to, read from it by the
/// build script.
mod core {
    include!(concat!(env!("OUT_DIR"), "/core_roots.rs"));
}
pub use core::{CORE_RELO_KINDS, CORE_ROOTS};

/// The boundary types, generated from `reflex.h`.
pub use skel::types;
use types::reflex_limit as L;

/// Every boundary type is plain data: integers, arrays of integers and
/// explicit padding (libbpf-cargo writes the gaps out as `__pad_N` fields),
/// so any bytes of the right length are a value and a value's bytes are all
/// initialised.
macro_rules! plain {
    ($($t:ident),* $(,)?) => {
        $(
            // SAFETY: see above; generated #[repr(C)] without implicit padding.
            unsafe impl plain::Plain for types::$t {}
        )*
    };
}

plain!(
    reflex_event,
    reflex_rule,
    reflex_check,
    reflex_syscall,
    reflex_match_key,
    reflex_match,
    reflex_state,
    reflex_pause,
    reflex_file_key,
    reflex_stats,
    reflex_rule_stats,
    reflex_test_call,
    reflex_disarm,
    reflex_disarm_key,
);

/// The bytes of a boundary value, as the kernel reads them (map keys and
/// values).
pub fn bytes<T: plain::Plain>(v: &T) -> &[u8] {
    // SAFETY: T is Plain: no implicit padding, so every byte is initialised.
    unsafe { plain::as_bytes(v) }
}

/// A boundary value from a record that carries only its first bytes (an
/// event's strings in use): the rest reads as zeros. None when longer.
pub fn read_prefix<T: plain::Plain + Default>(bytes: &[u8]) -> Option<Box<T>> {
    let mut v = Box::<T>::default();
    // SAFETY: T is Plain: any bytes are a valid T.
    let whole = unsafe { plain::as_mut_bytes(&mut *v) };
    whole.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(v)
}

/// A boundary value from the kernel's bytes (a ring buffer record, a map
/// value), whatever their alignment; None when there are too few.
pub fn read<T: plain::Plain + Default>(bytes: &[u8]) -> Option<T> {
    let mut v = T::default();
    plain::copy_from_bytes(&mut v, bytes).ok()?;
    Some(v)
}

const fn limit(l: L) -> usize {
    l.0 as usize
}

/// Rules in one rule set.
pub const MAX_RULES: usize = limit(L::REFLEX_MAX_RULES);
/// Rules on one table entry (a syscall, a hook): the bits of a mask.
pub const SLOTS: usize = limit(L::REFLEX_SLOTS);
/// Mask, range and `protected` argument checks per rule.
pub const MAX_CHECKS: usize = limit(L::REFLEX_MAX_CHECKS);
/// Rules with such checks on one table entry.
pub const MAX_CHECKED: usize = limit(L::REFLEX_MAX_CHECKED);
/// Selector entries one rule set may use (the map holds both sets).
pub const MAX_MATCHES: usize = limit(L::REFLEX_MAX_MATCHES) / 2;
/// Cgroup levels below the root that a selector may name, plus the root.
pub const CGROUP_LEVELS: usize = limit(L::REFLEX_CGROUP_LEVELS);
/// Processes kept in the protected set.
pub const MAX_PROTECTED: usize = limit(L::REFLEX_MAX_PROTECTED);
/// Protected executables and cgroups together.
pub const MAX_PROTECT_OBJECTS: usize = limit(L::REFLEX_MAX_PROTECT_OBJECTS);
/// Most distinct things a rule's circuit breaker allows.
pub const MAX_DISARM_DISTINCT: u64 = L::REFLEX_MAX_DISARM_DISTINCT.0 as u64;
/// Selector dimensions.
pub const DIMS: usize = types::reflex_dim::REFLEX_DIM_MAX.0 as usize;
/// Entries of one rule set's table.
pub const TABLE: u32 = L::REFLEX_MAX_SYSCALLS.0;
/// Syscall numbers reflex can watch: those below the first hook's entry.
pub const MAX_SYSCALL: i32 = L::REFLEX_FIRST_HOOK.0 as i32;
/// Where syscall exits start in the table.
const EXIT_BASE: i32 = L::REFLEX_EXIT_BASE.0 as i32;
const SAMPLE: i32 = types::reflex_hook::REFLEX_HOOK_SAMPLE.0 as i32;

/// Where a rule answers: what one entry of the rule table is attached to.
/// The kernel numbers them in one table (see `reflex_limit`): syscall entries
/// by number, then the security hooks and the sampler, then syscall exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Point {
    /// A syscall's entry, by number.
    Entry(i32),
    /// A syscall's exit, by number.
    Exit(i32),
    /// A security hook.
    Hook(Hook),
    /// The sampling perf event.
    Sample,
}

impl Point {
    /// The table index the kernel uses for this point.
    pub fn index(self) -> i32 {
        match self {
            Point::Entry(nr) => nr,
            Point::Exit(nr) => EXIT_BASE + nr,
            Point::Hook(h) => h.index(),
            Point::Sample => SAMPLE,
        }
    }

    /// The point of table index `index` (as events carry it).
    pub fn of(index: i32) -> Point {
        if index >= EXIT_BASE {
            Point::Exit(index - EXIT_BASE)
        } else if index == SAMPLE {
            Point::Sample
        } else if let Some(h) = Hook::from_index(index) {
            Point::Hook(h)
        } else {
            Point::Entry(index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_round_trip_through_the_table_index() {
        for p in [
            Point::Entry(0),
            Point::Entry(101),
            Point::Entry(MAX_SYSCALL - 1),
            Point::Exit(0),
            Point::Exit(101),
            Point::Sample,
        ]
        .into_iter()
        .chain(hook::ALL.map(Point::Hook))
        {
            assert_eq!(Point::of(p.index()), p, "{p:?}");
            assert!((0..TABLE as i32).contains(&p.index()), "{p:?}");
        }
        assert_eq!(Point::Exit(0).index(), EXIT_BASE);
    }

    #[test]
    fn bytes_round_trip() {
        let e = types::reflex_event {
            pid: 7,
            count: 9,
            ..Default::default()
        };
        let b = bytes(&e).to_vec();
        assert_eq!(b.len(), std::mem::size_of::<types::reflex_event>());
        // Unaligned input reads as well.
        let mut shifted = vec![0u8];
        shifted.extend(&b);
        let back: types::reflex_event = read(&shifted[1..]).unwrap();
        assert_eq!((back.pid, back.count), (7, 9));
        assert!(read::<types::reflex_event>(&b[..8]).is_none());
    }
}
