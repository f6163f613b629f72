//! Configuration: clap flags, each with an environment variable, validated at start-up with
//! named errors. Strict mode (`ENV` staging or prod, or `CI_STRICT=1`) refuses set-ups that are
//! only fit for a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use switchyard_telemetry::mask_url;

/// The deployment environment (`ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// A developer's machine.
    Dev,
    /// A staging cluster: strict.
    Staging,
    /// Production: strict.
    Prod,
}

/// Settings shared by every command that opens the store.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://path`) URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Settings of the control plane (`serve`).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    /// The database.
    pub store: StoreArgs,
    /// Redis URL for wake-ups and event fan-out across replicas; without it, one replica only.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several installations can share one Redis.
    #[arg(long, env = "SWITCHYARD_REDIS_PREFIX", default_value = "switchyard:")]
    pub redis_prefix: String,
    /// gRPC listen address.
    #[arg(long, env = "SWITCHYARD_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (REST, dashboard, metrics).
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// The deployment environment; staging and prod turn on strict mode.
    #[arg(long = "env", env = "ENV", value_enum, default_value = "dev")]
    pub environment: Environment,
    /// Strict mode regardless of `ENV` (1 or true).
    #[arg(long, env = "CI_STRICT", default_value = "false", value_parser = parse_flag)]
    pub ci_strict: bool,
    #[command(flatten)]
    /// Identity: token keys and lifetimes, the bootstrap administrator, limits, CORS.
    pub auth: AuthArgs,
    #[command(flatten)]
    /// The agents' stream timings.
    pub agents: AgentTimingArgs,
    #[command(flatten)]
    /// TLS on the gRPC port and the agents' CA.
    pub tls: TlsArgs,
    #[command(flatten)]
    /// Ingest: the artifact store, retention and limits.
    pub ingest: IngestArgs,
    /// Where deployment notifications of tenants without webhooks are written as JSON files
    /// (`<dir>/<tenant>/<event seq>-<notification id>.json`).
    #[arg(
        long,
        env = "SWITCHYARD_NOTIFY_OUTBOX_DIR",
        default_value = "./.switchyard/outbox"
    )]
    pub notify_outbox_dir: PathBuf,
}

/// TLS on the gRPC port, and the CA that enrolls agents (`serve`; `dev` makes its own).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM file of the gRPC server's certificate chain; with `SWITCHYARD_TLS_KEY`, gRPC serves
    /// TLS.
    #[arg(long, env = "SWITCHYARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the gRPC server's private key.
    #[arg(long, env = "SWITCHYARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM file of the CA that agents' client certificates must chain to (the Switchyard CA).
    /// Client certificates are optional per connection; agents' streams require one.
    #[arg(long, env = "SWITCHYARD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM file of that CA's private key: lets this server enroll agents and renew their
    /// certificates.
    #[arg(long, env = "SWITCHYARD_CA_KEY")]
    pub ca_key: Option<PathBuf>,
    /// Lifetime of an agent certificate, in hours; agents renew at two thirds of it.
    #[arg(long, env = "SWITCHYARD_AGENT_CERT_TTL_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub agent_cert_ttl_hours: u64,
    /// Serve plaintext gRPC as well on the TLS port (1 or true).
    #[arg(long, env = "SWITCHYARD_GRPC_PLAINTEXT", default_value = "false", value_parser = parse_flag)]
    pub grpc_plaintext: bool,
    /// Let agents connect with a bearer token (`jobs:write`) instead of a client certificate
    /// [default: only when no client CA is configured].
    #[arg(long, env = "SWITCHYARD_AGENT_TOKENS", value_parser = parse_flag)]
    pub agent_tokens: Option<bool>,
}

impl TlsArgs {
    /// Checks that the files come in the pairs that work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsPairIncomplete);
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::ClientCaWithoutTls);
        }
        if self.ca_key.is_some() && self.tls_client_ca.is_none() {
            return Err(ConfigError::CaKeyWithoutCa);
        }
        Ok(())
    }
}

