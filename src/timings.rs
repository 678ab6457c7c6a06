//! `reflex run --timings`: how long each stage of start-up and of every
//! reload took, said on stderr in one line, with the kernel's own figure for
//! each program it verified. Off, a mark costs one clock read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);

/// Stages since the last report: (name, when it ended).
static STAGES: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());
/// Programs verified since the last report: (name, verification time in
/// µs, instructions processed), from the kernel's statistics line.
static VERIFIED: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());
/// When the current report's first stage began.
static BEGUN: Mutex<Option<Instant>> = Mutex::new(None);

pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Starts a report: stages are measured from now.
pub fn begin(at: Instant) {
    *BEGUN.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    STAGES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    VERIFIED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The stage `name` ends now.
pub fn mark(name: &'static str) {
    if enabled() {
        STAGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, Instant::now()));
    }
}

/// Reads the kernel's `verification time N usec` and `processed N insns`
/// for program `program` from a verifier log at statistics level.
pub fn verifier_log(program: &str, log: &str) {
    let number = |prefix: &str| {
        log.lines().find_map(|l| {
            let rest = l.trim().strip_prefix(prefix)?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    if let (Some(us), Some(insns)) = (number("verification time"), number("processed")) {
        VERIFIED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((program.to_string(), us, insns));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The report since [`begin`], in words; None when timings are off.
pub fn report(what: &str) -> Option<String> {
    if !enabled() {
        return None;
    }
    let begun = BEGUN.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let stages = std::mem::take(&mut *STAGES.lock().unwrap_or_else(|e| e.into_inner()));
    let verified = std::mem::take(&mut *VERIFIED.lock().unwrap_or_else(|e| e.into_inner()));
    let mut last = begun;
    let mut parts = Vec::new();
    for (name, at) in &stages {
        parts.push(format!("{name} {}", ms(at.saturating_duration_since(last))));
        last = *at;
    }
    let mut text = format!(
        "reflex: timings: {what} took {}: {}",
        ms(last.saturating_duration_since(begun)),
        parts.join(", ")
    );
    if !verified.is_empty() {
        let total: u64 = verified.iter().map(|v| v.1).sum();
        let each: Vec<String> = verified
            .iter()
            .map(|(p, us, insns)| format!("{p} {:.1} ms ({insns} insns)", *us as f64 / 1e3))
            .collect();
        text.push_str(&format!(
            "; the verifier took {:.1} ms of it: {}",
            total as f64 / 1e3,
            each.join(", ")
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_statistics_line_is_read() {
        let log = "func#0 @0\nverification time 1234 usec\nstack depth 0+8\n\
                   processed 567 insns (limit 1000000) max_states_per_insn 1 total_states 3\n";
        verifier_log("p", log);
        let got = VERIFIED.lock().unwrap().pop();
        assert_eq!(got, Some(("p".to_string(), 1234, 567)));
    }
}
