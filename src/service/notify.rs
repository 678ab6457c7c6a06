//! systemd's notification protocol (`Type=notify`), through the sd-notify
//! crate: READY=1 once the rules are in force, RELOADING=1 and READY=1
//! around a reload, STATUS= lines saying what is in force, and WATCHDOG=1
//! every half of `WatchdogSec` while the loop turns. Without NOTIFY_SOCKET
//! (not started by systemd) all of it is nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    enabled: bool,
    /// How often to say WATCHDOG=1 (half of what systemd waits for).
    watchdog: Option<Duration>,
    last_watchdog: Instant,
}

impl Notifier {
    /// From the environment systemd gives: NOTIFY_SOCKET, WATCHDOG_USEC
    /// (and WATCHDOG_PID, which must be reflex's).
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        // As libsystemd's sd_watchdog_enabled: WATCHDOG_USEC, for this
        // process when WATCHDOG_PID says which (systemd always does).
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|_| enabled && for_us)
            .map(|usec| Duration::from_micros(usec / 2))
            .filter(|d| !d.is_zero());
        Notifier {
            enabled,
            watchdog,
            last_watchdog: Instant::now(),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(false, states) {
                tracing::debug!("sd_notify: {e}");
            }
        }
    }

    /// The rules are in force.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload begins.
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// What is in force now.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// Stopping: enforcement ends.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The loop is alive: WATCHDOG=1 when it is time. When the next one is
    /// due (None: no watchdog).
    pub fn tick(&mut self) -> Option<Duration> {
        let every = self.watchdog?;
        if self.last_watchdog.elapsed() >= every {
            self.send(&[NotifyState::Watchdog]);
            self.last_watchdog = Instant::now();
        }
        Some(every.saturating_sub(self.last_watchdog.elapsed()))
    }
}
