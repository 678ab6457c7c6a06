//! Deny rules (BPF-LSM), as root, with real clients. Where the kernel allows
//! BPF-LSM (the VM kernels of the matrix), operations are refused; where it
//! does not (this development machine's own kernel), the same policies are
//! refused with the reason or fall back as they say. Both are checked: which
//! one runs is decided by `reflex check`, never skipped.

mod common;

use common::{
    Ended, Reflex, Sleeper, caller_cmd, example, launch, lsm_available, reflex_once, root_or_skip,
    sysno,
};

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;
const EPERM: i64 = 1;
const EACCES: i64 = 13;

const AS_1000: [&str; 4] = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"];

/// Runs `cmd` under a launcher with reflex running `policy` (scoped to the
/// launcher): how it ended, what it printed (stdout and stderr), the events.
fn under(
    policy: &str,
    env: &[(&str, &str)],
    cmd: &[String],
) -> (Ended, Vec<String>, Vec<serde_json::Value>, Vec<String>) {
    let mut sh: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        r#"exec "$@" 2>&1"#.into(),
        "sh".into(),
    ];
    sh.extend(cmd.iter().cloned());
    let target = launch(&sh);
    let ppid = target.ppid.to_string();
    let reflex = Reflex::start_with_env(&[policy, "--ppid", &ppid, "--json"], env);
    let (ended, printed) = target.go();
    let out = reflex.stop();
    (ended, printed, out.json(), out.stderr)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[track_caller]
fn assert_denied(events: &[serde_json::Value], hook: &str) {
    assert!(!events.is_empty(), "no event");
    for e in events {
        assert_eq!(e["action"], "denied", "{e}");
        assert_eq!(e["errno"], "EPERM", "{e}");
        assert_eq!(e["hook"], hook, "{e}");
    }
}

