//! Wiring of identity: the token keys (from config, or kept in the data directory by `dev`),
//! the identity service, the auth gate both edges share, the bootstrap administrator, and the
//! artifact grants of ingest jobs (signed with the same keys).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use switchyard_auth::layer::Gate;
use switchyard_auth::limits::{LoginLimiter, TenantQuota};
use switchyard_auth::{Identity, IdentityConfig, Secret, TokenIssuer, TokenKeys};
use switchyard_bus::Counters;
use switchyard_core::ingest::ArtifactGrants;
use switchyard_store::IdentityStore;
use switchyard_types::{ArtifactGrant, Principal};

use crate::config::AuthArgs;

/// The administrator `switchyard dev` creates when none is configured.
pub const DEV_ADMIN_EMAIL: &str = "admin@switchyard.local";

/// How identity is set up for one process.
#[derive(Debug, Clone)]
pub struct AuthPlan {
    /// The settings.
    pub args: AuthArgs,
    /// `switchyard dev`'s data directory: keeps the token secret and a generated admin
    /// password there, and lets requests without credentials act as the dev administrator.
    pub dev_data_dir: Option<PathBuf>,
}

/// Identity, ready to serve.
pub struct Wired {
    /// The identity service.
    pub identity: Identity,
    /// The auth layer's decisions, shared by gRPC and REST.
    pub gate: Arc<Gate>,
    /// The tenant quota, whose flusher the caller runs.
    pub quota: Option<TenantQuota>,
    /// In `dev`: the administrator's email and where its password is (`None`: in
    /// `SWITCHYARD_ADMIN_PASSWORD`), to print how to log in.
    pub dev_admin: Option<(String, Option<PathBuf>)>,
    /// The artifact grants of ingest jobs, for the agents service and ingest.
    pub grants: Arc<dyn ArtifactGrants>,
}

/// Artifact grants signed and checked with the access tokens' keys (under their own audience,
/// see [`TokenIssuer::issue_grant`]). An adapter here, so the domain does not depend on the
/// auth crate nor the auth crate on the domain.
struct TokenGrants(Arc<TokenIssuer>);

impl ArtifactGrants for TokenGrants {
    fn issue(&self, grant: &ArtifactGrant, ttl: Duration) -> switchyard_types::Result<String> {
        self.0.issue_grant(grant, ttl)
    }

    fn verify(&self, grant: &str) -> switchyard_types::Result<ArtifactGrant> {
        self.0.verify_grant(grant)
    }
}

/// Builds identity over `store`, counting rate limits in `counters`, and makes sure the
/// configured (or, in `dev`, generated) administrator exists.
pub async fn wire(
    plan: &AuthPlan,
    store: Arc<dyn IdentityStore>,
    counters: Arc<dyn Counters>,
    agent_tokens: bool,
) -> anyhow::Result<Wired> {
    let args = &plan.args;
    let keys = token_keys(plan)?;
    let issuer = Arc::new(TokenIssuer::new(
        keys,
        args.jwt_issuer.clone(),
        args.jwt_audience.clone(),
        Duration::from_secs(args.jwt_access_ttl_seconds),
    ));
    let identity = Identity::new(
        store,
        issuer.clone(),
        LoginLimiter::new(counters.clone(), args.login_failures_per_minute),
        IdentityConfig {
            refresh_ttl: Duration::from_secs(args.jwt_refresh_ttl_seconds),
            refresh_grace: Duration::from_secs(args.refresh_reuse_grace_seconds),
        },
    );
    let quota = (args.tenant_requests_per_minute > 0)
        .then(|| TenantQuota::new(counters, args.tenant_requests_per_minute));
    let mut gate = Gate::new(identity.clone(), quota.clone()).with_agent_tokens(agent_tokens);
    if plan.dev_data_dir.is_some() {
        gate = gate.with_anonymous(Principal::dev());
    }
    let dev_admin = bootstrap_admin(plan, &identity).await?;
    Ok(Wired {
        identity,
        gate: Arc::new(gate),
        quota,
        dev_admin,
        grants: Arc::new(TokenGrants(issuer)),
    })
}

fn token_keys(plan: &AuthPlan) -> anyhow::Result<TokenKeys> {
    let args = &plan.args;
    if let Some(path) = &args.jwt_ed25519_key_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the Ed25519 key {}", path.display()))?;
        return TokenKeys::ed25519_pem(&pem).context("SWITCHYARD_JWT_ED25519_KEY_FILE");
    }
    if let Some(secret) = &args.jwt_secret {
        return TokenKeys::hs256(secret.as_bytes()).context("JWT_SECRET");
    }
    let secret = match &plan.dev_data_dir {
        Some(dir) => kept_secret(&dir.join("jwt-secret"), 48)?,
        None => {
            tracing::warn!(
                "JWT_SECRET is not set: signing tokens with a random secret of this process; \
                 they stop working when it restarts and are not accepted by other replicas"
            );
            random_token(48)
        }
    };
    TokenKeys::hs256(secret.as_bytes()).context("generated JWT secret")
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The secret in `path`, made (readable by this user only) when missing.
fn kept_secret(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned());
        }
    }
    let secret = random_token(bytes);
    write_private(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

async fn bootstrap_admin(
    plan: &AuthPlan,
    identity: &Identity,
) -> anyhow::Result<Option<(String, Option<PathBuf>)>> {
    let args = &plan.args;
    let (email, password, generated) = match (&args.admin_email, &args.admin_password) {
        (Some(email), Some(password)) => (email.clone(), Secret::new(password.clone()), None),
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "SWITCHYARD_ADMIN_EMAIL and SWITCHYARD_ADMIN_PASSWORD must be set together"
        ),
        (None, None) => match &plan.dev_data_dir {
            Some(dir) => {
                let path = dir.join("admin-password");
                let password = kept_secret(&path, 18)?;
                (
                    DEV_ADMIN_EMAIL.to_owned(),
                    Secret::new(password),
                    Some(path),
                )
            }
            None => return Ok(None),
        },
    };
    let created = identity
        .ensure_admin(&email, &password)
        .await
        .context("creating the administrator")?;
    if created {
        tracing::info!(%email, "administrator created in tenant default");
    }
    Ok(plan.dev_data_dir.is_some().then_some((email, generated)))
}

/// How to log in to `dev`, for stdout (never the log): the password itself is not printed,
/// only where it is.
pub fn dev_login_hint(email: &str, password_file: Option<&Path>, http: SocketAddr) -> String {
    let password = match password_file {
        Some(path) => format!("$(cat {})", path.display()),
        None => "$SWITCHYARD_ADMIN_PASSWORD".to_owned(),
    };
    format!(
        "switchyard dev: administrator {email} (tenant default); requests without a token act as it.\n\
         log in:  curl -s http://{http}/auth/session -H 'content-type: application/json' \
         -d \"{{\\\"email\\\":\\\"{email}\\\",\\\"password\\\":\\\"{password}\\\"}}\"\n\
         or:      switchyard login --email {email}"
    )
}
