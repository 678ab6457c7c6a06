//! The checker's every error path, with places.
use super::*;
use crate::policy::{ArgCond, Set, Target};
use crate::signal::Signal;

fn check(yaml: &str) -> Result<Loaded, Diagnostics> {
    load_str(yaml, Path::new("p.yaml"), &Env::host())
}

#[track_caller]
fn errors(yaml: &str) -> Vec<String> {
    check(yaml)
        .expect_err("the policy should be refused")
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

#[track_caller]
fn one_error(yaml: &str) -> String {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].clone()
}

const HEAD: &str = "rules:\n  - name: r\n";

#[test]
fn the_seed_is_valid() {
    let p = Policy::seed();
    assert_eq!(p.rules.len(), 1);
    let r = &p.rules[0];
    assert_eq!(r.name, "no-ptrace");
    assert_eq!(r.trigger.syscalls()[0].name, "ptrace");
    assert_eq!(
        r.action,
        Action::Signal {
            signal: Signal::KILL,
            target: Target::Process
        }
    );
    assert_eq!(r.mode, Mode::Enforce);
}

#[test]
fn a_full_rule() {
    let yaml = concat!(
        "mode: monitor\n",
        "protect:\n  pids: [4242]\n  executables: [/bin/sh]\n",
        "rules:\n",
        "  - name: guard\n",
        "    syscall: [kill, tkill]\n",
        "    args:\n      sig: [SIGKILL, 15]\n      arg0: protected\n",
        "    match:\n      uid: {not: [root]}\n      comm: [bash, python3]\n      executable: /bin/sh\n",
        "    action: {signal: SIGSTOP}\n",
    );
    let p = check(yaml).unwrap().policy;
    let r = &p.rules[0];
    assert_eq!(r.mode, Mode::Monitor);
    assert_eq!(r.trigger.syscalls().len(), 2);
    assert_eq!(r.args[0].index, 1);
    assert_eq!(
        r.args[0].cond,
        ArgCond::In(Set {
            negate: false,
            values: vec![9, 15]
        })
    );
    assert_eq!(r.args[1].cond, ArgCond::Protected { negate: false });
    assert_eq!(
        r.selectors.uid,
        Some(Set {
            negate: true,
            values: vec![0]
        })
    );
    assert_eq!(
        &r.selectors.comm.as_ref().unwrap().values[0][..5],
        b"bash\0"
    );
    assert!(r.selectors.executable.as_ref().unwrap().values[0].ino > 0);
    assert_eq!(p.protect.pids, vec![4242]);
    assert_eq!(p.protect.executables.len(), 1);
    assert!(p.protect.tracks_processes());
    assert_eq!(r.at.to_string(), "p.yaml:6:11");
}

#[test]
fn an_unknown_hook_is_one_error_not_three() {
    let e = one_error(&format!(
        "{HEAD}    hook: bfp\n    action: deny\n    fallback: kill\n"
    ));
    assert_eq!(
        e,
        "p.yaml:3:11: error: unknown hook 'bfp' — did you mean 'bpf'?: hooks are ptrace, \
         exec, open, kill, module, bpf"
    );
    let e = one_error(&format!("{HEAD}    syscall: bpf\n    action: deny\n"));
    assert!(
        e.contains("write `hook: ptrace` (or exec, open, kill, module, bpf)"),
        "{e}"
    );
}

#[test]
fn unknown_syscall_with_suggestion_and_place() {
    let e = one_error(&format!("{HEAD}    syscall: ptrce\n    action: kill\n"));
    assert_eq!(
        e,
        "p.yaml:3:14: error: unknown syscall 'ptrce' — did you mean 'ptrace'?"
    );
    let e = one_error(&format!(
        "{HEAD}    syscall: [kill, ptrce]\n    action: kill\n"
    ));
    assert!(
        e.starts_with("p.yaml:3:21: error: unknown syscall 'ptrce'"),
        "{e}"
    );
}

