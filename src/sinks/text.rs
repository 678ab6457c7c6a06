//! The seed's table: `TIME  PID  COMM  SUCCESS`, plus what happened.

use std::io;

use chrono::{DateTime, Local};

use super::{Output, Sink};
use crate::escape::escape;
use crate::events::{Event, Outcome};
use crate::policy::Target;

pub struct Text<W: Output> {
    out: W,
    /// The last second formatted, and its `HH:MM:SS` (local time is costly
    /// to compute for every event of a busy stream).
    clock: Option<(u64, String)>,
}

impl<W: Output> Text<W> {
    pub fn new(out: W) -> Self {
        Text { out, clock: None }
    }

    fn hhmmss(&mut self, event: &Event) -> String {
        let secs = event
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match &self.clock {
            Some((s, text)) if *s == secs => text.clone(),
            _ => {
                let time: DateTime<Local> = event.time.into();
                let text = time.format("%H:%M:%S").to_string();
                self.clock = Some((secs, text.clone()));
                text
            }
        }
    }
}

pub const HEADER: &str = "TIME      PID      COMM             SUCCESS  DETAIL";

/// One line of the table for `event`.
#[cfg(test)]
fn line(event: &Event) -> String {
    let time: DateTime<Local> = event.time.into();
    line_at(&time.format("%H:%M:%S").to_string(), event)
}

fn line_at(hhmmss: &str, event: &Event) -> String {
    let success = match event.outcome {
        Outcome::Signalled => "true",
        Outcome::Failed(_) => "false",
        Outcome::Denied(_) | Outcome::Resumed => "true",
        Outcome::WouldSignal
        | Outcome::Skipped(_)
        | Outcome::Audited
        | Outcome::WouldDeny(_)
        | Outcome::Disarmed => "-",
    };
    let signal = event.signal.map(|s| s.name()).unwrap_or_default();
    let aim = match (event.to_pid, event.target) {
        (Some(pid), _) => format!(" to pid {pid}"),
        (None, Target::Process) => String::new(),
        (None, Target::Thread) => format!(" to thread {}", event.tid),
    };
    let detail = match event.outcome {
        Outcome::Signalled => format!("{signal}{aim}"),
        Outcome::Failed(errno) => format!("{signal}{aim} failed: {errno:?} ({})", errno.desc()),
        Outcome::WouldSignal => format!("would send {signal}{aim} (monitor)"),
        Outcome::Skipped(reason) => format!("skipped: {}", reason.as_str()),
        Outcome::Audited => "audit".to_string(),
        Outcome::Denied(errno) if signal.is_empty() => format!("denied: {errno:?}"),
        Outcome::Denied(errno) => format!("denied: {errno:?}, and {signal}{aim}"),
        Outcome::WouldDeny(errno) => format!("would deny: {errno:?} (monitor)"),
        Outcome::Resumed => "resumed: SIGCONT after the pause".to_string(),
        Outcome::Disarmed if signal.is_empty() => {
            "disarmed: circuit breaker open, audited instead".to_string()
        }
        Outcome::Disarmed => {
            format!("disarmed: would send {signal}{aim}; circuit breaker open, audited instead")
        }
    };
    // What made the rule fire, past the call itself.
    let mut why = String::new();
    if let Some(exit) = &event.exit {
        why.push_str(&format!(
            " exit after {}, returned {}",
            crate::policy::show_duration(exit.duration_ns),
            exit.ret
        ));
    }
    if let Some((count, window_ns)) = event.rate {
        why.push_str(&format!(
            " {count} calls in {}",
            crate::policy::show_ns(window_ns)
        ));
    }
    let why = if why.is_empty() {
        why
    } else {
        format!(",{why}")
    };
    // A process names itself, and a policy names its rules: shown, never
    // obeyed by the terminal.
    format!(
        "{}  {:<7}  {:<15}  {:<7}  {} [{} via {}{why}]{}",
        hhmmss,
        event.pid,
        escape(&event.comm),
        success,
        detail,
        escape(&event.rule),
        event.syscall,
        who_and_what(event)
    )
}

/// At most this many characters of a command line or path in the table (the
/// JSON lines carry them whole).
const SHOWN: usize = 60;

/// The caller's executable and command line, and what the call was about (the
/// file run or opened, the process aimed at): trimmed, escaped.
fn who_and_what(event: &Event) -> String {
    let id = &event.identity;
    let mut text = String::new();
    if let Some(exe) = &id.process.exe {
        text.push_str(&format!(" {}", trim(exe)));
    }
    if !id.process.argv.is_empty() {
        text.push_str(&format!(": {}", trim(&id.process.argv.join(" "))));
    }
    if let Some(argv) = &id.exec_argv {
        text.push_str(&format!(" → runs {}", trim(&argv.join(" "))));
    } else if let Some(file) = &id.file {
        text.push_str(&format!(" → {}", trim(file)));
    }
    if let Some(t) = &id.target {
        let name = t.exe.as_deref().or(t.comm.as_deref()).unwrap_or("?");
        text.push_str(&format!(" → pid {} {}", t.pid, trim(name)));
    }
    text
}

