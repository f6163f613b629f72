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
    /// Control-plane gRPC addresses (`http://127.0.0.1:50051`), tried in turn.
    pub servers: Vec<String>,
    /// Bearer credential (an API key `sya_…` or an access JWT), sent as `authorization: Bearer …`
    /// on `Connect`.
    pub token: Option<String>,
    /// The agent's name (`Hello.name`), kept across restarts.
    pub name: String,
    /// The pool it takes work from.
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

/// Why the agent could not start. Connection failures are not errors: the agent retries them
/// until it is shut down.
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
