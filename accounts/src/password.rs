//! Argon2id password hashing. Both hashing and verifying cost tens of milliseconds of CPU and
//! memory on purpose, so the async entry points run them on tokio's blocking pool, never on an
//! I/O thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::AccountsError;

/// Hashes `password` into a PHC string (`$argon2id$v=19$m=...`), with a fresh random salt.
pub(crate) fn hash_blocking(password: &str) -> Result<String, AccountsError> {
    let mut salt = [0u8; password_hash::Salt::RECOMMENDED_LENGTH];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| AccountsError::Internal(format!("salt encoding: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountsError::Internal(format!("password hashing: {e}")))
}

/// Whether `password` matches the stored PHC string. A malformed stored hash is a bug
/// (`Internal`), not a wrong password.
pub(crate) fn verify_blocking(password: &str, phc: &str) -> Result<bool, AccountsError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| AccountsError::Internal(format!("stored password hash unreadable: {e}")))?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AccountsError::Internal(format!(
            "password verification: {e}"
        ))),
    }
}

/// [`hash_blocking`] on the blocking pool.
pub(crate) async fn hash(password: SecretString) -> Result<String, AccountsError> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose_secret()))
        .await
        .map_err(|e| AccountsError::Internal(format!("hashing task failed: {e}")))?
}

/// [`verify_blocking`] on the blocking pool.
pub(crate) async fn verify(password: SecretString, phc: String) -> Result<bool, AccountsError> {
    tokio::task::spawn_blocking(move || verify_blocking(password.expose_secret(), &phc))
        .await
        .map_err(|e| AccountsError::Internal(format!("verification task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_blocking("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_blocking("correct horse battery", &phc).unwrap());
        assert!(!verify_blocking("correct horse batterY", &phc).unwrap());
        // Salted: the same password hashes differently.
        assert_ne!(phc, hash_blocking("correct horse battery").unwrap());
    }

    #[test]
    fn garbage_hash_is_internal_not_a_mismatch() {
        let err = verify_blocking("whatever", "not-a-phc-string").unwrap_err();
        assert_eq!(err.code(), "internal");
    }
}
