//! One JSON object per line.

use std::io;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::{Output, Sink};
use crate::events::{Event, Outcome};
use crate::policy::Target;

pub struct Json<W: Output> {
    out: W,
    /// This machine's host name (`node`).
    node: String,
}

impl<W: Output> Json<W> {
    pub fn new(out: W) -> Self {
        Json {
            out,
            node: crate::events::node_name(),
        }
    }
}

/// What the rule did (`action`).
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum ActionName {
    /// The signal was sent.
    Signalled,
    /// The helper failed (`error`).
    Failed,
    /// Monitor mode: what would have been sent.
    WouldSignal,
    /// A safety rule stopped it (`reason`).
    Skipped,
    /// The rule only reports.
    Audited,
    /// A security hook refused the call (`errno`).
    Denied,
    /// Monitor mode: the refusal that would have been.
    WouldDeny,
    /// reflex sent the SIGCONT that ends a pause.
    Resumed,
    /// The rule's circuit breaker is open: audited instead.
    Disarmed,
}

/// Whom a signal is aimed at (`target`).
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum Aim {
    /// The whole thread group.
    Process,
    /// The calling thread.
    Thread,
}

/// A process an event names besides the caller.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RelativeRecord<'a> {
    pub pid: u32,
    /// Its name (comm), when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<&'a str>,
    /// Absolute path of its executable, when read (`.../` in front: cut at
    /// the top).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<&'a str>,
    /// When it started: RFC 3339, UTC, nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
}

/// The container the caller's cgroup path names.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ContainerRecord<'a> {
    /// The runtime's id: 64 hex digits.
    pub id: &'a str,
    /// `docker`, `containerd`, `cri-o`, `podman`, `kubernetes` (a pod whose
    /// runtime the path does not name) or `unknown`.
    pub runtime: &'a str,
}

/// One decision as a JSON line. What it says about processes was read in the
/// kernel when the rule decided, so it holds after they are gone. Field
/// names are a public interface: `reflex schema` prints this schema.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "reflex event", deny_unknown_fields)]
pub struct Record<'a> {
    /// When the kernel decided: RFC 3339, UTC, nanoseconds.
    pub time: String,
    /// This machine's host name (or $REFLEX_NODE_NAME: a Kubernetes node).
    pub node: &'a str,
    /// The rule that decided, by name.
    pub rule: &'a str,
    /// What the rule did.
    #[schemars(with = "ActionName")]
    pub action: &'static str,
    /// The caller's thread group id: the pid user space sees.
    pub pid: u32,
    /// The calling thread's id.
    pub tid: u32,
    /// The caller's parent's pid (`real_parent`).
    pub ppid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    /// Login uid (audit): absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auid: Option<u32>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<u32>,
    /// The caller's name (comm, at most 15 bytes).
    pub comm: &'a str,
    /// Absolute path of the caller's executable (`.../` in front: cut at
    /// the top; absent for kernel threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<&'a str>,
    /// The caller's command line: its first 256 bytes (`truncated` names
    /// `argv` when there was more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<&'a [String]>,
    /// When the caller started: RFC 3339, UTC, nanoseconds. With the pid,
    /// what tells it from a later process given the same pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// The caller's cgroup v2 path, from the root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<&'a str>,
    /// The caller's cgroup v2 id (its directory's inode number).
    pub cgroup_id: u64,
    /// The container the cgroup path names, if it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRecord<'a>>,
    /// The caller's parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<RelativeRecord<'a>>,
    /// The caller's ancestors, the parent first (at most 4): pid and
    /// executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<RelativeRecord<'a>>>,
    /// The syscall, or for hook rules the LSM hook (`lsm/file_open`), or
    /// `sample`.
    pub syscall: &'a str,
    /// `lsm/…` for events from a security hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<&'static str>,
    /// `exit` for exit rules (then `ret` and `duration_ns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<&'static str>,
    /// The six argument registers (for a hook: what reflex.h says it puts
    /// there).
    pub args: [u64; 6],
    /// At an exit: what the syscall returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<i64>,
    /// At an exit: how long the call took (ns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// The file executed or opened: the kernel's path for hooks, the path as
    /// the caller gave it for syscalls (maybe relative).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
    /// An exec's new command line (at most 16 arguments, 256 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_argv: Option<&'a [String]>,
    /// The process acted on (kill, ptrace): comm and exe where the kernel
    /// program could look it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_process: Option<RelativeRecord<'a>>,
    /// The bpf() command of a `bpf` event (`BPF_PROG_LOAD`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_cmd: Option<&'static str>,
    /// Rate rules: matching calls counted in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Rate rules: the window (ns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ns: Option<u64>,
    /// The signal's name; absent for audit rules and a deny without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The signal's number on this machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_nr: Option<i32>,
    /// Whom the signal is aimed at.
    #[schemars(with = "Aim")]
    pub target: &'static str,
    /// The process signalled, when not the caller (`to:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_pid: Option<u32>,
    /// errno name when the helper failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// errno name a deny returned (or would return, in monitor mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// Why a safety rule skipped the signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The fields cut at their limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<&'a [&'static str]>,
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let time: DateTime<Utc> = t.into();
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn relative(r: &crate::events::Relative) -> RelativeRecord<'_> {
    RelativeRecord {
        pid: r.pid,
        comm: r.comm.as_deref(),
        exe: r.exe.as_deref(),
        start_time: r.start.map(rfc3339),
    }
}

