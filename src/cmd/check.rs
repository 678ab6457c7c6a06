//! `reflex check`: a preflight table of what this machine lets reflex do.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::Arc;

use crate::features::{self as probe, Answer, Features};
use crate::kernel::{Kernel, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Missing, and reflex cannot run without it.
    Fail,
    /// Missing; only the features named in the row are unavailable.
    Degraded,
    /// Could not be probed (usually: not privileged).
    Unknown,
    /// A fact, not a verdict.
    Info,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Degraded => "missing",
            Status::Unknown => "unknown",
            Status::Info => "info",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub status: Status,
    /// What was found and what it means for reflex.
    pub detail: String,
    /// How to fix it, when it is not ok.
    pub fix: Option<String>,
}

fn row(name: &'static str, status: Status, detail: impl Into<String>) -> Row {
    Row {
        name,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Row {
    fn fix(mut self, fix: impl Into<String>) -> Row {
        if self.status != Status::Ok {
            self.fix = Some(fix.into());
        }
        self
    }
}

/// A row from a probe answer; `required` rows fail, the others degrade.
fn answer_row(name: &'static str, answer: Answer, required: bool, yes: &str, no: &str) -> Row {
    match answer {
        Answer::Yes => row(name, Status::Ok, yes),
        Answer::No(why) => row(
            name,
            if required {
                Status::Fail
            } else {
                Status::Degraded
            },
            format!("{why}: {no}"),
        ),
        Answer::Unknown(why) => row(name, Status::Unknown, format!("not probed ({why})")),
    }
}

/// Every check, in the order they are printed.
pub fn rows(features: &Arc<Features>) -> Vec<Row> {
    let privileges = features.privileges();
    let privileged = privileges.can_load();
    let mut rows = Vec::new();

    let release = probe::kernel_release();
    rows.push(match probe::kernel_version() {
        Some(v) if v >= (5, 10) => row("kernel", Status::Ok, format!("{release}: 5.10 or newer")),
        Some(_) => row(
            "kernel",
            Status::Fail,
            format!("{release}: older than 5.10"),
        )
        .fix("reflex needs Linux 5.10 or newer"),
        None => row(
            "kernel",
            Status::Unknown,
            format!("cannot parse release '{release}'"),
        ),
    });

    rows.push(match privileges.missing() {
        None => row(
            "privileges",
            Status::Ok,
            format!(
                "uid {} may load BPF programs and send signals from them",
                privileges.uid
            ),
        ),
        Some(missing) => row("privileges", Status::Fail, missing)
            .fix("run reflex as root (sudo reflex …), or grant CAP_BPF and CAP_PERFMON"),
    });

    rows.push(if probe::has_btf() {
        row(
            "BTF",
            Status::Ok,
            format!("{}: CO-RE relocations work", probe::BTF_PATH),
        )
    } else {
        row(
            "BTF",
            Status::Fail,
            format!("{} is missing: CO-RE cannot relocate", probe::BTF_PATH),
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    });

    let tracefs = probe::tracefs(privileged);
    rows.push(match &tracefs {
        Ok((path, true)) => row(
            "tracefs",
            Status::Ok,
            format!("mounted it at {}", path.display()),
        ),
        Ok((path, false)) => row(
            "tracefs",
            Status::Ok,
            format!("mounted at {}", path.display()),
        ),
        Err(e) if privileged => row(
            "tracefs",
            Status::Fail,
            format!("{e}: tracepoints cannot attach"),
        )
        .fix("mount -t tracefs tracefs /sys/kernel/tracing (needs CONFIG_TRACING)"),
        Err(_) => row(
            "tracefs",
            Status::Unknown,
            "not probed: its events are readable by root only (`reflex run` mounts it as root \
             where it is not mounted)",
        ),
    });
    if let Ok((path, _)) = &tracefs {
        rows.push(if probe::syscall_tracepoint(path, "ptrace").is_some() {
            row(
                "ptrace tracepoint",
                Status::Ok,
                "syscalls/sys_enter_ptrace exists",
            )
        } else {
            row(
                "ptrace tracepoint",
                Status::Fail,
                "syscalls/sys_enter_ptrace is missing",
            )
            .fix("use a kernel built with CONFIG_FTRACE_SYSCALLS=y")
        });
    }

    // Without privileges the kernel refuses every probe: say that, not that
    // the feature is missing.
    let probed = |answer: &Answer| {
        if privileged {
            answer.clone()
        } else {
            Answer::Unknown("needs privileges to ask the kernel".into())
        }
    };
    rows.push(answer_row(
        "ring buffer",
        probed(features.ringbuf()),
        true,
        "events stream to user space",
        "events cannot be reported",
    ));
    rows.push(answer_row(
        "bpf_send_signal",
        probed(features.send_signal()),
        true,
        "signals the calling process from the kernel",
        "reflex cannot signal",
    ));
    rows.push(answer_row(
        "bpf_send_signal_thread",
        probed(features.send_signal_thread()),
        false,
        "`--thread` can signal only the calling thread",
        "`--thread` is unavailable",
    ));
    rows.push(answer_row(
        "bpf_send_signal_task",
        features.signal_task().clone(),
        false,
        "rules may signal another task with a value (`to:`)",
        "rules with `to:` are refused",
    ));
    let identity = features.identity();
    rows.push(if identity.exec_argv {
        row(
            "exec argv",
            Status::Ok,
            "exec hook events name the new command line (bpf_task_pt_regs)",
        )
    } else {
        row(
            "exec argv",
            Status::Degraded,
            "exec hook events name the file run but not its argv (bpf_task_pt_regs: Linux 5.15+); \
             execve rules still do",
        )
    });
    rows.push(if probe::task_kfuncs() {
        row(
            "target identity",
            Status::Ok,
            "kill and ptrace syscall events name the target's comm and executable",
        )
    } else {
        row(
            "target identity",
            Status::Degraded,
            "kill and ptrace syscall events name the target's pid only (bpf_task_from_pid in \
             tracepoint programs: Linux 6.13+); hook events name it fully",
        )
    });
    if !identity.login_uid {
        rows.push(row(
            "login uid",
            Status::Degraded,
            "this kernel keeps no login uid (CONFIG_AUDIT): events carry no `auid`",
        ));
    }
    rows.push(if privileged {
        load_reflex(features)
    } else {
        row(
            "reflex programs",
            Status::Unknown,
            "not loaded (needs privileges)",
        )
    });
    rows.push(program_row(
        "tp_btf programs",
        features.tp_btf(),
        privileged,
        "one raw syscall tracepoint can watch many syscalls",
        "only per-syscall tracepoints can be used",
    ));
    let lsm_list = probe::lsm_list(privileged);
    let mut lsm = program_row(
        "LSM programs",
        features.lsm(),
        privileged,
        "hook rules can refuse operations (deny)",
        "hook rules fall back to signals where they say `fallback:`, else are refused",
    );
    match &lsm_list {
        Some(list) if !list.split(',').any(|l| l == "bpf") => {
            lsm.status = Status::Degraded;
            lsm.detail =
                format!("'bpf' is not in the active LSM list ({list}): deny rules are unavailable");
        }
        _ => {}
    }
    rows.push(
        lsm.fix(
            "boot with lsm=…,bpf (e.g. lsm=lockdown,capability,bpf) and without lockdown of BPF",
        ),
    );
    rows.push(
        program_row(
            "fentry programs",
            features.fentry(),
            privileged,
            "`--attach auto` watches syscalls with fentry on their functions: other syscalls pay nothing",
            "syscalls are watched with tracepoints (every syscall then pays their slow path)",
        )
        .fix("fentry needs a kernel with BPF trampolines (5.5+, x86_64/arm64) and no lockdown of BPF"),
    );
    rows.push(match lsm_list {
        Some(list) => row("active LSMs", Status::Info, list),
        None => row("active LSMs", Status::Unknown, "securityfs is not readable"),
    });
    rows.push(match probe::lockdown(privileged) {
        Some(mode) if mode == "none" => row("lockdown", Status::Ok, "none"),
        Some(mode) => row(
            "lockdown",
            Status::Info,
            format!("{mode}: the kernel may refuse some BPF program kinds (see LSM, fentry above)"),
        ),
        None => row("lockdown", Status::Unknown, "securityfs is not readable"),
    });
    rows
}

fn program_row(name: &'static str, answer: &Answer, privileged: bool, yes: &str, no: &str) -> Row {
    if !privileged {
        return row(name, Status::Unknown, "not probed (needs privileges)");
    }
    answer_row(name, answer.clone(), false, yes, no)
}

/// Loads reflex's own object, without attaching anything.
fn load_reflex(features: &Arc<Features>) -> Row {
    let mut storage = MaybeUninit::uninit();
    match Kernel::load(
        &mut storage,
        &Settings::default(),
        Arc::clone(features),
        crate::kernel::Strategy::Tracepoint,
        crate::rules::Uses::ALL,
        None,
    ) {
        Ok(_) => row("reflex programs", Status::Ok, "load and pass the verifier"),
        Err(e) => row("reflex programs", Status::Fail, e.to_string())
            .fix("see the error above; `reflex -v check` shows libbpf's log"),
    }
}

/// Whether reflex's core (the seed's job) can run, given the rows.
pub fn core_ok(rows: &[Row]) -> bool {
    !rows.iter().any(|r| r.status == Status::Fail)
        && rows
            .iter()
            .filter(|r| ["privileges", "reflex programs"].contains(&r.name))
            .all(|r| r.status == Status::Ok)
}

pub fn render(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {:<7}  DETAIL", "CHECK", "STATUS");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:<7}  {}",
            r.name,
            r.status.label(),
            r.detail
        );
        if let Some(fix) = &r.fix {
            let _ = writeln!(out, "{:<width$}  {:<7}  fix: {}", "", "", fix);
        }
    }
    out
}

/// Prints the table; the exit code is non-zero when the core cannot run.
pub fn check(features: &Arc<Features>) -> std::process::ExitCode {
    let rows = rows(features);
    print!("{}", render(&rows));
    if core_ok(&rows) {
        println!("\nreflex can run here.");
        std::process::ExitCode::SUCCESS
    } else {
        println!("\nreflex cannot run here: fix the rows marked FAIL (or unknown, as root).");
        std::process::ExitCode::FAILURE
    }
}
