//! What the agent is told at start ([`AgentConfig`]) and what can stop it from starting
//! ([`AgentError`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Jobs an agent may run at once, as `Hello.capacity` allows (1-1000).
const CAPACITY: std::ops::RangeInclusive<u32> = 1..=1000;

/// How an agent connects, who it is and how it runs jobs. Its `Debug` form hides the token.
#[derive(Clone)]
pub struct AgentConfig {
    /// Control-plane gRPC addresses (`http://127.0.0.1:50051`, `https://cp.example:50051`),
    /// tried in turn. With [`cert_dir`](Self::cert_dir) they must all be `https://`.
    pub servers: Vec<String>,
    /// Bearer credential (an API key `sya_…` or an access JWT), sent as `authorization: Bearer …`
    /// on `Connect`. Ignored (with a warning) when [`cert_dir`](Self::cert_dir) is set.
    pub token: Option<String>,
    /// The enrolled agent's certificate directory (`agent.key`, `agent.pem`, `ca.pem`, as
    /// [`enroll`](crate::enroll) writes them). When set, the agent connects with mutual TLS,
    /// presenting that certificate (read afresh at every dial), sends no token, takes its pool
    /// from the certificate and renews the certificate over the stream.
    pub cert_dir: Option<PathBuf>,
    /// A CA certificate file (PEM) to trust for `https://` servers: needed by a token agent
    /// behind TLS; with [`cert_dir`](Self::cert_dir) it is trusted besides the directory's
    /// `ca.pem` (for servers whose certificate another CA signed).
    pub ca_file: Option<PathBuf>,
    /// The agent's name (`Hello.name`), kept across restarts. With a certificate the server
    /// knows the agent by the certificate's identity and ignores it.
    pub name: String,
    /// The pool it takes work from. With [`cert_dir`](Self::cert_dir), empty means the
    /// certificate's pool, and any other value must be it (the agent refuses to start
    /// otherwise).
    pub pool: String,
    /// Labels it offers.
    pub labels: BTreeMap<String, String>,
    /// Jobs it runs at once (1-1000).
    pub capacity: u32,
    /// A JSON object `{"NAME": "value", …}` of the secrets jobs may name; none when unset.
    pub secrets_file: Option<PathBuf>,
    /// On shutdown, how long running jobs get to finish before they are killed.
    pub shutdown_grace: Duration,
    /// Default working directory of shell jobs (a relative job `workdir` is taken from here).
    pub workdir: PathBuf,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("servers", &self.servers)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("cert_dir", &self.cert_dir)
            .field("ca_file", &self.ca_file)
            .field("name", &self.name)
            .field("pool", &self.pool)
            .field("labels", &self.labels)
            .field("capacity", &self.capacity)
            .field("secrets_file", &self.secrets_file)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("workdir", &self.workdir)
            .finish()
    }
}

