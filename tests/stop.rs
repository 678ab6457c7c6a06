//! Nothing left behind: whatever stopped a process — a pause at a syscall's
//! entry or exit, a sample, a hook rule that refuses and stops the caller —
//! reflex stopped with SIGINT or SIGTERM leaves nothing stopped. Every kind,
//! ten times with each signal (three in the kernel matrix's VMs).

mod common;

use std::time::{Duration, Instant};

use common::{
    Ended, Launched, PolicyFile, Reflex, Sleeper, caller_cmd, lsm_available, root_or_skip, stopped,
    strategies, sysno,
};
use nix::sys::signal::Signal;

/// Runs per stop signal: 10 (the kernel matrix sets fewer with
/// REFLEX_STOP_REPETITIONS: each run starts reflex, which takes seconds
/// under emulation).
fn repetitions() -> usize {
    std::env::var("REFLEX_STOP_REPETITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Runs `looper` (which calls what the policy watches until it is killed)
/// and, for each repetition and stop signal, starts reflex with `policy`,
/// waits until reflex has stopped the looper, stops reflex, and checks that
/// the looper is not stopped then, nor a moment later. `attach` alternates
/// between runs. The number of runs.
fn nothing_left_stopped(policy: &str, looper: &[String], attach: &[&str]) -> usize {
    let policy = PolicyFile::new(policy);
    let looper: Vec<&str> = looper.iter().map(String::as_str).collect();
    let target = Launched::through_stops(&looper);
    let (pid, ppid) = (target.pid, target.ppid.to_string());
    // It runs for every run: under emulation, minutes.
    let go = std::thread::spawn(move || target.go_within(Duration::from_secs(3600)));
    let mut runs = 0;
    for rep in 0..repetitions() {
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            let how = attach[runs % attach.len()];
            let reflex = Reflex::start(&[policy.arg(), "--ppid", &ppid, "--json", "--attach", how]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stopped(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let was_stopped = stopped(pid);
            let out = reflex.stop_with(sig);
            // Resumed by the time reflex has exited, and not stopped again:
            // no program of reflex's is left to stop it.
            let mut left = Vec::new();
            for _ in 0..5 {
                left.push(stopped(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            if left.contains(&true) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            assert!(
                was_stopped,
                "run {rep} ({sig}, {how}): reflex never stopped it"
            );
            assert_eq!(
                left,
                [false; 5],
                "run {rep} ({sig}, {how}): left stopped after reflex exited; its stderr:\n{}",
                out.stderr.join("\n")
            );
            assert_eq!(out.code, Some(0), "{sig}: {:?}", out.stderr);
            let resumed = out
                .json()
                .iter()
                .filter(|e| e["action"] == "resumed" && e["pid"] == pid)
                .count();
            assert!(resumed >= 1, "run {rep} ({sig}): no resume reported");
            runs += 1;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let (ended, _) = go.join().unwrap();
    assert_eq!(ended, Ended::Signal(9), "the test ended it");
    runs
}

/// A loop of getppid calls, until the test kills it.
fn getppid_loop() -> Vec<String> {
    caller_cmd(&["repeat", "1000000000", &sysno("getppid")])
}

#[test]
fn a_pause_at_syscall_entry_is_undone_at_stop() {
    if !root_or_skip("a_pause_at_syscall_entry_is_undone_at_stop") {
        return;
    }
    let runs = nothing_left_stopped(
        "rules:\n  - {name: pause-entry, syscall: getppid, action: {pause: 60s}}\n",
        &getppid_loop(),
        &strategies(),
    );
    assert_eq!(runs, 2 * repetitions());
}

#[test]
fn a_pause_at_syscall_exit_is_undone_at_stop() {
    if !root_or_skip("a_pause_at_syscall_exit_is_undone_at_stop") {
        return;
    }
    let runs = nothing_left_stopped(
        "rules:\n  - {name: pause-exit, syscall: getppid, slower_than: 1ns, action: {pause: 60s}}\n",
        &getppid_loop(),
        &strategies(),
    );
    assert_eq!(runs, 2 * repetitions());
}

#[test]
fn a_pause_from_sampling_is_undone_at_stop() {
    if !root_or_skip("a_pause_from_sampling_is_undone_at_stop") {
        return;
    }
    let runs = nothing_left_stopped(
        "rules:\n  - {name: pause-busy, sample: {frequency: 1000}, action: {pause: 60s}}\n",
        &getppid_loop(),
        &["auto"],
    );
    assert_eq!(runs, 2 * repetitions());
}

#[test]
fn a_stop_from_a_hook_rule_is_undone_at_stop() {
    if !root_or_skip("a_stop_from_a_hook_rule_is_undone_at_stop") {
        return;
    }
    // Where BPF-LSM loads, task_kill refuses the kill and stops the caller;
    // elsewhere the fallback stops it at kill's entry. Either way it is a
    // stop reflex sent, with no pause: undone when reflex stops.
    let lsm = lsm_available();
    let target = Sleeper::spawn(&["sleep"]);
    let looper = caller_cmd(&[
        "repeat",
        "1000000000",
        &sysno("kill"),
        &target.pid().to_string(),
        "0",
    ]);
    let runs = nothing_left_stopped(
        concat!(
            "rules:\n  - name: stop-killers\n    hook: kill\n",
            "    action: {deny: EPERM, signal: SIGSTOP}\n    fallback: {signal: SIGSTOP}\n"
        ),
        &looper,
        &["auto"],
    );
    assert_eq!(runs, 2 * repetitions());
    eprintln!(
        "stops from a hook rule: {}",
        if lsm {
            "BPF-LSM task_kill (deny + SIGSTOP)"
        } else {
            "its fallback at kill's entry (BPF-LSM refused here)"
        }
    );
}
