//! Agent enrollment (DESIGN §3.5): one-time, expiring registration tokens, scoped to a tenant
//! and a pool and stored as digests, exchanged once for a client certificate signed by the
//! Switchyard CA. The certificate's SPIFFE URI SAN is the agent's identity from then on.

use std::sync::Arc;
use std::time::Duration;

use switchyard_pki::Signer;
use switchyard_store::AgentStore;
use switchyard_types::{
    Agent, AgentCertificate, Enrollment, Error, ErrorKind, Labels, NewRegistrationToken, Principal,
    RegistrationToken, RegistrationTokenId, Result, SpiffeId, Violations,
};
use uuid::Uuid;

use crate::secret::{Secret, new_registration_token, parse_registration_token};

/// How long a registration token stays valid unless its creator says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The shortest validity a token may be given.
pub const MIN_TOKEN_TTL: Duration = Duration::from_secs(1);
/// The longest validity a token may be given.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// An agent just enrolled.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The registered agent (`OFFLINE` until it connects).
    pub agent: Agent,
    /// Its certificate.
    pub certificate: AgentCertificate,
}

/// Registration tokens and enrollment.
#[derive(Clone)]
pub struct Enrollments {
    store: Arc<dyn AgentStore>,
    signer: Option<Signer>,
}

impl Enrollments {
    /// Enrollment over the registry in `store`, signing with `signer` (without one, tokens can
    /// be managed but `enroll` is `FailedPrecondition`).
    pub fn new(store: Arc<dyn AgentStore>, signer: Option<Signer>) -> Self {
        Enrollments { store, signer }
    }

    /// A new registration token for `pool` in the caller's tenant, valid for `ttl`
    /// ([`DEFAULT_TOKEN_TTL`] when `None`): the stored record and the token, which is shown
    /// only now.
    pub async fn create_token(
        &self,
        who: &Principal,
        pool: &str,
        ttl: Option<Duration>,
    ) -> Result<(RegistrationToken, Secret)> {
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL);
        let mut v = Violations::default();
        v.name("pool", pool);
        v.range(
            "ttl_seconds",
            ttl.as_secs(),
            MIN_TOKEN_TTL.as_secs(),
            MAX_TOKEN_TTL.as_secs(),
        );
        v.finish()?;
        let id = Uuid::new_v4();
        let (token, digest) = new_registration_token(id);
        let stored = self
            .store
            .create_registration_token(&NewRegistrationToken {
                id,
                tenant: who.tenant.clone(),
                pool: pool.to_owned(),
                digest,
                created_by: who.subject.clone(),
                ttl,
            })
            .await?;
        tracing::info!(token = %id, pool, by = %who.subject, "registration token created");
        Ok((stored, token))
    }

    /// The caller's tenant's registration tokens, newest first.
    pub async fn list_tokens(&self, who: &Principal) -> Result<Vec<RegistrationToken>> {
        self.store.list_registration_tokens(&who.tenant).await
    }

    /// Revokes one of the caller's tenant's registration tokens.
    pub async fn revoke_token(
        &self,
        who: &Principal,
        id: RegistrationTokenId,
    ) -> Result<RegistrationToken> {
        let token = self
            .store
            .revoke_registration_token(&who.tenant, id)
            .await?;
        tracing::info!(token = %id, by = %who.subject, "registration token revoked");
        Ok(token)
    }

    /// Exchanges `token` for a certificate: registers agent `name` in the token's tenant and
    /// pool and signs the key of `csr` (PKCS #10, DER) for it. The token works once.
    pub async fn enroll(
        &self,
        token: &Secret,
        name: &str,
        labels: Labels,
        csr: &[u8],
    ) -> Result<Enrolled> {
        let Some(signer) = &self.signer else {
            return Err(Error::new(
                ErrorKind::Conflict,
                "this control plane has no CA key to sign agent certificates with \
                 (set SWITCHYARD_CA_KEY)",
            ));
        };
        let mut v = Violations::default();
        v.key("name", name, 128);
        v.labels("labels", &labels);
        if csr.is_empty() || csr.len() > 16 * 1024 {
            v.add(
                "csr",
                "must be a DER certificate signing request of at most 16 KiB",
            );
        }
        v.finish()?;
        let (id, digest) = parse_registration_token(token.expose()).ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthenticated,
                "the registration token is not valid",
            )
        })?;
        // The request is checked before the token is spent.
        switchyard_pki::verify_csr(csr).map_err(|e| Error::invalid("csr", e.to_string()))?;
        let (token, agent) = self
            .store
            .enroll_agent(&Enrollment {
                token: id,
                digest,
                name: name.to_owned(),
                labels,
            })
            .await?;
        let identity = SpiffeId {
            tenant: token.tenant.clone(),
            pool: token.pool.clone(),
            agent: agent.id,
        };
        let certificate = signer.certify(&identity, csr)?;
        tracing::info!(agent = %agent.id, name = %agent.name, pool = %agent.pool, tenant = %agent.tenant, token = %id, "agent enrolled");
        Ok(Enrolled { agent, certificate })
    }
}
