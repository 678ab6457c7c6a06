//! reflex as a service (issue 15): enforcement that does not depend on who
//! reads its output, metrics scraped by a real Prometheus, readiness told to
//! a real NOTIFY_SOCKET listener, logs that fit where they go (the journal
//! among them), and an output file that logrotate can move away.

mod common;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Ended, PolicyFile, REFLEX, Reflex, caller_cmd, http_get, launch, metric, metrics_address,
    root_or_skip, sysno,
};
use nix::sys::signal::Signal;

fn strace() -> common::Launched {
    common::Launched::new(&["strace", "-o", "/dev/null", "/bin/true"])
}

/// Waits until `f` says yes, or panics saying `what`.
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `reflex run … | head -1`: once the reader is gone, a ptrace caller in
/// scope is still killed, reflex still runs, and its metrics count what it
/// could not write.
#[test]
fn a_reader_that_goes_away_stops_nothing() {
    if !root_or_skip("a_reader_that_goes_away_stops_nothing") {
        return;
    }
    let first = strace();
    let ppid = first.ppid.to_string();
    let mut child = common::Reaped(
        Command::new(REFLEX)
            .args(["run", "--ppid", &ppid, "--metrics", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = common::Lines::of(child.stderr.take().unwrap());
    stderr.wait_for("the banner", |l| l.starts_with("reflex: attached"));
    // `head -1`: one line (the table's header), then the reader is gone.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {}
    drop(stdout);
    // The reader is gone before the caller runs: it is killed all the same,
    // and its event meets the closed pipe.
    let (ended, _) = first.go();
    assert_eq!(ended, Ended::Signal(9));
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "reflex still runs");
    let line = stderr
        .seen
        .iter()
        .find(|l| l.starts_with("reflex: metrics at http://"))
        .cloned()
        .unwrap();
    let address = line["reflex: metrics at http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string();
    eventually("the undelivered event in the metrics", || {
        let (_, text) = http_get(&address, "/metrics");
        metric(&text, "reflex_events_undelivered_total{sink=\"stdout\"}").unwrap_or(0.0) >= 1.0
    });
    stderr.wait_for("the error, said once", |l| {
        l.contains("stdout: Broken pipe")
    });
    let (_, text) = http_get(&address, "/metrics");
    assert_eq!(
        metric(
            &text,
            "reflex_decisions_total{rule=\"no-ptrace\",action=\"signalled\"}"
        ),
        Some(1.0),
        "{text}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A free port on loopback (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus of the test's own, scraping `target` every second; killed
/// and reaped on drop.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
    address: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
                 scrape_configs:\n  - job_name: reflex\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus is installed (./dev deps)");
        Prometheus {
            child,
            _dir: dir,
            address,
        }
    }

    /// The value of `query` now, if it has one.
    fn query(&self, query: &str) -> Option<f64> {
        let path = format!(
            "/api/v1/query?query={}",
            query
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        );
        let (status, body) = common::try_http_get(&self.address, &path).ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scrapes a running reflex: decisions counted in the
/// kernel, rules in force, readiness; and promtool finds the text clean.
#[test]
fn prometheus_scrapes_the_kernels_counts() {
    if !root_or_skip("prometheus_scrapes_the_kernels_counts") {
        return;
    }
    let policy =
        PolicyFile::new("rules:\n  - {name: audit-getppid, syscall: getppid, action: audit}\n");
    let target = launch(&caller_cmd(&["repeat", "5", &sysno("getppid")]));
    let ppid = target.ppid.to_string();
    let mut reflex = Reflex::start(&[
        policy.arg(),
        "--ppid",
        &ppid,
        "--json",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let address = metrics_address(&mut reflex);
    assert_eq!(http_get(&address, "/ready").0, 200, "ready once attached");
    let (ended, _) = target.go();
    assert_eq!(ended, Ended::Exit(0));
    let prometheus = Prometheus::start(&address);
    eventually("Prometheus to scrape the five decisions", || {
        prometheus.query("reflex_decisions_total{rule=\"audit-getppid\",action=\"audited\"}")
            == Some(5.0)
    });
    assert_eq!(prometheus.query("up{job=\"reflex\"}"), Some(1.0));
    assert_eq!(prometheus.query("reflex_rules"), Some(1.0));
    assert_eq!(prometheus.query("reflex_ready"), Some(1.0));
    assert_eq!(prometheus.query("reflex_events_read_total"), Some(5.0));
    assert!(
        prometheus
            .query("reflex_build_info{hooks=\"raw\"}")
            .is_some()
    );
    // The exposition passes promtool's checks (names, types, units).
    let (status, text) = http_get(&address, "/metrics");
    assert_eq!(status, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A reload is counted; a refused one too, and the rules stay.
    policy.rewrite("rules:\n  - {name: audit-getppid, syscall: getppid, action: audit}\n  - {name: b, syscall: getpid, action: audit}\n");
    reflex
        .stderr
        .wait_for("the reload", |l| l.starts_with("reflex: reloaded"));
    policy.rewrite("rules: [ {name: broken\n");
    reflex
        .stderr
        .wait_for("the refusal", |l| l.starts_with("reflex: reload refused"));
    let mut text = String::new();
    eventually("the reloads counted", || {
        text = http_get(&address, "/metrics").1;
        metric(&text, "reflex_reloads_total{result=\"ok\"}") == Some(1.0)
            && metric(&text, "reflex_reloads_total{result=\"refused\"}") == Some(1.0)
            && metric(&text, "reflex_rules") == Some(2.0)
            || {
                eprintln!("{text}");
                false
            }
    });
    let out = reflex.stop();
    assert_eq!(out.code, Some(0));
}

/// Readiness told to systemd's protocol on a socket the test binds: READY=1
/// arrives once the rules are in force (a ptrace caller started that moment
/// is killed), RELOADING=1 and READY=1 around a reload, STATUS= says what is
/// in force, and WATCHDOG=1 keeps coming.
#[test]
fn readiness_is_told_to_systemd() {
    if !root_or_skip("readiness_is_told_to_systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
    };
    let policy = PolicyFile::new("rules:\n  - {name: no-ptrace, syscall: ptrace, action: kill}\n");
    let victim = strace();
    let ppid = victim.ppid.to_string();
    let mut child = common::Reaped(
        Command::new(REFLEX)
            .args(["run", policy.arg(), "--ppid", &ppid, "--json"])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let _stdout = common::Lines::of(child.stdout.take().unwrap());
    let _stderr = common::Lines::of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let ready = loop {
        let msg = recv();
        seen.push(msg.clone());
        if msg.lines().any(|l| l == "READY=1") {
            break msg;
        }
    };
    // The moment READY=1 arrives, the rules are in force.
    let (ended, _) = victim.go();
    assert_eq!(ended, Ended::Signal(9), "killed: {seen:?}");
    assert!(
        ready.contains("STATUS=1 rules in force (0 degraded); 0 reloads, 0 refused"),
        "{ready}"
    );
    // The watchdog, at about half of WATCHDOG_USEC.
    let mut watchdogs = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if recv() == "WATCHDOG=1" {
            watchdogs += 1;
        }
    }
    assert!(watchdogs >= 2, "{watchdogs} WATCHDOG=1 in 2 s");
    // A reload: RELOADING=1 (with the time, as systemd 253+ wants), then READY=1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGHUP,
    )
    .unwrap();
    let mut after = Vec::new();
    while !after.iter().any(|m: &String| m.contains("READY=1")) {
        let m = recv();
        if m != "WATCHDOG=1" {
            after.push(m);
        }
    }
    assert!(
        after[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{after:?}"
    );
    assert!(
        after
            .last()
            .unwrap()
            .contains("STATUS=1 rules in force (0 degraded); 1 reloads, 0 refused"),
        "{after:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let last: Vec<String> = std::iter::from_fn(|| {
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4096];
        socket
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .collect();
    assert!(last.iter().any(|m| m.starts_with("STOPPING=1")), "{last:?}");
}

/// The exit codes a supervisor acts on.
#[test]
fn exit_codes_say_what_happened() {
    if !root_or_skip("exit_codes_say_what_happened") {
        return;
    }
    // Usage: 2.
    let out = common::reflex_once(&["run", "--ppid", "0"], false);
    assert_eq!(out.code, Some(2), "{:?}", out.stderr);
    // Could not start (a policy with an error): 1.
    let bad = PolicyFile::new("rules:\n  - {name: a, syscall: ptrce, action: kill}\n");
    let out = common::reflex_once(&["run", "--ppid", "1", bad.arg()], false);
    assert_eq!(out.code, Some(1), "{:?}", out.stderr);
    // An address already in use: 1, before anything loads.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = common::reflex_once(&["run", "--ppid", "1", "--metrics", &address], false);
    assert_eq!(out.code, Some(1), "{:?}", out.stderr);
    assert!(
        out.stderr.join("\n").contains("cannot listen there"),
        "{:?}",
        out.stderr
    );
    assert!(!out.stderr.join("\n").contains("attached"));
}

/// Warnings carry no colour codes unless stderr is a terminal or colour is
/// asked for; under systemd (JOURNAL_STREAM is stderr) they go to the
/// journal, with fields.
#[test]
fn logs_fit_where_they_go() {
    if !root_or_skip("logs_fit_where_they_go") {
        return;
    }
    // A pid no process has: reflex warns (and runs).
    let spawn = |extra: &[&str], env: &[(&str, &str)], stderr: Stdio| {
        common::Reaped(
            Command::new(REFLEX)
                .args(["run", "--ppid", "4194303"])
                .args(extra)
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    };
    let term = |child: &Child| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap()
    };
    for (flag, coloured) in [
        (None, false),
        (Some("--color=always"), true),
        (Some("--color=never"), false),
    ] {
        let extra: Vec<&str> = flag.into_iter().collect();
        let mut child = spawn(&extra, &[], Stdio::piped());
        let mut lines = common::Lines::of(child.stderr.take().unwrap());
        lines.wait_for("the banner", |l| l.contains("reflex: attached"));
        term(&child);
        assert!(child.wait().unwrap().success());
        let text = lines.rest().join("\n");
        assert!(text.contains("no process has pid 4194303"), "{text}");
        assert_eq!(text.contains('\x1b'), coloured, "{flag:?}: {text:?}");
    }

    // The journal: a journald of the test's own where none answers (a
    // socket file can outlive its journald).
    let socket = std::path::Path::new("/run/systemd/journal/socket");
    let answers = || {
        UnixDatagram::unbound()
            .and_then(|s| s.send_to(b"MESSAGE=reflex test probe\n", socket))
            .is_ok()
    };
    let mut journald = None;
    if !answers() {
        let _ = std::fs::remove_file(socket);
        journald = Some(
            Command::new("/lib/systemd/systemd-journald")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("systemd-journald"),
        );
        eventually("journald's socket", || socket.exists());
    }
    let (read, write) = nix::unistd::pipe().unwrap();
    let st = nix::sys::stat::fstat(&write).unwrap();
    let stream = format!("{}:{}", st.st_dev, st.st_ino);
    let mut child = spawn(&[], &[("JOURNAL_STREAM", &stream)], Stdio::from(write));
    let started = Instant::now();
    // The warning is in the journal, as a warning, from this reflex.
    let pid = child.id().to_string();
    let mut found = None;
    while found.is_none() && started.elapsed() < Duration::from_secs(20) {
        let out = Command::new("journalctl")
            .args([
                "-o",
                "json",
                "--no-pager",
                "SYSLOG_IDENTIFIER=reflex",
                "PRIORITY=4",
            ])
            .output()
            .unwrap();
        found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| {
                e["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.contains("no process has pid 4194303"))
                    && e["_PID"].as_str() == Some(pid.as_str())
            });
        std::thread::sleep(Duration::from_millis(200));
    }
    // reflex's own lines still go to stderr (the journal's stream): its
    // banner says it handles SIGTERM by now.
    let mut lines = common::Lines::of(std::fs::File::from(read));
    lines.wait_for("the banner", |l| l.contains("reflex: attached"));
    term(&child);
    assert!(child.wait().unwrap().success());
    if let Some(mut j) = journald {
        let _ = j.kill();
        let _ = j.wait();
    }
    let entry = found.expect("reflex's warning in the journal");
    assert_eq!(entry["PRIORITY"], "4");
    assert!(
        entry["MESSAGE"]
            .as_str()
            .is_some_and(|m| !m.contains('\x1b')),
        "{entry}"
    );
    assert!(
        entry.get("TARGET").is_some() || entry.get("CODE_FILE").is_some(),
        "fields: {entry}"
    );
}

/// `--output FILE`: JSON lines in the file while the table goes to stdout;
/// moved away and SIGUSR1, the next events go to a new file.
#[test]
fn an_output_file_moves_with_logrotate() {
    if !root_or_skip("an_output_file_moves_with_logrotate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let rotated = dir.path().join("events.jsonl.1");
    let gate = tempfile::tempdir().unwrap();
    let policy =
        PolicyFile::new("rules:\n  - {name: audit-getppid, syscall: getppid, action: audit}\n");
    // One call, then (once the file has moved) another.
    let target = launch(&caller_cmd(&[
        "phases",
        "1",
        gate.path().to_str().unwrap(),
        "1",
        &sysno("getppid"),
    ]));
    let ppid = target.ppid.to_string();
    let mut reflex = Reflex::start(&[
        policy.arg(),
        "--ppid",
        &ppid,
        "--output",
        file.to_str().unwrap(),
    ]);
    let caller = std::thread::spawn(move || target.go());
    eventually("the first call", || gate.path().join("first").exists());
    reflex.stdout.wait_for("the table line", |l| {
        l.contains("[audit-getppid via getppid]")
    });
    eventually("the event in the file", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() == 1)
    });
    // What logrotate does: move it away, tell reflex.
    std::fs::rename(&file, &rotated).unwrap();
    reflex.signal(Signal::SIGUSR1);
    reflex
        .stderr
        .wait_for("the reopen", |l| l.contains("SIGUSR1: reopened"));
    std::fs::write(gate.path().join("second"), "").unwrap();
    assert_eq!(caller.join().unwrap().0, Ended::Exit(0));
    eventually("the second event in the new file", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() == 1)
    });
    let out = reflex.stop();
    assert_eq!(out.code, Some(0));
    for path in [&rotated, &file] {
        let text = std::fs::read_to_string(path).unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(common::event).collect();
        assert_eq!(events.len(), 1, "{}: {text}", path.display());
        assert_eq!(events[0]["rule"], "audit-getppid");
        assert_eq!(events[0]["action"], "audited");
    }
    // Both also went to the table on stdout.
    let table = out
        .stdout
        .iter()
        .filter(|l| l.contains("[audit-getppid via getppid]"))
        .count();
    assert_eq!(table, 2, "{:?}", out.stdout);
}
