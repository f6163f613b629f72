//! Certificates for Switchyard's agents (DESIGN §3.5):
//!
//! * [`Authority`]: the Switchyard CA. It signs an agent's certificate from the agent's own
//!   certificate signing request (the private key never leaves the agent), with the agent's
//!   identity as a SPIFFE URI SAN ([`SpiffeId`]); and, for `switchyard dev` and tests, a server
//!   certificate.
//! * [`AgentKey`]: an agent's key pair and its signing request.
//! * [`agent_identity`], [`validity`]: what a certificate says.
//! * [`server_config`]: the gRPC port's TLS configuration, client certificates optional per
//!   connection (agents present one, people and CI use bearer tokens).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
    SanType, SerialNumber,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_types::{AgentCertificate, SpiffeId};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

/// How far back a new certificate's validity starts, for clocks that disagree a little.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How long a generated CA is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What can go wrong with a certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A certificate, key or signing request could not be parsed or produced.
    #[error("{what}: {source}")]
    Certificate {
        /// What was being read or made.
        what: &'static str,
        /// The cause.
        source: rcgen::Error,
    },
    /// The input is well-formed but unusable.
    #[error("{0}")]
    Invalid(String),
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn rcgen_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Certificate { what, source }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The Switchyard certificate authority: a CA certificate and its key.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA (ECDSA P-256, valid ten years) named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(rcgen_error("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial());
        (params.not_before, params.not_after) = window(CA_LIFETIME);
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_error("signing the CA certificate"))?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of a certificate and its private key, both PEM. The key must be the
    /// certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rcgen_error("reading the CA key"))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Invalid(format!("reading the CA certificate: {e}")))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| PkiError::Invalid(format!("reading the CA certificate: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::Invalid(
                "the CA key does not belong to the CA certificate".to_owned(),
            ));
        }
        if !cert.is_ca() {
            return Err(PkiError::Invalid(
                "the CA certificate is not a CA (basicConstraints CA:TRUE is missing)".to_owned(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(rcgen_error("reading the CA certificate"))?;
        Ok(Authority {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA in the files `cert` and `key` (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let cert_pem = std::fs::read_to_string(cert).map_err(io_error(cert))?;
        let key_pem = std::fs::read_to_string(key).map_err(io_error(key))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// The CA kept in `dir` (`ca.pem`, `ca.key`), created there on first use: the local CA of
    /// `switchyard dev`. The key file is readable by its owner only.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert.exists() && key.exists() {
            return Self::load(&cert, &key);
        }
        let ca = Self::generate("Switchyard local CA")?;
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        write_private(&key, &ca.issuer.key().serialize_pem())?;
        std::fs::write(&cert, &ca.cert_pem).map_err(io_error(&cert))?;
        Ok(ca)
    }

    /// The CA certificate, PEM: what agents and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs an agent's certificate for `identity`, valid for `ttl`, over the public key of
    /// `csr_der` (a PKCS #10 request, DER, whose signature proves the agent holds the key).
    /// Everything else the request asks for is ignored: the identity is the CA's to say.
    pub fn issue_agent(
        &self,
        csr_der: &[u8],
        identity: &SpiffeId,
        ttl: Duration,
    ) -> Result<AgentCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(rcgen_error("reading the certificate signing request"))?;
        let uri = identity
            .to_string()
            .try_into()
            .map_err(rcgen_error("the agent identity"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&identity.agent.to_string());
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = window(ttl);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(rcgen_error("signing the agent certificate"))?;
        Ok(AgentCertificate {
            cert_pem: cert.pem(),
            ca_pem: self.cert_pem.clone(),
            expires_at: to_chrono(params.not_after),
            identity: identity.clone(),
        })
    }

    /// A server certificate for `hosts` (DNS names or IP addresses) valid for `ttl`, with a
    /// new key: `(certificate PEM, key PEM)`. For `switchyard dev` and tests; production
    /// servers use the operator's certificates.
    pub fn issue_server(
        &self,
        hosts: &[&str],
        ttl: Duration,
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(rcgen_error("generating a server key"))?;
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params =
            CertificateParams::new(hosts.clone()).map_err(rcgen_error("the server names"))?;
        params.distinguished_name = name(hosts.first().map_or("switchyard", String::as_str));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = window(ttl);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(rcgen_error("signing the server certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The CA that signs agents' certificates, and for how long: what enrollment and renewal use.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The CA.
    pub authority: Arc<Authority>,
    /// The lifetime of every agent certificate.
    pub cert_ttl: Duration,
}

impl Signer {
    /// A certificate for `identity` over the key of `csr` (PKCS #10, DER); a request that does
    /// not parse or verify is `InvalidArgument` on field `csr`.
    pub fn certify(
        &self,
        identity: &SpiffeId,
        csr: &[u8],
    ) -> switchyard_types::Result<AgentCertificate> {
        self.authority
            .issue_agent(csr, identity, self.cert_ttl)
            .map_err(|e| switchyard_types::Error::invalid("csr", e.to_string()))
    }
}

/// Checks that `csr_der` is a PKCS #10 request whose signature verifies (its signer holds the
/// key it names).
pub fn verify_csr(csr_der: &[u8]) -> Result<(), PkiError> {
    CertificateSigningRequestParams::from_der(&csr_der.into())
        .map(drop)
        .map_err(rcgen_error("reading the certificate signing request"))
}

/// The DER of the certificate signing request in `pem`.
pub fn csr_from_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
    rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| PkiError::Invalid(format!("not a PEM certificate signing request: {e}")))
}

/// An agent's key pair (ECDSA P-256); the private key stays on the agent.
pub struct AgentKey(KeyPair);

impl std::fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentKey(***)")
    }
}

impl AgentKey {
    /// A new key.
    pub fn generate() -> Result<Self, PkiError> {
        KeyPair::generate()
            .map(AgentKey)
            .map_err(rcgen_error("generating the agent key"))
    }

    /// The key in `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, PkiError> {
        KeyPair::from_pem(pem)
            .map(AgentKey)
            .map_err(rcgen_error("reading the agent key"))
    }

    /// The private key, PEM (PKCS #8).
    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// A certificate signing request for this key, DER. The CA decides the identity, so the
    /// request names none.
    pub fn csr_der(&self) -> Result<Vec<u8>, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name("switchyard-agent");
        let csr = params
            .serialize_request(&self.0)
            .map_err(rcgen_error("making the certificate signing request"))?;
        Ok(csr.der().to_vec())
    }
}

/// The first certificate in `pem`, DER.
fn first_cert(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Invalid(format!("not a PEM certificate: {e}")))
}

