//! The sampler's perf events: one per online CPU, counting cpu-clock (or
//! cycles) at a frequency; `reflex_sample` runs on each sample.

use std::io;

use libbpf_rs::libbpf_sys as sys;

use crate::policy::{Sample, SampleEvent};

/// The online CPUs, from /sys/devices/system/cpu/online (`0-3,5`).
pub fn online_cpus() -> io::Result<Vec<i32>> {
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
pub fn open(sample: &Sample, cpu: i32) -> io::Result<i32> {
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
