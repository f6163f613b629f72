//! Certificate renewal over the stream: once two thirds of the certificate's lifetime
//! (`not_before..not_after`) have passed, the agent makes a new key and sends
//! `RenewCertificate` with its signing request, once per stream while unanswered. The answer's
//! certificate and the new key replace the files together; the next dial presents them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_pki::AgentKey;
use switchyard_proto::v1::Certificate;
use tokio::time::Instant;

use super::Agent;
use crate::dial::Failure;

/// After a renewal failed (no key, a certificate that could not be installed, a refusal), or
/// brought a certificate due for renewal already, how long until the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(60);

impl Agent {
    /// When a renewal request is due on the current stream: connected, not shutting down,
    /// with a certificate, and none outstanding.
    fn renewal_due(&self) -> Option<DateTime<Utc>> {
        if self.session.is_none() || self.stopping.is_some() || self.renewing.is_some() {
            return None;
        }
        let renew_at = self.certs.as_ref()?.renew_at;
        Some(
            self.renew_after
                .map_or(renew_at, |after| after.max(renew_at)),
        )
    }

    /// [`renewal_due`](Self::renewal_due) on the loop's clock (recomputed at every event, so a
    /// wall-clock jump is caught up with).
    pub(super) fn renewal_wake_at(&self) -> Option<Instant> {
        let due = self.renewal_due()?;
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        Some(Instant::now() + wait)
    }

    /// Asks for a new certificate when it is time to.
    pub(super) fn renew_if_due(&mut self) {
        let Some(due) = self.renewal_due() else {
            return;
        };
        if due > Utc::now() {
            return;
        }
        let (Some(session), Some(certs)) = (&mut self.session, &self.certs) else {
            return;
        };
        let request = AgentKey::generate().and_then(|key| Ok((key.csr_der()?, key)));
        match request {
            Ok((csr, key)) => {
                tracing::info!(expires_at = %certs.expires_at, "renewing the agent certificate");
                session.request_renewal(csr);
                self.renewing = Some(key);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot make a key to renew the agent certificate");
                self.renew_after = Some(Utc::now() + RETRY_AFTER);
            }
        }
    }

    /// Installs the renewed certificate with the key it was requested for.
    pub(super) fn on_certificate(&mut self, certificate: Certificate) {
        let (Some(key), Some(certs)) = (self.renewing.take(), &mut self.certs) else {
            tracing::warn!("ignoring an unrequested Certificate");
            return;
        };
        match certs.install(&key, &certificate.certificate_pem, &certificate.ca_pem) {
            Ok(expires_at) => {
                self.renew_after = None;
                if certs.renew_at <= Utc::now() {
                    // A lifetime this short would renew in a loop.
                    tracing::warn!(%expires_at, "the renewed certificate is already due for renewal");
                    self.renew_after = Some(Utc::now() + RETRY_AFTER);
                }
                tracing::info!(
                    %expires_at,
                    renew_at = %certs.renew_at,
                    dir = %certs.dir().display(),
                    "agent certificate renewed: used from the next connection on"
                );
            }
            Err(reason) => {
                self.renew_after = Some(Utc::now() + RETRY_AFTER);
                tracing::error!(%reason, "cannot install the renewed agent certificate");
            }
        }
    }

    /// A stream ended while a renewal was outstanding: a refusal postpones the next attempt
    /// (any other end just asks again on the next stream).
    pub(super) fn on_renewal_failure(&mut self, failure: &Failure) {
        if self.renewing.is_some() && failure.is_rejection() {
            tracing::error!(error = %failure, "the control plane refused to renew the certificate");
            self.renew_after = Some(Utc::now() + RETRY_AFTER);
        }
    }
}
