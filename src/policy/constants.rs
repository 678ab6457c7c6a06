//! Names users may write instead of numbers in argument matchers, and names
//! of the arguments of common syscalls. Values come from `libc` for the
//! architecture reflex is built for.

use crate::signal::Signal;

macro_rules! table {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), libc::$name as i64 as u64)),*]
    };
}

const PTRACE: &[(&str, u64)] = table![
    PTRACE_TRACEME,
    PTRACE_PEEKTEXT,
    PTRACE_PEEKDATA,
    PTRACE_PEEKUSER,
    PTRACE_POKETEXT,
    PTRACE_POKEDATA,
    PTRACE_POKEUSER,
    PTRACE_CONT,
    PTRACE_KILL,
    PTRACE_SINGLESTEP,
    PTRACE_ATTACH,
    PTRACE_DETACH,
    PTRACE_SYSCALL,
    PTRACE_SETOPTIONS,
    PTRACE_GETEVENTMSG,
    PTRACE_GETSIGINFO,
    PTRACE_SETSIGINFO,
    PTRACE_GETREGSET,
    PTRACE_SETREGSET,
    PTRACE_SEIZE,
    PTRACE_INTERRUPT,
    PTRACE_LISTEN,
    PTRACE_PEEKSIGINFO,
];

const OPEN: &[(&str, u64)] = table![
    O_RDONLY,
    O_WRONLY,
    O_RDWR,
    O_CREAT,
    O_EXCL,
    O_NOCTTY,
    O_TRUNC,
    O_APPEND,
    O_NONBLOCK,
    O_DSYNC,
    O_SYNC,
    O_DIRECTORY,
    O_NOFOLLOW,
    O_CLOEXEC,
    O_PATH,
    O_TMPFILE,
    O_NOATIME,
];

const CLONE: &[(&str, u64)] = table![
    CLONE_VM,
    CLONE_FS,
    CLONE_FILES,
    CLONE_SIGHAND,
    CLONE_PIDFD,
    CLONE_PTRACE,
    CLONE_VFORK,
    CLONE_PARENT,
    CLONE_THREAD,
    CLONE_NEWNS,
    CLONE_SYSVSEM,
    CLONE_SETTLS,
    CLONE_PARENT_SETTID,
    CLONE_CHILD_CLEARTID,
    CLONE_DETACHED,
    CLONE_UNTRACED,
    CLONE_CHILD_SETTID,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    CLONE_IO,
];

/// bpf() commands (include/uapi/linux/bpf.h).
const BPF_CMD: &[(&str, u64)] = &[
    ("BPF_MAP_CREATE", 0),
    ("BPF_MAP_LOOKUP_ELEM", 1),
    ("BPF_MAP_UPDATE_ELEM", 2),
    ("BPF_MAP_DELETE_ELEM", 3),
    ("BPF_MAP_GET_NEXT_KEY", 4),
    ("BPF_PROG_LOAD", 5),
    ("BPF_OBJ_PIN", 6),
    ("BPF_OBJ_GET", 7),
    ("BPF_PROG_ATTACH", 8),
    ("BPF_PROG_DETACH", 9),
    ("BPF_PROG_TEST_RUN", 10),
    ("BPF_PROG_GET_NEXT_ID", 11),
    ("BPF_MAP_GET_NEXT_ID", 12),
    ("BPF_PROG_GET_FD_BY_ID", 13),
    ("BPF_MAP_GET_FD_BY_ID", 14),
    ("BPF_OBJ_GET_INFO_BY_FD", 15),
    ("BPF_PROG_QUERY", 16),
    ("BPF_RAW_TRACEPOINT_OPEN", 17),
    ("BPF_BTF_LOAD", 18),
    ("BPF_BTF_GET_FD_BY_ID", 19),
    ("BPF_TASK_FD_QUERY", 20),
    ("BPF_MAP_LOOKUP_AND_DELETE_ELEM", 21),
    ("BPF_MAP_FREEZE", 22),
    ("BPF_BTF_GET_NEXT_ID", 23),
    ("BPF_LINK_CREATE", 28),
    ("BPF_LINK_UPDATE", 29),
    ("BPF_LINK_GET_FD_BY_ID", 30),
    ("BPF_LINK_GET_NEXT_ID", 31),
    ("BPF_ENABLE_STATS", 32),
    ("BPF_ITER_CREATE", 33),
    ("BPF_LINK_DETACH", 34),
    ("BPF_PROG_BIND_MAP", 35),
    ("BPF_TOKEN_CREATE", 36),
];

/// `ptrace_access_check`'s `mode` bits (include/linux/ptrace.h).
const PTRACE_MODE: &[(&str, u64)] = &[
    ("PTRACE_MODE_READ", 0x01),
    ("PTRACE_MODE_ATTACH", 0x02),
    ("PTRACE_MODE_NOAUDIT", 0x04),
    ("PTRACE_MODE_FSCREDS", 0x08),
    ("PTRACE_MODE_REALCREDS", 0x10),
];

const MISC: &[(&str, u64)] = table![
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PROT_EXEC,
    MAP_SHARED,
    MAP_PRIVATE,
    MAP_FIXED,
    MAP_ANONYMOUS,
    AF_UNIX,
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_PACKET,
    SOCK_STREAM,
    SOCK_DGRAM,
    SOCK_RAW,
    SOCK_NONBLOCK,
    SOCK_CLOEXEC,
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    AT_EMPTY_PATH,
    PR_SET_DUMPABLE,
    PR_SET_NAME,
    PR_SET_SECCOMP,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PTRACER,
];