/// The agents' stream timings, shared by `serve` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct AgentTimingArgs {
    /// How often agents heartbeat; a stream silent for three intervals is closed.
    #[arg(long, env = "SWITCHYARD_AGENT_HEARTBEAT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub agent_heartbeat_seconds: u64,
    /// The lease of every job pushed to an agent, renewed by each heartbeat; at least three
    /// heartbeat intervals.
    #[arg(long, env = "SWITCHYARD_AGENT_LEASE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub agent_lease_seconds: u64,
}

impl AgentTimingArgs {
    /// The stream timings, or an error when the lease does not cover three heartbeats.
    pub fn config(&self) -> Result<switchyard_core::AgentsConfig, ConfigError> {
        if self.agent_lease_seconds < 3 * self.agent_heartbeat_seconds {
            return Err(ConfigError::AgentLeaseTooShort);
        }
        Ok(switchyard_core::AgentsConfig {
            heartbeat_interval: std::time::Duration::from_secs(self.agent_heartbeat_seconds),
            lease: std::time::Duration::from_secs(self.agent_lease_seconds),
            ..Default::default()
        })
    }
}

/// Ingest settings, shared by `serve` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Where artifact content is stored: a directory (or `file:///dir`), an S3-compatible bucket
    /// (`s3://bucket/prefix`, configured by the `AWS_*` variables), an Azure Blob container
    /// (`az://container/prefix`, by the `AZURE_STORAGE_*` ones), or `memory://` (lost at
    /// exit) [default: `<data dir>/artifacts` under `dev`, else ./.switchyard/artifacts].
    #[arg(long, env = "SWITCHYARD_ARTIFACTS_URL")]
    pub artifacts_url: Option<String>,
    /// The pool of the agents that process uploads [default: `ingest`; under `dev`, `local`, the
    /// built-in agent's].
    #[arg(long, env = "SWITCHYARD_INGEST_POOL")]
    pub ingest_pool: Option<String>,
    /// How long artifacts are kept, in seconds (default 30 days).
    #[arg(long, env = "SWITCHYARD_ARTIFACT_RETENTION_SECONDS", default_value_t = 2_592_000,
          value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub artifact_retention_seconds: u64,
    /// How often each replica's sweeper looks for expired artifacts, in seconds.
    #[arg(long, env = "SWITCHYARD_ARTIFACT_SWEEP_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub artifact_sweep_seconds: u64,
    /// The longest an upload may take to send its files, in seconds (default 6 hours). Content
    /// that no record names is an orphan once it is twice as old.
    #[arg(long, env = "SWITCHYARD_UPLOAD_TIMEOUT_SECONDS", default_value_t = 21_600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub upload_timeout_seconds: u64,
    /// How often the artifact store is swept for orphans, in seconds: one replica's turn per
    /// period (default 1 hour).
    #[arg(long, env = "SWITCHYARD_ARTIFACT_ORPHAN_SWEEP_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub artifact_orphan_sweep_seconds: u64,
    /// The largest file of an upload, in MiB.
    #[arg(long, env = "SWITCHYARD_MAX_FILE_MB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_file_mb: u64,
    /// The largest upload (all its files), in MiB.
    #[arg(long, env = "SWITCHYARD_MAX_UPLOAD_MB", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_upload_mb: u64,
}

impl IngestArgs {
    /// Where the artifacts go (`default_dir` unless configured) and ingest's settings, with
    /// uploads processed in `default_pool` unless a pool is configured.
    pub fn plan(
        &self,
        default_dir: &std::path::Path,
        default_pool: &str,
    ) -> (String, switchyard_core::IngestConfig) {
        let location = self
            .artifacts_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| default_dir.display().to_string());
        let config = switchyard_core::IngestConfig {
            pool: self
                .ingest_pool
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| default_pool.to_owned()),
            max_file_bytes: self.max_file_mb << 20,
            max_upload_bytes: self.max_upload_mb << 20,
            retention: std::time::Duration::from_secs(self.artifact_retention_seconds),
            sweep_every: std::time::Duration::from_secs(self.artifact_sweep_seconds),
            upload_timeout: std::time::Duration::from_secs(self.upload_timeout_seconds),
            orphan_sweep_every: std::time::Duration::from_secs(self.artifact_orphan_sweep_seconds),
            ..Default::default()
        };
        (location, config)
    }
}

