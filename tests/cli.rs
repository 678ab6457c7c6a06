//! Command-line behaviour that needs no privileges.

mod common;

use common::reflex_once;

#[test]
fn an_invalid_signal_is_refused_before_anything_loads() {
    let out = reflex_once(&["run", "--ppid", "1", "--signal", "SIGKIL"], false);
    assert_eq!(out.code, Some(2), "usage errors exit 2");
    let err = out.stderr.join("\n");
    assert!(err.contains("unknown signal 'SIGKIL'"), "{err}");
    assert!(err.contains("did you mean SIGKILL?"), "{err}");
    assert!(!err.contains("attached"), "{err}");
}

#[test]
fn ppid_zero_is_refused_with_the_fix() {
    let out = reflex_once(&["run", "--ppid", "0"], false);
    assert_eq!(out.code, Some(1));
    let err = out.stderr.join("\n");
    assert!(err.contains("omit --ppid to match every parent"), "{err}");
}

#[test]
fn help_names_the_subcommands() {
    let out = reflex_once(&["--help"], false);
    assert_eq!(out.code, Some(0));
    let help = out.stdout.join("\n");
    for word in ["run", "check"] {
        assert!(help.contains(word), "{help}");
    }
}

fn examples() -> String {
    format!("{}/policies/examples", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_accepts_the_examples_without_privileges() {
    let dir = examples();
    // As root when the tests are, but validate needs nothing: check that too.
    let as_nobody = nix::unistd::geteuid().is_root();
    let out = reflex_once(&["validate", &dir], as_nobody);
    let text = out.stdout.join("\n");
    if !common::kernel_offers("bpf_send_signal_task") {
        // Kernels before 6.13 cannot signal another task: that example alone
        // is refused, with the reason, at its rule.
        assert_eq!(out.code, Some(1), "{text}");
        let errors: Vec<&String> = out
            .stdout
            .iter()
            .filter(|l| l.contains(": error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert!(
            errors[0].contains("tell-the-parent.yaml:8:")
                && errors[0].contains("signals another task")
                && errors[0].contains("Linux 6.13"),
            "{text}"
        );
        eprintln!("this kernel lacks bpf_send_signal_task: tell-the-parent.yaml is refused");
        return;
    }
    assert_eq!(out.code, Some(0), "{:?}", out.stdout);
    assert!(text.contains("ok: 14 rules from"), "{text}");
    for f in [
        "audit-cgroup-execs.yaml",
        "guard-services.yaml",
        "no-debuggers.yaml",
        "slow-syscall-dump.yaml",
        "sample-profile.yaml",
        "stop-fork-bombs.yaml",
        "cool-down.yaml",
        "tell-the-parent.yaml",
        "no-bpf-loading.yaml",
    ] {
        assert!(text.contains(f), "{f} in {text}");
    }
    for line in [
        "ptrace                   2 rules, 2 selector lookups per call",
        "read                     entry timed for exit rules",
        "read exit                1 rule, 1 selector lookup per call",
        "sample                   1 rule, 1 selector lookup per call",
        "lsm/bpf                  1 rule, 1 selector lookup per call",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn validate_reports_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        concat!(
            "rules:\n",
            "  - name: one\n",
            "    syscall: ptrce\n",
            "    match:\n",
            "      comm: a-name-longer-than-fifteen\n",
            "    action: {signal: SIGSTPO}\n",
            "  - name: one\n",
            "    syscall: kill\n",
            "    args: {sgi: SIGKILL}\n",
            "    action: kil\n",
        ),
    )
    .unwrap();
    let out = reflex_once(&["validate", bad.to_str().unwrap()], false);
    assert_eq!(out.code, Some(1));
    let f = bad.display();
    let want = [
        format!("{f}:3:14: error: unknown syscall 'ptrce' — did you mean 'ptrace'?"),
        format!(
            "{f}:5:13: error: comm 'a-name-longer-than-fifteen' is longer than the kernel keeps (15 bytes): the process is seen as 'a-name-longer-t'; write that, or match `executable:`"
        ),
        format!(
            "{f}:6:22: error: unknown signal 'SIGSTPO' (did you mean SIGSTOP?): use a name such as SIGKILL, SIGSTOP, SIGUSR1, SIGRTMIN+2, or a number 1-64"
        ),
        format!(
            "{f}:10:13: error: unknown action `kil` (did you mean `kill`?): expected kill, audit, deny, {{signal: NAME, thread: true|false}}, or {{deny: ERRNO, signal: NAME}}"
        ),
        "1 error, 0 warnings".to_string(),
    ];
    // A shape error (the unknown action) stops the reading of that file:
    // the YAML error is all that is reported for it.
    assert_eq!(out.stdout, want[3..].to_vec(), "{:#?}", out.stdout);

    std::fs::write(
        &bad,
        std::fs::read_to_string(&bad)
            .unwrap()
            .replace("action: kil\n", "action: kill\n"),
    )
    .unwrap();
    let out = reflex_once(&["validate", bad.to_str().unwrap()], false);
    assert_eq!(out.code, Some(1));
    let mut want = want[..3].to_vec();
    want.push(format!(
        "{f}:7:11: error: rule name 'one' is already used at {f}:2:11: names must be unique"
    ));
    want.push(format!(
        "{f}:9:12: error: 'sgi' is not an argument of kill — did you mean 'sig'?"
    ));
    want.push("5 errors, 0 warnings".into());
    assert_eq!(out.stdout, want, "{:#?}", out.stdout);
}

#[test]
fn validate_for_another_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("open.yaml");
    std::fs::write(&p, "rules:\n  - {name: o, syscall: open, action: audit}\n").unwrap();
    let path = p.to_str().unwrap();
    let out = reflex_once(&["validate", "--arch", "x86_64", path], false);
    assert_eq!(out.code, Some(0), "{:?}", out.stdout);
    let out = reflex_once(&["validate", "--arch", "aarch64", path], false);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout[0].contains("unknown syscall 'open'"),
        "{:?}",
        out.stdout
    );
}

#[test]
fn validate_explains_unset_environment_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("env.yaml");
    std::fs::write(
        &p,
        "rules:\n  - name: o\n    syscall: kill\n    match:\n      cgroup: ${REFLEX_NO_SUCH_VAR}\n    action: audit\n",
    )
    .unwrap();
    let out = reflex_once(&["validate", p.to_str().unwrap()], false);
    assert_eq!(out.code, Some(1));
    let text = out.stdout.join("\n");
    assert!(
        text.contains("env.yaml:5:15: error:") && text.contains("REFLEX_NO_SUCH_VAR"),
        "{text}"
    );
}
