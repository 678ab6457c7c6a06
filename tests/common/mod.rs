//! Helpers for tests that load reflex into the real kernel.
//!
//! Every rule a test loads is scoped with `--ppid` to a launcher process the
//! test started (tests/helpers/launcher.py), and everything started is killed
//! and reaped on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

pub const REFLEX: &str = env!("CARGO_BIN_EXE_reflex");
/// How long a test waits for what should take a moment: 30 s natively; 90 s
/// in the matrix's emulated VMs, where a reflex start takes seconds and
/// tests run side by side on two emulated CPUs.
fn timeout() -> Duration {
    if std::env::var_os("REFLEX_MATRIX_VM").is_some() {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(30)
    }
}

/// `cmd.spawn()`, again while the executable is "busy" (ETXTBSY): a test's
/// fresh copy of an executable is, while a child forked meanwhile by another
/// test still holds the copy's write descriptor, until that child execs.
#[track_caller]
pub fn spawn(cmd: &mut Command) -> Child {
    let deadline = Instant::now() + timeout();
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start {cmd:?}: {e}"),
        }
    }
}

/// A long-lived process for a test to aim at: `argv` with "3600" appended
/// (a sleep, or a copy of one). Killed and reaped on drop, so a failing
/// assertion leaves nothing behind; an hour, so that it outlives any test
/// under emulation (a target that has died makes a refusal look right).
pub struct Sleeper(Child);

impl Sleeper {
    pub fn spawn(argv: &[&str]) -> Sleeper {
        Sleeper(spawn(Command::new(argv[0]).args(&argv[1..]).arg("3600")))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it is still running (not yet exited or killed).
    pub fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Waits for it to end; the signal that ended it, if one did.
    pub fn wait_signal(&mut self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&self.0.wait().unwrap())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this test may load BPF programs. Without root it is skipped,
/// loudly; with REFLEX_REQUIRE_ROOT_TESTS=1 (set by .ci/run) it fails instead.
#[track_caller]
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let why = format!("{test}: needs root to load BPF programs");
    if std::env::var_os("REFLEX_REQUIRE_ROOT_TESTS").is_some_and(|v| v == "1") {
        panic!("{why}, and REFLEX_REQUIRE_ROOT_TESTS=1 forbids skipping");
    }
    eprintln!("SKIPPED {why} (run the tests as root)");
    false
}

pub fn helper(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/helpers")
        .join(name)
}

/// Lines of a child's stream, read on a thread so nothing blocks.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    /// The lines of `stream`, read on a thread.
    pub fn of(stream: impl std::io::Read + Send + 'static) -> Lines {
        Lines::new(stream)
    }

    fn new(stream: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line satisfying `pred` and returns it.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_within(what, timeout(), pred)
    }

