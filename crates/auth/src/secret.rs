//! Opaque high-entropy secrets: refresh tokens and API keys. Only their SHA-256 digests are
//! stored; the secrets themselves are shown to the client once and never logged.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use switchyard_types::{ApiKeyId, RegistrationTokenId};
use uuid::Uuid;

/// The prefix of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "syr_";

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "sya_";

/// The prefix of every agent registration token.
pub const REGISTRATION_TOKEN_PREFIX: &str = "syt_";

/// Random bytes in a refresh token or in an API key's secret part (256 bits).
const SECRET_BYTES: usize = 32;

/// Length of [`SECRET_BYTES`] as unpadded base64url.
const SECRET_B64_LEN: usize = 43;

/// Length of a UUID in its simple (32 hex digits) form.
const ID_HEX_LEN: usize = 32;

/// A secret string (a refresh token or a full API key). `Debug` and `Display` print `***`; the
/// value is only reachable through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, to hand to the client once (or to digest).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SHA-256 of `s`: what the store keeps instead of a refresh token or an API key's secret part.
pub fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether two digests are equal, in constant time.
pub fn digests_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// 32 random bytes as unpadded base64url (43 characters).
fn random_part() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new refresh token: `syr_` followed by 32 random bytes as unpadded base64url.
pub fn new_refresh_token() -> Secret {
    Secret(format!("{REFRESH_TOKEN_PREFIX}{}", random_part()))
}

/// A new API key for `id`: `sya_<id as 32 hex digits>_<32 random bytes as base64url>`. Returns
/// the full key (shown once) and the digest of its secret part (stored).
pub fn new_api_key(id: ApiKeyId) -> (Secret, [u8; 32]) {
    new_keyed(API_KEY_PREFIX, id)
}

/// Splits an API key into its id and the digest of its secret part. `None` for anything that is
/// not exactly the format [`new_api_key`] produces; never panics.
pub fn parse_api_key(key: &str) -> Option<(ApiKeyId, [u8; 32])> {
    parse_keyed(API_KEY_PREFIX, key)
}

/// A new agent registration token for `id`, in the format of [`new_api_key`] with the prefix
/// `syt_`: the token (shown once) and the digest of its secret part (stored).
pub fn new_registration_token(id: RegistrationTokenId) -> (Secret, [u8; 32]) {
    new_keyed(REGISTRATION_TOKEN_PREFIX, id)
}

/// Splits a registration token into its id and the digest of its secret part; `None` for
/// anything [`new_registration_token`] does not produce.
pub fn parse_registration_token(token: &str) -> Option<(RegistrationTokenId, [u8; 32])> {
    parse_keyed(REGISTRATION_TOKEN_PREFIX, token)
}

/// `<prefix><id as 32 hex digits>_<32 random bytes as base64url>` and the secret part's digest.
fn new_keyed(prefix: &str, id: Uuid) -> (Secret, [u8; 32]) {
    let secret_part = random_part();
    let hash = digest(&secret_part);
    (
        Secret(format!("{prefix}{}_{secret_part}", id.simple())),
        hash,
    )
}

/// The id and secret digest of a [`new_keyed`] string with `prefix`.
fn parse_keyed(prefix: &str, key: &str) -> Option<(Uuid, [u8; 32])> {
    let rest = key.strip_prefix(prefix)?;
    // `get` returns `None` (never panics) when the index is not on a character boundary.
    let id_hex = rest.get(..ID_HEX_LEN)?;
    let secret_part = rest.get(ID_HEX_LEN..)?.strip_prefix('_')?;

    let lower_hex = id_hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower_hex {
        return None;
    }
    let id = Uuid::try_parse(id_hex).ok()?;

    if secret_part.len() != SECRET_B64_LEN {
        return None;
    }
    // The decoder rejects characters outside the base64url alphabet and non-canonical trailing
    // bits, so each secret has exactly one spelling.
    let decoded = URL_SAFE_NO_PAD.decode(secret_part).ok()?;
    if decoded.len() != SECRET_BYTES {
        return None;
    }
    Some((id, digest(secret_part)))
}

