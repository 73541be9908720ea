//! Unguessable tokens (128 random bits from the host's WASI random
//! source), written as 32 lower-case hex digits.

use souk_sdk::Problem;

/// A fresh token.
///
/// # Errors
///
/// A 500 problem when the random source fails.
pub fn fresh() -> Result<String, Problem> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| Problem::internal(format!("no random bytes: {error}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `text` has a token's shape (checked before any lookup).
pub fn well_formed(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_well_formed() {
        let (a, b) = (fresh().unwrap(), fresh().unwrap());
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
        assert!(!well_formed("C-0001"));
        assert!(!well_formed(&a.to_uppercase()));
    }
}