#[test]
fn every_error_of_a_rule_is_reported() {
    let yaml = format!(
        "{HEAD}    syscall: kill\n    args:\n      sgi: 9\n      pid: PTRACE_ATACH\n      arg2: {{range: [5, 1]}}\n    match:\n      uid: nosuchuserhere\n      comm: averyveryverylongname\n      pid: [0]\n      executable: relative/path\n    action: {{signal: SIGFOO}}\n"
    );
    let e = errors(&yaml);
    let all = e.join("\n");
    for want in [
        "p.yaml:5:7: error: 'sgi' is not an argument of kill — did you mean 'sig'?",
        "p.yaml:6:12: error: unknown constant 'PTRACE_ATACH' — did you mean 'PTRACE_ATTACH'?",
        "p.yaml:7:13: error: range [5, 1] is empty",
        "p.yaml:9:12: error: no user named 'nosuchuserhere'",
        "p.yaml:10:13: error: comm 'averyveryverylongname' is longer than the kernel keeps (15 bytes): the process is seen as 'averyveryverylo'",
        "p.yaml:11:13: error: pid 0 is not a process id",
        "p.yaml:12:19: error: file 'relative/path' must be an absolute path",
        "p.yaml:13:22: error: unknown signal 'SIGFOO'",
    ] {
        assert!(all.contains(want), "missing\n  {want}\nin\n{all}");
    }
    assert_eq!(e.len(), 8, "{all}");
}

#[test]
fn shape_errors() {
    let e = one_error("rules:\n  - name: r\n    syscal: kill\n    action: kill\n");
    assert!(
        e.starts_with("p.yaml:3:5: error: unknown field `syscal`"),
        "{e}"
    );
    let e = one_error("mode: enforcing\nrules: []\nprotect: {pids: [1]}\n");
    assert_eq!(
        e,
        "p.yaml:1:7: error: unknown mode 'enforcing': use enforce or monitor"
    );
    let e = one_error("# nothing\n{}\n");
    assert!(e.contains("no rules"), "{e}");
    let e = one_error(&format!(
        "{HEAD}    syscall: kill\n    action: kill\n    match:\n      uid: []\n"
    ));
    assert!(e.contains("p.yaml:6:12: error: empty list"), "{e}");
}

#[test]
fn argument_names_must_agree_across_syscalls() {
    let e = one_error(&format!(
        "{HEAD}    syscall: [kill, tgkill]\n    args:\n      sig: SIGKILL\n    action: kill\n"
    ));
    assert!(
        e.contains("'sig' is argument 1 of kill but argument 2 of tgkill"),
        "{e}"
    );
}

#[test]
fn duplicate_names_are_errors() {
    let e = one_error(
        "rules:\n  - {name: a, syscall: kill, action: kill}\n  - {name: a, syscall: ptrace, action: kill}\n",
    );
    assert!(
        e.contains("rule name 'a' is already used at p.yaml:2:12"),
        "{e}"
    );
}

#[test]
fn overlapping_rules_with_different_actions_are_warned_about() {
    let yaml = concat!(
        "rules:\n",
        "  - {name: audit-all, syscall: ptrace, action: audit}\n",
        "  - {name: kill-root, syscall: ptrace, match: {uid: 0}, action: kill}\n",
        "  - {name: kill-alice, syscall: ptrace, match: {uid: {not: [0]}}, action: kill}\n",
        "  - {name: stop-kill, syscall: kill, action: {signal: SIGSTOP}}\n",
    );
    let loaded = check(yaml).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w[0].contains("rule 'kill-root' (SIGKILL to the process) and rule 'audit-all' (audit, at p.yaml:2:12) can match the same ptrace calls; 'audit-all' comes first"), "{}", w[0]);
    // kill-root and kill-alice act alike; uid 0 vs not 0 never overlap anyway.
    assert!(w[1].contains("rule 'kill-alice'"), "{}", w[1]);
}

#[test]
fn disjoint_selectors_do_not_overlap() {
    let yaml = concat!(
        "rules:\n",
        "  - {name: a, syscall: ptrace, match: {uid: [1, 2]}, action: audit}\n",
        "  - {name: b, syscall: ptrace, match: {uid: [3]}, action: kill}\n",
        "  - {name: c, syscall: ptrace, match: {uid: {not: [1, 2, 3]}}, args: {request: 16}, action: {signal: SIGUSR1}}\n",
    );
    assert!(check(yaml).unwrap().warnings.is_empty());
}

#[test]
fn thread_on_sigkill_is_pointless() {
    let loaded = check(&format!(
        "{HEAD}    syscall: kill\n    action: {{signal: SIGKILL, thread: true}}\n"
    ))
    .unwrap();
    assert!(loaded.warnings[0].message.contains("changes nothing"));
}

