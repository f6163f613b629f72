//! Prometheus metrics (DESIGN §3.10): one process-wide recorder behind the `metrics` facade, so
//! any crate records with `metrics::counter!` / `gauge!` and the HTTP edge renders the text
//! exposition format at `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls do nothing). Returns whether
/// this process's metrics are recorded (false when another recorder was installed first).
pub fn install_metrics() -> bool {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .is_some()
}

/// The current metrics in the Prometheus text format (empty before [`install_metrics`]).
pub fn render_metrics() -> String {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