/// The Switchyard agent identity a certificate (DER) names in its URI SAN, if any.
pub fn agent_identity(cert_der: &[u8]) -> Option<SpiffeId> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| {
        if let GeneralName::URI(uri) = name {
            uri.parse().ok()
        } else {
            None
        }
    })
}

/// The Switchyard agent identity of the first certificate in `pem`.
pub fn agent_identity_pem(pem: &str) -> Result<SpiffeId, PkiError> {
    agent_identity(&first_cert(pem)?).ok_or_else(|| {
        PkiError::Invalid("the certificate names no Switchyard agent (spiffe URI SAN)".to_owned())
    })
}

/// When the first certificate in `pem` starts and stops being valid.
pub fn validity(pem: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), PkiError> {
    let der = first_cert(pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::Invalid(format!("reading the certificate: {e}")))?;
    let at = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or_default()
    };
    Ok((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

/// The TLS configuration of the gRPC port: this server certificate chain and key (PEM), HTTP/2
/// only, and, when `client_ca_pem` is given, client certificates verified against it — optional
/// per connection, but a certificate that is presented must be valid (signed by that CA, in its
/// validity period, for client authentication).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Invalid(format!("reading the server certificate: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Invalid(
            "the server certificate file holds no certificate".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::Invalid(format!("reading the server key: {e}")))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                let cert =
                    cert.map_err(|e| PkiError::Invalid(format!("reading the client CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| PkiError::Tls(format!("the client CA: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Tls(format!("the client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| PkiError::Tls(format!("the server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Writes `contents` to `path`, readable and writable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(contents.as_bytes()).map_err(io_error(path))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn serial() -> SerialNumber {
    // 122 random bits, positive.
    let mut bytes = uuid::Uuid::new_v4().into_bytes().to_vec();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// `now - CLOCK_SKEW .. now + ttl`.
fn window(ttl: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (now - CLOCK_SKEW, now + ttl)
}

fn to_chrono(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), 0).unwrap_or_default()
}

#[cfg(test)]
mod tests;
