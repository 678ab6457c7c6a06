//! Hardening (issue 14): no rule turns reflex on itself or on what must not
//! be touched, nothing blocks the loop, no input is taken on trust, every
//! terminating signal leaves nothing stopped, and a bad policy cannot kill
//! without bound (the circuit breaker). Each test failed on the code before.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Ended, Launched, PolicyFile, REFLEX, Reflex, Sleeper, caller_cmd, helper, launch, root_or_skip,
    stopped, sysno,
};
use nix::sys::signal::Signal;

fn kernel_signals_tasks() -> bool {
    common::kernel_offers("bpf_send_signal_task")
}

/// A process that is a kernel thread (kthreadd is pid 2 on a host; in a
/// pid namespace, whichever /proc shows).
fn a_kernel_thread() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let flags: u64 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(6)?
            .parse()
            .ok()?;
        (flags & 0x0020_0000 != 0).then_some(pid)
    })
}

/// Defect 1: `to:` targets were not checked. reflex itself, a protected
/// process, a protected parent and a kernel thread are each skipped, with
/// the reason, in the kernel; validate refuses pid 1 and a listed pid.
#[test]
fn to_targets_get_the_same_safety_as_callers() {
    if !root_or_skip("to_targets_get_the_same_safety_as_callers") {
        return;
    }
    let getppid = sysno("getppid");
    // validate knows pid 1 and protected pids without loading anything.
    let refused = PolicyFile::new(concat!(
        "protect: {pids: [4242]}\n",
        "rules:\n",
        "  - {name: init, syscall: getppid, action: {signal: SIGUSR1, to: {pid: 1}}}\n",
        "  - {name: listed, syscall: getppid, action: {signal: SIGUSR1, to: {pid: 4242}}}\n",
    ));
    let out = common::reflex_once(&["validate", refused.arg()], false);
    let text = out.stdout.join("\n");
    assert_eq!(out.code, Some(1), "{text}");
    assert!(
        text.contains("names pid 1, which reflex never signals"),
        "{text}"
    );
    assert!(
        text.contains("names pid 4242, which `protect` lists"),
        "{text}"
    );

    if !kernel_signals_tasks() {
        eprintln!("to: needs bpf_send_signal_task (6.13+): only validate's refusal checked here");
        return;
    }
    let protected = Sleeper::spawn(&["sleep"]);
    let kthread = a_kernel_thread().expect("a kernel thread in /proc");
    // reflex's own pid is known only once it runs: the policy names it on
    // reload.
    let policy = PolicyFile::new("rules:\n  - {name: first, syscall: getpid, action: audit}\n");
    let target = launch(&caller_cmd(&["call", &getppid]));
    let ppid = target.ppid.to_string();
    // The raw hook from the start: the reload brings `to:` rules, which
    // only it serves (under `auto` a kernel with fentry would pick fentry,
    // and the reload would be refused, rightly, with that reason).
    let reflex = Reflex::start(&[
        policy.arg(),
        "--attach",
        "raw",
        "--ppid",
        &ppid,
        "--json",
        "--protect",
        &protected.pid().to_string(),
        "--protect",
        &ppid,
    ]);
    let me = reflex.pid();
    policy.rewrite(&format!(
        concat!(
            "rules:\n",
            "  - {{name: at-reflex, syscall: getppid, action: {{signal: SIGKILL, to: {{pid: {me}}}}}}}\n",
        ),
        me = me
    ));
    let mut reflex = reflex;
    let line = reflex
        .stderr
        .wait_for("the reload", |l| l.starts_with("reflex: reload"));
    assert!(line.starts_with("reflex: reloaded"), "{line}");
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    // reflex survived its own rule; the event says why nothing was sent.
    std::thread::sleep(Duration::from_millis(200));
    let out = reflex.stop();
    assert_eq!(out.code, Some(0), "reflex lived: {:?}", out.stderr);
    let events = out.json();
    let e = events
        .iter()
        .find(|e| e["rule"] == "at-reflex")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(e["action"], "skipped");
    assert_eq!(
        e["reason"],
        "the target is reflex, which never signals itself"
    );

    // A protected process, a protected parent, a kernel thread.
    for (rule, to, reason) in [
        (
            "at-protected",
            format!("{{pid: {}}}", protected.pid()),
            "the target is in the protected list",
        ),
        (
            "at-parent",
            "parent".to_string(),
            "the target is in the protected list",
        ),
        (
            "at-kthread",
            format!("{{pid: {kthread}}}"),
            "the target is a kernel thread, never signalled",
        ),
    ] {
        let policy = PolicyFile::new(&format!(
            "rules:\n  - {{name: {rule}, syscall: getppid, action: {{signal: SIGKILL, to: {to}}}}}\n"
        ));
        let target = launch(&caller_cmd(&["call", &getppid]));
        let ppid = target.ppid.to_string();
        let reflex = Reflex::start(&[
            policy.arg(),
            "--ppid",
            &ppid,
            "--json",
            "--protect",
            &protected.pid().to_string(),
            "--protect",
            &ppid,
        ]);
        let (ended, _) = target.go();
        let out = reflex.stop();
        assert_eq!(ended, Ended::Exit(0), "{rule}");
        let events = out.json();
        assert_eq!(events.len(), 1, "{rule}: {events:?}");
        assert_eq!(events[0]["action"], "skipped", "{rule}: {events:?}");
        assert_eq!(events[0]["reason"], reason, "{rule}");
    }
    let mut protected = protected;
    assert!(protected.alive(), "the protected process lives");
}

