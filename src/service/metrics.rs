//! Prometheus metrics and a readiness probe, over HTTP (tiny_http; the
//! text format from prometheus-client). The loop publishes a [`Snapshot`]
//! of what it knows — the kernel's own counts above all, not counts of
//! events, which can be dropped — and a thread of its own serves it:
//!
//! - `GET /metrics`: the metrics below, in the OpenMetrics text format;
//! - `GET /ready`: 200 once every program is attached and the rules are in
//!   force, 503 before (and while stopping).

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::eventfd::{EfdFlags, EventFd};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// What reflex knows, as the loop last published it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every program attached and the rules in force.
    pub ready: bool,
    /// Decisions by (rule, action): counted in the kernel.
    pub decisions: Vec<(String, &'static str, u64)>,
    /// Events read from the kernel's ring buffer.
    pub events_read: u64,
    /// Events the kernel could not report (ring buffer full).
    pub events_dropped: u64,
    /// Events not written where they go, by destination.
    pub undelivered: Vec<(&'static str, u64)>,
    /// Hook hits the kernel did not run a program of reflex's for.
    pub missed: Vec<(String, u64)>,
    pub reloads_ok: u64,
    pub reloads_refused: u64,
    /// When the rules in force were put in force (start or last reload).
    pub last_reload: Option<SystemTime>,
    pub rules: u64,
    /// (rule, what it does instead) for hook rules degraded.
    pub degraded: Vec<(String, String)>,
    /// Rules whose circuit breaker is open.
    pub disarmed: Vec<String>,
    /// Processes reflex stopped and will resume.
    pub stopped: u64,
    pub build: Build,
}

/// What `reflex_build_info` says.
#[derive(Debug, Clone, Default)]
pub struct Build {
    pub version: String,
    pub commit: String,
    pub libbpf: String,
    pub kernel: String,
    /// How syscalls are hooked (tracepoint, raw).
    pub hooks: String,
}

#[derive(Debug)]
struct Published(Arc<Mutex<Snapshot>>);

type Labels = Vec<(&'static str, String)>;

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            // A metric of one sample: `name_total 5`, not `name_total{} 5`.
            return ConstCounter::new(v).encode(m);
        }
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        if labels.is_empty() {
            return ConstGauge::new(v).encode(m);
        }
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Published {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let none = Labels::new;
        counter(
            &mut e,
            "reflex_decisions",
            "Decisions taken by the kernel, by rule and action (counted in the kernel, per CPU, whether or not their event was reported).",
            s.decisions.iter().map(|(rule, action, n)| {
                (
                    vec![("rule", rule.clone()), ("action", action.to_string())],
                    *n,
                )
            }),
        )?;
        counter(
            &mut e,
            "reflex_events_read",
            "Events read from the kernel's ring buffer.",
            [(none(), s.events_read)],
        )?;
        counter(
            &mut e,
            "reflex_events_dropped",
            "Decisions the kernel could not report: the ring buffer was full.",
            [(none(), s.events_dropped)],
        )?;
        counter(
            &mut e,
            "reflex_events_undelivered",
            "Events read but not written where they go (a reader gone, a full disk, a destination too far behind), by sink.",
            s.undelivered
                .iter()
                .map(|(sink, n)| (vec![("sink", sink.to_string())], *n)),
        )?;
        counter(
            &mut e,
            "reflex_program_missed_runs",
            "Hook hits the kernel did not run the program for (another run of it was in progress on the CPU): calls reflex did not see.",
            s.missed
                .iter()
                .map(|(p, n)| (vec![("program", p.clone())], *n)),
        )?;
        counter(
            &mut e,
            "reflex_reloads",
            "Reloads of the policies, by result (refused: the rules in force stayed in force).",
            [
                (vec![("result", "ok".to_string())], s.reloads_ok),
                (vec![("result", "refused".to_string())], s.reloads_refused),
            ],
        )?;
        gauge(
            &mut e,
            "reflex_last_reload_success_timestamp_seconds",
            "When the rules in force were put in force (at start, or the last good reload), in seconds since the epoch.",
            s.last_reload
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| (none(), d.as_secs_f64())),
        )?;
        gauge(
            &mut e,
            "reflex_rules",
            "Rules in force.",
            [(none(), s.rules as f64)],
        )?;
        gauge(
            &mut e,
            "reflex_rule_degraded",
            "1 for each hook rule that runs as something less where BPF-LSM is refused, with what it does instead.",
            s.degraded.iter().map(|(rule, instead)| {
                (
                    vec![("rule", rule.clone()), ("instead", instead.clone())],
                    1.0,
                )
            }),
        )?;
        gauge(
            &mut e,
            "reflex_rule_disarmed",
            "1 for each rule whose circuit breaker is open: it audits instead of acting until the next reload.",
            s.disarmed
                .iter()
                .map(|rule| (vec![("rule", rule.clone())], 1.0)),
        )?;
        gauge(
            &mut e,
            "reflex_processes_stopped",
            "Processes reflex has stopped and will resume (a pause, or a stop until reflex stops).",
            [(none(), s.stopped as f64)],
        )?;
        gauge(
            &mut e,
            "reflex_ready",
            "1 once every program is attached and the rules are in force.",
            [(none(), if s.ready { 1.0 } else { 0.0 })],
        )?;
        let b = &s.build;
        gauge(
            &mut e,
            "reflex_build_info",
            "reflex's version, commit and libbpf, the kernel it runs on, and how it hooks syscalls.",
            [(
                vec![
                    ("version", b.version.clone()),
                    ("commit", b.commit.clone()),
                    ("libbpf", b.libbpf.clone()),
                    ("kernel", b.kernel.clone()),
                    ("hooks", b.hooks.clone()),
                ],
                1.0,
            )],
        )?;
        Ok(())
    }
}

