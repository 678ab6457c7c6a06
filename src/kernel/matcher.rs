//! The kernel's matcher on its own, for tests: a rule set written into the
//! maps and never attached, and each call run through the very `find_rule`
//! the programs use, with BPF_PROG_TEST_RUN (raw_tp programs: Linux 5.10+).
//! Nothing is carried out: no signal, no event.

use std::mem::MaybeUninit;
use std::sync::Arc;

use libbpf_rs::{MapCore, MapFlags, OpenObject, ProgramInput};

use super::object::{LoadError, Objects, map_err};
use super::{Plan, Settings, Strategy};
use crate::abi::{self, types};
use crate::features::Features;
use crate::policy::Call;
use crate::rules::RuleSet;

const PROGRAMS: &[&str] = &["reflex_test_match"];

pub struct Matcher<'obj> {
    objects: Objects<'obj>,
}

impl<'obj> Matcher<'obj> {
    /// Loads the test program and writes `set` into rule-set slot 0.
    /// `protected`: the pids the protected set holds.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        features: Arc<Features>,
        set: &RuleSet,
        protected: &[u32],
    ) -> Result<Matcher<'obj>, LoadError> {
        let objects = Objects::load(
            storage,
            &Settings::default(),
            features,
            PROGRAMS,
            crate::rules::Uses::ALL,
        )?;
        let plan = Plan {
            strategy: Strategy::Tracepoint,
            reason: "never attached".into(),
            args: Default::default(),
            functions: Default::default(),
        };
        super::write(&objects, 0, set, &plan, 1)?;
        for pid in protected {
            objects
                .main
                .maps
                .protected
                .update(&pid.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(map_err("protected"))?;
        }
        Ok(Matcher { objects })
    }

    /// The index of the rule that answers `call`, as the kernel finds it.
    pub fn answer(&self, call: &Call) -> Result<Option<u32>, LoadError> {
        let half = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        let mut values = [0u64; 8];
        values[..6].copy_from_slice(&call.args);
        values[6] = call.ret;
        values[7] = call.duration_ns;
        let mut c = types::reflex_test_call {
            args: values,
            exe: [call.exe.1, u64::from(call.exe.0)],
            parent_exe: [call.parent_exe.1, u64::from(call.parent_exe.0)],
            comm: [half(&call.comm[..8]), half(&call.comm[8..])],
            file: call.file.map_or([0, 0], |(dev, ino)| [ino, u64::from(dev)]),
            index: call.point.index() as u32,
            set: 0,
            pid: call.pid,
            ppid: call.ppid,
            uid: call.uid,
            gid: call.gid,
            ..Default::default()
        };
        for (dst, id) in c.cgroups.iter_mut().zip(&call.cgroups) {
            *dst = *id;
        }
        for (dst, pid) in c.ancestors.iter_mut().zip(&call.ancestors) {
            *dst = *pid;
        }
        for (dst, (dev, ino)) in c.ancestor_exes.iter_mut().zip(&call.ancestor_exes) {
            *dst = [*ino, u64::from(*dev)];
        }
        let maps = &self.objects.main.maps;
        maps.test_calls
            .update(&0u32.to_ne_bytes(), abi::bytes(&c), MapFlags::ANY)
            .map_err(map_err("test_calls"))?;
        let out = self
            .objects
            .main
            .progs
            .reflex_test_match
            .test_run(ProgramInput::default())
            .map_err(|source| LoadError::Attach {
                program: "reflex_test_match",
                hook: "BPF_PROG_TEST_RUN".into(),
                source,
            })?;
        Ok(out.return_value.checked_sub(1))
    }
}