/// Defect 2: with stdout a pipe nobody reads, reflex sat in a write:
/// pauses were not resumed and SIGTERM did nothing. And a FIFO among the
/// policy files blocked it in open.
#[test]
fn a_stdout_nobody_reads_holds_nothing() {
    if !root_or_skip("a_stdout_nobody_reads_holds_nothing") {
        return;
    }
    let policy = PolicyFile::new(concat!(
        "rules:\n",
        "  - {name: noisy, syscall: getppid, action: audit}\n",
        "  - {name: pause, syscall: getpid, action: {pause: 1s}}\n",
    ));
    // One scope for both (--ppid takes one parent): a shell whose children
    // are the noisy caller and the one that is paused.
    let script = format!(
        "{} & {}; wait",
        caller_cmd(&["repeat", "100000", &sysno("getppid")]).join(" "),
        caller_cmd(&["call", &sysno("getpid")]).join(" ")
    );
    let target = Launched::new(&["sh", "-c", &script]);
    let scope = target.pid.to_string(); // sh: the callers are its children
    let mut child = common::Reaped(
        Command::new(REFLEX)
            .args(["run", policy.arg(), "--ppid", &scope])
            .stdout(Stdio::piped()) // never read
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = common::Lines::of(child.stderr.take().unwrap());
    stderr.wait_for("the banner", |l| l.starts_with("reflex: attached"));
    let started = Instant::now();
    let go = std::thread::spawn(move || target.go());
    // Both callers end: the pause was resumed after its second although the
    // pipe filled long before.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        go.is_finished(),
        "the paused caller was not resumed while stdout was full"
    );
    let (ended, _) = go.join().unwrap();
    assert_eq!(ended, Ended::Exit(0));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it was paused"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM did nothing while stdout was full");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let text = stderr.rest().join("\n");
    let undelivered: u64 = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("undelivered"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no undelivered count:\n{text}"));
    assert!(undelivered > 0, "{text}");
}