    /// [`Lines::wait_for`], waiting up to `wait`.
    #[track_caller]
    pub fn wait_for_within(
        &mut self,
        what: &str,
        wait: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {what}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything until the stream closes.
    pub fn rest(&mut self) -> Vec<String> {
        let deadline = Instant::now() + timeout();
        while let Ok(line) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

/// How a launched command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
    /// Stopped by this signal (the launcher then killed it).
    Stopped(i32),
}

/// A command started under its own launcher, held at the gate until `go`.
pub struct Launched {
    launcher: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    /// Scope rules to this pid with `--ppid`.
    pub ppid: u32,
    /// The command's own pid (it execs in place).
    pub pid: u32,
}

impl Launched {
    #[track_caller]
    pub fn new(cmd: &[&str]) -> Launched {
        Launched::spawn(&[], cmd)
    }

    /// The command starts inside cgroup `dir` (a cgroup v2 directory).
    #[track_caller]
    pub fn in_cgroup(dir: &std::path::Path, cmd: &[&str]) -> Launched {
        Launched::spawn(&["--cgroup", dir.to_str().unwrap()], cmd)
    }

    /// A stop of the command is waited out, not reported (pause tests).
    #[track_caller]
    pub fn through_stops(cmd: &[&str]) -> Launched {
        Launched::spawn(&["--through-stops"], cmd)
    }

    #[track_caller]
    fn spawn(opts: &[&str], cmd: &[&str]) -> Launched {
        let mut launcher = Command::new(PYTHON)
            .arg(helper("launcher.py"))
            .args(opts)
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/helpers/launcher.py");
        let stdin = launcher.stdin.take();
        let mut stdout = Lines::new(launcher.stdout.take().expect("piped"));
        let first = stdout.wait_for("the launcher's pids", |l| l.starts_with("launcher "));
        let v: serde_json::Value = serde_json::from_str(&first["launcher ".len()..]).unwrap();
        Launched {
            ppid: v["launcher"].as_u64().unwrap() as u32,
            pid: v["child"].as_u64().unwrap() as u32,
            launcher,
            stdin,
            stdout,
        }
    }

    /// Lets the command run, waits for it, and returns how it ended and the
    /// lines it printed.
    #[track_caller]
    pub fn go(self) -> (Ended, Vec<String>) {
        self.go_within(timeout())
    }

    /// [`Launched::go`] for a command that may run longer (up to `wait`).
    #[track_caller]
    pub fn go_within(mut self, wait: Duration) -> (Ended, Vec<String>) {
        let mut stdin = self.stdin.take().expect("go once");
        writeln!(stdin, "go").unwrap();
        // The command's last output may lack its newline (gdb under a VM's
        // console printed its environment so): the launcher's line can follow
        // on the same line.
        let last = self
            .stdout
            .wait_for_within("the command's end", wait, |l| l.contains("launcher {"));
        let at = last.find("launcher {").expect("matched above");
        let v: serde_json::Value = serde_json::from_str(&last[at + "launcher ".len()..]).unwrap();
        let num = |k: &str| v.get(k).and_then(|n| n.as_i64()).map(|n| n as i32);
        let ended = match (num("exit"), num("signal"), num("stopped")) {
            (Some(code), _, _) => Ended::Exit(code),
            (_, Some(sig), _) => Ended::Signal(sig),
            (_, _, Some(sig)) => Ended::Stopped(sig),
            _ => panic!("unexpected launcher line {last}"),
        };
        let mut output = self.stdout.seen[1..self.stdout.seen.len() - 1].to_vec();
        if at > 0 {
            output.push(last[..at].to_string());
        }
        let status = self.launcher.wait().unwrap();
        assert!(status.success(), "launcher failed: {status}");
        (ended, output)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // Closing stdin before the go-ahead makes the launcher kill its
        // child and reap everything; then it exits.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.launcher.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
    }
}

/// A running `reflex run`.
pub struct Reflex {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    /// The banner line, printed once the programs are attached.
    pub banner: String,
}

/// What a stopped reflex printed.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Output {
    /// The value of a summary line such as `  signals sent   1`.
    #[track_caller]
    pub fn summary(&self, name: &str) -> u64 {
        self.stderr
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no summary line '{name}' in:\n{}", self.stderr.join("\n")))
    }

    /// stdout lines parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout.iter().map(|l| event(l)).collect()
    }
}

/// One JSON line reflex wrote, parsed and validated against the published
/// schema (docs/event.schema.json): every event a test reads is checked.
#[track_caller]
pub fn event(line: &str) -> serde_json::Value {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = SCHEMA.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/event.schema.json")).unwrap();
        jsonschema::validator_for(&schema).expect("the published schema is a schema")
    });
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "an event not as docs/event.schema.json says: {errors:?}\n{line}"
    );
    v
}

impl Reflex {
    /// Starts `reflex run ARGS` and waits until its programs are attached.
    #[track_caller]
    pub fn start(args: &[&str]) -> Reflex {
        Reflex::start_with_env(args, &[])
    }

    #[track_caller]
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Reflex {
        // --tree with the test's own pid: only for rules that also name an
        // executable the test made (tests run side by side in one process).
        assert!(
            args.contains(&"--ppid")
                || args
                    .windows(2)
                    .any(|w| w[0] == "--tree" && w[1] == std::process::id().to_string()),
            "tests must scope every rule to their own processes with --ppid (or --tree)"
        );
        Reflex::spawn(args, env)
    }

    /// For processes that fork beyond one parent (a fork bomb): the policy
    /// must select the cgroup the test made, passed through `env`.
    #[track_caller]
    pub fn start_scoped_by_cgroup(args: &[&str], env: &[(&str, &str)], cgroup: &str) -> Reflex {
        assert!(
            cgroup.starts_with("/reflex-test-") && env.iter().any(|(_, v)| *v == cgroup),
            "scope the rule to the test's own cgroup"
        );
        Reflex::spawn(args, env)
    }

