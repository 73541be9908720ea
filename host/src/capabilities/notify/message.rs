//! A message as the host accepts it: parsed once at the boundary (a
//! module's `notify.email`, a host notice), so the outbox and the SMTP
//! delivery only ever see fields that cannot break a header.
//!
//! The rules: the subject is one line of at most [`MAX_SUBJECT_CHARS`]
//! characters with no control character (CR and LF above all: a header
//! split by them could add a `Bcc:` of the module's choosing); the text
//! and the optional HTML are bounded by [`MessageLimits`] and may hold any
//! text but NUL (they are bodies, which the delivery encodes, never
//! headers); a recipient's address and display name are refused when they
//! hold a control character, and the address must be one mailbox
//! (`local@domain`, checked by `lettre`'s parser).

/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// Longest display name of a recipient, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Longest address of a recipient, in bytes (RFC 5321's path limit).
pub const MAX_ADDRESS_BYTES: usize = 254;

/// How large a message's bodies may be (`souk serve --mail-max-text-bytes`,
/// `--mail-max-html-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Most bytes of the plain-text body.
    pub max_text_bytes: usize,
    /// Most bytes of the HTML body.
    pub max_html_bytes: usize,
}

impl Default for MessageLimits {
    /// 64 KiB of text, 256 KiB of HTML: far more than a notification needs,
    /// well below what relays refuse (commonly 10 MiB and more).
    fn default() -> Self {
        MessageLimits {
            max_text_bytes: 64 * 1024,
            max_html_bytes: 256 * 1024,
        }
    }
}

/// Why a message (or a recipient) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A field breaks a rule; the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: String) -> MessageError {
    MessageError::Invalid(message)
}

/// The subject, text and HTML of a message, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    subject: String,
    text: String,
    html: Option<String>,
}

impl Content {
    /// Checks `subject`, `text` and `html` against the rules and `limits`.
    ///
    /// # Errors
    /// [`MessageError::Invalid`] naming the field: an empty or multi-line
    /// subject, one with a control character or longer than
    /// [`MAX_SUBJECT_CHARS`]; an empty text; a body over its limit or with
    /// a NUL.
    pub fn parse(
        subject: &str,
        text: &str,
        html: Option<&str>,
        limits: MessageLimits,
    ) -> Result<Self, MessageError> {
        let subject = subject.trim();
        if subject.is_empty() {
            return Err(invalid("subject: must not be empty".to_owned()));
        }
        if subject.contains(['\r', '\n']) {
            return Err(invalid(
                "subject: must be one line (CR and LF are refused)".to_owned(),
            ));
        }
        if subject.chars().any(char::is_control) {
            return Err(invalid(
                "subject: control characters are refused".to_owned(),
            ));
        }
        let chars = subject.chars().count();
        if chars > MAX_SUBJECT_CHARS {
            return Err(invalid(format!(
                "subject: at most {MAX_SUBJECT_CHARS} characters, not {chars}"
            )));
        }
        if text.trim().is_empty() {
            return Err(invalid("text: must not be empty".to_owned()));
        }
        check_body("text", text, limits.max_text_bytes)?;
        if let Some(html) = html {
            check_body("html", html, limits.max_html_bytes)?;
        }
        Ok(Content {
            subject: subject.to_owned(),
            text: text.to_owned(),
            html: html.map(str::to_owned),
        })
    }

    /// The subject: one line, no control character.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The plain-text body.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The HTML body, if any.
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }

    /// Rebuilds a content read back from the outbox, which only ever holds
    /// parsed ones (no limits are applied again: the operator may have
    /// lowered them since it was queued).
    pub(crate) fn from_outbox(subject: String, text: String, html: Option<String>) -> Self {
        Content {
            subject,
            text,
            html,
        }
    }
}

fn check_body(field: &str, body: &str, max: usize) -> Result<(), MessageError> {
    if body.len() > max {
        return Err(invalid(format!(
            "{field}: at most {max} bytes, not {}",
            body.len()
        )));
    }
    if body.contains('\0') {
        return Err(invalid(format!("{field}: NUL characters are refused")));
    }
    Ok(())
}