impl<'a> Record<'a> {
    pub fn new(e: &'a Event, node: &'a str) -> Record<'a> {
        let id = &e.identity;
        let p = &id.process;
        let known = id.process.cgroup.is_some();
        Record {
            time: rfc3339(e.time),
            node,
            rule: &e.rule,
            action: e.outcome.action(),
            pid: e.pid,
            tid: e.tid,
            ppid: e.ppid,
            uid: e.uid,
            gid: e.gid,
            euid: known.then_some(p.euid),
            auid: p.auid,
            sid: known.then_some(p.sid),
            comm: &e.comm,
            exe: p.exe.as_deref(),
            argv: (!p.argv.is_empty()).then_some(p.argv.as_slice()),
            start_time: p.start.map(rfc3339),
            cgroup: p.cgroup.as_deref(),
            cgroup_id: e.cgroup_id,
            container: p.container.as_ref().map(|c| ContainerRecord {
                id: &c.id,
                runtime: c.runtime,
            }),
            parent: id.parent.as_ref().map(relative),
            ancestors: (!id.ancestors.is_empty())
                .then(|| id.ancestors.iter().map(relative).collect()),
            syscall: &e.syscall,
            hook: e.hook.map(|h| h.lsm()),
            at: e.exit.map(|_| "exit"),
            args: e.args,
            ret: e.exit.map(|x| x.ret),
            duration_ns: e.exit.map(|x| x.duration_ns),
            file: id.file.as_deref(),
            exec_argv: id.exec_argv.as_deref(),
            target_process: id.target.as_ref().map(relative),
            bpf_cmd: e.bpf_cmd(),
            count: e.rate.map(|r| r.0),
            window_ns: e.rate.map(|r| r.1),
            signal: e.signal.map(|s| s.name()),
            signal_nr: e.signal.map(|s| s.number()),
            target: match e.target {
                Target::Process => "process",
                Target::Thread => "thread",
            },
            to_pid: e.to_pid,
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
            truncated: (!id.truncated.is_empty()).then_some(id.truncated.as_slice()),
        }
    }
}

/// The JSON Schema of the JSON lines (`Record`), as `reflex schema` prints
/// it and `docs/event.schema.json` holds it.
pub fn schema() -> String {
    let mut schema = schemars::schema_for!(Record<'static>).to_value();
    no_nulls(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

/// An absent field is left out, never written as null: the schema says so
/// (schemars makes every `Option` nullable).
fn no_nulls(v: &mut serde_json::Value) {
    use serde_json::Value;
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(any)) = map.get_mut("anyOf") {
                any.retain(|s| !is_null(s));
                if any.len() == 1 {
                    let only = any.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        map.extend(inner);
                    }
                }
            }
            map.values_mut().for_each(no_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(no_nulls),
        _ => {}
    }
}

impl<W: Output> Sink for Json<W> {
    fn event(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &Record::new(event, &self.node))?;
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

    #[test]
    fn the_published_schema_is_current() {
        let published = include_str!("../../docs/event.schema.json");
        assert!(
            schema() == published,
            "docs/event.schema.json is stale: run `reflex schema > docs/event.schema.json`"
        );
    }
}