    /// [`Reflex::start`] without the capability `cap` (e.g. "kill"): root,
    /// as in a container whose capabilities were dropped.
    #[track_caller]
    pub fn start_without(cap: &str, args: &[&str]) -> Reflex {
        assert!(args.contains(&"--ppid"), "scope every rule with --ppid");
        Reflex::spawn_with(
            Command::new("setpriv")
                .arg(format!("--bounding-set=-{cap}"))
                .arg(format!("--inh-caps=-{cap}"))
                .arg(REFLEX),
            args,
            &[],
        )
    }

    #[track_caller]
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Reflex {
        Reflex::spawn_with(&mut Command::new(REFLEX), args, env)
    }

    #[track_caller]
    fn spawn_with(cmd: &mut Command, args: &[&str], env: &[(&str, &str)]) -> Reflex {
        let mut child = cmd
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("reflex binary runs");
        let stdout = Lines::new(child.stdout.take().unwrap());
        let mut stderr = Lines::new(child.stderr.take().unwrap());
        let banner = stderr.wait_for("reflex's banner", |l| {
            l.starts_with("reflex: attached") || l.starts_with("reflex: error")
        });
        assert!(
            banner.starts_with("reflex: attached"),
            "reflex failed: {:?}",
            stderr.rest()
        );
        Reflex {
            child,
            stdout,
            stderr,
            banner,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit code once it has exited (Some(None): by a signal), else None.
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().unwrap().map(|s| s.code())
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM, then everything it printed.
    pub fn stop(self) -> Output {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// `sig` (SIGINT, SIGTERM), then everything it printed.
    pub fn stop_with(mut self, sig: nix::sys::signal::Signal) -> Output {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
        // reflex detaches, resumes what it paused and prints its summary:
        // a hang there is a failure of its own, not a stuck suite.
        let deadline = Instant::now() + timeout();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "reflex did not exit within {:?} of {sig}; its stderr:\n{}",
                    timeout(),
                    self.stderr.rest().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        Output {
            code: status.code(),
            stdout: self.stdout.rest(),
            stderr: self.stderr.rest(),
        }
    }
}

impl Drop for Reflex {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `reflex ARGS` to completion (for commands that do not load anything
/// long-lived), optionally as an unprivileged user via setpriv.
pub fn reflex_once(args: &[&str], unprivileged: bool) -> Output {
    let mut cmd = if unprivileged {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            REFLEX,
        ]);
        c
    } else {
        Command::new(REFLEX)
    };
    // A command that never ends (reflex reading a FIFO, once) is a failure,
    // not a stuck suite.
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reflex runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`reflex {}` did not end within 60 s", args.join(" "));
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let lines = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(String::from)
            .collect()
    };
    Output {
        code: out.status.code(),
        stdout: lines(&out.stdout),
        stderr: lines(&out.stderr),
    }
}

/// A policy written to a file of its own, removed on drop.
pub struct PolicyFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl PolicyFile {
    pub fn new(yaml: &str) -> PolicyFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, yaml).unwrap();
        PolicyFile { _dir: dir, path }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Replaces the file's content the way editors do: write, then rename.
    pub fn rewrite(&self, yaml: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// A cgroup v2 directory of the test's own, removed on drop.
pub struct TestCgroup {
    pub dir: PathBuf,
    /// The path relative to the cgroup v2 root, as policies name it.
    pub name: String,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("a cgroup v2 mount");
        let name = format!("/reflex-test-{tag}-{}", std::process::id());
        let dir = root.join(&name[1..]);
        std::fs::create_dir_all(&dir).unwrap();
        TestCgroup { dir, name }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Empty by now: the launcher reaped everything it started.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether process `pid` is stopped (state T in /proc/PID/stat).
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s[s.rfind(')').unwrap() + 2..].starts_with('T'))
        .unwrap_or(false)
}

/// Number of a syscall on this machine.
pub fn sysno(name: &str) -> String {
    match name {
        "ptrace" => libc::SYS_ptrace,
        "kill" => libc::SYS_kill,
        "tkill" => libc::SYS_tkill,
        "tgkill" => libc::SYS_tgkill,
        "getppid" => libc::SYS_getppid,
        "getpid" => libc::SYS_getpid,
        other => panic!("add {other} to sysno()"),
    }
    .to_string()
}

/// The helpers' interpreter: Debian's python3 (`./dev deps` installs it),
/// by path. Through a version manager's shim on PATH (pyenv here) a start
/// costs 12 times as much (225 ms against 19 ms; seconds under the matrix's
/// emulation), and the tests start hundreds.
pub const PYTHON: &str = "/usr/bin/python3";

/// `python3 caller.py ARGS...`
pub fn caller_cmd(args: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        PYTHON.to_string(),
        helper("caller.py").to_str().unwrap().to_string(),
    ];
    cmd.extend(args.iter().map(|s| s.to_string()));
    cmd
}

/// Whether `reflex check` reports the feature of its row `row` as ok on this
/// kernel. A test that checks the feature where the kernel has it, and the
/// refusal or fallback where it does not, takes its path from this answer
/// only. The answer is appended to $REFLEX_TEST_NOTES when that is set (the
/// kernel matrix sets it, and its table says which path each test took).
pub fn kernel_offers(row: &str) -> bool {
    // One `reflex check` per test binary: the kernel does not change under
    // it, and under emulation each run takes seconds.
    // In the matrix's guests, the one `reflex check` the guest ran at boot
    // ($REFLEX_TEST_CHECK: its output), for every test binary.
    static CHECK: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let stdout = CHECK.get_or_init(|| {
        match std::env::var_os("REFLEX_TEST_CHECK").map(std::fs::read_to_string) {
            Some(Ok(text)) => text.lines().map(str::to_string).collect(),
            _ => reflex_once(&["check"], false).stdout,
        }
    });
    let status = stdout
        .iter()
        .find_map(|l| l.strip_prefix(row).filter(|rest| rest.starts_with(' ')))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("`reflex check` has no row {row:?}: {stdout:?}"));
    let ok = status == "ok";
    if let Some(notes) = std::env::var_os("REFLEX_TEST_NOTES") {
        let test = thread::current().name().unwrap_or("?").to_string();
        // One write of the whole line: tests run in parallel.
        let line = format!("{test}\t{row}\t{status}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&notes)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("REFLEX_TEST_NOTES={notes:?}: {e}"));
    }
    ok
}

/// Whether BPF-LSM can enforce here, as `reflex check` says.
pub fn lsm_available() -> bool {
    kernel_offers("LSM programs")
}

/// Whether fentry programs load here, as `reflex check` says (then `auto`
/// attaches fentry to watched syscalls).
pub fn fentry_available() -> bool {
    kernel_offers("fentry programs")
}

/// The syscall hooks `--attach` can choose here: tracepoint and raw, and
/// fentry where it loads.
pub fn strategies() -> Vec<&'static str> {
    let mut all = vec!["tracepoint", "raw"];
    if fentry_available() {
        all.push("fentry");
    }
    all
}

