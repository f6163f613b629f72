//! Identity for Switchyard (DESIGN §3.8): signing and verifying access JWTs ([`jwt`]), hashing
//! passwords with argon2id ([`password`]), minting opaque refresh tokens and API keys
//! ([`secret`]), the identity operations ([`service`]: log-in, refresh rotation, API keys,
//! tenants, users, roles), rate limits ([`limits`]), the table of who may call what
//! ([`policy`]) and the one tower layer both edges authenticate with ([`layer`]).
//!
//! Every credential a caller presents — an access token or an API key, over gRPC or REST — ends
//! up as one [`switchyard_types::Principal`]; handlers see only that, never the credential.
//! Secrets never reach logs: [`Secret`] prints as `***`, and verification failures carry one
//! generic message.

pub mod enrollment;
pub mod jwt;
pub mod layer;
pub mod limits;
pub mod password;
pub mod policy;
pub mod secret;
pub mod service;

pub use enrollment::{Enrolled, Enrollments};
pub use jwt::{
    AccessClaims, GRANT_AUDIENCE_SUFFIX, IssuedToken, KeyAlgorithm, LEEWAY_SECONDS, TokenIssuer,
    TokenKeys,
};
pub use password::{hash_password, validate_password, verify_dummy, verify_password};
pub use secret::{
    API_KEY_PREFIX, REFRESH_TOKEN_PREFIX, REGISTRATION_TOKEN_PREFIX, Secret, digest, digests_match,
    is_api_key, new_api_key, new_refresh_token, new_registration_token, parse_api_key,
    parse_registration_token,
};
pub use service::{CreatedApiKey, Identity, IdentityConfig, Session, UserSpec};
