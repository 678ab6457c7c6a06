//! Stage 3 — maps and kernel programs: load the BPF object, write compiled
//! rule sets into its maps, attach what they need, and hand out the event
//! stream and counters. Owns `bpf/` (the programs, and `reflex.h`, the
//! boundary), the hook choice (`plan`), every kind of attachment (`attach`),
//! the protected set's start (`protect`) and the names events carry
//! (`names`).
//!
//! Rule sets are double-buffered: [`Kernel::install`] writes the inactive set,
//! attaches any new hooks, then flips `state.active` in one map write. There is
//! no instant when neither the old nor the new rules apply, and a failure
//! before the flip leaves the old rules in force.
//!
//! [`Kernel::detach`] detaches every kind of attachment and waits until no
//! program can still be running; dropping [`Kernel`] detaches too: enforcement
//! lives exactly as long as the reflex process that loaded it (nothing is
//! pinned).

mod attach;
mod matcher;
mod names;
mod object;
pub mod plan;
mod protect;

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use libbpf_rs::skel::Skel;
use libbpf_rs::{MapCore, MapFlags, OpenObject};

pub use attach::FENTRY_TEMPLATE_SYSCALL;
pub use matcher::Matcher;
pub use names::RuleNames;
pub use object::{LoadError, relocated};
pub use plan::{Choice, Offer, Plan, Strategy};

use crate::abi::{self, types};
use crate::features::Features;
use crate::rules::{self, RuleSet};
use attach::Attachment;
use object::{Objects, map_err};

/// How often the reader looks at the event buffer when the kernel has not
/// woken it (events are batched: see `wake_at` in reflex.bpf.c).
pub const EVENT_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Sums of the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub matched: u64,
    pub signalled: u64,
    pub failed: u64,
    pub would_signal: u64,
    pub skipped: u64,
    pub audited: u64,
    pub denied: u64,
    pub would_deny: u64,
    pub paused: u64,
    /// Events the kernel could not reserve room for in the ring buffer.
    pub dropped: u64,
    /// Matches audited because the rule's circuit breaker was open.
    pub disarmed: u64,
}

/// Load-time settings: fixed for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Size of the event ring buffer: a power of two, at least one page.
    pub ring_buffer_bytes: u32,
    /// Only calls from children of this process are considered (0: all).
    pub scope_ppid: u32,
    /// Only calls from this process and its descendants are considered (0: all).
    pub scope_tree: u32,
    /// Wake the event reader at every event, not in batches.
    pub wake_every_event: bool,
    /// The raw hook is loaded able to signal other tasks (the kernel has
    /// bpf_send_signal_task).
    pub kfuncs: bool,
    /// reflex's guardian process, which no rule may signal (0: none).
    pub helper_tgid: u32,
    /// Events name the process, its lineage and what the call was about
    /// (false only in the benchmark, to measure that cost).
    pub describe: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ring_buffer_bytes: 1024 * 1024,
            scope_ppid: 0,
            scope_tree: 0,
            wake_every_event: false,
            kfuncs: false,
            helper_tgid: 0,
            describe: true,
        }
    }
}

/// The per-arity tracepoint stubs, by the syscall's number of arguments
/// (six and more share the last), which tail-call the evaluator.
pub(crate) const TP_STUBS: [&str; 7] = [
    "reflex_tp0",
    "reflex_tp1",
    "reflex_tp2",
    "reflex_tp3",
    "reflex_tp4",
    "reflex_tp5",
    "reflex_tp6",
];

/// The numbers of arguments of `set`'s entry stubs under `plan`: what
/// start-up loads of [`TP_STUBS`].
pub fn entry_stubs(set: &RuleSet, plan: &Plan) -> std::collections::BTreeSet<u8> {
    set.tables
        .iter()
        .filter(|(point, _)| matches!(point, abi::Point::Entry(_)))
        .map(|(_, table)| attach::stub_arity(plan, table.name))
        .collect()
}

/// Under fentry: the stub each syscall function's program is loaded from,
/// and the evaluator it tail-calls (attach/fentry.rs).
const FENTRY_PROGRAMS: &[&str] = &["reflex_fentry", "reflex_fentry_eval"];

