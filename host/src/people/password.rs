//! Passwords: hashed with argon2id (the `argon2` crate's defaults: 19 MiB,
//! 2 passes, 1 lane — OWASP's minimum recommendation), on the blocking
//! pool so a hash never stalls the async workers. Verification is
//! argon2's own, which compares in constant time; a sign-in for an address
//! no user has verifies against [`dummy_hash`] so it costs the same time
//! as a wrong password.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::SoukError;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes (argon2 takes any length; this
/// bounds the work a request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password checked against the length policy; the text never appears
/// in any message, log or `Debug` output.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

impl Password {
    /// A new password, checked against the policy (`min_chars` characters
    /// at least, at most [`MAX_PASSWORD_BYTES`] bytes).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] naming the rule broken (never the password).
    pub fn new(text: String, min_chars: usize) -> Result<Self, SoukError> {
        if text.chars().count() < min_chars {
            return Err(SoukError::Invalid(format!(
                "the password must be at least {min_chars} characters long"
            )));
        }
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(SoukError::Invalid(format!(
                "the password must be at most {MAX_PASSWORD_BYTES} bytes long"
            )));
        }
        Ok(Password(text))
    }

    /// A password as typed at sign-in: only the length bound is checked
    /// (an old password may predate today's policy).
    pub fn attempt(text: String) -> Self {
        let mut text = text;
        if text.len() > MAX_PASSWORD_BYTES {
            // Too long to be anybody's password: verify a wrong one of the
            // same cost instead of hashing a megabyte.
            text.clear();
        }
        Password(text)
    }
}

/// Hashes `password` (argon2id, a fresh random salt) on the blocking pool;
/// answers the PHC string to store.
///
/// # Errors
/// [`SoukError::Internal`] when hashing fails.
pub async fn hash(password: Password) -> Result<String, SoukError> {
    tokio::task::spawn_blocking(move || hash_now(&password.0))
        .await
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("password hashing: {e}")))?
}

fn hash_now(text: &str) -> Result<String, SoukError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(text.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("password hashing: {e}")))
}

/// Whether `password` matches `stored` (a PHC string), checked on the
/// blocking pool; `None` verifies against [`dummy_hash`] and answers
/// `false`, in the same time.
///
/// # Errors
/// [`SoukError::Internal`] when the blocking pool fails.
pub async fn verify(password: Password, stored: Option<String>) -> Result<bool, SoukError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let matches = match PasswordHash::new(&phc) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.0.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        known && matches
    })
    .await
    .map_err(|e| SoukError::Internal(anyhow::anyhow!("password check: {e}")))
}

/// A hash of a random password nobody knows, made once per process with
/// the same parameters as real ones, for sign-ins to unknown addresses.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_now(&crate::secrets::random_secret()).unwrap_or_else(|_| {
            // Hashing a fresh random secret does not fail; if it ever did,
            // an unparsable hash still fails every verification.
            String::new()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let stored = hash(Password::new("correct horse battery".into(), 10).unwrap())
            .await
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(
            verify(
                Password::attempt("correct horse battery".into()),
                Some(stored.clone())
            )
            .await
            .unwrap()
        );
        assert!(
            !verify(
                Password::attempt("correct horse batterz".into()),
                Some(stored)
            )
            .await
            .unwrap()
        );
        // No stored hash: always false, even for the dummy's own input.
        assert!(
            !verify(Password::attempt(String::new()), None)
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_policy_names_the_rule_and_never_the_password() {
        let e = Password::new("short".into(), 10).unwrap_err().to_string();
        assert!(e.contains("at least 10"), "{e}");
        assert!(!e.contains("short"), "{e}");
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(Password::new(long, 10).is_err());
        assert_eq!(
            format!("{:?}", Password::attempt("secret-words".into())),
            "Password(<hidden>)"
        );
    }
}