/// Identity settings, shared by `serve` and `dev`.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// HMAC secret for access tokens (HS256): at least 32 bytes, never a default, in strict
    /// mode. Without it (and without an Ed25519 key) `serve` makes a random one per process
    /// (tokens then die with the process and do not cross replicas) and `dev` keeps one in its
    /// data directory.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of an Ed25519 private key (PKCS#8): sign access tokens with EdDSA instead of
    /// HS256.
    #[arg(long, env = "SWITCHYARD_JWT_ED25519_KEY_FILE")]
    pub jwt_ed25519_key_file: Option<PathBuf>,
    /// The `iss` of access tokens, checked on every request.
    #[arg(long, env = "SWITCHYARD_JWT_ISSUER", default_value = "switchyard")]
    pub jwt_issuer: String,
    /// The `aud` of access tokens, checked on every request.
    #[arg(long, env = "SWITCHYARD_JWT_AUDIENCE", default_value = "switchyard")]
    pub jwt_audience: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "JWT_ACCESS_TTL_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(30..=86_400))]
    pub jwt_access_ttl_seconds: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "JWT_REFRESH_TTL_SECONDS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub jwt_refresh_ttl_seconds: u64,
    /// Seconds a rotated refresh token may still be presented (concurrent refreshes) before a
    /// presentation counts as theft and revokes every token of its log-in.
    #[arg(long, env = "SWITCHYARD_REFRESH_REUSE_GRACE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub refresh_reuse_grace_seconds: u64,
    /// Email of an administrator (tenant `default`) to create at start when it does not exist.
    #[arg(long, env = "SWITCHYARD_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Its password (at least 12 characters). Only used to create it.
    #[arg(long, env = "SWITCHYARD_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Requests per tenant per minute, across replicas (0: no quota).
    #[arg(
        long,
        env = "SWITCHYARD_TENANT_REQUESTS_PER_MINUTE",
        default_value_t = 60_000
    )]
    pub tenant_requests_per_minute: u64,
    /// Failed log-ins allowed per (client address, email) per minute.
    #[arg(
        long,
        env = "SWITCHYARD_LOGIN_FAILURES_PER_MINUTE",
        default_value_t = 10
    )]
    pub login_failures_per_minute: u64,
    /// Browser origins allowed to call the API (CORS), comma-separated, e.g.
    /// `https://ci.example.com`. Empty: same origin only.
    #[arg(long, env = "SWITCHYARD_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
}

fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not an origin: {e}"))?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && !s.ends_with('/');
    if bare {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an origin (scheme://host[:port], no path)"
        ))
    }
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected 1/0 or true/false, got {other:?}")),
    }
}

/// A configuration that must not start, named so operators can search for it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No database configured.
    #[error("DATABASE_URL is required (postgres://user:password@host/db)")]
    DatabaseUrlMissing,
    /// SQLite in strict mode.
    #[error("DATABASE_URL is SQLite ({0}); strict mode ({1}) needs PostgreSQL")]
    DatabaseUrlSqlite(String, String),
    /// A URL that is neither PostgreSQL nor SQLite.
    #[error("DATABASE_URL must start with postgres:// or sqlite: (got {0})")]
    DatabaseUrlScheme(String),
    /// No Redis in strict mode.
    #[error(
        "REDIS_URL is required in strict mode ({0}): replicas share wake-ups and rate limits through it"
    )]
    RedisUrlMissing(String),
    /// A missing, short or well-known JWT secret in strict mode.
    #[error("JWT_SECRET must be at least 32 bytes and not a default value in strict mode ({0})")]
    JwtSecretWeak(String),
    /// An agent lease shorter than three heartbeat intervals.
    #[error(
        "SWITCHYARD_AGENT_LEASE_SECONDS must be at least 3 x SWITCHYARD_AGENT_HEARTBEAT_SECONDS"
    )]
    AgentLeaseTooShort,
    /// A TLS certificate without its key, or the other way round.
    #[error("SWITCHYARD_TLS_CERT and SWITCHYARD_TLS_KEY go together")]
    TlsPairIncomplete,
    /// Client certificates cannot be verified without TLS.
    #[error("SWITCHYARD_TLS_CLIENT_CA needs SWITCHYARD_TLS_CERT and SWITCHYARD_TLS_KEY")]
    ClientCaWithoutTls,
    /// A CA key without the CA certificate it belongs to.
    #[error("SWITCHYARD_CA_KEY needs SWITCHYARD_TLS_CLIENT_CA (the CA certificate)")]
    CaKeyWithoutCa,
}

