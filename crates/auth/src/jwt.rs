//! Access tokens: short-lived JWTs signed with HS256 or Ed25519 (EdDSA), verified with the
//! algorithm pinned by the configured key, required `exp`/`nbf`/`iat`/`iss`/`aud`/`sub`, the
//! tenant and known scopes, and 30 s of clock leeway.
//!
//! Artifact grants ([`TokenIssuer::issue_grant`]): JWTs signed with the same keys that let the
//! agent running an ingest job fetch that job's artifacts. Their audience is the access tokens'
//! with [`GRANT_AUDIENCE_SUFFIX`] appended, so a grant never passes as an access token, nor an
//! access token as a grant.

use std::fmt;
use std::time::Duration;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchyard_types::{
    ArtifactGrant, Error, ErrorKind, Principal, PrincipalKind, ScopeSet, TenantId,
};
use uuid::Uuid;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The one message every rejected token gets: it says nothing about why.
const INVALID_TOKEN: &str = "invalid or expired token";

/// What an artifact grant's audience adds to the access tokens' audience.
pub const GRANT_AUDIENCE_SUFFIX: &str = ":artifact-grant";

/// The one message every rejected artifact grant gets.
const INVALID_GRANT: &str = "invalid or expired artifact grant";

/// The `kind` claim of a user's token.
const KIND_USER: &str = "user";
/// The `kind` claim of a token minted for an API key.
const KIND_API_KEY: &str = "api_key";

/// The signature algorithm of a [`TokenKeys`]; tokens signed any other way are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// Ed25519 signatures (JWS `EdDSA`).
    EdDsa,
}

/// The keys access tokens are signed and verified with. The key decides the one accepted
/// algorithm. `Debug` never prints key material.
#[derive(Clone)]
pub struct TokenKeys {
    algorithm: KeyAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key_pem: Option<String>,
}

impl TokenKeys {
    /// HS256 with `secret`, which must be at least 32 bytes (`InvalidArgument` otherwise).
    pub fn hs256(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(Error::invalid(
                "jwt_secret",
                format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
            ));
        }
        Ok(TokenKeys {
            algorithm: KeyAlgorithm::Hs256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            public_key_pem: None,
        })
    }

    /// Ed25519 from a PKCS#8 private key PEM (`-----BEGIN PRIVATE KEY-----`, as written by
    /// `openssl genpkey -algorithm ed25519`). The verifying key is derived from it.
    pub fn ed25519_pem(pem: &[u8]) -> Result<Self, Error> {
        let invalid = || Error::invalid("jwt_key", "must be an Ed25519 private key in PKCS#8 PEM");
        let pem = std::str::from_utf8(pem).map_err(|_| invalid())?;
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|_| invalid())?;
        let verifying = signing.verifying_key();
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| Error::internal(format!("encoding the Ed25519 key: {e}")))?;
        let public_key_pem = verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::internal(format!("encoding the Ed25519 public key: {e}")))?;
        Ok(TokenKeys {
            algorithm: KeyAlgorithm::EdDsa,
            // jsonwebtoken signs with a PKCS#8 DER private key and verifies with the raw
            // 32-byte public key.
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(verifying.as_bytes()),
            public_key_pem: Some(public_key_pem),
        })
    }

    /// The algorithm tokens are signed and verified with.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The Ed25519 public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), for verifiers
    /// elsewhere; `None` for HS256, whose key is secret.
    pub fn public_key_pem(&self) -> Option<&str> {
        self.public_key_pem.as_deref()
    }

    fn jwt_algorithm(&self) -> Algorithm {
        match self.algorithm {
            KeyAlgorithm::Hs256 => Algorithm::HS256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The claims of a Switchyard access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the installation's configured issuer.
    pub iss: String,
    /// Audience: the installation's configured audience.
    pub aud: String,
    /// Subject: the user id or API key id.
    pub sub: String,
    /// The tenant every request with this token acts in.
    pub tenant: String,
    /// Granted scopes, as wire names (`jobs:read`, …).
    pub scopes: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The credential it stands for: `user` or `api_key`.
    pub kind: String,
}

/// The claims of an artifact grant: the job (`sub`) and its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GrantClaims {
    iss: String,
    aud: String,
    /// The job id.
    sub: String,
    tenant: String,
    /// The job's attempt the grant was assigned for.
    attempt: u32,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

/// A freshly signed access token. `Debug` hides the token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWT, for the `Authorization: Bearer` header.
    pub token: String,
    /// How long it is valid from now.
    pub expires_in: Duration,
    /// Its `jti` claim.
    pub jti: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"***")
            .field("expires_in", &self.expires_in)
            .field("jti", &self.jti)
            .finish()
    }
}

