//! People input parsed at the boundary: e-mail addresses, display names,
//! member numbers, key names. Each parser answers a typed value or a
//! message that names the rule (never echoing more than the field).

use crate::error::SoukError;

/// An e-mail address: trimmed, at most 254 bytes, one `@` between a local
/// part (1 to 64 bytes, no spaces, controls or quotes) and a domain of
/// dot-separated labels (letters, digits, `-`; not at a label's ends), at
/// least two labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// As given, trimmed.
    pub text: String,
    /// Lower-cased: what uniqueness and sign-in compare.
    pub key: String,
}

impl Email {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] naming the rule broken.
    pub fn parse(text: &str) -> Result<Self, SoukError> {
        let bad = |why: &str| SoukError::Invalid(format!("`email` is not a valid address: {why}"));
        let text = text.trim();
        if text.is_empty() || text.len() > 254 {
            return Err(bad("it must be 1 to 254 characters"));
        }
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(bad("it has no `@`"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before `@` must be 1 to 64 characters"));
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "@\"<>()[]\\,;:".contains(c))
        {
            return Err(bad(
                "the part before `@` has a character addresses may not use",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(bad("the domain after `@` is not a domain name"));
        }
        Ok(Email {
            text: text.to_owned(),
            key: text.to_lowercase(),
        })
    }

    /// The comparison key of a sign-in's address, without judging its
    /// form (a malformed address simply matches no user).
    pub fn key_of(text: &str) -> String {
        text.trim().to_lowercase()
    }
}

/// A trimmed single-line text of 1 to `max` characters.
///
/// # Errors
/// [`SoukError::Invalid`] naming `field`.
pub fn line(field: &str, text: &str, max: usize) -> Result<String, SoukError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(SoukError::Invalid(format!(
            "`{field}` must be 1 to {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(SoukError::Invalid(format!(
            "`{field}` may not contain control characters"
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_compared_without_case_and_judged() {
        let e = Email::parse("  Ann.Lee+souk@Example.ORG ").unwrap();
        assert_eq!(e.text, "Ann.Lee+souk@Example.ORG");
        assert_eq!(e.key, "ann.lee+souk@example.org");
        assert_eq!(Email::key_of(" ANN@x.org"), "ann@x.org");
        for bad in [
            "",
            "ann",
            "@example.org",
            "ann@",
            "ann@localhost",
            "ann@-x.org",
            "ann@x..org",
            "a n@x.org",
            "ann@x.o\u{7}rg",
            "\"ann\"@x.org",
            "ann@x_y.org",
            &format!("{}@x.org", "a".repeat(65)),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lines_are_bounded_and_single() {
        assert_eq!(line("display_name", "  Ann  ", 100).unwrap(), "Ann");
        assert!(line("display_name", "   ", 100).is_err());
        assert!(line("display_name", &"x".repeat(101), 100).is_err());
        let e = line("display_name", "a\nb", 100).unwrap_err().to_string();
        assert!(e.contains("display_name"), "{e}");
    }
}