#[test]
fn cgroups_resolve_to_ids_and_levels() {
    let root = Env::host().host.cgroup_root().expect("cgroup v2");
    let p = check(&format!(
        "{HEAD}    syscall: kill\n    match:\n      cgroup: [/, {}]\n    action: audit\n",
        root.display()
    ))
    .unwrap()
    .policy;
    let set = p.rules[0].selectors.cgroup.as_ref().unwrap();
    assert_eq!(set.values.len(), 1, "the same cgroup twice is one value");
    assert_eq!(set.values[0].level, 0);
    let e = one_error(&format!(
        "{HEAD}    syscall: kill\n    match:\n      cgroup: /no/such.slice\n    action: audit\n"
    ));
    assert!(e.contains("cgroup '/no/such.slice'"), "{e}");
}

#[test]
fn files_and_directories() {
    let dir = std::env::temp_dir().join(format!("reflex-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20-b.yaml"),
        "rules: [{name: b, syscall: kill, action: audit}]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("10-a.yml"),
        "rules: [{name: a, syscall: ptrace, action: kill}]\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not a policy").unwrap();
    let loaded = load(std::slice::from_ref(&dir), &Env::host()).unwrap();
    let names: Vec<&str> = loaded
        .policy
        .rules
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "files are read in name order");
    let err = load(&[dir.join("missing.yaml")], &Env::host()).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing.yaml: error: cannot read the policy file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_resolve_against_the_host_given() {
    use crate::policy::host::Fixture;
    use std::collections::BTreeMap;
    let fixture = Fixture {
        users: BTreeMap::from([("svc".into(), 4242)]),
        groups: BTreeMap::from([("ops".into(), 77)]),
        files: BTreeMap::from([("/opt/app/bin".into(), (0x800003, 99))]),
        cgroup_root: Some("/sys/fs/cgroup".into()),
        cgroups: BTreeMap::from([("".into(), 1), ("app.slice".into(), 5)]),
        texts: BTreeMap::from([("/run/app.pid".into(), "321\n".into())]),
        max_sample_rate: Some(50),
    };
    let env = Env {
        arch: crate::syscall::Arch::X86_64,
        host: std::sync::Arc::new(fixture),
    };
    let yaml = concat!(
        "protect: {executables: [/opt/app/bin], cgroups: [/app.slice]}\n",
        "rules:\n",
        "  - {name: a, syscall: kill, match: {uid: svc, gid: ops, executable: /opt/app/bin, cgroup: /sys/fs/cgroup/app.slice}, action: {signal: SIGUSR1, to: {pidfile: /run/app.pid}}}\n",
        "  - {name: s, sample: {frequency: 50}, action: audit}\n",
    );
    let p = load_str(yaml, Path::new("p.yaml"), &env).unwrap().policy;
    let s = &p.rules[0].selectors;
    assert_eq!(s.uid.as_ref().unwrap().values, [4242]);
    assert_eq!(s.gid.as_ref().unwrap().values, [77]);
    let exe = &s.executable.as_ref().unwrap().values[0];
    assert_eq!((exe.dev, exe.ino), (0x800003, 99));
    let cg = &s.cgroup.as_ref().unwrap().values[0];
    assert_eq!((cg.id, cg.level, cg.path.as_str()), (5, 1, "/app.slice"));
    assert_eq!(p.rules[0].to, To::Pid(321));
    assert_eq!(p.protect.executables.len(), 1);
    assert_eq!(p.protect.cgroups[0].id, 5);

    // What the host lacks is an error at its place, as on a live one.
    let errors: Vec<String> = load_str(
        concat!(
            "rules:\n",
            "  - {name: b, syscall: kill, match: {uid: nobody-here, executable: /usr/bin/gone, cgroup: /gone.slice}, action: kill}\n",
            "  - {name: c, sample: {frequency: 99}, action: audit}\n",
        ),
        Path::new("p.yaml"),
        &env,
    )
    .unwrap_err()
    .0
    .iter()
    .map(|d| d.to_string())
    .collect();
    let all = errors.join("\n");
    for want in [
        "p.yaml:2:43: error: no user named 'nobody-here' on this machine",
        "p.yaml:2:68: error: file '/usr/bin/gone': No such file or directory (os error 2)",
        "p.yaml:2:91: error: cgroup '/gone.slice': /sys/fs/cgroup/gone.slice (No such file",
        "p.yaml:3:35: error: sampling frequency 99 Hz: use 1 to 50",
    ] {
        assert!(all.contains(want), "missing\n  {want}\nin\n{all}");
    }
}