/// The metrics endpoint, serving what was last published.
pub struct Metrics {
    snapshot: Arc<Mutex<Snapshot>>,
    address: SocketAddr,
    fresh: Arc<Fresh>,
}

/// A scrape asks the serving loop for fresh figures (the loop sleeps when
/// nothing happens, so it publishes on request, not on a timer) and waits
/// for them a moment; a loop busy elsewhere gets the last ones served.
struct Fresh {
    /// (requests so far, requests answered so far)
    tickets: Mutex<(u64, u64)>,
    answered: Condvar,
    /// Readable while a request waits: in the serving loop's epoll set.
    wanted: EventFd,
}

/// How long a scrape waits for fresh figures before it is served the last.
const FRESH_WAIT: Duration = Duration::from_millis(500);

impl Fresh {
    fn ask(&self) {
        let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += 1;
        let ticket = t.0;
        let _ = self.wanted.write(1);
        let _ = self
            .answered
            .wait_timeout_while(t, FRESH_WAIT, |t| t.1 < ticket);
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The same metrics in the classic Prometheus text format (0.0.4), for
/// scrapers that do not ask for OpenMetrics (promtool, curl): a counter's
/// HELP and TYPE name it with its `_total`, and OpenMetrics' UNIT and EOF
/// lines are left out. Prometheus itself asks for OpenMetrics.
pub fn classic(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut counters = std::collections::HashSet::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_string());
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in lines {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| l.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

impl Metrics {
    /// Listens on `address` (port 0: any free one) and serves from a thread.
    pub fn serve(address: &str) -> Result<Metrics, String> {
        let server = tiny_http::Server::http(address)
            .map_err(|e| format!("--metrics {address}: cannot listen there: {e}"))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("--metrics {address}: not an IP address"))?;
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Published(Arc::clone(&snapshot))));
        let ready = Arc::clone(&snapshot);
        let fresh = Arc::new(Fresh {
            tickets: Mutex::new((0, 0)),
            answered: Condvar::new(),
            wanted: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| format!("--metrics: cannot make its eventfd: {e}"))?,
        });
        let ours = Arc::clone(&fresh);
        std::thread::Builder::new()
            .name("reflex-metrics".into())
            .spawn(move || {
                for request in server.incoming_requests() {
                    let path = request.url().split('?').next().unwrap_or("").to_string();
                    let response = match (request.method(), path.as_str()) {
                        (tiny_http::Method::Get, "/metrics") => {
                            fresh.ask();
                            let mut text = String::new();
                            let openmetrics = request.headers().iter().any(|h| {
                                h.field.equiv("Accept")
                                    && h.value.as_str().contains("application/openmetrics-text")
                            });
                            match prometheus_client::encoding::text::encode(&mut text, &registry) {
                                Ok(()) if openmetrics => tiny_http::Response::from_string(text)
                                    .with_header(
                                        tiny_http::Header::from_bytes("Content-Type", OPENMETRICS)
                                            .expect("a valid header"),
                                    ),
                                Ok(()) => tiny_http::Response::from_string(classic(&text))
                                    .with_header(
                                        tiny_http::Header::from_bytes(
                                            "Content-Type",
                                            PROMETHEUS_TEXT,
                                        )
                                        .expect("a valid header"),
                                    ),
                                Err(_) => tiny_http::Response::from_string("encoding failed\n")
                                    .with_status_code(500),
                            }
                        }
                        (tiny_http::Method::Get, "/ready") => {
                            if ready.lock().unwrap_or_else(|p| p.into_inner()).ready {
                                tiny_http::Response::from_string("ready\n")
                            } else {
                                tiny_http::Response::from_string("not ready\n").with_status_code(503)
                            }
                        }
                        (tiny_http::Method::Get, "/") => tiny_http::Response::from_string(
                            "reflex: /metrics (Prometheus), /ready (200 once the rules are in force)\n",
                        ),
                        _ => tiny_http::Response::from_string("not found\n").with_status_code(404),
                    };
                    let _ = request.respond(response);
                }
            })
            .map_err(|e| format!("--metrics: cannot start its thread: {e}"))?;
        Ok(Metrics {
            snapshot,
            address: bound,
            fresh: ours,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Readable while a scrape waits for fresh figures.
    pub fn wanted(&self) -> BorrowedFd<'_> {
        self.fresh.wanted.as_fd()
    }

    /// What to serve from now on: answers every scrape waiting.
    pub fn publish(&self, snapshot: Snapshot) {
        let asked = {
            let _ = self.fresh.wanted.read();
            self.fresh
                .tickets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
        };
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
        let mut t = self.fresh.tickets.lock().unwrap_or_else(|p| p.into_inner());
        t.1 = t.1.max(asked);
        self.fresh.answered.notify_all();
    }

    /// Not ready any more (stopping).
    pub fn unready(&self) {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ready = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_name_counters_as_prometheus_does() {
        let snapshot = Snapshot {
            ready: true,
            decisions: vec![("no-ptrace".into(), "signalled", 3)],
            rules: 1,
            ..Snapshot::default()
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Published(Arc::new(Mutex::new(snapshot)))));
        let mut open = String::new();
        prometheus_client::encoding::text::encode(&mut open, &registry).unwrap();
        assert!(open.contains("# TYPE reflex_decisions counter"), "{open}");
        assert!(open.contains("reflex_decisions_total{rule=\"no-ptrace\",action=\"signalled\"} 3"));
        assert!(open.ends_with("# EOF\n"));
        let text = classic(&open);
        assert!(
            text.contains("# HELP reflex_decisions_total Decisions"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE reflex_decisions_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE reflex_rules gauge"), "{text}");
        assert!(text.contains("reflex_rules 1"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