#[test]
fn a_fifo_among_the_policies_blocks_nothing() {
    if !root_or_skip("a_fifo_among_the_policies_blocks_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "rules:\n  - {name: a, syscall: getppid, action: audit}\n",
    )
    .unwrap();
    // validate on a FIFO: an error, at once.
    let fifo = dir.path().join("z.yaml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let started = Instant::now();
    let out = common::reflex_once(&["validate", fifo.to_str().unwrap()], false);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.join("\n").contains("this is a FIFO"),
        "{:?}",
        out.stdout
    );
    std::fs::remove_file(&fifo).unwrap();
    // run over the folder; the FIFO appears while it runs.
    let target = launch(&caller_cmd(&["call", &sysno("getppid")]));
    let ppid = target.ppid.to_string();
    let mut reflex = Reflex::start(&[dir.path().to_str().unwrap(), "--ppid", &ppid, "--json"]);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let line = reflex
        .stderr
        .wait_for("the reload", |l| l.starts_with("reflex: reload"));
    assert!(line.starts_with("reflex: reload refused"), "{line}");
    reflex
        .stderr
        .wait_for("why", |l| l.contains("this is a FIFO"));
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    let out = reflex.stop();
    assert_eq!(out.code, Some(0));
    assert_eq!(out.json().len(), 1, "the rules in force stayed in force");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Defect 3: a quoted `${…}` was not filled: a quoted comm matched nothing.
#[test]
fn quoted_placeholders_are_filled() {
    if !root_or_skip("quoted_placeholders_are_filled") {
        return;
    }
    let policy = PolicyFile::new(
        "rules:\n  - {name: q, syscall: getppid, match: {comm: '${REFLEX_TEST_CM}'}, action: audit}\n",
    );
    let target = launch(&caller_cmd(&["call", &sysno("getppid")]));
    let ppid = target.ppid.to_string();
    let reflex = Reflex::start_with_env(
        &[policy.arg(), "--ppid", &ppid, "--json"],
        &[("REFLEX_TEST_CM", "python3")],
    );
    let (ended, _) = target.go();
    let out = reflex.stop();
    assert_eq!(ended, Ended::Exit(0));
    assert_eq!(out.json().len(), 1, "the quoted comm matched");
    // Unset, in any style, is an error at its place.
    let out = common::reflex_once(&["run", "--ppid", &ppid, policy.arg()], false);
    assert_eq!(out.code, Some(1));
    let err = out.stderr.join("\n");
    assert!(
        err.contains(":2:47: error: ${REFLEX_TEST_CM} is not set"),
        "{err}"
    );
}

/// Defect 4: SIGUSR1, SIGALRM, SIGQUIT… killed reflex and left a paused
/// process stopped. Each now stops it cleanly (SIGUSR1 does not stop it);
/// and where nothing can be handled — SIGKILL — the guardian resumes.
#[test]
fn every_terminating_signal_leaves_nothing_stopped() {
    if !root_or_skip("every_terminating_signal_leaves_nothing_stopped") {
        return;
    }
    let policy =
        PolicyFile::new("rules:\n  - {name: hold, syscall: getppid, action: {pause: 60s}}\n");
    let rtmin5 = libc::SIGRTMIN() + 5;
    let mut signals = vec![
        libc::SIGQUIT,
        libc::SIGALRM,
        libc::SIGUSR2,
        libc::SIGXCPU,
        rtmin5,
        libc::SIGUSR1,
        libc::SIGKILL,
    ];
    if std::env::var_os("REFLEX_MATRIX_VM").is_some() {
        // Which signals stop reflex is user space's; what the kernel does
        // is resume: one handled signal, the one that does not stop, and
        // SIGKILL (the guardian) show it on each kernel, at seconds a start.
        signals.retain(|&s| [libc::SIGQUIT, libc::SIGUSR1, libc::SIGKILL].contains(&s));
    }
    for sig in signals {
        let cmd = caller_cmd(&["call", &sysno("getppid")]);
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let target = Launched::through_stops(&cmd);
        let (pid, ppid) = (target.pid, target.ppid.to_string());
        let mut reflex = Reflex::start(&[policy.arg(), "--ppid", &ppid, "--json"]);
        let go = std::thread::spawn(move || target.go());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stopped(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stopped(pid), "signal {sig}: paused first");
        // SAFETY: kill(2) with plain integers (real-time signals have no
        // nix name).
        assert_eq!(unsafe { libc::kill(reflex.pid() as i32, sig) }, 0);
        if sig == libc::SIGUSR1 {
            // Not a stop: reflex goes on (and later resumes at SIGTERM).
            std::thread::sleep(Duration::from_millis(500));
            assert!(stopped(pid), "SIGUSR1 does not stop reflex");
            let out = reflex.stop();
            assert_eq!(out.code, Some(0));
        } else if sig == libc::SIGKILL {
            // The guardian resumes what reflex left.
            let deadline = Instant::now() + Duration::from_secs(10);
            while stopped(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let text = reflex.stderr.rest().join("\n");
            assert!(!stopped(pid), "SIGKILL: the guardian resumed it; {text}");
            assert!(
                text.contains("reflex guardian: reflex")
                    && text.contains(&format!("resumed the 1 process(es) it had stopped: {pid}")),
                "{text}"
            );
        } else {
            let mut exited = None;
            let deadline = Instant::now() + Duration::from_secs(15);
            while exited.is_none() && Instant::now() < deadline {
                exited = reflex.try_exit();
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(exited, Some(Some(0)), "signal {sig}: a clean stop");
            let text = reflex.stderr.rest().join("\n");
            assert!(
                text.contains("reflex: detached after 0 reloads (stopped by"),
                "{text}"
            );
        }
        let (ended, _) = go.join().unwrap();
        assert_eq!(
            ended,
            Ended::Exit(0),
            "signal {sig}: resumed, it ran to its end"
        );
    }
}

/// Defect 5: the table printed a process's name raw, so a name made of
/// escape sequences cleared and retitled the operator's terminal.
#[test]
fn names_cannot_drive_the_terminal() {
    if !root_or_skip("names_cannot_drive_the_terminal") {
        return;
    }
    let policy = PolicyFile::new("rules:\n  - {name: n, syscall: getppid, action: audit}\n");
    let target = launch(&caller_cmd(&[
        "named",
        "\\x1b[2J\\x1b[31mX\\x1b]0;T",
        &sysno("getppid"),
    ]));
    let ppid = target.ppid.to_string();
    let reflex = Reflex::start(&[policy.arg(), "--ppid", &ppid]);
    let (ended, _) = target.go();
    let out = reflex.stop();
    assert_eq!(ended, Ended::Exit(0));
    let line = out
        .stdout
        .iter()
        .find(|l| l.contains("[n via getppid]"))
        .unwrap_or_else(|| panic!("{:?}", out.stdout));
    assert!(!line.contains('\x1b'), "{line:?}");
    assert!(line.contains("\\x1b[2J\\x1b[31mX\\x1b]0;T"), "{line}");
}

/// Defect 6 (among the smaller ones): stdout on a full disk flooded stderr
/// with a warning per batch; now one, then at most one per 10 s with a count.
#[test]
fn a_full_disk_is_said_once_and_counted() {
    if !root_or_skip("a_full_disk_is_said_once_and_counted") {
        return;
    }
    let policy = PolicyFile::new("rules:\n  - {name: a, syscall: getppid, action: audit}\n");
    let target = launch(&caller_cmd(&["paced", "20000", "2", &sysno("getppid")]));
    let ppid = target.ppid.to_string();
    let mut child = common::Reaped(
        Command::new(REFLEX)
            .args(["run", policy.arg(), "--ppid", &ppid, "--json"])
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = common::Lines::of(child.stderr.take().unwrap());
    stderr.wait_for("the banner", |l| l.starts_with("reflex: attached"));
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let text = stderr.rest().join("\n");
    let warnings = text.lines().filter(|l| l.contains("No space left")).count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{text}");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Everything read was counted as undelivered (under emulation the ring
    // buffer drops some first; those are counted as dropped).
    assert!(field("received") > 0, "{text}");
    assert!(field("undelivered") >= field("received"), "{text}");
    assert_eq!(field("received") + field("dropped"), 20_000, "{text}");
}

/// Defect 6: once the policy folder was removed and made again, changes to
/// it were no longer seen, silently.
#[test]
fn a_replaced_policy_folder_is_watched_again() {
    if !root_or_skip("a_replaced_policy_folder_is_watched_again") {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("policies.d");
    std::fs::create_dir(&dir).unwrap();
    let rule =
        |name: &str| format!("rules:\n  - {{name: {name}, syscall: getppid, action: audit}}\n");
    std::fs::write(dir.join("p.yaml"), rule("before")).unwrap();
    let target = launch(&caller_cmd(&["call", &sysno("getppid")]));
    let ppid = target.ppid.to_string();
    let mut reflex = Reflex::start(&[dir.to_str().unwrap(), "--ppid", &ppid, "--json"]);
    // Removed (its rules stay: the reload is refused) …
    std::fs::remove_dir_all(&dir).unwrap();
    reflex
        .stderr
        .wait_for("the folder's loss", |l| l.contains("was removed or moved"));
    // … and made again, the way a deploy tool does: in a new folder, renamed
    // into place.
    let staged = top.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("p.yaml"), rule("after")).unwrap();
    std::fs::rename(&staged, &dir).unwrap();
    reflex
        .stderr
        .wait_for("the new rules", |l| l.starts_with("reflex: reloaded"));
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    let out = reflex.stop();
    let rules: Vec<String> = out
        .json()
        .iter()
        .map(|e| e["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(rules, ["after"]);
}

/// The circuit breaker: a kill rule that may act on 3 distinct executables
/// a minute, met by 5, kills 3, audits the other 2, and says so.
#[test]
fn a_circuit_breaker_stops_a_rule_that_kills_too_widely() {
    if !root_or_skip("a_circuit_breaker_stops_a_rule_that_kills_too_widely") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
    let copies: Vec<String> = (1..=5)
        .map(|i| {
            let p = dir.path().join(format!("py{i}"));
            std::fs::copy(&python, &p).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect();
    let caller = helper("caller.py");
    let getppid = sysno("getppid");
    let script: String = copies
        .iter()
        .map(|py| format!("{py} {} call {getppid}; echo \"$?\"; ", caller.display()))
        .collect();
    let policy = PolicyFile::new(concat!(
        "rules:\n",
        "  - name: kill-callers\n",
        "    syscall: getppid\n",
        "    action: kill\n",
        "    disarm: {distinct: 3, per: 1m, by: executable}\n",
    ));
    let target = Launched::new(&["sh", "-c", &script]);
    let scope = target.pid.to_string(); // the copies are the shell's children
    let mut reflex = Reflex::start(&[policy.arg(), "--ppid", &scope, "--json"]);
    let (ended, printed) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    let codes: Vec<&str> = printed
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.len() <= 3)
        .collect();
    assert_eq!(codes, ["137", "137", "137", "0", "0"], "{printed:?}");
    reflex.stderr.wait_for("the warning", |l| {
        l.contains("rule 'kill-callers' is disarmed")
    });
    let out = reflex.stop();
    let actions: Vec<String> = out
        .json()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "signalled",
            "signalled",
            "signalled",
            "disarmed",
            "disarmed"
        ]
    );
    assert_eq!(out.summary("disarmed"), 2);
}

#[test]
fn a_pause_reflex_cannot_end_is_said() {
    if !root_or_skip("a_pause_reflex_cannot_end_is_said") {
        return;
    }
    // Root without CAP_KILL (a container's capabilities dropped) cannot send
    // the SIGCONT that ends a pause to another user's process: reflex says
    // so at start, and when the resume is refused, with the pid. The test
    // resumes the process itself.
    let policy =
        PolicyFile::new("rules:\n  - {name: p, syscall: getppid, action: {pause: 300ms}}\n");
    let target = Launched::through_stops(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        // A session of its own, as a container's reflex and the host's
        // processes have (within one session SIGCONT needs no permission).
        "import os; os.setsid(); os.getppid()",
    ]);
    let (pid, ppid) = (target.pid, target.ppid.to_string());
    let mut reflex = Reflex::start_without("kill", &[policy.arg(), "--ppid", &ppid, "--json"]);
    assert!(
        reflex
            .stderr
            .seen
            .iter()
            .any(|l| l.contains("lacks CAP_KILL")),
        "{:#?}",
        reflex.stderr.seen
    );
    let go = std::thread::spawn(move || target.go());
    let line = reflex
        .stderr
        .wait_for("the refused resume", |l| l.contains("could not resume pid"));
    assert!(
        line.contains(&format!("could not resume pid {pid}")) && line.contains("CAP_KILL"),
        "{line}"
    );
    assert!(stopped(pid), "still stopped, as said");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let (ended, _) = go.join().unwrap();
    assert_eq!(ended, Ended::Exit(0));
    let out = reflex.stop();
    assert_eq!(out.json()[0]["action"], "signalled", "{:#?}", out.json());
}
