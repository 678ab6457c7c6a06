//! Every decision names who, what and where, read in the kernel at the
//! decision: the tests read the events after the processes are gone.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{Ended, Launched, PolicyFile, Reflex, TestCgroup, lsm_available, root_or_skip};
use serde_json::{Value, json};

/// A copy of `from` named `name` in `dir`: an executable only this test runs.
fn copy_of(from: &str, dir: &Path, name: &str) -> String {
    let to = dir.join(name);
    std::fs::copy(std::fs::canonicalize(from).unwrap(), &to).unwrap();
    to.to_str().unwrap().to_string()
}

fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// When `pid` started, from /proc (clock ticks since boot, on the boot-time
/// clock), as a wall-clock time.
fn start_of(pid: u32) -> SystemTime {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[19].parse().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap();
    let now = SystemTime::now();
    let since_boot = Duration::new(boot.tv_sec() as u64, boot.tv_nsec() as u32);
    now - (since_boot - Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn time_of(v: &Value) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    t.with_timezone(&chrono::Utc).into()
}

fn near(a: SystemTime, b: SystemTime, within: Duration) -> bool {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap()
        <= within
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

const JOB: &str = "\
import os, sys, time
args = sys.argv[1:]
if args[:1] == ['--wait']:
    while not os.path.exists(args[1]):
        time.sleep(0.01)
os.getppid()
print('alive', flush=True)
";

/// A script run by a renamed interpreter, one process started before reflex
/// and one after, each in a cgroup named as a container runtime names its
/// own: killed at a call, and described by the event as they were, read
/// after both were reaped.
#[test]
fn a_killed_process_is_described_as_it_was() {
    if !root_or_skip("a_killed_process_is_described_as_it_was") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let interp = copy_of("/usr/bin/python3", dir.path(), "nightly-backup");
    let script = dir.path().join("job.py");
    std::fs::write(&script, JOB).unwrap();
    let script = script.to_str().unwrap();
    let go = dir.path().join("go");
    let go = go.to_str().unwrap();

    let cgroup = TestCgroup::new("identity");
    let docker_id = "0123456789abcdef".repeat(4);
    let podman_id = "fedcba9876543210".repeat(4);
    let docker = cgroup.dir.join(format!("docker-{docker_id}.scope"));
    let podman = cgroup.dir.join(format!("libpod-{podman_id}.scope"));
    std::fs::create_dir(&docker).unwrap();
    std::fs::create_dir(&podman).unwrap();

    // Started, and past its exec, before reflex.
    let early_argv = [
        interp.as_str(),
        script,
        "--wait",
        go,
        "--mode",
        "nightly backup",
    ];
    let early = Launched::in_cgroup(&docker, &early_argv);
    let (early_pid, early_parent) = (early.pid, early.ppid);
    let early_run = std::thread::spawn(move || early.go());
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_link(format!("/proc/{early_pid}/exe")).ok() != Some(interp.clone().into()) {
        assert!(Instant::now() < deadline, "{early_pid} never ran {interp}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The other one after: its command line is longer than an event holds.
    let long = "y".repeat(300);
    let late = Launched::in_cgroup(&podman, &[&interp, script, "--mode", &long]);
    let (late_pid, late_parent) = (late.pid, late.ppid);
    let expected: Vec<(u32, u32, SystemTime, PathBuf, u32)> =
        [(early_pid, early_parent), (late_pid, late_parent)]
            .into_iter()
            .map(|(pid, parent)| {
                let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32)))
                    .unwrap()
                    .as_raw() as u32;
                (pid, parent, start_of(pid), exe_of(parent), sid)
            })
            .collect();

    let policy = PolicyFile::new(&format!(
        "rules:\n  - {{name: backup-kill, syscall: getppid, match: {{executable: {interp}}}, action: kill}}\n"
    ));
    let me = std::process::id().to_string();
    let reflex = Reflex::start(&[policy.arg(), "--tree", &me, "--json"]);
    std::fs::write(go, "").unwrap();
    let (early_end, printed) = early_run.join().unwrap();
    assert_eq!(early_end, Ended::Signal(9), "{printed:?}");
    let (late_end, printed) = late.go();
    assert_eq!(late_end, Ended::Signal(9), "{printed:?}");
    // Both reaped by their launchers: nothing is left to look up.
    assert!(gone(early_pid) && gone(late_pid));
    let out = reflex.stop();
    let events: Vec<Value> = out
        .json()
        .into_iter()
        .filter(|e| e["rule"] == "backup-kill")
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let host = nix::unistd::gethostname().unwrap();
    for (i, (pid, parent, start, parent_exe, sid)) in expected.into_iter().enumerate() {
        let e = events
            .iter()
            .find(|e| e["pid"] == pid)
            .unwrap_or_else(|| panic!("no event for {pid}: {events:?}"));
        assert_eq!(e["action"], "signalled", "{e}");
        assert_eq!(e["exe"], interp.as_str(), "{e}");
        assert_eq!(e["comm"], "nightly-backup", "{e}");
        assert_eq!(e["node"], host.to_str().unwrap(), "{e}");
        assert_eq!((e["uid"].clone(), e["euid"].clone()), (json!(0), json!(0)));
        assert_eq!(e["sid"], sid, "{e}");
        assert!(
            near(time_of(&e["start_time"]), start, Duration::from_millis(50)),
            "start_time {} vs /proc's {:?}",
            e["start_time"],
            chrono::DateTime::<chrono::Utc>::from(start)
        );
        assert_eq!(e["parent"]["pid"], parent, "{e}");
        assert_eq!(e["parent"]["exe"], parent_exe.to_str().unwrap(), "{e}");
        assert!(e["parent"]["start_time"].is_string(), "{e}");
        assert_eq!(e["ancestors"][0]["pid"], parent, "{e}");
        assert_eq!(e["ancestors"][1]["pid"], std::process::id(), "{e}");
        let argv = strings(&e["argv"]);
        if i == 0 {
            assert_eq!(argv, early_argv, "{e}");
            assert_eq!(
                e["cgroup"],
                format!("{}/docker-{docker_id}.scope", cgroup.name)
            );
            assert_eq!(
                e["container"],
                json!({"id": docker_id, "runtime": "docker"})
            );
            assert!(e.get("truncated").is_none(), "{e}");
        } else {
            // 256 bytes of it, and the event says it was cut.
            assert_eq!(argv[..3], [interp.as_str(), script, "--mode"], "{e}");
            assert!(
                argv[3].len() < long.len() && long.starts_with(&argv[3]),
                "{e}"
            );
            assert_eq!(e["truncated"], json!(["argv"]), "{e}");
            assert_eq!(
                e["cgroup"],
                format!("{}/libpod-{podman_id}.scope", cgroup.name)
            );
            assert_eq!(
                e["container"],
                json!({"id": podman_id, "runtime": "podman"})
            );
        }
    }
    // The cgroups can go: the events already said where the processes ran.
    std::fs::remove_dir(&docker).unwrap();
    std::fs::remove_dir(&podman).unwrap();
}

/// An exec names the file run and its new command line, not the name of the
/// process before it: at execve, and at the exec hook where BPF-LSM loads.
#[test]
fn an_exec_names_the_file_run_and_its_argv() {
    if !root_or_skip("an_exec_names_the_file_run_and_its_argv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = copy_of("/bin/true", dir.path(), "probe-true");
    let mut yaml =
        String::from("rules:\n  - {name: execs, syscall: [execve, execveat], action: audit}\n");
    let lsm = lsm_available();
    if lsm {
        yaml.push_str("  - {name: exec-hook, hook: exec, action: audit}\n");
    }
    let policy = PolicyFile::new(&yaml);
    let target = Launched::new(&[&run, "alpha", "beta gamma"]);
    let reflex = Reflex::start(&[policy.arg(), "--ppid", &target.ppid.to_string(), "--json"]);
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    let out = reflex.stop();
    let events = out.json();
    let argv = json!([run, "alpha", "beta gamma"]);
    let at_syscall = events
        .iter()
        .find(|e| e["rule"] == "execs")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(at_syscall["syscall"], "execve", "{at_syscall}");
    assert_eq!(at_syscall["file"], run.as_str(), "{at_syscall}");
    assert_eq!(at_syscall["exec_argv"], argv, "{at_syscall}");
    // The caller, before the exec: the launcher's child (python).
    assert_ne!(at_syscall["exe"], run.as_str(), "{at_syscall}");
    if lsm {
        let at_hook = events
            .iter()
            .find(|e| e["rule"] == "exec-hook")
            .unwrap_or_else(|| panic!("{events:?}"));
        assert_eq!(at_hook["file"], run.as_str(), "{at_hook}");
        if common::kernel_offers("exec argv") {
            assert_eq!(at_hook["exec_argv"], argv, "{at_hook}");
        } else {
            assert!(at_hook.get("exec_argv").is_none(), "{at_hook}");
        }
    }
}

/// `--ppid` sees children only; `--tree` and the `ancestor:` selector see a
/// grandchild started through a shell, by the ancestor's pid or executable.
#[test]
fn tree_and_ancestor_catch_a_grandchild_that_ppid_misses() {
    if !root_or_skip("tree_and_ancestor_catch_a_grandchild_that_ppid_misses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let job = copy_of("/usr/bin/python3", dir.path(), "grandchild");
    let shell = copy_of("/bin/sh", dir.path(), "session-shell");
    let script = dir.path().join("job.py");
    std::fs::write(&script, JOB).unwrap();
    // Not the shell's last command: it forks, then waits.
    let line = format!("{job} {}; exit $?", script.display());
    let under = |sh: &str| Launched::new(&[sh, "-c", &line]);
    let kill_job = format!(
        "rules:\n  - {{name: grandchildren, syscall: getppid, match: {{executable: {job}}}, action: kill}}\n"
    );

    // --ppid: the grandchild is not a child of the launcher.
    let target = under("/bin/sh");
    let policy = PolicyFile::new(&kill_job);
    let reflex = Reflex::start(&[policy.arg(), "--ppid", &target.ppid.to_string(), "--json"]);
    let (ended, printed) = target.go();
    let out = reflex.stop();
    assert_eq!(ended, Ended::Exit(0), "{printed:?}");
    assert_eq!(printed, ["alive"]);
    assert!(out.json().is_empty(), "{:?}", out.stdout);

    // --tree, and ancestors by pid and by executable.
    let by_pid = under("/bin/sh");
    let by_exe = under(&shell);
    let neither = under("/bin/sh");
    let policy = PolicyFile::new(&format!(
        "rules:\n\
         \x20 - {{name: by-pid, syscall: getppid, match: {{executable: {job}, ancestor: {}}}, action: kill}}\n\
         \x20 - {{name: by-exe, syscall: getppid, match: {{executable: {job}, ancestor: {{executable: {shell}}}}}, action: kill}}\n",
        by_pid.ppid
    ));
    let me = std::process::id().to_string();
    let reflex = Reflex::start(&[policy.arg(), "--tree", &me, "--json"]);
    let (pid_launcher, exe_launcher) = (by_pid.ppid, by_exe.ppid);
    let ends = [by_pid.go(), by_exe.go(), neither.go()];
    let out = reflex.stop();
    // A shell whose child was killed exits 128 + 9.
    assert_eq!(ends[0].0, Ended::Exit(137), "{:?}", ends[0]);
    assert_eq!(ends[1].0, Ended::Exit(137), "{:?}", ends[1]);
    assert_eq!(ends[2], (Ended::Exit(0), vec!["alive".to_string()]));
    let events = out.json();
    assert_eq!(events.len(), 2, "{events:?}");
    let dash = std::fs::canonicalize("/bin/sh").unwrap();
    for (rule, launcher, sh) in [
        ("by-pid", pid_launcher, dash.to_str().unwrap()),
        ("by-exe", exe_launcher, shell.as_str()),
    ] {
        let e = events
            .iter()
            .find(|e| e["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule}: {events:?}"));
        assert_eq!(e["action"], "signalled");
        assert_eq!(e["exe"], job.as_str());
        // The chain it saw: the shell, the launcher, the test.
        assert_eq!(e["ancestors"][0]["exe"], sh, "{e}");
        assert_eq!(e["parent"]["exe"], sh, "{e}");
        assert_eq!(e["ancestors"][1]["pid"], launcher, "{e}");
        assert_eq!(e["ancestors"][2]["pid"], std::process::id(), "{e}");
    }
}

/// libbpf relocates every program against the part of the kernel's BTF
/// reflex cuts for it (the types the relocations are relative to, down to
/// the first pointer) exactly as against all of it: same instructions, same
/// offsets, same answers to "does this field exist", on every kernel this
/// runs on (the matrix runs it on each).
#[test]
fn the_kernel_btf_cut_for_core_relocates_as_all_of_it() {
    if !root_or_skip("the_kernel_btf_cut_for_core_relocates_as_all_of_it") {
        return;
    }
    let features = reflex::features::Features::new();
    let cut = reflex::kernel::relocated(&features, true).unwrap_or_else(|e| panic!("{e}"));
    let whole = reflex::kernel::relocated(&features, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cut.keys().collect::<Vec<_>>(),
        whole.keys().collect::<Vec<_>>()
    );
    for (name, insns) in &whole {
        assert!(!insns.is_empty(), "{name}: no instructions");
        assert!(
            cut[name] == *insns,
            "{name}: relocated differently against the cut BTF"
        );
    }
    // And it is the point: a small part of the kernel's BTF.
    let core = features
        .core_btf(reflex::abi::CORE_ROOTS, reflex::abi::CORE_RELO_KINDS)
        .unwrap();
    let kernel = std::fs::metadata(reflex::features::BTF_PATH).unwrap().len() as usize;
    assert!(core.bytes * 20 < kernel, "{} of {kernel} bytes", core.bytes);
}