#[test]
fn deny_debuggers() {
    if !root_or_skip("deny_debuggers") {
        return;
    }
    let policy = example("deny-debuggers.yaml");
    if !lsm_available() {
        // This kernel refuses BPF-LSM: the rule falls back to SIGKILL at
        // ptrace's entry, and says so.
        let (ended, _, events, stderr) = under(
            &policy,
            &[],
            &s(&["strace", "-o", "/dev/null", "/bin/true"]),
        );
        assert_eq!(ended, Ended::Signal(SIGKILL));
        let degraded = stderr
            .iter()
            .find(|l| l.starts_with("reflex: DEGRADED: rule 'refuse-attach'"));
        let degraded = degraded.unwrap_or_else(|| panic!("no DEGRADED line: {stderr:?}"));
        assert!(degraded.contains("BPF-LSM is refused ("), "{degraded}");
        assert!(
            degraded.contains("the operation itself is not refused"),
            "{degraded}"
        );
        assert_eq!(events[0]["rule"], "refuse-attach");
        assert_eq!(events[0]["action"], "signalled");
        return;
    }
    let hook = "lsm/ptrace_access_check";
    let victim = Sleeper::spawn(&["sleep"]);
    let v = victim.pid().to_string();

    let (ended, printed, events, _) =
        under(&policy, &[], &s(&["strace", "-o", "/dev/null", "-p", &v]));
    assert_ne!(ended, Ended::Exit(0), "strace -p must fail: {printed:?}");
    assert!(
        printed.join("\n").contains("Operation not permitted"),
        "{printed:?}"
    );
    assert_denied(&events, hook);

    let (ended, printed, events, _) = under(
        &policy,
        &[],
        &s(&["gdb", "-q", "-batch", "-nx", "-p", &v, "-ex", "detach"]),
    );
    assert!(
        printed.join("\n").contains("Operation not permitted"),
        "{ended:?} {printed:?}"
    );
    assert_denied(&events, hook);

    let (_, printed, events, _) = under(
        &policy,
        &[],
        &caller_cmd(&["call", &sysno("ptrace"), "16", &v, "0", "0"]),
    );
    let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(r["errno"], EPERM, "ctypes PTRACE_ATTACH: {r}");
    assert_denied(&events, hook);
    assert_eq!(
        events[0]["args"][0],
        victim.pid(),
        "the event names the target"
    );

    // Opening /proc/PID/mem asks the same hook; the kernel turns any refusal
    // there into EACCES (mm_access), while the event names what reflex said.
    let (_, printed, events, _) = under(&policy, &[], &caller_cmd(&["readmem", &v]));
    let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(r["errno"], EACCES, "read of /proc/PID/mem: {r}");
    assert_denied(&events, hook);

    // Looking is not attaching: /proc/PID/status needs only PTRACE_MODE_READ.
    let (ended, printed, events, _) =
        under(&policy, &[], &s(&["cat", &format!("/proc/{v}/environ")]));
    assert_eq!(ended, Ended::Exit(0), "{printed:?} {events:?}");
    assert!(events.is_empty(), "{events:?}");

    // uid 1000 may attach (to its own process).
    let own = Sleeper::spawn(&[AS_1000.as_slice(), &["sleep"]].concat());
    let mut cmd = s(&AS_1000);
    cmd.extend(caller_cmd(&[
        "call",
        &sysno("ptrace"),
        "16",
        &own.pid().to_string(),
        "0",
        "0",
    ]));
    let (_, printed, events, _) = under(&policy, &[], &cmd);
    let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(r["errno"], 0, "uid 1000 attaches: {r}");
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn deny_exec_and_module_loading() {
    if !root_or_skip("deny_exec_and_module_loading") {
        return;
    }
    let policy = example("no-new-modules.yaml");
    if !lsm_available() {
        // No fallback can check a file at syscall entry: the policy is refused.
        let out = reflex_once(&["run", "--ppid", "1", &policy], false);
        assert_eq!(out.code, Some(1));
        let err = out.stderr.join("\n");
        assert!(err.contains("rule 'refuse-module-tools' needs BPF-LSM on hook 'exec', which this kernel refuses ("), "{err}");
        assert!(
            err.contains("it cannot fall back (its `file` is not known at syscall entry)"),
            "{err}"
        );
        assert!(
            err.contains("rule 'refuse-module-loading' needs BPF-LSM on hook 'module'"),
            "{err}"
        );
        assert!(!err.contains("attached"), "nothing loads: {err}");
        return;
    }
    // insmod is a link to kmod: same file, refused before it runs.
    let (ended, printed, events, _) = under(&policy, &[], &s(&["/usr/sbin/insmod"]));
    assert_eq!(
        ended,
        Ended::Exit(126),
        "the shell could not execute it: {printed:?}"
    );
    assert!(
        printed.join("\n").contains("Permission denied")
            || printed.join("\n").contains("Operation not permitted"),
        "{printed:?}"
    );
    assert_denied(&events, "lsm/bprm_check_security");
    assert_eq!(events[0]["rule"], "refuse-module-tools");

    // Another program runs.
    let (ended, _, events, _) = under(&policy, &[], &s(&["/bin/true"]));
    assert_eq!(ended, Ended::Exit(0));
    assert!(events.is_empty(), "{events:?}");

    // init_module of a non-module: refused before it is even parsed.
    let (_, printed, events, _) = under(&policy, &[], &caller_cmd(&["init_module"]));
    let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(r["errno"], EPERM, "{r}");
    assert_denied(&events, "lsm/kernel_read_file");
    assert_eq!(events[0]["rule"], "refuse-module-loading");
}

/// A copy of sleep in `dir`: the executable guard-services.yaml protects
/// when REFLEX_GUARDED names it.
fn guarded_service(dir: &tempfile::TempDir) -> String {
    let exe = dir.path().join("guarded-service");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    exe.to_str().unwrap().to_string()
}

#[test]
fn deny_kills_of_guarded_services() {
    if !root_or_skip("deny_kills_of_guarded_services") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = guarded_service(&dir);
    let env = [("REFLEX_GUARDED", exe.as_str())];
    // kill and tkill take the target first and the signal second, tgkill the
    // target first and the signal third: the fallback reads each where it is.
    for syscall in ["kill", "tkill", "tgkill"] {
        let mut service = Sleeper::spawn(&[&exe]);
        let pid = service.pid().to_string();
        let mut call = vec!["call".to_string(), sysno(syscall), pid.clone()];
        if syscall == "tgkill" {
            call.push(pid.clone());
        }
        call.push("9".into());
        let call: Vec<&str> = call.iter().map(String::as_str).collect();
        let target = launch(&caller_cmd(&call));
        let ppid = target.ppid.to_string();
        let reflex = Reflex::start_with_env(
            &[&example("guard-services.yaml"), "--ppid", &ppid, "--json"],
            &env,
        );
        let (ended, _) = target.go();
        let out = reflex.stop();
        let events = out.json();
        // Either way the killer is stopped and the event names the rule.
        assert_eq!(
            ended,
            Ended::Stopped(SIGSTOP),
            "{syscall}: {:?}",
            out.stderr
        );
        assert_eq!(events.len(), 1, "{syscall}: {events:?}");
        assert!(
            events[0]["rule"]
                .as_str()
                .unwrap()
                .starts_with("guard-services"),
            "{syscall}: {events:?}"
        );
        assert_eq!(events[0]["signal"], "SIGSTOP");
        // The event names the process aimed at: its pid always; its name and
        // executable from the hook's task, or where the syscall's program
        // can look the task up (`reflex check`: target identity).
        let aimed = &events[0]["target_process"];
        assert_eq!(
            aimed["pid"].as_u64(),
            Some(service.pid() as u64),
            "{events:?}"
        );
        if lsm_available() || common::kernel_offers("target identity") {
            assert_eq!(aimed["exe"], exe.as_str(), "{syscall}: {events:?}");
            assert_eq!(
                aimed["comm"],
                std::path::Path::new(&exe)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap(),
                "{syscall}: {events:?}"
            );
        } else {
            assert!(aimed.get("exe").is_none(), "{events:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let alive = service.alive();
        if lsm_available() {
            assert_eq!(events[0]["action"], "denied");
            assert_eq!(events[0]["errno"], "EPERM");
            assert!(alive, "{syscall}: the kill was refused: the service lives");
        } else {
            assert_eq!(events[0]["action"], "signalled");
            assert_eq!(events[0]["syscall"], syscall);
            assert!(
                out.stderr
                    .iter()
                    .any(|l| l.starts_with("reflex: DEGRADED: rule 'guard-services'")
                        && l.contains("pidfd_send_signal")),
                "{:?}",
                out.stderr
            );
            assert!(!alive, "{syscall}: at syscall entry the kill still happens");
        }
    }
}

#[test]
fn deny_kills_by_pidfd() {
    if !root_or_skip("deny_kills_by_pidfd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = guarded_service(&dir);
    let env = [("REFLEX_GUARDED", exe.as_str())];
    // A rule that names no `target` reads the same at pidfd_send_signal as
    // anywhere; one that does (guard-services) cannot read it there.
    let no_sigkill = dir.path().join("no-sigkill.yaml");
    std::fs::write(
        &no_sigkill,
        "rules:\n  - name: no-sigkill\n    hook: kill\n    args: {sig: SIGKILL}\n    \
         action: {deny: EPERM, signal: SIGSTOP}\n    fallback: {signal: SIGSTOP}\n",
    )
    .unwrap();
    let guard = example("guard-services.yaml");
    for policy in [no_sigkill.to_str().unwrap(), guard.as_str()] {
        let mut service = Sleeper::spawn(&[&exe]);
        let pid = service.pid().to_string();
        let (ended, printed, events, stderr) =
            under(policy, &env, &caller_cmd(&["pidfdkill", &pid, "9"]));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let alive = service.alive();
        if lsm_available() {
            // task_kill sees every way of sending a signal.
            assert_eq!(ended, Ended::Stopped(SIGSTOP), "{policy}: {stderr:?}");
            assert_denied(&events, "lsm/task_kill");
            assert!(alive, "{policy}: the kill was refused: the service lives");
        } else if policy == guard {
            // Left out of the fallback, and reflex said so at start.
            let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
            assert_eq!((ended, r["errno"].as_i64()), (Ended::Exit(0), Some(0)));
            assert!(events.is_empty(), "{events:?}");
            assert!(
                stderr
                    .iter()
                    .any(|l| l.starts_with("reflex: DEGRADED: rule 'guard-services'")
                        && l.contains("pidfd_send_signal cannot show what it matches")),
                "{stderr:?}"
            );
            assert!(!alive);
        } else {
            assert_eq!(ended, Ended::Stopped(SIGSTOP), "{policy}: {stderr:?}");
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!(events[0]["action"], "signalled");
            assert_eq!(events[0]["syscall"], "pidfd_send_signal");
            assert!(!alive, "at syscall entry the kill still happens");
        }
    }
}

#[test]
fn deny_bpf_program_loading() {
    if !root_or_skip("deny_bpf_program_loading") {
        return;
    }
    let policy = example("no-bpf-loading.yaml");
    let load = caller_cmd(&["bpfload"]);
    if lsm_available() {
        let (_, printed, events, _) = under(&policy, &[], &load);
        let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
        assert_eq!(r["errno"], EPERM, "BPF_PROG_LOAD: {r}");
        assert_denied(&events, "lsm/bpf");
        assert_eq!(events[0]["rule"], "refuse-bpf-programs");
        assert_eq!(events[0]["args"][0], 5, "the command: BPF_PROG_LOAD");
    } else {
        // SIGKILL at bpf()'s entry with BPF_PROG_LOAD, and reflex says so.
        let (ended, _, events, stderr) = under(&policy, &[], &load);
        assert_eq!(ended, Ended::Signal(SIGKILL));
        assert!(
            stderr
                .iter()
                .any(|l| l.starts_with("reflex: DEGRADED: rule 'refuse-bpf-programs'")),
            "{stderr:?}"
        );
        assert_eq!(events[0]["action"], "signalled");
        assert_eq!(events[0]["syscall"], "bpf");
        assert_eq!(events[0]["args"][0], 5);
    }
    // Other commands are not matched: a map is created, nothing reported.
    let (ended, printed, events, _) = under(&policy, &[], &caller_cmd(&["bpfmap"]));
    assert_eq!(ended, Ended::Exit(0));
    let r: serde_json::Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(r["errno"], 0, "BPF_MAP_CREATE: {r}");
    assert!(events.is_empty(), "{events:?}");
}
