//! `reflex run` against the real kernel, as root, with real clients.
//! Every rule is scoped with --ppid to a launcher the test started.

mod common;

use common::{Ended, Launched, Reflex, reflex_once, root_or_skip};

const SIGKILL: i32 = 9;
const SIGUSR1: i32 = 10;

fn sys_ptrace() -> String {
    libc::SYS_ptrace.to_string()
}

/// The caller helper in `mode`, with ptrace as its syscall.
fn caller(mode: &[&str]) -> Launched {
    let helper = common::helper("caller.py");
    let sys_ptrace = sys_ptrace();
    let mut cmd = vec![common::PYTHON, helper.to_str().unwrap(), mode[0]];
    if mode[0] == "repeat" {
        cmd.push(mode[1]);
    }
    cmd.push(&sys_ptrace);
    if mode[0] == "repeat" {
        cmd.extend(["1", "0", "0", "0"]); // PTRACE_PEEKTEXT on pid 0: ESRCH
    }
    Launched::new(&cmd)
}

fn strace() -> Launched {
    Launched::new(&["strace", "-o", "/dev/null", "/bin/true"])
}

#[test]
fn strace_is_killed_and_one_event_names_it() {
    if !root_or_skip("strace_is_killed_and_one_event_names_it") {
        return;
    }
    let target = strace();
    let reflex = Reflex::start(&["--ppid", &target.ppid.to_string()]);
    let pid = target.pid;
    let (ended, _) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Signal(SIGKILL), "strace was not SIGKILLed");
    assert_eq!(out.code, Some(0), "{:?}", out.stderr);
    assert_eq!(
        out.stdout[0],
        "TIME      PID      COMM             SUCCESS  DETAIL"
    );
    let events = &out.stdout[1..];
    assert_eq!(events.len(), 1, "{events:?}");
    let cols: Vec<&str> = events[0].split_whitespace().collect();
    assert_eq!(cols[1], pid.to_string(), "{events:?}");
    assert_eq!(cols[2], "strace");
    assert_eq!(cols[3], "true");
    assert_eq!(out.summary("events"), 1);
    assert_eq!(out.summary("signals sent"), 1);
    assert_eq!(out.summary("failures"), 0);
    assert_eq!(out.summary("dropped"), 0);
}

#[test]
fn another_parent_is_left_alone() {
    if !root_or_skip("another_parent_is_left_alone") {
        return;
    }
    // The rule is scoped to a launcher that never runs its command.
    let bystander = Launched::new(&["true"]);
    let target = strace();
    let reflex = Reflex::start(&["--ppid", &bystander.ppid.to_string()]);
    let (ended, _) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Exit(0), "strace should have run to the end");
    assert_eq!(out.stdout.len(), 1, "only the header: {:?}", out.stdout);
    assert_eq!(out.summary("events"), 0);
    assert_eq!(out.summary("signals sent"), 0);
}

#[test]
fn dry_run_lets_it_live_and_reports_would_signal() {
    if !root_or_skip("dry_run_lets_it_live_and_reports_would_signal") {
        return;
    }
    let target = strace();
    let reflex = Reflex::start(&["--ppid", &target.ppid.to_string(), "--dry-run", "--json"]);
    assert!(
        reflex
            .stderr
            .seen
            .iter()
            .any(|l| l.contains("monitor: nothing is sent")),
        "{:?}",
        reflex.stderr.seen
    );
    let pid = target.pid;
    let (ended, _) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Exit(0), "strace must survive a dry run");
    let events = out.json();
    // strace may call ptrace more than once; every call is reported.
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["action"], "would-signal", "{e}");
        assert_eq!(e["pid"], pid);
    }
    assert_eq!(out.summary("would-signal"), events.len() as u64);
    assert_eq!(out.summary("signals sent"), 0);
}

