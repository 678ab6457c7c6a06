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
    assert_eq!(out.code, Some(2), "a usage error");
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

/// `reflex validate` on one policy text: (exit code, output).
fn validate_text(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, yaml).unwrap();
    let out = reflex_once(&["validate", p.to_str().unwrap()], false);
    (out.code, out.stdout.join("\n"))
}

#[test]
fn values_are_bounded_and_errors_say_what_to_fix() {
    let rule = |extra: &str| format!("rules:\n  - {{name: a, syscall: kill, {extra}}}\n");
    for (yaml, want) in [
        // A pause that would wrap the kernel's clock.
        (
            rule("action: {pause: 999999999999h}"),
            "p.yaml:2:46: error: `pause: 999999999999h` is longer than 24h, the most reflex allows here",
        ),
        // A number too large to be one, and one past a limit.
        (
            rule("rate: {over: 100000000000000000000, per: 1s}, action: kill"),
            "p.yaml:2:43: error: 100000000000000000000 is too large: numbers here are at most 18446744073709551615",
        ),
        (
            rule("rate: {over: 4294967296, per: 1s}, action: kill"),
            "p.yaml:2:43: error: `over` 4294967296 is out of range: 1 to 4294967295",
        ),
        // The parser's own words, rewritten.
        (
            rule("action: kill, action: audit"),
            "p.yaml:2:44: error: `action` is given twice in one map: keep one",
        ),
        (
            "protect: {pids: [-1]}\n".to_string() + &rule("action: kill"),
            "p.yaml:1:18: error: protected pid -1 is out of range: 1 to 4194304",
        ),
        // A name the kernel cuts inside a character.
        (
            rule("match: {comm: \"ééééééééé\"}, action: kill"),
            "is longer than the kernel keeps (15 bytes), and the kernel cuts it inside a character: match `executable:` instead",
        ),
        // Unset placeholders, quoted or not, and inside `not`.
        (
            rule("match: {comm: {not: ['${REFLEX_NO_SUCH_VAR}']}}, action: kill"),
            "p.yaml:2:51: error: ${REFLEX_NO_SUCH_VAR} is not set in reflex's environment",
        ),
    ] {
        let (code, text) = validate_text(&yaml);
        assert_eq!(code, Some(1), "{yaml}: {text}");
        assert!(text.contains(want), "{yaml}\nwant: {want}\ngot:\n{text}");
        assert!(!text.contains('\u{fffd}'), "{text}");
    }
}

#[test]
fn input_is_never_taken_on_trust() {
    // A device is no policy: refused at once, not read until memory runs out.
    let started = std::time::Instant::now();
    let out = reflex_once(&["validate", "/dev/urandom"], false);
    assert_eq!(out.code, Some(1));
    let text = out.stdout.join("\n");
    assert!(
        text.contains(
            "/dev/urandom: error: this is a device: reflex reads policies from regular files only"
        ),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // A huge value is not echoed: the error says what is wrong, briefly.
    let huge = "x".repeat(900_000);
    let (code, text) = validate_text(&format!(
        "rules:\n  - {{name: a, syscall: {huge}, action: kill}}\n"
    ));
    assert_eq!(code, Some(1));
    assert!(text.len() < 1000, "{} bytes of error", text.len());
    assert!(text.contains("unknown syscall 'xxxxx"), "{text}");
    assert!(text.contains("(900000 characters)"), "{text}");
    // Over the size cap: refused, with the cap.
    let (code, text) = validate_text(&format!("# {}\n", "x".repeat(1_100_000)));
    assert_eq!(code, Some(1));
    assert!(text.contains("larger than 1024 KiB"), "{text}");
    // Too many values for the parser's budget.
    let many: Vec<String> = (1..60_000).map(|i| (i % 9).to_string()).collect();
    let (code, text) = validate_text(&format!(
        "rules:\n  - {{name: a, syscall: kill, match: {{pid: [{}]}}, action: kill}}\n",
        many.join(",")
    ));
    assert_eq!(code, Some(1));
    assert!(text.contains("too large or too deeply nested"), "{text}");
    assert!(!text.contains("Nodes {"), "{text}");
    // A negative pid on the command line says it is not one.
    let out = reflex_once(&["run", "--ppid", "-1"], false);
    assert_eq!(out.code, Some(2));
    let err = out.stderr.join("\n");
    assert!(err.contains("-1 is not a process id"), "{err}");
}

#[test]
fn version_man_page_and_completions_come_from_the_command_line() {
    let out = reflex_once(&["--version"], false);
    assert_eq!(out.code, Some(0));
    let v = out.stdout.join("\n");
    assert!(v.starts_with("reflex 0."), "{v}");
    for part in ["commit ", "libbpf 1.", " build)"] {
        assert!(v.contains(part), "{v}");
    }
    let out = reflex_once(&["man"], false);
    let page = out.stdout.join("\n");
    assert!(page.contains(".TH reflex 1"), "{page}");
    assert!(
        page.contains("Exit status"),
        "the exit codes are in the page"
    );
    let out = reflex_once(&["man", "run"], false);
    let page = out.stdout.join("\n");
    assert!(page.contains(".TH reflex-run 1"), "{page}");
    assert!(page.contains("\\-\\-metrics"), "{page}");
    assert_eq!(reflex_once(&["man", "nosuch"], false).code, Some(2));
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = reflex_once(&["completions", shell], false);
        assert_eq!(out.code, Some(0), "{shell}");
        let script = out.stdout.join("\n");
        // Each shell's own spelling of the option.
        let option = match shell {
            "fish" => "-l metrics",
            _ => "--metrics",
        };
        assert!(script.contains(option), "{shell}: {script}");
        if shell == "bash" {
            // It parses.
            let file = dir.path().join("reflex.bash");
            std::fs::write(&file, &script).unwrap();
            let st = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
}

#[test]
fn the_unit_file_verifies() {
    // The packaged unit, pointed at this build (the package test checks it
    // installed, manual pages and all).
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/reflex.service"
    ))
    .unwrap()
    .replace("/usr/bin/reflex", common::REFLEX);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reflex.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.trim().is_empty(), "{text}");
}

#[test]
fn the_kubernetes_manifests_validate() {
    // Offline, against the Kubernetes schemas (there is no cluster here); and
    // the policies the ConfigMap delivers, by reflex itself.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
    let files =
        ["namespace.yaml", "configmap.yaml", "daemonset.yaml"].map(|f| format!("{dir}/{f}"));
    let out = std::process::Command::new("kubernetes-validate")
        .args(["--strict"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs (./dev test installs it from PyPI)");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches(" passed for resource ").count(), 3, "{text}");
    let configmap: serde_json::Value = serde_json::to_value(
        serde_saphyr::from_str::<serde_json::Value>(
            &std::fs::read_to_string(format!("{dir}/configmap.yaml")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let policies = tempfile::tempdir().unwrap();
    for (name, text) in configmap["data"].as_object().unwrap() {
        std::fs::write(policies.path().join(name), text.as_str().unwrap()).unwrap();
    }
    let out = common::reflex_once(&["validate", policies.path().to_str().unwrap()], true);
    assert_eq!(out.code, Some(0), "{:?}", out.stdout);
}