/// What one rule set slot holds, to clear it before reuse.
#[derive(Debug, Default)]
struct Slot {
    entries: Vec<u32>,
    matches: Vec<types::reflex_match_key>,
    /// The install written here, and its number of rules.
    generation: u32,
    rules: usize,
}

/// Decisions by rule name and action (a `reflex_action` code).
pub type Decisions = std::collections::BTreeMap<(String, u8), u64>;

/// Writes rule set `set` of install `generation` into slot `slot` of the
/// maps, as the encoders put it; what was written, to clear it later.
fn write(
    objects: &Objects<'_>,
    slot: u32,
    set: &RuleSet,
    plan: &Plan,
    generation: u32,
) -> Result<Slot, LoadError> {
    let handler = match plan.strategy {
        Strategy::Tracepoint => types::reflex_handler::REFLEX_HANDLER_TRACEPOINT,
        Strategy::Raw => types::reflex_handler::REFLEX_HANDLER_RAW,
        Strategy::Fentry => types::reflex_handler::REFLEX_HANDLER_FENTRY,
    };
    let maps = &objects.main.maps;
    let mut written = Slot::default();
    for (id, rule) in set.rules.iter().enumerate() {
        let r = rules::encode_rule(id as u32, rule, generation);
        let idx = slot * abi::MAX_RULES as u32 + id as u32;
        maps.rules
            .update(&idx.to_ne_bytes(), abi::bytes(&r), MapFlags::ANY)
            .map_err(map_err("rules"))?;
    }
    for (key, value) in &set.matches {
        let (k, v) = rules::encode_match(key, value, slot as u8);
        maps.matches
            .update(abi::bytes(&k), abi::bytes(&v), MapFlags::ANY)
            .map_err(map_err("matches"))?;
        written.matches.push(k);
    }
    for (&point, table) in &set.tables {
        let nargs = plan.args.get(table.name).copied().unwrap_or(6);
        let s = rules::encode_table(point, table, handler, nargs);
        let index = point.index() as u32;
        let idx = slot * abi::TABLE + index;
        maps.syscalls
            .update(&idx.to_ne_bytes(), abi::bytes(&s), MapFlags::ANY)
            .map_err(map_err("syscalls"))?;
        written.entries.push(index);
    }
    Ok(written)
}

/// reflex's programs, loaded, with what is attached.
pub struct Kernel<'obj> {
    /// Every kind of attachment; dropped (detached) before the objects.
    attachments: Vec<Box<dyn Attachment>>,
    objects: Objects<'obj>,
    /// What the tracepoint evaluator in use handles, and the one that
    /// handles everything once a rule set has needed it.
    eval: rules::Uses,
    /// The slot in force, once a set is installed.
    active: Option<u32>,
    slots: [Slot; 2],
    /// The rule set in force, and how it is hooked.
    in_force: Option<(RuleSet, Plan)>,
    /// Protected executables and cgroups in force, and those of the rules
    /// being replaced.
    protected_objects: (Vec<types::reflex_file_key>, Vec<u64>),
    retired_objects: (Vec<types::reflex_file_key>, Vec<u64>),
    /// Installs so far: written into each rule, carried by each event.
    generation: u32,
    names: RuleNames,
    /// Decisions of installs whose slot has been reused since.
    retired: Decisions,
}