/// Why the agent could not start, or could not enroll. Connection failures of a running agent
/// are not errors: it retries them until it is shut down.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `servers` is empty.
    #[error("no control-plane server configured")]
    NoServers,
    /// A server address is not a URL tonic can dial.
    #[error("invalid server address {url:?}: {reason}")]
    InvalidServer {
        /// The address as configured.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The token cannot travel as gRPC metadata (not visible ASCII). The token itself is never
    /// part of the message.
    #[error("the agent token is not a valid metadata value (visible ASCII only)")]
    InvalidToken,
    /// `capacity` is outside 1-1000.
    #[error("capacity must be 1-1000, got {0}")]
    InvalidCapacity(u32),
    /// No pool is configured, and no certificate names one.
    #[error("no pool configured")]
    NoPool,
    /// A client certificate travels only over TLS.
    #[error("server address {url:?} is not https://: a client certificate (cert dir) needs TLS")]
    CertificateNeedsTls {
        /// The address as configured.
        url: String,
    },
    /// An `https://` server, and no CA to verify its certificate with.
    #[error(
        "server address {url:?} is https://, but no CA certificate to trust is given (a CA file)"
    )]
    NoTrustAnchor {
        /// The address as configured.
        url: String,
    },
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate directory is incomplete or holds something unusable.
    #[error("certificate directory {dir}: {reason}")]
    CertificateDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent's certificate has expired: only a new enrollment helps.
    #[error(
        "the agent certificate in {dir} expired at {expired_at}: re-enroll with `switchyard agent enroll`"
    )]
    CertificateExpired {
        /// The directory.
        dir: PathBuf,
        /// When it expired.
        expired_at: chrono::DateTime<chrono::Utc>,
    },
    /// The configured pool is not the one the certificate names (the server would refuse it).
    #[error(
        "pool {configured:?} is configured, but the agent certificate is for pool {certificate:?} (leave the pool unset to use the certificate's)"
    )]
    PoolMismatch {
        /// The pool configured.
        configured: String,
        /// The pool in the certificate.
        certificate: String,
    },
    /// Enrolling would replace the key of an agent enrolled already.
    #[error("{path} exists: this directory holds an enrolled agent (replace it with --force)")]
    AlreadyEnrolled {
        /// The existing key file.
        path: PathBuf,
    },
    /// The server could not be reached for enrollment.
    #[error("cannot connect to {server}: {reason}")]
    Unreachable {
        /// The server's address.
        server: String,
        /// Why.
        reason: String,
    },
    /// The server refused the enrollment (`UNAUTHENTICATED`: the token is not valid, was used,
    /// revoked or expired; `ALREADY_EXISTS`: the name is taken; …), with the server's message.
    #[error("{server} refused the enrollment: {code:?}: {message}")]
    EnrollRefused {
        /// The server's address.
        server: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// Enrollment failed on this side: the key, the answer, or writing the files.
    #[error("enrollment failed: {0}")]
    Enrollment(String),
    /// The secrets file could not be read.
    #[error("cannot read secrets file {path}: {source}")]
    SecretsUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secrets file is not a JSON object of strings. The position is given, never the
    /// content, which could hold a secret.
    #[error(
        "secrets file {path} is not a JSON object of string values (line {line}, column {column})"
    )]
    SecretsMalformed {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped (1-based).
        line: usize,
        /// Where the parser stopped (1-based).
        column: usize,
    },
}

impl AgentConfig {
    /// Checks what can be checked before connecting.
    pub(crate) fn validate(&self) -> Result<(), AgentError> {
        if self.servers.is_empty() {
            return Err(AgentError::NoServers);
        }
        if !CAPACITY.contains(&self.capacity) {
            return Err(AgentError::InvalidCapacity(self.capacity));
        }
        if self.pool.is_empty() && self.cert_dir.is_none() {
            return Err(AgentError::NoPool);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig {
            servers: vec!["http://127.0.0.1:1".into()],
            token: None,
            cert_dir: None,
            ca_file: None,
            name: "a".into(),
            pool: "p".into(),
            labels: BTreeMap::new(),
            capacity: 1,
            secrets_file: None,
            shutdown_grace: Duration::from_secs(1),
            workdir: PathBuf::from("."),
        }
    }

    #[test]
    fn servers_and_capacity_are_checked() {
        assert!(config().validate().is_ok());
        let none = AgentConfig {
            servers: vec![],
            ..config()
        };
        assert!(matches!(none.validate(), Err(AgentError::NoServers)));
        for bad in [0, 1001] {
            let c = AgentConfig {
                capacity: bad,
                ..config()
            };
            assert!(matches!(c.validate(), Err(AgentError::InvalidCapacity(n)) if n == bad));
        }
        let no_pool = AgentConfig {
            pool: String::new(),
            ..config()
        };
        assert!(matches!(no_pool.validate(), Err(AgentError::NoPool)));
        let from_certificate = AgentConfig {
            cert_dir: Some(PathBuf::from("/certs")),
            ..no_pool
        };
        assert!(from_certificate.validate().is_ok());
    }

    #[test]
    fn debug_hides_the_token() {
        let c = AgentConfig {
            token: Some("sya_very_secret".into()),
            ..config()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
        assert!(shown.contains("***"));
    }
}