/// Issues and verifies access tokens for one issuer and audience. Everything `verify` needs is
/// built once in [`TokenIssuer::new`]; it runs on every request.
pub struct TokenIssuer {
    keys: TokenKeys,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    header: Header,
    validation: Validation,
    grant_validation: Validation,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer signing with `keys` as `issuer` for `audience`; its tokens live `access_ttl`
    /// (whole seconds).
    pub fn new(
        keys: TokenKeys,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        access_ttl: Duration,
    ) -> Self {
        let issuer = issuer.into();
        let audience = audience.into();
        let alg = keys.jwt_algorithm();

        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = LEEWAY_SECONDS;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[issuer.as_str()]);
        validation.set_audience(&[audience.as_str()]);
        // jsonwebtoken ignores "iat" here; `AccessClaims::iat` is not optional, so a token
        // without it fails to deserialize, and `verify` checks it is not in the future.
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let mut grant_validation = validation.clone();
        grant_validation.set_audience(&[grant_audience(&audience)]);

        TokenIssuer {
            header: Header::new(alg),
            keys,
            issuer,
            audience,
            access_ttl,
            validation,
            grant_validation,
        }
    }

    /// The lifetime of the tokens it issues.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Signs an access token for `subject` in `tenant` with `scopes`. `kind` must be
    /// [`PrincipalKind::User`] or [`PrincipalKind::ApiKey`]; other kinds never get tokens.
    pub fn issue(
        &self,
        subject: &str,
        tenant: &TenantId,
        scopes: ScopeSet,
        kind: PrincipalKind,
    ) -> Result<IssuedToken, Error> {
        let kind = match kind {
            PrincipalKind::User => KIND_USER,
            PrincipalKind::ApiKey => KIND_API_KEY,
            PrincipalKind::Agent | PrincipalKind::Dev => {
                return Err(Error::internal(format!(
                    "access tokens are not issued for {kind:?} principals"
                )));
            }
        };
        if subject.is_empty() {
            return Err(Error::internal("access token subject is empty"));
        }
        let ttl_secs = self.access_ttl.as_secs();
        let now = chrono::Utc::now().timestamp();
        let jti = Uuid::now_v7().to_string();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_owned(),
            tenant: tenant.as_str().to_owned(),
            scopes: scopes.names(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
            jti: jti.clone(),
            kind: kind.to_owned(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.keys.encoding)
            .map_err(|e| Error::internal(format!("signing an access token: {e}")))?;
        Ok(IssuedToken {
            token,
            expires_in: Duration::from_secs(ttl_secs),
            jti,
        })
    }

    /// Verifies an access token and returns its principal. Any failure — bad signature, other
    /// algorithm, expired, not yet valid, wrong issuer or audience, missing or malformed claim,
    /// unknown scope or kind — is `Unauthenticated` with one generic message.
    pub fn verify(&self, token: &str) -> Result<Principal, Error> {
        self.check(token).map_err(|reason| {
            // The reason only; never the token.
            tracing::debug!(reason, "access token rejected");
            Error::new(ErrorKind::Unauthenticated, INVALID_TOKEN)
        })
    }

    fn check(&self, token: &str) -> Result<Principal, &'static str> {
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.keys.decoding, &self.validation)
                .map_err(|e| jwt_reason(e.kind()))?;
        let claims = data.claims;

        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(i64::MAX);
        if claims.iat > now.saturating_add(leeway) {
            return Err("iat in the future");
        }
        if claims.sub.is_empty() {
            return Err("empty sub");
        }
        let tenant = TenantId::parse(&claims.tenant).map_err(|_| "invalid tenant")?;
        let scopes = ScopeSet::parse("scopes", claims.scopes.iter().map(String::as_str))
            .map_err(|_| "unknown scope")?;
        let kind = match claims.kind.as_str() {
            KIND_USER => PrincipalKind::User,
            KIND_API_KEY => PrincipalKind::ApiKey,
            _ => return Err("unknown kind"),
        };
        Ok(Principal {
            tenant,
            subject: claims.sub,
            scopes,
            kind,
        })
    }
}