fn trim(s: &str) -> String {
    let shown = if s.chars().count() > SHOWN {
        let mut cut: String = s.chars().take(SHOWN - 1).collect();
        cut.push('…');
        cut
    } else {
        s.to_string()
    };
    escape(&shown).into_owned()
}

impl<W: Output> Sink for Text<W> {
    fn start(&mut self) -> io::Result<()> {
        writeln!(self.out, "{HEADER}")?;
        self.out.flush()
    }

    fn event(&mut self, event: &Event) -> io::Result<()> {
        let hhmmss = self.hhmmss(event);
        writeln!(self.out, "{}", line_at(&hhmmss, event))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Clock, SkipReason};
    use nix::errno::Errno;

    fn event(outcome: Outcome) -> Event {
        let mut e = Event::from_raw(
            &crate::events::tests::raw_event(),
            &Clock::new(),
            &crate::events::tests::names(),
        )
        .unwrap();
        e.outcome = outcome;
        e
    }

    #[test]
    fn columns_line_up_with_the_header() {
        let l = line(&event(Outcome::Signalled));
        // HH:MM:SS, then pid, comm and success in the header's columns.
        assert_eq!(l.find("4242"), HEADER.find("PID"));
        assert_eq!(l.find("strace"), HEADER.find("COMM"));
        assert_eq!(l.find("true"), HEADER.find("SUCCESS"));
        assert!(l.ends_with("SIGKILL [no-ptrace via ptrace]"), "{l}");
        assert_eq!(l.as_bytes()[2], b':');
    }

    #[test]
    fn names_the_executable_the_command_line_and_the_target() {
        let mut e = event(Outcome::Signalled);
        e.identity.process.exe = Some("/usr/bin/strace".into());
        e.identity.process.argv = vec!["strace".into(), "-p".into(), "99".into()];
        e.identity.target = Some(crate::events::identity::Relative {
            pid: 99,
            comm: Some("sleep".into()),
            exe: Some("/usr/bin/sleep".into()),
            start: None,
        });
        let l = line(&e);
        assert!(
            l.ends_with(
                "[no-ptrace via ptrace] /usr/bin/strace: strace -p 99 → pid 99 /usr/bin/sleep"
            ),
            "{l}"
        );
        e.identity.process.argv = vec!["python3".into(), "x".repeat(100)];
        let l = line(&e);
        assert!(
            l.contains(&format!(": python3 {}… →", "x".repeat(51))),
            "{l}"
        );
        e.identity.process.argv = vec!["a\x1b[2Jb".into()];
        let l = line(&e);
        assert!(!l.contains('\x1b') && l.contains(": a"), "{l}");
    }

    #[test]
    fn every_outcome_reads_plainly() {
        let failed = line(&event(Outcome::Failed(Errno::EPERM)));
        assert!(failed.contains("  false  "), "{failed}");
        assert!(
            failed.contains("SIGKILL failed: EPERM (Operation not permitted)"),
            "{failed}"
        );
        let dry = line(&event(Outcome::WouldSignal));
        assert!(dry.contains("would send SIGKILL (monitor)"), "{dry}");
        let skipped = line(&event(Outcome::Skipped(SkipReason::Init)));
        assert!(
            skipped.contains("skipped: pid 1 is never signalled"),
            "{skipped}"
        );
        let mut audit = event(Outcome::Audited);
        audit.signal = None;
        assert!(
            line(&audit).contains("  -        audit [no-ptrace via ptrace]"),
            "{}",
            line(&audit)
        );
        let mut thread = event(Outcome::Signalled);
        thread.target = Target::Thread;
        assert!(line(&thread).contains("SIGKILL to thread 4243"));
    }

    #[test]
    fn exits_and_rates_say_why() {
        let mut slow = event(Outcome::Signalled);
        slow.exit = Some(crate::events::ExitInfo {
            ret: -11,
            duration_ns: 349_012_345,
        });
        let l = line(&slow);
        assert!(
            l.ends_with("[no-ptrace via ptrace, exit after 349.0 ms, returned -11]"),
            "{l}"
        );
        let mut rated = event(Outcome::Signalled);
        rated.rate = Some((51, 1_000_000_000));
        let l = line(&rated);
        assert!(l.ends_with("[no-ptrace via ptrace, 51 calls in 1s]"), "{l}");
    }
}
