//! What supervisors and monitoring see of a running reflex, above the data
//! path: readiness and status for systemd (`notify`), and Prometheus
//! metrics with a readiness probe over HTTP (`metrics`). Neither is in the
//! path of a decision: the loop publishes, they serve.

pub mod metrics;
pub mod notify;