/// Secrets that ship in examples and must never sign real tokens.
const DEFAULT_SECRETS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "dev",
    "dev-secret",
    "switchyard",
];

impl ServeArgs {
    /// Why strict mode is on (`ENV=prod`, `CI_STRICT=1`), or `None`.
    pub fn strict_reason(&self) -> Option<String> {
        match self.environment {
            Environment::Staging => Some("ENV=staging".to_owned()),
            Environment::Prod => Some("ENV=prod".to_owned()),
            Environment::Dev if self.ci_strict => Some("CI_STRICT=1".to_owned()),
            Environment::Dev => None,
        }
    }

    /// Checks the settings; returns the database URL to open.
    pub fn validate(&self) -> Result<String, ConfigError> {
        self.tls.validate()?;
        let url = self
            .store
            .database_url
            .clone()
            .ok_or(ConfigError::DatabaseUrlMissing)?;
        let is_pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_pg && !url.starts_with("sqlite:") {
            return Err(ConfigError::DatabaseUrlScheme(mask_url(&url)));
        }
        if let Some(reason) = self.strict_reason() {
            if !is_pg {
                return Err(ConfigError::DatabaseUrlSqlite(mask_url(&url), reason));
            }
            if self.redis_url.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::RedisUrlMissing(reason));
            }
            let weak = match self.auth.jwt_secret.as_deref() {
                None => self.auth.jwt_ed25519_key_file.is_none(),
                Some(s) => {
                    s.len() < 32 || DEFAULT_SECRETS.iter().any(|d| s.eq_ignore_ascii_case(d))
                }
            };
            if weak {
                return Err(ConfigError::JwtSecretWeak(reason));
            }
        }
        Ok(url)
    }
}

