//! The end-of-run summary: what the kernel counted and what reached us.

use std::fmt;

use crate::kernel::Stats;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub kernel: Stats,
    /// Records read from the ring buffer.
    pub received: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Runs of reflex's programs the kernel skipped (see [`crate::kernel::Kernel::missed`]).
    pub missed: u64,
    /// Events read but not written where they go (a reader gone, a full
    /// disk, a destination too far behind).
    pub undelivered: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.kernel;
        writeln!(f, "reflex summary:")?;
        writeln!(f, "  events         {}", k.matched)?;
        writeln!(f, "  signals sent   {}", k.signalled)?;
        writeln!(f, "  failures       {}", k.failed)?;
        writeln!(f, "  would-signal   {}", k.would_signal)?;
        writeln!(f, "  skipped        {}", k.skipped)?;
        writeln!(f, "  audited        {}", k.audited)?;
        if k.denied + k.would_deny > 0 {
            writeln!(f, "  denied         {}", k.denied)?;
            writeln!(f, "  would-deny     {}", k.would_deny)?;
        }
        if k.paused > 0 {
            writeln!(f, "  paused         {}", k.paused)?;
        }
        if k.disarmed > 0 {
            writeln!(
                f,
                "  disarmed       {} (a rule's circuit breaker was open: audited instead)",
                k.disarmed
            )?;
        }
        writeln!(f, "  received       {}", self.received)?;
        write!(f, "  dropped        {}", k.dropped)?;
        if k.dropped > 0 {
            write!(
                f,
                " (the ring buffer was full: those decisions were taken but not reported)"
            )?;
        }
        write!(f, "\n  missed         {}", self.missed)?;
        if self.missed > 0 {
            write!(
                f,
                " (the kernel did not run reflex's program for these hook hits: another run of \
                 it was in progress on the same CPU; reflex did not see those calls)"
            )?;
        }
        if self.undelivered > 0 {
            write!(
                f,
                "\n  undelivered    {} (read, but not written where events go: its reader went \
                 away, or it failed or fell too far behind)",
                self.undelivered
            )?;
        }
        if self.undecodable > 0 {
            write!(f, "\n  undecodable    {}", self.undecodable)?;
        }
        let lost = k.matched.saturating_sub(self.received + k.dropped);
        if lost > 0 {
            write!(f, "\n  unaccounted    {lost}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_count() {
        let s = Summary {
            kernel: Stats {
                matched: 5,
                signalled: 3,
                failed: 1,
                would_signal: 0,
                skipped: 1,
                audited: 0,
                denied: 0,
                would_deny: 0,
                paused: 0,
                dropped: 2,
                disarmed: 0,
            },
            received: 3,
            undecodable: 0,
            missed: 0,
            undelivered: 0,
        };
        let text = s.to_string();
        assert!(text.contains("events         5"), "{text}");
        assert!(text.contains("signals sent   3"), "{text}");
        assert!(text.contains("failures       1"), "{text}");
        assert!(
            text.contains("dropped        2 (the ring buffer was full"),
            "{text}"
        );
        assert!(!text.contains("unaccounted"), "{text}");
        assert!(text.contains("missed         0"), "{text}");
    }
}