impl TokenIssuer {
    /// Signs `grant` (one attempt of a job of a tenant), valid for `ttl` (whole seconds).
    pub fn issue_grant(&self, grant: &ArtifactGrant, ttl: Duration) -> Result<String, Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = GrantClaims {
            iss: self.issuer.clone(),
            aud: grant_audience(&self.audience),
            sub: grant.job.to_string(),
            tenant: grant.tenant.as_str().to_owned(),
            attempt: grant.attempt,
            iat: now,
            nbf: now,
            exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: Uuid::now_v7().to_string(),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.keys.encoding)
            .map_err(|e| Error::internal(format!("signing an artifact grant: {e}")))
    }

    /// The tenant, job and attempt an artifact grant names. Any failure — bad signature, other
    /// algorithm, expired, wrong issuer or audience (an access token), missing or malformed
    /// claim — is `PermissionDenied` with one generic message.
    pub fn verify_grant(&self, grant: &str) -> Result<ArtifactGrant, Error> {
        self.check_grant(grant).map_err(|reason| {
            tracing::debug!(reason, "artifact grant rejected");
            Error::new(ErrorKind::PermissionDenied, INVALID_GRANT)
        })
    }

    fn check_grant(&self, grant: &str) -> Result<ArtifactGrant, &'static str> {
        let claims =
            jsonwebtoken::decode::<GrantClaims>(grant, &self.keys.decoding, &self.grant_validation)
                .map_err(|e| jwt_reason(e.kind()))?
                .claims;
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(i64::MAX);
        if claims.iat > chrono::Utc::now().timestamp().saturating_add(leeway) {
            return Err("iat in the future");
        }
        let tenant = TenantId::parse(&claims.tenant).map_err(|_| "invalid tenant")?;
        let job = claims.sub.parse().map_err(|_| "invalid job")?;
        Ok(ArtifactGrant {
            tenant,
            job,
            attempt: claims.attempt,
        })
    }
}

/// The audience of the artifact grants of an installation whose access tokens have `audience`.
fn grant_audience(audience: &str) -> String {
    format!("{audience}{GRANT_AUDIENCE_SUFFIX}")
}

