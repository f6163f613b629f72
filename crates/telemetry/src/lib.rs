//! Telemetry for Switchyard: the process-wide `tracing` subscriber ([`init`]: an `EnvFilter` from
//! `LOG_LEVEL`, JSON lines outside `dev`, a compact human format in `dev`) and [`mask_url`], which
//! every crate uses before a connection URL reaches a log line or an error message; and the
//! Prometheus recorder ([`install_metrics`], [`render_metrics`]).
//!
//! OpenTelemetry export (DESIGN §3.10) belongs here too.

mod logging;
mod mask;
mod metrics;

pub use logging::{TelemetryError, init, subscriber};
pub use mask::mask_url;
pub use metrics::{install_metrics, render_metrics};