#[test]
fn sigusr1_reaches_a_handler() {
    if !root_or_skip("sigusr1_reaches_a_handler") {
        return;
    }
    let target = caller(&["handler"]);
    let reflex = Reflex::start(&["--ppid", &target.ppid.to_string(), "--signal", "SIGUSR1"]);
    let (ended, output) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Exit(0), "{output:?}");
    let report: serde_json::Value = serde_json::from_str(&output[0]).unwrap();
    assert_eq!(report["caught"], serde_json::json!([SIGUSR1]), "{report}");
    assert!(out.stdout[1].contains("SIGUSR1"), "{:?}", out.stdout);
    assert_eq!(out.summary("signals sent"), 1);
}

/// Pending signals after a ptrace call from the second thread of a process
/// that blocks SIGUSR1 everywhere: (caller's own, main thread's, shared).
fn pending_after(extra: &[&str]) -> (u64, u64, u64, serde_json::Value) {
    let target = caller(&["threads"]);
    let ppid = target.ppid.to_string();
    let mut args = vec!["--ppid", &ppid, "--signal", "SIGUSR1", "--json"];
    args.extend_from_slice(extra);
    let reflex = Reflex::start(&args);
    let (ended, output) = target.go();
    let out = reflex.stop();
    assert_eq!(ended, Ended::Exit(0), "{output:?}");
    let r: serde_json::Value = serde_json::from_str(&output[0]).unwrap();
    let mask = |tid: &serde_json::Value| r["pending"][tid.to_string()].as_u64().unwrap();
    let events = out.json();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["tid"], r["caller"],
        "the event names the calling thread"
    );
    (
        mask(&r["caller"]),
        mask(&r["main"]),
        r["shared"].as_u64().unwrap(),
        events[0].clone(),
    )
}

#[test]
fn thread_hits_only_the_calling_thread() {
    if !root_or_skip("thread_hits_only_the_calling_thread") {
        return;
    }
    let bit = 1u64 << (SIGUSR1 - 1);
    let (caller, main, shared, event) = pending_after(&["--thread"]);
    assert_eq!(caller & bit, bit, "SIGUSR1 pending on the calling thread");
    assert_eq!(main & bit, 0, "not on the main thread");
    assert_eq!(shared & bit, 0, "not on the process");
    assert_eq!(event["target"], "thread");

    // Without --thread the same call signals the process as a whole.
    let (caller, main, shared, event) = pending_after(&[]);
    assert_eq!(shared & bit, bit, "SIGUSR1 pending on the process");
    assert_eq!((caller | main) & bit, 0, "not on one thread");
    assert_eq!(event["target"], "process");
}

#[test]
fn json_lines_carry_every_field() {
    if !root_or_skip("json_lines_carry_every_field") {
        return;
    }
    let target = strace();
    let reflex = Reflex::start(&["--ppid", &target.ppid.to_string(), "--json"]);
    let (pid, ppid) = (target.pid, target.ppid);
    let (ended, _) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Signal(SIGKILL));
    let events = out.json();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    let time = e["time"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 time");
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(age.num_seconds().abs() < 60, "time {time} is not now");
    assert_eq!(
        time.split('.').nth(1).unwrap().trim_end_matches('Z').len(),
        9,
        "ns: {time}"
    );
    assert_eq!(e["pid"], pid);
    assert_eq!(e["tid"], pid, "strace is single-threaded");
    assert_eq!(e["ppid"], ppid);
    assert_eq!(e["uid"], 0);
    assert_eq!(e["comm"], "strace");
    assert_eq!(e["syscall"], "ptrace");
    assert_eq!(e["signal"], "SIGKILL");
    assert_eq!(e["signal_nr"], SIGKILL);
    assert_eq!(e["action"], "signalled");
    assert_eq!(e["rule"], "no-ptrace");
    assert!(e.get("error").is_none(), "{e}");
}

#[test]
fn protected_processes_are_skipped_with_the_reason() {
    if !root_or_skip("protected_processes_are_skipped_with_the_reason") {
        return;
    }
    let target = strace();
    let reflex = Reflex::start(&[
        "--ppid",
        &target.ppid.to_string(),
        "--protect",
        &target.pid.to_string(),
        "--json",
    ]);
    let (ended, _) = target.go();
    let out = reflex.stop();

    assert_eq!(ended, Ended::Exit(0), "a protected strace survives");
    let events = out.json();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["action"], "skipped", "{e}");
        assert_eq!(e["reason"], "process is in the protected list");
    }
    assert_eq!(out.summary("signals sent"), 0);
    assert_eq!(out.summary("skipped"), events.len() as u64);
}

