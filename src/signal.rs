//! Signals as users name them: `SIGKILL`, `kill`, `9`, `SIGRTMIN+3`.

use std::fmt;
use std::str::FromStr;

/// Standard Linux signal names, indexed by number (x86_64 and aarch64 agree).
const NAMES: [(&str, i32); 31] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// Aliases accepted on input; output always uses the canonical name.
const ALIASES: [(&str, i32); 3] = [("SIGIOT", 6), ("SIGPOLL", 29), ("SIGCLD", 17)];

/// First real-time signal as glibc programs see it (the kernel's 32 and 33
/// are taken by the C library's threads implementation).
pub const SIGRTMIN: i32 = 34;
/// Highest signal number the kernel accepts (`_NSIG`).
pub const SIGRTMAX: i32 = 64;

/// A valid signal number, 1..=64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL);

    /// The signal with this number, if the kernel would accept it.
    pub fn from_number(n: i32) -> Option<Signal> {
        (1..=SIGRTMAX).contains(&n).then_some(Signal(n))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// `SIGKILL`, `SIGRTMIN+3`, or `SIG32` for the two the C library keeps.
    pub fn name(self) -> String {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return (*name).to_string();
        }
        match self.0 {
            SIGRTMIN => "SIGRTMIN".into(),
            SIGRTMAX => "SIGRTMAX".into(),
            n if n > SIGRTMIN => format!("SIGRTMIN+{}", n - SIGRTMIN),
            n => format!("SIG{n}"),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("signal {0} is out of range: Linux signals are 1 to 64")]
    OutOfRange(i64),
    #[error("signal 0 sends nothing: choose a signal such as SIGKILL, SIGSTOP or SIGUSR1")]
    Zero,
    #[error(
        "unknown signal '{given}'{hint}: use a name such as SIGKILL, SIGSTOP, SIGUSR1, SIGRTMIN+2, or a number 1-64"
    )]
    Unknown { given: String, hint: String },
}

impl FromStr for Signal {
    type Err = SignalError;

    fn from_str(s: &str) -> Result<Signal, SignalError> {
        let given = s.trim();
        if let Ok(n) = given.parse::<i64>() {
            return match n {
                0 => Err(SignalError::Zero),
                1..=64 => Ok(Signal(n as i32)),
                _ => Err(SignalError::OutOfRange(n)),
            };
        }
        let upper = given.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        if let Some((_, n)) = NAMES.iter().chain(ALIASES.iter()).find(|(s, _)| *s == name) {
            return Ok(Signal(*n));
        }
        if let Some(sig) = parse_realtime(&name) {
            return sig;
        }
        // `SIG32`, as `name()` prints the two the C library keeps.
        if let Some(digits) = name
            .strip_prefix("SIG")
            .filter(|d| d.parse::<i64>().is_ok())
        {
            return digits.parse();
        }
        let hint = crate::suggest::closest(&name, NAMES.iter().map(|(s, _)| *s))
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        Err(SignalError::Unknown {
            given: given.to_string(),
            hint,
        })
    }
}

/// `SIGRTMIN`, `SIGRTMIN+N`, `SIGRTMAX`, `SIGRTMAX-N`.
fn parse_realtime(name: &str) -> Option<Result<Signal, SignalError>> {
    let (base, rest, sign) = if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        (SIGRTMIN, rest, 1)
    } else if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        (SIGRTMAX, rest, -1)
    } else {
        return None;
    };
    let offset: i64 = if rest.is_empty() {
        0
    } else {
        let digits = match sign {
            1 => rest.strip_prefix('+'),
            _ => rest.strip_prefix('-'),
        }?;
        digits.parse().ok()?
    };
    let n = i64::from(base) + sign * offset;
    Some(
        if (i64::from(SIGRTMIN)..=i64::from(SIGRTMAX)).contains(&n) {
            Ok(Signal(n as i32))
        } else {
            Err(SignalError::OutOfRange(n))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_short_forms() {
        for s in ["SIGKILL", "sigkill", "KILL", "kill", "9", " 9 "] {
            assert_eq!(s.parse::<Signal>().unwrap(), Signal::KILL, "{s}");
        }
        assert_eq!("SIGSTOP".parse::<Signal>().unwrap().number(), 19);
        assert_eq!("usr1".parse::<Signal>().unwrap().number(), 10);
        assert_eq!("SIGIOT".parse::<Signal>().unwrap().name(), "SIGABRT");
    }

    #[test]
    fn realtime_signals() {
        assert_eq!("SIGRTMIN".parse::<Signal>().unwrap().number(), 34);
        assert_eq!("SIGRTMIN+3".parse::<Signal>().unwrap().number(), 37);
        assert_eq!("rtmax-1".parse::<Signal>().unwrap().number(), 63);
        assert_eq!(Signal(37).name(), "SIGRTMIN+3");
        assert_eq!(Signal(64).name(), "SIGRTMAX");
        assert_eq!(Signal(32).name(), "SIG32");
        assert!(matches!(
            "SIGRTMIN+40".parse::<Signal>(),
            Err(SignalError::OutOfRange(74))
        ));
    }

    #[test]
    fn invalid_signals_explain_themselves() {
        assert_eq!("0".parse::<Signal>(), Err(SignalError::Zero));
        assert_eq!("65".parse::<Signal>(), Err(SignalError::OutOfRange(65)));
        assert_eq!("-3".parse::<Signal>(), Err(SignalError::OutOfRange(-3)));
        let err = "SIGKIL".parse::<Signal>().unwrap_err().to_string();
        assert!(err.contains("unknown signal 'SIGKIL'"), "{err}");
        assert!(err.contains("did you mean SIGKILL?"), "{err}");
        let err = "banana".parse::<Signal>().unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn every_name_round_trips() {
        for n in 1..=64 {
            let sig = Signal::from_number(n).unwrap();
            assert_eq!(sig.name().parse::<Signal>().unwrap(), sig, "{n}");
        }
        assert_eq!(Signal::from_number(0), None);
        assert_eq!(Signal::from_number(65), None);
    }
}