/// Whether a bearer credential looks like an API key (rather than an access token).
pub fn is_api_key(bearer: &str) -> bool {
    bearer.starts_with(API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_b64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn refresh_token_format() {
        let a = new_refresh_token();
        let b = new_refresh_token();
        let body = a.expose().strip_prefix("syr_").expect("prefix");
        assert_eq!(body.len(), 43);
        assert!(is_b64url(body));
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(!is_api_key(a.expose()));
    }

    #[test]
    fn api_key_format_and_parse_round_trip() {
        let id = Uuid::now_v7();
        let (key, hash) = new_api_key(id);
        let key = key.expose();
        assert!(is_api_key(key));
        assert_eq!(key.len(), 4 + 32 + 1 + 43);
        let rest = key.strip_prefix("sya_").unwrap();
        assert_eq!(&rest[..32], id.simple().to_string());
        assert_eq!(&rest[32..33], "_");
        let secret_part = &rest[33..];
        assert!(is_b64url(secret_part));
        assert_eq!(hash, digest(secret_part));

        let (parsed_id, parsed_hash) = parse_api_key(key).expect("valid key");
        assert_eq!(parsed_id, id);
        assert!(digests_match(&parsed_hash, &hash));

        let (_, other_hash) = new_api_key(id);
        assert!(!digests_match(&other_hash, &hash));
    }

    #[test]
    fn registration_tokens_are_not_api_keys() {
        let id = Uuid::new_v4();
        let (token, hash) = new_registration_token(id);
        let token = token.expose();
        assert!(token.starts_with("syt_"));
        assert_eq!(parse_registration_token(token), Some((id, hash)));
        assert_eq!(parse_api_key(token), None);
        let (key, _) = new_api_key(id);
        assert_eq!(parse_registration_token(key.expose()), None);
    }

    #[test]
    fn malformed_api_keys_are_none() {
        let id = Uuid::now_v7();
        let (key, _) = new_api_key(id);
        let key = key.expose().to_owned();
        let secret_part = key[37..].to_owned();
        let hex = id.simple().to_string();
        assert!(parse_api_key(&key).is_some(), "baseline must parse");

        let cases: Vec<String> = vec![
            String::new(),
            "sya_".into(),
            "sya".into(),
            format!("syr_{hex}_{secret_part}"),
            format!("SYA_{hex}_{secret_part}"),
            format!("sya_{}_{secret_part}", hex.to_uppercase()),
            format!("sya_{}g_{secret_part}", &hex[..31]),
            format!("sya_{}_{secret_part}", &hex[..31]),
            format!("sya_{hex}{secret_part}"),
            format!("sya_{hex}_"),
            format!("sya_{hex}"),
            format!("sya_{hex}-{secret_part}"),
            format!("sya_{}_{secret_part}", id.hyphenated()),
            format!("sya_{hex}_{}", &secret_part[..42]),
            format!("sya_{hex}_{secret_part}A"),
            format!("sya_{hex}_{}+", &secret_part[..42]),
            format!("sya_{hex}_{}=", &secret_part[..42]),
            format!("sya_{hex}_{}é", &secret_part[..41]),
            format!("sya_é{}_{secret_part}", &hex[..30]),
            format!("sya_{}é_{secret_part}", &hex[..31]),
            "sya_ééééééééééééééééééééééééééééééééééé".into(),
            format!(" {key}"),
            format!("{key} "),
        ];
        for case in &cases {
            assert_eq!(parse_api_key(case), None, "{case:?}");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // 43 base64url characters carry 258 bits; the last 2 must be zero. 'B' sets them.
        let hex = Uuid::now_v7().simple().to_string();
        let canonical = format!("sya_{hex}_{}", "A".repeat(43));
        assert!(parse_api_key(&canonical).is_some());
        let non_canonical = format!("sya_{hex}_{}B", "A".repeat(42));
        assert_eq!(parse_api_key(&non_canonical), None);
    }

    #[test]
    fn digest_is_sha256() {
        let expected = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(digest(""), expected);
        assert!(digests_match(&digest("x"), &digest("x")));
        assert!(!digests_match(&digest("x"), &digest("y")));
    }

    #[test]
    fn secrets_are_redacted() {
        let token = new_refresh_token();
        let raw = token.expose().to_owned();
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{:?}", Some(&token)), "Some(***)");
        assert!(!format!("{token:?} {token} {token:#?}").contains(&raw[4..]));
        assert_eq!(Secret::new("hunter2").expose(), "hunter2");
    }
}