/// A loggable reason for a jsonwebtoken error, without any part of the token (its JSON and
/// base64 errors may quote it).
fn jwt_reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidToken => "malformed token",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            "algorithm not allowed"
        }
        K::MissingRequiredClaim(_) => "missing required claim",
        K::InvalidClaimFormat(_) => "malformed claim",
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not yet valid",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidAudience => "wrong audience",
        K::InvalidSubject => "wrong subject",
        K::Base64(_) => "bad base64",
        K::Json(_) => "bad JSON or missing claim",
        K::Utf8(_) => "bad UTF-8",
        K::InvalidEcdsaKey
        | K::InvalidEddsaKey
        | K::InvalidRsaKey(_)
        | K::RsaFailedSigning
        | K::Signing(_)
        | K::InvalidKeyFormat
        | K::MissingAlgorithm
        | K::Provider(_) => "key or provider error",
        // `ErrorKind` is `#[non_exhaustive]`: future variants.
        _ => "other token error",
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use jsonwebtoken::{EncodingKey, Header};
    use rand::RngCore as _;
    use serde_json::{Value, json};
    use switchyard_types::{JobId, Scope};

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
    const ISS: &str = "https://switchyard.test";
    const AUD: &str = "switchyard-api";

    fn hs_issuer() -> TokenIssuer {
        TokenIssuer::new(
            TokenKeys::hs256(SECRET).unwrap(),
            ISS,
            AUD,
            Duration::from_secs(900),
        )
    }

    fn ed_private_pem() -> String {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// Claims `hs_issuer` accepts.
    fn good_claims() -> Value {
        let now = now();
        json!({
            "iss": ISS,
            "aud": AUD,
            "sub": "user-1",
            "tenant": "acme",
            "scopes": ["jobs:read", "jobs:write"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": Uuid::new_v4().to_string(),
            "kind": "user",
        })
    }

    fn sign_hs(claims: &Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn assert_rejected(issuer: &TokenIssuer, token: &str) {
        let err = issuer.verify(token).expect_err("token must be rejected");
        assert_eq!(err.kind, ErrorKind::Unauthenticated);
        assert_eq!(err.message, INVALID_TOKEN);
        assert!(token.len() < 8 || !err.message.contains(token));
    }

    /// The baseline claims pass; the same claims changed by `mutate` (and signed with the same
    /// key) are rejected. So each negative test fails if the check it is about is missing.
    fn assert_mutation_rejected(mutate: impl FnOnce(&mut Value)) {
        let issuer = hs_issuer();
        let mut claims = good_claims();
        issuer
            .verify(&sign_hs(&claims, SECRET))
            .expect("baseline claims are accepted");
        mutate(&mut claims);
        assert_rejected(&issuer, &sign_hs(&claims, SECRET));
    }

    #[test]
    fn hs256_round_trip() {
        let issuer = hs_issuer();
        let tenant = TenantId::parse("acme").unwrap();
        let scopes = ScopeSet::of(&[Scope::JobsRead, Scope::DeploymentsPromote]);
        let issued = issuer
            .issue("user-1", &tenant, scopes, PrincipalKind::User)
            .unwrap();
        assert_eq!(issued.expires_in, Duration::from_secs(900));
        assert!(!format!("{issued:?}").contains(&issued.token));

        let principal = issuer.verify(&issued.token).unwrap();
        assert_eq!(
            principal,
            Principal {
                tenant,
                subject: "user-1".into(),
                scopes,
                kind: PrincipalKind::User,
            }
        );

        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        let claims: AccessClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(&issued.token).unwrap();
        assert_eq!(claims.iat, claims.nbf);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.jti, issued.jti);
        assert_eq!(claims.kind, "user");
        assert_eq!(claims.iss, ISS);
        assert_eq!(claims.aud, AUD);
        assert_eq!(claims.scopes, ["jobs:read", "deployments:promote"]);

        let key = issuer
            .issue(
                "key-1",
                &TenantId::parse("acme").unwrap(),
                scopes,
                PrincipalKind::ApiKey,
            )
            .unwrap();
        assert_ne!(key.jti, issued.jti);
        assert_eq!(
            issuer.verify(&key.token).unwrap().kind,
            PrincipalKind::ApiKey
        );
    }

    #[test]
    fn ed25519_round_trip() {
        let keys = TokenKeys::ed25519_pem(ed_private_pem().as_bytes()).unwrap();
        assert_eq!(keys.algorithm(), KeyAlgorithm::EdDsa);
        assert!(
            keys.public_key_pem()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert!(!format!("{keys:?}").contains("PRIVATE"));
        let issuer = TokenIssuer::new(keys, ISS, AUD, Duration::from_secs(300));
        let tenant = TenantId::parse("acme").unwrap();
        let scopes = ScopeSet::of(&[Scope::Admin]);
        let issued = issuer
            .issue("user-2", &tenant, scopes, PrincipalKind::User)
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&issued.token).unwrap().alg,
            Algorithm::EdDSA
        );
        let principal = issuer.verify(&issued.token).unwrap();
        assert_eq!(principal.subject, "user-2");
        assert_eq!(principal.tenant, tenant);
        assert_eq!(principal.scopes, scopes);

        // Another Ed25519 key does not verify it.
        let other = TokenIssuer::new(
            TokenKeys::ed25519_pem(ed_private_pem().as_bytes()).unwrap(),
            ISS,
            AUD,
            Duration::from_secs(300),
        );
        assert_rejected(&other, &issued.token);
    }

    #[test]
    fn bad_keys_are_invalid_argument() {
        let err = TokenKeys::hs256(&[7u8; 31]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(TokenKeys::hs256(&[7u8; 32]).is_ok());
        for pem in [&b"not a pem"[..], b"\xff\xfe", b""] {
            let err = TokenKeys::ed25519_pem(pem).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument);
        }
        // A public key is not a private key.
        let keys = TokenKeys::ed25519_pem(ed_private_pem().as_bytes()).unwrap();
        let public = keys.public_key_pem().unwrap().to_owned();
        assert_eq!(
            TokenKeys::ed25519_pem(public.as_bytes()).unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn issuing_for_agents_or_dev_fails() {
        let issuer = hs_issuer();
        let tenant = TenantId::default_tenant();
        for kind in [PrincipalKind::Agent, PrincipalKind::Dev] {
            assert!(issuer.issue("x", &tenant, ScopeSet::EMPTY, kind).is_err());
        }
    }

    #[test]
    fn alg_none_is_rejected() {
        let issuer = hs_issuer();
        let claims = good_claims();
        issuer.verify(&sign_hs(&claims, SECRET)).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_rejected(&issuer, &format!("{header}.{payload}."));
        // Nor with the HS256 signature of the same payload attached.
        let signed = sign_hs(&claims, SECRET);
        let signature = signed.rsplit('.').next().unwrap();
        assert_rejected(&issuer, &format!("{header}.{payload}.{signature}"));
    }

    #[test]
    fn hs256_signed_with_the_ed25519_public_key_is_rejected() {
        let keys = TokenKeys::ed25519_pem(ed_private_pem().as_bytes()).unwrap();
        let public_pem = keys.public_key_pem().unwrap().to_owned();
        let issuer = TokenIssuer::new(keys, ISS, AUD, Duration::from_secs(300));
        let claims = good_claims();
        let genuine = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &issuer.keys.encoding,
        )
        .unwrap();
        issuer.verify(&genuine).expect("baseline is accepted");
        assert_rejected(&issuer, &sign_hs(&claims, public_pem.as_bytes()));
    }

    #[test]
    fn expired_beyond_leeway_is_rejected() {
        assert_mutation_rejected(|c| {
            let now = now();
            c["iat"] = json!(now - 3600);
            c["nbf"] = json!(now - 3600);
            c["exp"] = json!(now - 31 - 5);
        });
    }

    #[test]
    fn expired_within_leeway_is_accepted() {
        let issuer = hs_issuer();
        let mut claims = good_claims();
        let now = now();
        claims["iat"] = json!(now - 900);
        claims["nbf"] = json!(now - 900);
        claims["exp"] = json!(now - 15);
        let principal = issuer.verify(&sign_hs(&claims, SECRET)).unwrap();
        assert_eq!(principal.subject, "user-1");
    }

    #[test]
    fn nbf_beyond_leeway_is_rejected() {
        assert_mutation_rejected(|c| c["nbf"] = json!(now() + 31 + 5));
    }

    #[test]
    fn iat_beyond_leeway_is_rejected() {
        assert_mutation_rejected(|c| c["iat"] = json!(now() + 31 + 5));
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        assert_mutation_rejected(|c| c["iss"] = json!("https://evil.test"));
    }

    #[test]
    fn wrong_audience_is_rejected() {
        assert_mutation_rejected(|c| c["aud"] = json!("someone-else"));
    }

    #[test]
    fn missing_claims_are_rejected() {
        for claim in [
            "tenant", "scopes", "exp", "nbf", "iat", "iss", "aud", "sub", "kind",
        ] {
            assert_mutation_rejected(|c| {
                c.as_object_mut().unwrap().remove(claim);
            });
        }
    }

    #[test]
    fn invalid_tenant_is_rejected() {
        assert_mutation_rejected(|c| c["tenant"] = json!("Not A Tenant"));
    }

    #[test]
    fn unknown_scope_is_rejected() {
        assert_mutation_rejected(|c| c["scopes"] = json!(["jobs:read", "root"]));
    }

    #[test]
    fn unknown_kind_is_rejected() {
        assert_mutation_rejected(|c| c["kind"] = json!("agent"));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let issuer = hs_issuer();
        let issued = issuer
            .issue(
                "user-1",
                &TenantId::parse("acme").unwrap(),
                ScopeSet::of(&[Scope::JobsRead]),
                PrincipalKind::User,
            )
            .unwrap();
        issuer.verify(&issued.token).unwrap();
        let mut parts = issued.token.split('.');
        let (header, payload, signature) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["scopes"] = json!(["admin"]);
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        assert_rejected(&issuer, &format!("{header}.{forged}.{signature}"));
    }

    #[test]
    fn signed_with_another_secret_is_rejected() {
        let issuer = hs_issuer();
        let claims = good_claims();
        issuer.verify(&sign_hs(&claims, SECRET)).unwrap();
        assert_rejected(
            &issuer,
            &sign_hs(&claims, b"another-secret-of-at-least-32-bytes!!"),
        );
    }

    /// A grant for attempt 1 of a fresh job of `acme`.
    fn grant() -> ArtifactGrant {
        ArtifactGrant {
            tenant: TenantId::parse("acme").unwrap(),
            job: JobId::new(),
            attempt: 1,
        }
    }

    fn assert_grant_rejected(issuer: &TokenIssuer, grant: &str) {
        let err = issuer
            .verify_grant(grant)
            .expect_err("grant must be rejected");
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
        assert_eq!(err.message, INVALID_GRANT);
    }

    #[test]
    fn grants_round_trip_with_both_key_kinds() {
        let ed = TokenKeys::ed25519_pem(ed_private_pem().as_bytes()).unwrap();
        for issuer in [
            hs_issuer(),
            TokenIssuer::new(ed, ISS, AUD, Duration::from_secs(60)),
        ] {
            let scope = ArtifactGrant {
                attempt: 3,
                ..grant()
            };
            let grant = issuer
                .issue_grant(&scope, Duration::from_secs(120))
                .unwrap();
            assert_eq!(issuer.verify_grant(&grant).unwrap(), scope);
            let claims: GrantClaims =
                jsonwebtoken::dangerous::insecure_decode_claims(&grant).unwrap();
            assert_eq!(claims.aud, format!("{AUD}:artifact-grant"));
            assert_eq!(claims.exp - claims.iat, 120);
        }
    }

    #[test]
    fn a_grant_is_not_an_access_token_nor_the_reverse() {
        let issuer = hs_issuer();
        let tenant = TenantId::parse("acme").unwrap();
        let grant = issuer
            .issue_grant(&grant(), Duration::from_secs(120))
            .unwrap();
        assert_rejected(&issuer, &grant);
        let access = issuer
            .issue(
                "user-1",
                &tenant,
                ScopeSet::of(&[Scope::JobsWrite]),
                PrincipalKind::User,
            )
            .unwrap();
        assert_grant_rejected(&issuer, &access.token);
        // Nor do the access claims pass when signed with the grant's audience: `sub` is no job.
        let mut claims = good_claims();
        claims["aud"] = json!(format!("{AUD}:artifact-grant"));
        assert_grant_rejected(&issuer, &sign_hs(&claims, SECRET));
    }

    #[test]
    fn expired_tampered_or_foreign_grants_are_rejected() {
        let issuer = hs_issuer();
        let now = now();
        let scope = grant();
        let claims = |exp: i64| {
            json!({
                "iss": ISS, "aud": format!("{AUD}:artifact-grant"), "sub": scope.job.to_string(),
                "tenant": "acme", "attempt": 1, "iat": now - 600, "nbf": now - 600, "exp": exp,
                "jti": Uuid::new_v4().to_string(),
            })
        };
        issuer
            .verify_grant(&sign_hs(&claims(now + 60), SECRET))
            .expect("baseline is accepted");
        assert_grant_rejected(&issuer, &sign_hs(&claims(now - 31 - 5), SECRET));
        assert_grant_rejected(
            &issuer,
            &sign_hs(&claims(now + 60), b"another-secret-of-at-least-32-bytes!!"),
        );
        // Without an attempt (a grant of an earlier version) it is refused.
        let mut unscoped = claims(now + 60);
        unscoped.as_object_mut().unwrap().remove("attempt");
        assert_grant_rejected(&issuer, &sign_hs(&unscoped, SECRET));
        // Another job, tenant or attempt in the payload, under the original signature.
        let grant = issuer.issue_grant(&scope, Duration::from_secs(60)).unwrap();
        let mut parts = grant.split('.');
        let (header, payload, signature) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        for (claim, value) in [
            ("sub", json!(JobId::new().to_string())),
            ("tenant", json!("other")),
            ("attempt", json!(2)),
        ] {
            let mut forged: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
            forged[claim] = value;
            let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
            assert_grant_rejected(&issuer, &format!("{header}.{forged}.{signature}"));
        }
        for garbage in ["", "a.b.c", "Bearer x"] {
            assert_grant_rejected(&issuer, garbage);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        let issuer = hs_issuer();
        for token in ["", "a", "a.b", "a.b.c", "...", "Bearer x.y.z"] {
            assert_rejected(&issuer, token);
        }
    }
}
