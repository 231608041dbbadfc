//! Password hashing and bearer-token helpers.
//!
//! Passwords are hashed with argon2id (the `argon2` crate's default
//! parameters) into PHC strings. Session and API tokens are 32 random bytes,
//! URL-safe base64 behind a short prefix; only their SHA-256 hex is stored, so
//! a database leak yields no usable token. Hashing a password takes tens of
//! milliseconds of CPU: async callers should run it on a blocking thread.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hashing a password failed (only possible with a broken argon2 setup).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordHashError(argon2::password_hash::Error);

/// Hashes `password` with argon2id and a fresh random salt, as a PHC string
/// (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(PasswordHashError)
}

/// Whether `password` matches the PHC string `password_hash`. A malformed
/// hash never matches. The comparison inside is constant-time.
pub fn verify_password(password: &str, password_hash: &str) -> bool {
    PasswordHash::new(password_hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Checks a log-in attempt so that an unknown user costs as much time as a
/// wrong password: with no stored hash, the password is verified against a
/// dummy hash and `false` is returned.
pub fn verify_login_password(password: &str, stored_password_hash: Option<&str>) -> bool {
    static DUMMY_PASSWORD_HASH: OnceLock<String> = OnceLock::new();
    match stored_password_hash {
        Some(password_hash) => verify_password(password, password_hash),
        None => {
            let dummy = DUMMY_PASSWORD_HASH
                .get_or_init(|| hash_password(&generate_token("dummy")).unwrap_or_default());
            let _ = verify_password(password, dummy);
            false
        }
    }
}

/// Compares two secrets (tokens, CSRF values) without stopping at the first
/// difference, so the time taken does not tell how much of a guess was right.
pub fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// A new random bearer token: `{prefix}_` followed by 32 random bytes in
/// URL-safe base64 without padding (43 characters), for example
/// `generate_token("pc")` gives `pc_3q2-Vb...`.
pub fn generate_token(prefix: &str) -> String {
    let mut random_bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random_bytes);
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random_bytes))
}

/// The SHA-256 hex of a token: what the store keeps and looks tokens up by.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a phc string"));
        assert!(verify_login_password("correct horse", Some(&hash)));
        assert!(!verify_login_password("correct horse", None));
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let first = generate_token("pc");
        let second = generate_token("pc");
        assert!(first.starts_with("pc_"));
        assert_eq!(first.len(), 3 + 43);
        assert_ne!(first, second);
        assert!(
            first[3..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