/// Settings of `switchyard dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Where the embedded database lives.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = ".switchyard")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "SWITCHYARD_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (REST, dashboard).
    #[arg(long, env = "SWITCHYARD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    /// Identity settings.
    pub auth: AuthArgs,
    #[command(flatten)]
    /// The agents' stream timings.
    pub agents: AgentTimingArgs,
    #[command(flatten)]
    /// Ingest: the artifact store, retention and limits.
    pub ingest: IngestArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        db: Option<&str>,
        redis: Option<&str>,
        env: Environment,
        secret: Option<&str>,
    ) -> ServeArgs {
        ServeArgs {
            store: StoreArgs {
                database_url: db.map(str::to_owned),
            },
            redis_url: redis.map(str::to_owned),
            redis_prefix: "switchyard:".into(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            environment: env,
            ci_strict: false,
            auth: AuthArgs {
                jwt_secret: secret.map(str::to_owned),
                jwt_ed25519_key_file: None,
                jwt_issuer: "switchyard".into(),
                jwt_audience: "switchyard".into(),
                jwt_access_ttl_seconds: 900,
                jwt_refresh_ttl_seconds: 604_800,
                refresh_reuse_grace_seconds: 10,
                admin_email: None,
                admin_password: None,
                tenant_requests_per_minute: 60_000,
                login_failures_per_minute: 10,
                cors_origins: Vec::new(),
            },
            agents: AgentTimingArgs {
                agent_heartbeat_seconds: 10,
                agent_lease_seconds: 30,
            },
            tls: TlsArgs {
                tls_cert: None,
                tls_key: None,
                tls_client_ca: None,
                ca_key: None,
                agent_cert_ttl_hours: 168,
                grpc_plaintext: false,
                agent_tokens: None,
            },
            ingest: IngestArgs {
                artifacts_url: None,
                ingest_pool: None,
                artifact_retention_seconds: 2_592_000,
                artifact_sweep_seconds: 60,
                upload_timeout_seconds: 21_600,
                artifact_orphan_sweep_seconds: 3600,
                max_file_mb: 1024,
                max_upload_mb: 4096,
            },
            notify_outbox_dir: PathBuf::from("./.switchyard/outbox"),
        }
    }

    #[test]
    fn the_ingest_pool_defaults_to_the_callers_unless_configured() {
        let mut a = args(Some(PG), None, Environment::Dev, None);
        let dir = std::path::Path::new("/tmp/artifacts");
        assert_eq!(a.ingest.plan(dir, "local").1.pool, "local");
        assert_eq!(a.ingest.plan(dir, "ingest").1.pool, "ingest");
        a.ingest.ingest_pool = Some("uploads".to_owned());
        assert_eq!(a.ingest.plan(dir, "local").1.pool, "uploads");
    }

    #[test]
    fn tls_files_come_in_working_pairs() {
        let path = |p: &str| Some(PathBuf::from(p));
        let mut a = args(Some(PG), None, Environment::Dev, None);
        assert!(a.validate().is_ok());
        a.tls.tls_cert = path("cert.pem");
        assert_eq!(a.validate(), Err(ConfigError::TlsPairIncomplete));
        a.tls.tls_key = path("key.pem");
        assert!(a.validate().is_ok());
        a.tls.ca_key = path("ca.key");
        assert_eq!(a.validate(), Err(ConfigError::CaKeyWithoutCa));
        a.tls.tls_client_ca = path("ca.pem");
        assert!(a.validate().is_ok());
        a.tls.tls_cert = None;
        a.tls.tls_key = None;
        assert_eq!(a.validate(), Err(ConfigError::ClientCaWithoutTls));
    }

    #[test]
    fn an_agent_lease_must_cover_three_heartbeats() {
        let mut timings = args(None, None, Environment::Dev, None).agents;
        assert_eq!(timings.config().unwrap().lease.as_secs(), 30);
        timings.agent_lease_seconds = 29;
        assert!(matches!(
            timings.config(),
            Err(ConfigError::AgentLeaseTooShort)
        ));
    }

    const PG: &str = "postgres://app:hunter2@db/sy";
    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn strict_mode_names_each_problem() {
        use ConfigError::*;
        let prod = Environment::Prod;
        assert_eq!(
            args(None, None, prod, None).validate(),
            Err(DatabaseUrlMissing)
        );
        assert!(matches!(
            args(Some("sqlite://x.db"), Some("redis://r"), prod, Some(GOOD)).validate(),
            Err(DatabaseUrlSqlite(..))
        ));
        assert!(matches!(
            args(Some(PG), None, prod, Some(GOOD)).validate(),
            Err(RedisUrlMissing(_))
        ));
        assert!(matches!(
            args(Some(PG), Some("redis://r"), prod, Some("short")).validate(),
            Err(JwtSecretWeak(_))
        ));
        assert!(matches!(
            args(Some(PG), Some("redis://r"), prod, None).validate(),
            Err(JwtSecretWeak(_))
        ));
        assert_eq!(
            args(Some(PG), Some("redis://r"), prod, Some(GOOD))
                .validate()
                .unwrap(),
            PG
        );
        let mut ci = args(Some("sqlite://x.db"), None, Environment::Dev, None);
        assert!(ci.validate().is_ok(), "not strict by default");
        ci.ci_strict = true;
        assert!(
            matches!(ci.validate(), Err(DatabaseUrlSqlite(_, reason)) if reason == "CI_STRICT=1")
        );
    }

    #[test]
    fn cors_origins_are_bare_origins() {
        assert_eq!(
            parse_origin(" https://ci.example.com:8443 ").unwrap(),
            "https://ci.example.com:8443"
        );
        for bad in [
            "*",
            "ci.example.com",
            "https://ci.example.com/",
            "https://x.io/app",
            "ftp://x.io",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_never_show_passwords() {
        let e = args(
            Some("mysql://app:hunter2@db/x"),
            None,
            Environment::Dev,
            None,
        )
        .validate();
        let msg = e.unwrap_err().to_string();
        assert!(!msg.contains("hunter2") && msg.contains("***"), "{msg}");
    }
}