impl<'obj> Kernel<'obj> {
    /// Loads the object with its tracepoint programs, the evaluator verified
    /// for rule sets that use `uses` (a rule set that uses more gets one
    /// that handles everything at its install); nothing is enforced until
    /// [`Kernel::install`]. Nothing stays loaded if any step fails.
    ///
    /// Under the raw hook (`strategy`, fixed for the life of the process)
    /// the tracepoint programs are not loaded at all; under tracepoints
    /// only the stubs for the numbers of arguments in `stubs` (all for
    /// None): a reload that needs another loads all of them once.
    pub fn load(
        storage: &'obj mut MaybeUninit<OpenObject>,
        settings: &Settings,
        features: Arc<Features>,
        strategy: Strategy,
        uses: rules::Uses,
        stubs: Option<&std::collections::BTreeSet<u8>>,
    ) -> Result<Kernel<'obj>, LoadError> {
        let programs: Vec<&str> = match strategy {
            Strategy::Tracepoint => TP_STUBS
                .iter()
                .enumerate()
                .filter(|(n, _)| stubs.is_none_or(|a| a.contains(&(*n as u8))))
                .map(|(_, name)| *name)
                .chain(["reflex_tp_eval"])
                .collect(),
            Strategy::Raw => Vec::new(),
            Strategy::Fentry => FENTRY_PROGRAMS.to_vec(),
        };
        let objects = Objects::load(storage, settings, features, &programs, uses)?;
        if strategy == Strategy::Tracepoint {
            let eval = objects.main.progs.reflex_tp_eval.as_fd().as_raw_fd() as u32;
            objects
                .main
                .maps
                .tp_eval
                .update(&0u32.to_ne_bytes(), &eval.to_ne_bytes(), MapFlags::ANY)
                .map_err(map_err("tp_eval"))?;
        }
        Ok(Kernel {
            attachments: attach::all(),
            objects,
            eval: uses,
            active: None,
            slots: Default::default(),
            in_force: None,
            protected_objects: Default::default(),
            retired_objects: Default::default(),
            generation: 0,
            names: RuleNames::default(),
            retired: Decisions::new(),
        })
    }

    /// Puts `set` in force with one atomic switch, hooking syscalls as `plan`
    /// says. On error the rules in force before stay in force.
    pub fn install(&mut self, set: &RuleSet, plan: &Plan) -> Result<(), LoadError> {
        // Each kind of hook reads the active set at its own moment of a call:
        // switching kinds under live rules could answer a call twice or never.
        if let Some((_, in_force)) = &self.in_force {
            if in_force.strategy != plan.strategy {
                return Err(LoadError::Unavailable(format!(
                    "the rules in force use {} hooks; switching to {} needs a restart",
                    in_force.strategy, plan.strategy
                )));
            }
        }
        let next = match self.active {
            None => 0,
            Some(a) => 1 - a,
        };
        self.clear(next)?;
        self.generation += 1;
        self.write(next, set, plan)?;
        if plan.strategy != Strategy::Raw {
            self.widen_evaluator(plan.strategy, &set.uses())?;
        }

        // Every kind attaches what the new set needs; on failure each lets go
        // of what the set in force does not use.
        for i in 0..self.attachments.len() {
            if let Err(e) = self.attachments[i].attach(&self.objects, set, plan) {
                self.keep_only_in_force();
                return Err(e);
            }
        }
        self.protect(set)?;

        self.names.add(
            self.generation,
            set.rules.iter().map(|r| r.name.clone()).collect(),
        );
        self.switch_to(next, set.protect.cgroup_levels)?;
        self.active = Some(next);
        self.in_force = Some((set.clone(), plan.clone()));
        self.keep_only_in_force();
        self.forget_unprotected(set);
        Ok(())
    }

    /// Makes the tracepoint stubs tail-call an evaluator that handles
    /// everything, if the one in use does not handle `needed`: loaded once,
    /// swapped in with one map write, before the switch to the set that
    /// needs it (it answers the set in force as well).
    ///
    /// Under fentry the evaluator is only loaded here: the attachment puts
    /// it in each prototype's program array when it attaches.
    fn widen_evaluator(
        &mut self,
        strategy: Strategy,
        needed: &rules::Uses,
    ) -> Result<(), LoadError> {
        if self.eval.covers(needed) {
            return Ok(());
        }
        if strategy == Strategy::Fentry {
            self.objects.wide_eval = Some(self.objects.load_extra(&["reflex_fentry_eval"])?);
            self.eval = rules::Uses::ALL;
            return Ok(());
        }
        let extra = self.objects.load_extra(&["reflex_tp_eval"])?;
        let eval = extra.skel.progs.reflex_tp_eval.as_fd().as_raw_fd() as u32;
        self.objects
            .main
            .maps
            .tp_eval
            .update(&0u32.to_ne_bytes(), &eval.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("tp_eval"))?;
        self.objects.wide_eval = Some(extra);
        self.eval = rules::Uses::ALL;
        Ok(())
    }

    /// Whether the tracepoint evaluator handles every feature (loaded so
    /// at start, or widened since by a rule set that needed more).
    pub fn evaluator_handles_all(&self) -> bool {
        self.eval == rules::Uses::ALL
    }

    fn keep_only_in_force(&mut self) {
        let in_force = self.in_force.as_ref().map(|(s, p)| (s, p));
        for a in &mut self.attachments {
            a.keep_only(in_force);
        }
    }

    /// Zeroes what set `slot` held (its decisions kept, by rule name).
    fn clear(&mut self, slot: u32) -> Result<(), LoadError> {
        let counts = self.slot_decisions(slot);
        for (key, n) in counts {
            *self.retired.entry(key).or_default() += n;
        }
        let old = std::mem::take(&mut self.slots[slot as usize]);
        let zeros = vec![
            vec![0u8; std::mem::size_of::<types::reflex_rule_stats>()];
            libbpf_rs::num_possible_cpus().unwrap_or(1)
        ];
        for id in 0..old.rules as u32 {
            let idx = slot * abi::MAX_RULES as u32 + id;
            self.objects
                .main
                .maps
                .rule_stats
                .update_percpu(&idx.to_ne_bytes(), &zeros, MapFlags::ANY)
                .map_err(map_err("rule_stats"))?;
        }
        let empty = types::reflex_syscall::default();
        let maps = &self.objects.main.maps;
        for index in old.entries {
            let idx = slot * abi::TABLE + index;
            maps.syscalls
                .update(&idx.to_ne_bytes(), abi::bytes(&empty), MapFlags::ANY)
                .map_err(map_err("syscalls"))?;
        }
        for key in &old.matches {
            let _ = maps.matches.delete(abi::bytes(key));
        }
        Ok(())
    }

    /// Writes `set` into slot `slot`, as the encoders put it.
    fn write(&mut self, slot: u32, set: &RuleSet, plan: &Plan) -> Result<(), LoadError> {
        let mut written = write(&self.objects, slot, set, plan, self.generation)?;
        written.generation = self.generation;
        written.rules = set.rules.len();
        self.slots[slot as usize] = written;
        Ok(())
    }

    /// Writes the protected objects and the processes protected now (before
    /// the switch, so the new rules never run without their protection).
    fn protect(&mut self, set: &RuleSet) -> Result<(), LoadError> {
        let p = &set.protect;
        let exes: Vec<types::reflex_file_key> = p
            .executables
            .iter()
            .map(|&(dev, ino)| types::reflex_file_key {
                dev,
                ino,
                ..Default::default()
            })
            .collect();
        let maps = &self.objects.main.maps;
        for key in &exes {
            maps.protected_exes
                .update(abi::bytes(key), &[1], MapFlags::ANY)
                .map_err(map_err("protected_exes"))?;
        }
        for id in &p.cgroups {
            maps.protected_cgroups
                .update(&id.to_ne_bytes(), &[1], MapFlags::ANY)
                .map_err(map_err("protected_cgroups"))?;
        }
        // The followers are attached already: processes forked from here on
        // are followed by the kernel; the scan finds those that exist.
        for (pid, why) in protect::scan(p) {
            maps.protected
                .update(&pid.to_ne_bytes(), &[why], MapFlags::ANY)
                .map_err(map_err("protected"))?;
        }
        let old = std::mem::replace(&mut self.protected_objects, (exes, p.cgroups.clone()));
        self.retired_objects = old;
        Ok(())
    }

    /// After the switch: forget what only the previous rules protected.
    fn forget_unprotected(&mut self, set: &RuleSet) {
        let (old_exes, old_cgroups) = std::mem::take(&mut self.retired_objects);
        let maps = &self.objects.main.maps;
        for key in &old_exes {
            if !self
                .protected_objects
                .0
                .iter()
                .any(|k| abi::bytes(k) == abi::bytes(key))
            {
                let _ = maps.protected_exes.delete(abi::bytes(key));
            }
        }
        for id in &old_cgroups {
            if !self.protected_objects.1.contains(id) {
                let _ = maps.protected_cgroups.delete(&id.to_ne_bytes());
            }
        }
        let now = protect::scan(&set.protect);
        let stale: Vec<Vec<u8>> = maps
            .protected
            .keys()
            .filter(|k| {
                let pid = k.as_slice().try_into().map(u32::from_ne_bytes).unwrap_or(0);
                !now.contains_key(&pid)
            })
            .collect();
        for key in stale {
            let _ = maps.protected.delete(&key);
        }
    }

    /// Puts set `slot` in force and, when another set was, returns only
    /// once no program can still be reading that one (the next install
    /// rewrites it).
    fn switch_to(&mut self, slot: u32, protect_cgroup_levels: u32) -> Result<(), LoadError> {
        let st = types::reflex_state {
            active: slot,
            protect_cgroup_levels,
        };
        self.objects
            .main
            .maps
            .state
            .update(&0u32.to_ne_bytes(), abi::bytes(&st), MapFlags::ANY)
            .map_err(map_err("state"))?;
        if self.active.is_none() {
            return Ok(());
        }
        self.grace()
    }

    /// Returns once every program run that started before the call has
    /// ended: an RCU grace period (a map-in-map update, which the kernel
    /// completes only then; ~15 ms here).
    fn grace(&self) -> Result<(), LoadError> {
        let maps = &self.objects.main.maps;
        let inner = maps.grace_inner.as_fd().as_raw_fd() as u32;
        maps.grace
            .update(&0u32.to_ne_bytes(), &inner.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err("grace"))
    }

    /// The rule names of recent installs, for decoding events.
    pub fn names(&self) -> &RuleNames {
        &self.names
    }

    /// Where the programs are attached, for people to read.
    pub fn hooks(&self) -> Vec<String> {
        self.attachments.iter().flat_map(|a| a.describe()).collect()
    }

    /// Stops enforcement: detaches every kind of attachment, then waits until
    /// no program can still be running (so none can pause a process after
    /// this returns). Events already written stay readable, and paused
    /// processes stay listed for [`Kernel::take_due_pauses`].
    pub fn detach(&mut self) -> Result<(), LoadError> {
        for a in &mut self.attachments {
            a.detach();
        }
        self.grace()
    }

    /// Processes stopped by reflex whose SIGCONT is due by `boot_ns` (all of
    /// them with u64::MAX), taken out of the kernel's list: (pid, rule name).
    pub fn take_due_pauses(&mut self, boot_ns: u64) -> (Vec<(u32, String)>, Option<u64>) {
        let paused = &self.objects.main.maps.paused;
        let mut next: Option<u64> = None;
        let due: Vec<(u32, String)> = paused
            .keys()
            .filter_map(|k| {
                let pid = u32::from_ne_bytes(k.as_slice().try_into().ok()?);
                let v = paused.lookup(&k, MapFlags::ANY).ok()??;
                let p: types::reflex_pause = abi::read(&v)?;
                if p.resume_at > boot_ns {
                    next = Some(next.map_or(p.resume_at, |n| n.min(p.resume_at)));
                    return None;
                }
                let rule = self
                    .names
                    .get(p.generation, p.rule)
                    .unwrap_or("?")
                    .to_string();
                Some((pid, rule))
            })
            .collect();
        for (pid, _) in &due {
            let _ = paused.delete(&pid.to_ne_bytes());
        }
        (due, next)
    }

    /// Decisions the kernel has counted in `slot`, by rule name and action.
    fn slot_decisions(&self, slot: u32) -> Decisions {
        let s = &self.slots[slot as usize];
        let mut out = Decisions::new();
        for id in 0..s.rules as u32 {
            let idx = slot * abi::MAX_RULES as u32 + id;
            let Ok(Some(per_cpu)) = self
                .objects
                .main
                .maps
                .rule_stats
                .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            else {
                continue;
            };
            let name = self.names.get(s.generation, id).unwrap_or("?");
            for cpu in per_cpu {
                let Some(c) = abi::read::<types::reflex_rule_stats>(&cpu) else {
                    continue;
                };
                for (action, n) in c.count.iter().enumerate().filter(|(_, n)| **n > 0) {
                    *out.entry((name.to_string(), action as u8)).or_default() += n;
                }
            }
        }
        out
    }

    /// Every decision so far, by rule name and action: counted by the
    /// kernel, per CPU, whether or not its event was reported; a rule that
    /// keeps its name across reloads keeps counting.
    pub fn decisions(&self) -> Decisions {
        let mut all = self.retired.clone();
        for slot in 0..2 {
            for (key, n) in self.slot_decisions(slot) {
                *all.entry(key).or_default() += n;
            }
        }
        all
    }

    /// Rules of the set in force whose circuit breaker is open, by name
    /// (read from the kernel's map, so a dropped event hides none).
    pub fn disarmed(&self) -> Vec<String> {
        let disarms = &self.objects.main.maps.disarms;
        let mut open: Vec<String> = disarms
            .keys()
            .filter_map(|k| {
                let key: types::reflex_disarm_key = abi::read(&k)?;
                if key.generation != self.generation {
                    return None;
                }
                let v = disarms.lookup(&k, MapFlags::ANY).ok()??;
                let d: types::reflex_disarm = abi::read(&v)?;
                (d.open != 0).then(|| {
                    self.names
                        .get(key.generation, key.rule)
                        .unwrap_or("?")
                        .to_string()
                })
            })
            .collect();
        open.sort();
        open
    }

    /// Processes reflex has stopped and will resume.
    pub fn stopped(&self) -> u64 {
        self.objects.main.maps.paused.keys().count() as u64
    }

    /// The kernel's list of processes reflex stopped (pid → when to resume),
    /// for the guardian to hold.
    pub fn paused_map(&self) -> std::os::fd::BorrowedFd<'_> {
        self.objects.main.maps.paused.as_fd()
    }

    /// The ring buffer carrying [`types::reflex_event`] records.
    pub fn events_map(&self) -> &dyn MapCore {
        &self.objects.main.maps.events
    }

    /// Hook hits on which the kernel did not run one of reflex's programs,
    /// summed over them: the kernel runs a tracing program at most once per
    /// CPU at a time, and skips (and counts, as `recursion_misses`, 5.12+)
    /// a hit that comes while it runs there. Where programs on syscall
    /// hooks can be preempted (as seen on 7.3), another task's call on the
    /// same CPU is such a hit; nothing reflex does answers it, so it is
    /// reported.
    pub fn missed(&self) -> u64 {
        self.missed_by_program().values().sum()
    }

    /// [`Kernel::missed`], by program.
    pub fn missed_by_program(&self) -> std::collections::BTreeMap<String, u64> {
        let mut all = std::collections::BTreeMap::new();
        let main = object::missed(self.objects.main.object());
        for (program, n) in main
            .into_iter()
            .chain(self.attachments.iter().flat_map(|a| a.missed()))
        {
            *all.entry(program).or_default() += n;
        }
        all
    }

    pub fn stats(&self) -> Result<Stats, libbpf_rs::Error> {
        let per_cpu = self
            .objects
            .main
            .maps
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .unwrap_or_default();
        let mut sum = [0u64; types::reflex_stat::REFLEX_STAT_MAX.0 as usize];
        for cpu in per_cpu {
            let Some(s) = abi::read::<types::reflex_stats>(&cpu) else {
                continue;
            };
            for (total, n) in sum.iter_mut().zip(s.count) {
                *total += n;
            }
        }
        use types::reflex_stat as S;
        let get = |s: S| sum[s.0 as usize];
        Ok(Stats {
            matched: get(S::REFLEX_STAT_MATCHED),
            signalled: get(S::REFLEX_STAT_SIGNALLED),
            failed: get(S::REFLEX_STAT_FAILED),
            would_signal: get(S::REFLEX_STAT_WOULD_SIGNAL),
            skipped: get(S::REFLEX_STAT_SKIPPED),
            audited: get(S::REFLEX_STAT_AUDITED),
            denied: get(S::REFLEX_STAT_DENIED),
            paused: get(S::REFLEX_STAT_PAUSED),
            would_deny: get(S::REFLEX_STAT_WOULD_DENY),
            dropped: get(S::REFLEX_STAT_DROPPED),
            disarmed: get(S::REFLEX_STAT_DISARMED),
        })
    }
}
