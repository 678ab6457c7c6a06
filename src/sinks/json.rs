//! One JSON object per line.

use std::io;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{Output, Sink};
use crate::events::{Event, Outcome};
use crate::policy::Target;

pub struct Json<W: Output> {
    out: W,
}

impl<W: Output> Json<W> {
    pub fn new(out: W) -> Self {
        Json { out }
    }
}

/// The JSON form of an [`Event`]; field names are a public interface.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub rule: &'a str,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: &'a str,
    /// The syscall, or for hook rules the LSM hook.
    pub syscall: &'a str,
    /// `lsm/…` for events from a security hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<&'static str>,
    /// `exit` for exit rules (then `ret` and `duration_ns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// Rate rules: matching calls counted in the window, and the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ns: Option<u64>,
    /// The process signalled, when not the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_pid: Option<u32>,
    pub args: [u64; 6],
    pub cgroup_id: u64,
    /// Absent for audit rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_nr: Option<i32>,
    /// `process` or `thread`.
    pub target: &'static str,
    /// `signalled`, `failed`, `would-signal`, `skipped`, `audited`, `denied`,
    /// `would-deny` or `resumed`.
    pub action: &'static str,
    /// errno name when the helper failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// errno name a deny returned (or would return, in monitor mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// Why a safety rule skipped the signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl<'a> Record<'a> {
    pub fn new(e: &'a Event) -> Record<'a> {
        let time: DateTime<Utc> = e.time.into();
        Record {
            time: time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            rule: &e.rule,
            pid: e.pid,
            tid: e.tid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            comm: &e.comm,
            syscall: &e.syscall,
            hook: e.hook.map(|h| h.lsm()),
            at: e.exit.map(|_| "exit"),
            ret: e.exit.map(|x| x.ret),
            duration_ns: e.exit.map(|x| x.duration_ns),
            count: e.rate.map(|r| r.0),
            window_ns: e.rate.map(|r| r.1),
            to_pid: e.to_pid,
            args: e.args,
            cgroup_id: e.cgroup_id,
            signal: e.signal.map(|s| s.name()),
            signal_nr: e.signal.map(|s| s.number()),
            target: match e.target {
                Target::Process => "process",
                Target::Thread => "thread",
            },
            action: e.outcome.action(),
            error: match e.outcome {
                Outcome::Failed(errno) => Some(format!("{errno:?}")),
                _ => None,
            },
            errno: match e.outcome {
                Outcome::Denied(errno) | Outcome::WouldDeny(errno) => Some(format!("{errno:?}")),
                _ => None,
            },
            reason: match e.outcome {
                Outcome::Skipped(r) => Some(r.as_str()),
                _ => None,
            },
        }
    }
}

impl<W: Output> Sink for Json<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &Record::new(event))?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn undelivered(&self) -> u64 {
        self.out.undelivered()
    }

    fn take_error(&self) -> Option<(String, u64)> {
        self.out.take_error()
    }

    fn finish(&mut self, wait: std::time::Duration) -> bool {
        self.out.finish(wait)
    }

    fn reopen(&mut self) -> Option<io::Result<String>> {
        self.out.reopen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Clock, SkipReason};
    use nix::errno::Errno;

    fn json(outcome: Outcome) -> serde_json::Value {
        let mut e = Event::from_raw(
            &crate::events::tests::raw_event(),
            &Clock::new(),
            &crate::events::tests::names(),
        )
        .unwrap();
        e.outcome = outcome;
        let mut out = Vec::new();
        Json::new(&mut out).event(&e).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn carries_every_field() {
        let v = json(Outcome::Signalled);
        for key in [
            "time",
            "rule",
            "pid",
            "tid",
            "ppid",
            "uid",
            "gid",
            "comm",
            "syscall",
            "signal",
            "signal_nr",
            "target",
            "action",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["signal"], "SIGKILL");
        assert_eq!(v["action"], "signalled");
        assert!(v.get("error").is_none());
        let time = v["time"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        // nanoseconds: nine digits after the dot
        let frac = time.split('.').nth(1).unwrap();
        assert_eq!(frac.trim_end_matches('Z').len(), 9, "{time}");
    }

    #[test]
    fn errors_and_reasons_by_name() {
        let v = json(Outcome::Failed(Errno::EAGAIN));
        assert_eq!(v["action"], "failed");
        assert_eq!(v["error"], "EAGAIN");
        let v = json(Outcome::Skipped(SkipReason::Reflex));
        assert_eq!(v["action"], "skipped");
        assert_eq!(v["reason"], "reflex never signals itself");
        assert_eq!(json(Outcome::WouldSignal)["action"], "would-signal");
        assert_eq!(json(Outcome::Audited)["action"], "audited");
    }
}
