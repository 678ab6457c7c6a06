//! The sampler: one perf event per online CPU, counting cpu-clock (or
//! cycles) at the sampling rules' frequency; `reflex_sample` runs on each
//! sample. Attached while sampling rules are in force.

use std::io;

use libbpf_rs::Link;
use libbpf_rs::libbpf_sys as sys;

use super::Attachment;
use crate::kernel::object::{Extra, LoadError, Objects};
use crate::kernel::plan::Plan;
use crate::policy::{Sample, SampleEvent};
use crate::rules::RuleSet;

const PROGRAMS: &[&str] = &["reflex_sample"];

#[derive(Default)]
pub(crate) struct Sampler {
    extra: Option<Extra>,
    /// The event the program is attached with, and its per-CPU links.
    on: Option<(Sample, Vec<Link>)>,
}

impl Attachment for Sampler {
    fn attach(
        &mut self,
        objects: &Objects<'_>,
        set: &RuleSet,
        _plan: &Plan,
    ) -> Result<(), LoadError> {
        let Some(sample) = set.sampling else {
            return Ok(());
        };
        if self.on.as_ref().is_some_and(|(s, _)| *s != sample) {
            self.on = None; // another frequency: new events
        }
        if self.on.is_some() {
            return Ok(());
        }
        if self.extra.is_none() {
            self.extra = Some(objects.load_extra(PROGRAMS)?);
        }
        let prog = &self
            .extra
            .as_ref()
            .expect("loaded above")
            .skel
            .progs
            .reflex_sample;
        let unavailable = |e: io::Error| LoadError::Unavailable(e.to_string());
        let mut links = Vec::new();
        for cpu in online_cpus().map_err(unavailable)? {
            let fd = open(&sample, cpu).map_err(unavailable)?;
            let link = prog.attach_perf_event(fd).map_err(|source| {
                // SAFETY: the fd was not handed over.
                unsafe { libc::close(fd) };
                LoadError::Attach {
                    program: "reflex_sample",
                    hook: format!("perf_event on CPU {cpu}"),
                    source,
                }
            })?;
            links.push(link);
        }
        self.on = Some((sample, links));
        Ok(())
    }

    fn keep_only(&mut self, in_force: Option<(&RuleSet, &Plan)>) {
        if in_force.is_none_or(|(set, _)| set.sampling.is_none()) {
            self.on = None;
        }
    }

    fn detach(&mut self) {
        self.on = None;
    }

    fn describe(&self) -> Vec<String> {
        self.on
            .iter()
            .map(|(sample, links)| {
                format!("perf_event ({} Hz, {} CPUs)", sample.frequency, links.len())
            })
            .collect()
    }

    fn missed(&self) -> Vec<(String, u64)> {
        self.extra.as_ref().map(Extra::missed).unwrap_or_default()
    }
}

/// The online CPUs, from /sys/devices/system/cpu/online (`0-3,5`).
fn online_cpus() -> io::Result<Vec<i32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("cpu list '{text}'"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (i32, i32) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(cpus)
}

/// Opens the event on `cpu` for every process; the fd, owned by the caller
/// (a libbpf perf link closes it).
fn open(sample: &Sample, cpu: i32) -> io::Result<i32> {
    // SAFETY: an all-zero perf_event_attr is valid (everything off).
    let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
    let (kind, config) = match sample.event {
        SampleEvent::CpuClock => (
            sys::PERF_TYPE_SOFTWARE,
            u64::from(sys::PERF_COUNT_SW_CPU_CLOCK),
        ),
        SampleEvent::Cycles => (
            sys::PERF_TYPE_HARDWARE,
            u64::from(sys::PERF_COUNT_HW_CPU_CYCLES),
        ),
    };
    attr.type_ = kind;
    attr.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
    attr.config = config;
    attr.__bindgen_anon_1.sample_freq = sample.frequency;
    attr.set_freq(1);
    // SAFETY: a valid attr; pid -1 with a cpu: every process on that CPU.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const sys::perf_event_attr,
            -1 as libc::pid_t,
            cpu,
            -1 as libc::c_int,
            libc::c_ulong::from(sys::PERF_FLAG_FD_CLOEXEC),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let what = match sample.event {
            SampleEvent::CpuClock => "cpu-clock",
            SampleEvent::Cycles => "cycles (a hardware counter; this machine may not expose them)",
        };
        return Err(io::Error::new(
            e.kind(),
            format!("perf event {what} on CPU {cpu}: {e}"),
        ));
    }
    Ok(fd as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_listed() {
        let cpus = online_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.contains(&0));
    }
}
