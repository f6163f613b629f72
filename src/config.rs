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
    /// HMAC secret for access tokens: at least 32 bytes, never a default, in strict mode.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
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
            let weak = match self.jwt_secret.as_deref() {
                None => true,
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
            jwt_secret: secret.map(str::to_owned),
        }
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