fn tables() -> impl Iterator<Item = &'static (&'static str, u64)> {
    PTRACE
        .iter()
        .chain(PTRACE_MODE)
        .chain(BPF_CMD)
        .chain(OPEN)
        .chain(CLONE)
        .chain(MISC)
}

/// Errors a `deny` may return.
const ERRNOS: &[(&str, u64)] = table![
    EPERM, EACCES, ENOENT, EINVAL, EBUSY, EAGAIN, ENOSYS, ENOEXEC, ETXTBSY, EROFS, ENOMEM, EIO,
    ESRCH, ECANCELED, EOWNERDEAD, ENOTSUP,
];

/// The number of an errno name, e.g. `EPERM`.
/// The name of bpf() command `cmd` (`BPF_PROG_LOAD`), if it has one.
pub fn bpf_cmd_name(cmd: u64) -> Option<&'static str> {
    BPF_CMD.iter().find(|(_, v)| *v == cmd).map(|(n, _)| *n)
}

pub fn errno(name: &str) -> Option<i32> {
    ERRNOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as i32)
}

pub fn errno_names() -> impl Iterator<Item = &'static str> {
    ERRNOS.iter().map(|(n, _)| *n)
}

/// The value of a constant name, e.g. `PTRACE_ATTACH`, `SIGKILL`, `O_WRONLY`.
pub fn value(name: &str) -> Option<u64> {
    if let Some((_, v)) = tables().find(|(n, _)| *n == name) {
        return Some(*v);
    }
    if name.starts_with("SIG") {
        return name.parse::<Signal>().ok().map(|s| s.number() as u64);
    }
    None
}

/// The known name closest to a mistyped one.
pub fn suggest(name: &str) -> Option<&'static str> {
    const SIGNALS: [&str; 8] = [
        "SIGKILL", "SIGTERM", "SIGSTOP", "SIGCONT", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGINT",
    ];
    crate::suggest::closest(name, tables().map(|(n, _)| *n).chain(SIGNALS))
}

/// Argument names of syscalls whose arguments rules commonly match.
const ARG_NAMES: &[(&str, &[&str])] = &[
    ("ptrace", &["request", "pid", "addr", "data"]),
    ("kill", &["pid", "sig"]),
    ("tkill", &["tid", "sig"]),
    ("tgkill", &["tgid", "tid", "sig"]),
    ("pidfd_send_signal", &["pidfd", "sig", "info", "flags"]),
    ("process_vm_readv", &["pid"]),
    ("process_vm_writev", &["pid"]),
    ("open", &["filename", "flags", "mode"]),
    ("openat", &["dfd", "filename", "flags", "mode"]),
    ("clone", &["flags"]),
    ("unshare", &["flags"]),
    ("setns", &["fd", "nstype"]),
    ("mmap", &["addr", "len", "prot", "flags", "fd", "off"]),
    ("mprotect", &["start", "len", "prot"]),
    ("socket", &["family", "type", "protocol"]),
    ("prctl", &["option", "arg2", "arg3", "arg4", "arg5"]),
    ("setuid", &["uid"]),
    ("setgid", &["gid"]),
    ("setreuid", &["ruid", "euid"]),
    ("setresuid", &["ruid", "euid", "suid"]),
    ("personality", &["persona"]),
    ("read", &["fd", "buf", "count"]),
    ("write", &["fd", "buf", "count"]),
    ("close", &["fd"]),
    ("bpf", &["cmd", "attr", "size"]),
];

/// Names accepted for the arguments of `syscall`, besides arg0..arg5.
pub fn arg_names(syscall: &str) -> &'static [&'static str] {
    ARG_NAMES
        .iter()
        .find(|(s, _)| *s == syscall)
        .map(|(_, names)| *names)
        .unwrap_or(&[])
}

/// Index of an argument given as `argN` or by its name for `syscall`.
pub fn arg_index(syscall: &str, name: &str) -> Option<u8> {
    if let Some(n) = name.strip_prefix("arg").and_then(|d| d.parse::<u8>().ok()) {
        return (n < 6).then_some(n);
    }
    arg_names(syscall)
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants() {
        assert_eq!(value("PTRACE_ATTACH"), Some(16));
        assert_eq!(value("PTRACE_SEIZE"), Some(0x4206));
        assert_eq!(value("SIGKILL"), Some(9));
        assert_eq!(value("SIGRTMIN+1"), Some(35));
        assert_eq!(value("O_WRONLY"), Some(1));
        assert_eq!(value("CLONE_NEWUSER"), Some(0x1000_0000));
        assert_eq!(value("AT_FDCWD"), Some(-100i64 as u64));
        assert_eq!(value("PTRACE_ATTACHH"), None);
        assert_eq!(suggest("PTRACE_ATACH"), Some("PTRACE_ATTACH"));
        assert_eq!(value("PTRACE_MODE_ATTACH"), Some(2));
        assert_eq!(value("BPF_PROG_LOAD"), Some(5));
        assert_eq!(arg_index("bpf", "cmd"), Some(0));
        assert_eq!(errno("EACCES"), Some(libc::EACCES));
        assert_eq!(errno("EPREM"), None);
    }

    #[test]
    fn argument_names() {
        assert_eq!(arg_index("ptrace", "request"), Some(0));
        assert_eq!(arg_index("kill", "sig"), Some(1));
        assert_eq!(arg_index("anything", "arg5"), Some(5));
        assert_eq!(arg_index("anything", "arg6"), None);
        assert_eq!(arg_index("kill", "request"), None);
    }
}