#[test]
fn without_privileges_run_says_what_is_missing() {
    if !root_or_skip("without_privileges_run_says_what_is_missing") {
        return; // needs root to drop to an unprivileged user
    }
    let out = reflex_once(&["run", "--ppid", "1"], true);
    assert_eq!(out.code, Some(1), "{:?}", out.stderr);
    let err = out.stderr.join("\n");
    assert!(err.contains("needs privileges"), "{err}");
    assert!(err.contains("lacks CAP_BPF and CAP_PERFMON"), "{err}");
    assert!(err.contains("Run it as root"), "{err}");

    let out = reflex_once(&["check"], true);
    assert_eq!(
        out.code,
        Some(1),
        "check without privileges cannot promise the core runs"
    );
    let table = out.stdout.join("\n");
    assert!(
        table.contains("privileges") && table.contains("FAIL"),
        "{table}"
    );
    assert!(table.contains("fix: run reflex as root"), "{table}");
    // What it could not ask, it says it could not ask: not that the kernel
    // lacks it (it said "this kernel has no BPF ring buffer" and "tracefs
    // is not mounted", both false).
    for row in ["ring buffer", "bpf_send_signal ", "tracefs"] {
        let line = out
            .stdout
            .iter()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row in\n{table}"));
        assert!(
            line.contains("unknown") && line.contains("not probed"),
            "{line}"
        );
    }
    assert!(!table.contains("this kernel has no"), "{table}");
    assert!(
        out.stderr.iter().all(|l| !l.contains("panicked")),
        "{:?}",
        out.stderr
    );

    let out = reflex_once(&["--help"], true);
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.join("\n").contains("Usage: reflex"));
}

#[test]
fn check_as_root_reports_the_core_ok() {
    if !root_or_skip("check_as_root_reports_the_core_ok") {
        return;
    }
    let out = reflex_once(&["check"], false);
    let table = out.stdout.join("\n");
    assert_eq!(out.code, Some(0), "{table}");
    for row in [
        "privileges",
        "BTF",
        "tracefs",
        "ptrace tracepoint",
        "ring buffer",
        "bpf_send_signal ",
        "bpf_send_signal_thread",
        "reflex programs",
        "LSM programs",
        "fentry programs",
        "kernel",
        "lockdown",
    ] {
        let line = out
            .stdout
            .iter()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no '{row}' row in\n{table}"));
        assert!(!line.contains("unknown"), "root probes everything: {line}");
    }
    assert!(table.contains("reflex can run here."), "{table}");
}

#[test]
fn dropped_events_are_counted_not_lost() {
    if !root_or_skip("dropped_events_are_counted_not_lost") {
        return;
    }
    const CALLS: u64 = 20_000;
    let target = caller(&["repeat", &CALLS.to_string()]);
    // A one-page ring buffer, and a reader that is stopped during the burst:
    // the buffer fills after a few dozen events and the rest must be counted
    // as dropped by the kernel.
    let reflex = Reflex::start(&[
        "--ppid",
        &target.ppid.to_string(),
        "--dry-run",
        "--json",
        "--ring-buffer",
        "4",
    ]);
    reflex.signal(nix::sys::signal::Signal::SIGSTOP);
    let (ended, output) = target.go();
    reflex.signal(nix::sys::signal::Signal::SIGCONT);
    let out = reflex.stop();

    assert_eq!(ended, Ended::Exit(0), "{output:?}");
    let received = out.json().len() as u64;
    assert_eq!(out.summary("events"), CALLS);
    assert_eq!(out.summary("would-signal"), CALLS);
    assert_eq!(out.summary("received"), received);
    assert_eq!(
        out.summary("dropped"),
        CALLS - received,
        "received + dropped = events"
    );
    assert!(
        received <= 4096 / 64,
        "a 4 KiB buffer holds at most 64 events: {received}"
    );
}
