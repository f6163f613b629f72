//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane) as PHC strings,
//! and password rules.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore as _;
use switchyard_types::Error;

/// Memory cost in KiB (OWASP: m = 19456 KiB).
const M_COST_KIB: u32 = 19_456;
/// Passes (OWASP: t = 2).
const T_COST: u32 = 2;
/// Lanes (OWASP: p = 1).
const P_COST: u32 = 1;
/// Salt length in bytes.
const SALT_BYTES: usize = 16;

/// The shortest password accepted, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 12;
/// The longest password accepted, in bytes (bounds the hashing work a request can cause).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The hash [`verify_dummy`] checks against: argon2id with the same parameters as
/// [`hash_password`], of a random password nobody knows. A test keeps the parameters in step.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$Y5mo5TLXxrjOm0r3Btj8+w$ct5JYyo3M2CQz+Euy1SxDlpjyZkXxL7nXpOTTb47jaY";

/// [`DUMMY_PHC`], parsed once.
static DUMMY_HASH: LazyLock<Option<PasswordHash<'static>>> =
    LazyLock::new(|| PasswordHash::new(DUMMY_PHC).ok());

/// The hasher with the OWASP parameters.
fn argon2() -> Result<Argon2<'static>, Error> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with argon2id (m = 19456 KiB, t = 2, p = 1) and a random 16-byte salt;
/// returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| Error::internal(format!("argon2 salt: {e}")))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::internal(format!("argon2 hashing: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. `false` for a wrong password and for any
/// malformed or unsupported hash.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    verify_parsed(password, &hash)
}

fn verify_parsed(password: &str, hash: &PasswordHash<'_>) -> bool {
    // Verification uses the parameters recorded in the hash, not those of the hasher.
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), hash).is_ok())
}

/// Spends as long as [`verify_password`] against a real hash and always fails: call it when the
/// user does not exist, so that an unknown email and a wrong password take the same time.
pub fn verify_dummy(password: &str) {
    if let Some(hash) = DUMMY_HASH.as_ref() {
        let _ = std::hint::black_box(verify_parsed(password, hash));
    }
}

/// `Ok` when `password` is 12 to 1024 bytes long, else `InvalidArgument` on `field`. The message
/// never contains the password.
pub fn validate_password(field: &str, password: &str) -> Result<(), Error> {
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes long"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use switchyard_types::ErrorKind;

    use super::*;

    #[test]
    fn hash_and_verify_round_trip() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("", &phc));

        // A fresh salt every time.
        let again = hash_password("correct horse battery staple").unwrap();
        assert_ne!(phc, again);
        assert!(verify_password("correct horse battery staple", &again));
    }

    #[test]
    fn malformed_hashes_are_false() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(verify_password("correct horse battery staple", &phc));
        let truncated = &phc[..phc.len() - 4];
        let other_algorithm = phc.replacen("$argon2id$", "$scrypt$", 1);
        for bad in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
            truncated,
            other_algorithm.as_str(),
        ] {
            assert!(
                !verify_password("correct horse battery staple", bad),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dummy_hash_is_valid_with_the_same_parameters() {
        let dummy = DUMMY_HASH.as_ref().expect("DUMMY_PHC parses");
        let real_phc = hash_password("correct horse battery staple").unwrap();
        let real = PasswordHash::new(&real_phc).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.salt.map(|s| s.len()), real.salt.map(|s| s.len()));
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(!verify_password("correct horse battery staple", DUMMY_PHC));
        verify_dummy("correct horse battery staple");
    }

    #[test]
    fn password_length_rules() {
        assert!(validate_password("password", "twelve bytes").is_ok());
        assert!(validate_password("password", &"x".repeat(1024)).is_ok());
        for bad in ["", "elevenbytes", &"y".repeat(1025)] {
            let err = validate_password("password", bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument);
            assert_eq!(err.violations[0].field, "password");
            if !bad.is_empty() {
                assert!(!err.message.contains(bad));
                assert!(!err.violations[0].description.contains(bad));
            }
        }
        // Bytes, not characters: 6 two-byte characters are 12 bytes.
        assert!(validate_password("password", "éééééé").is_ok());
        assert!(validate_password("password", "ééééé").is_err());
    }
}
