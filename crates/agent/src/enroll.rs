//! Enrollment: a one-time registration token buys a client certificate for a key made here
//! (only its signing request leaves the machine), saved in the agent's certificate directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_pki::AgentKey;
use switchyard_proto::v1::EnrollRequest;
use switchyard_proto::v1::agent_service_client::AgentServiceClient;

use crate::certs;
use crate::config::AgentError;
use crate::dial::{self, error_chain};

/// How long the server gets to answer `Enroll`.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`enroll`] needs. Its `Debug` form hides the token.
#[derive(Clone)]
pub struct EnrollSettings {
    /// The control plane's gRPC address: `https://…` (then `ca_file` is needed), or `http://…`
    /// against a server that serves plaintext (`switchyard dev`).
    pub server: String,
    /// The registration token (`syt_…`), as `switchyard admin` or the API created it.
    pub token: String,
    /// The agent's name, unique in its tenant.
    pub name: String,
    /// Labels it offers.
    pub labels: BTreeMap<String, String>,
    /// The CA certificate (PEM) that signed the server's certificate: the trust anchor of an
    /// `https://` server.
    pub ca_file: Option<PathBuf>,
    /// Where to save `agent.key` (mode 0600), `agent.pem` and `ca.pem`; created (mode 0700)
    /// if missing.
    pub cert_dir: PathBuf,
    /// Whether to replace an agent enrolled in `cert_dir` already.
    pub force: bool,
}

impl fmt::Debug for EnrollSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollSettings")
            .field("server", &self.server)
            .field("token", &"***")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("ca_file", &self.ca_file)
            .field("cert_dir", &self.cert_dir)
            .field("force", &self.force)
            .finish()
    }
}

/// An agent [`enroll`] registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledAgent {
    /// Its id in the registry.
    pub agent_id: String,
    /// Its pool (the registration token's).
    pub pool: String,
    /// Its identity, `spiffe://switchyard/tenant/T/pool/P/agent/A`.
    pub spiffe_id: String,
    /// When its certificate expires (the running agent renews it before).
    pub expires_at: DateTime<Utc>,
    /// Where the key and the certificates were saved.
    pub cert_dir: PathBuf,
}

/// Enrolls an agent: makes a key, exchanges the registration token and a signing request for a
/// certificate (`AgentService.Enroll`), and saves the key (mode 0600), the certificate and the
/// CA certificate in `cert_dir`. Refuses to replace the key of an agent enrolled there already
/// unless `force`, before contacting the server (so the token stays unused).
///
/// Errors: the server's refusal with its message ([`AgentError::EnrollRefused`]:
/// `UNAUTHENTICATED` for a token that is not valid, used, revoked or expired, `ALREADY_EXISTS`
/// for a name that is taken), an unreachable server, a bad CA file or address, files that
/// cannot be written.
pub async fn enroll(settings: EnrollSettings) -> Result<EnrolledAgent, AgentError> {
    let EnrollSettings {
        server,
        token,
        name,
        labels,
        ca_file,
        cert_dir,
        force,
    } = settings;
    let key_path = cert_dir.join(certs::KEY_FILE);
    if !force && key_path.exists() {
        return Err(AgentError::AlreadyEnrolled { path: key_path });
    }
    let ca = ca_file.as_deref().map(dial::read_ca_file).transpose()?;
    let endpoint = dial::endpoint(&server, ca.as_deref())?;
    if endpoint.uri().scheme_str() != Some("https") {
        tracing::warn!(%server, "enrolling over plaintext: the registration token is not encrypted");
    }
    certs::create_dir(&cert_dir).map_err(AgentError::Enrollment)?;
    let failed = |what: &str, e: &dyn fmt::Display| AgentError::Enrollment(format!("{what}: {e}"));
    let key = AgentKey::generate().map_err(|e| failed("making the key", &e))?;
    let csr = key
        .csr_der()
        .map_err(|e| failed("making the signing request", &e))?;

    let unreachable = |reason: String| AgentError::Unreachable {
        server: server.clone(),
        reason,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let mut request = tonic::Request::new(EnrollRequest {
        token,
        name,
        labels,
        csr,
    });
    request.set_timeout(ENROLL_TIMEOUT);
    let mut client = AgentServiceClient::new(channel);
    let response = tokio::time::timeout(ENROLL_TIMEOUT, client.enroll(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", ENROLL_TIMEOUT.as_secs())))?
        .map_err(|status| AgentError::EnrollRefused {
            server: server.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        })?
        .into_inner();

    let certificate = response
        .certificate
        .ok_or_else(|| AgentError::Enrollment("the answer holds no certificate".to_owned()))?;
    let (identity, _, expires_at) = certs::inspect(&certificate.certificate_pem)
        .map_err(|e| failed("the certificate received", &e))?;
    switchyard_pki::validity(&certificate.ca_pem)
        .map_err(|e| failed("the CA certificate received", &e))?;
    certs::write_all(
        &cert_dir,
        &key,
        &certificate.certificate_pem,
        &certificate.ca_pem,
    )
    .map_err(AgentError::Enrollment)?;
    let agent_id = response
        .agent
        .map(|agent| agent.id)
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| identity.agent.to_string());
    tracing::debug!(%agent_id, identity = %identity, %expires_at, dir = %cert_dir.display(), "agent enrolled");
    Ok(EnrolledAgent {
        agent_id,
        pool: identity.pool.clone(),
        spiffe_id: identity.to_string(),
        expires_at,
        cert_dir,
    })
}