/// Whom a message goes to: an address and the name shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    address: String,
    name: String,
}

impl Addressee {
    /// Checks `address` (one mailbox, no control character, at most
    /// [`MAX_ADDRESS_BYTES`]) and `name` (no control character, at most
    /// [`MAX_NAME_CHARS`]; may be empty).
    ///
    /// # Errors
    /// [`MessageError::Invalid`] naming the field.
    pub fn parse(address: &str, name: &str) -> Result<Self, MessageError> {
        let address = address.trim();
        if address.chars().any(char::is_control) {
            return Err(invalid(
                "recipient address: control characters (CR, LF, ...) are refused".to_owned(),
            ));
        }
        if address.len() > MAX_ADDRESS_BYTES {
            return Err(invalid(format!(
                "recipient address: at most {MAX_ADDRESS_BYTES} bytes"
            )));
        }
        if address.parse::<lettre::Address>().is_err() {
            return Err(invalid(
                "recipient address: not an email address (local@domain)".to_owned(),
            ));
        }
        let name = name.trim();
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "recipient name: control characters (CR, LF, ...) are refused".to_owned(),
            ));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "recipient name: at most {MAX_NAME_CHARS} characters"
            )));
        }
        Ok(Addressee {
            address: address.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The address (`local@domain`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The display name; empty when there is none.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Refuses an identifier from a module (a user id, a member number) that
/// is empty, longer than 200 bytes or holds a control character, before
/// it is looked up.
///
/// # Errors
/// [`MessageError::Invalid`] naming `field`.
pub fn check_identifier(field: &str, value: &str) -> Result<(), MessageError> {
    if value.is_empty() || value.len() > 200 {
        return Err(invalid(format!("{field}: must be 1 to 200 bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field}: control characters (CR, LF, ...) are refused"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(subject: &str) -> Result<Content, MessageError> {
        Content::parse(subject, "Hello", None, MessageLimits::default())
    }

    #[test]
    fn a_subject_with_cr_or_lf_is_refused() {
        for subject in [
            "Hi\r\nBcc: victim@example.com",
            "Hi\nthere",
            "Hi\rthere",
            "Hi\u{0}",
            "Hi\u{7}",
        ] {
            assert!(content(subject).is_err(), "{subject:?}");
        }
    }

    #[test]
    fn subjects_are_bounded_in_characters() {
        assert!(content(&"é".repeat(MAX_SUBJECT_CHARS)).is_ok());
        assert!(content(&"é".repeat(MAX_SUBJECT_CHARS + 1)).is_err());
        assert!(content("   ").is_err());
    }

    #[test]
    fn bodies_are_bounded_and_free_of_nul() {
        let limits = MessageLimits {
            max_text_bytes: 10,
            max_html_bytes: 5,
        };
        assert!(Content::parse("s", "0123456789", Some("<p>"), limits).is_ok());
        assert!(Content::parse("s", "0123456789x", None, limits).is_err());
        assert!(Content::parse("s", "t", Some("<p>x</p>"), limits).is_err());
        assert!(Content::parse("s", "a\0b", None, limits).is_err());
        assert!(Content::parse("s", "", None, limits).is_err());
        // Line breaks belong in bodies.
        assert!(Content::parse("s", "line\r\nline", None, limits).is_ok());
    }

    #[test]
    fn addressees_refuse_control_characters_and_non_addresses() {
        assert!(Addressee::parse("ana@example.com", "Ana Müller").is_ok());
        assert!(Addressee::parse("ana@example.com", "").is_ok());
        assert!(Addressee::parse("ana@example.com\r\nBcc: x@y.z", "Ana").is_err());
        assert!(Addressee::parse("ana@example.com", "Ana\r\nBcc: x@y.z").is_err());
        assert!(Addressee::parse("not an address", "Ana").is_err());
        assert!(Addressee::parse("a@b.c, d@e.f", "Ana").is_err());
    }

    #[test]
    fn identifiers_refuse_control_characters() {
        assert!(check_identifier("user", "u_1").is_ok());
        assert!(check_identifier("user", "u\r\n1").is_err());
        assert!(check_identifier("user", "").is_err());
    }
}