/// A policy of `policies/examples/`, by file name.
pub fn example(name: &str) -> String {
    format!("{}/policies/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// [`Launched::new`] for a command held as owned strings.
#[track_caller]
pub fn launch(cmd: &[String]) -> Launched {
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    Launched::new(&cmd)
}

/// `GET path` from an HTTP server on loopback: (status, body). A test's own
/// client, so that a real one (Prometheus) is not the only judge.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    try_http_get(address, path).unwrap_or_else(|e| panic!("GET http://{address}{path}: {e}"))
}

/// [`http_get`], or why it could not (a server not listening yet).
pub fn try_http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(timeout()))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The address a running reflex serves metrics at, from its banner.
pub fn metrics_address(reflex: &mut Reflex) -> String {
    let line = reflex
        .stderr
        .seen
        .iter()
        .find(|l| l.starts_with("reflex: metrics at http://"))
        .cloned()
        .unwrap_or_else(|| panic!("no metrics line in {:?}", reflex.stderr.seen));
    line["reflex: metrics at http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// A sample of a metric in Prometheus text, by its name and labels as
/// written (`reflex_rules`, `reflex_decisions_total{rule="a",action="audited"}`).
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A child killed and reaped on drop, so that a failing assertion leaves
/// nothing running (for reflex processes a test spawns itself).
pub struct Reaped(pub Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
