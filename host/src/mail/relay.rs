//! The operator's SMTP relay: its URL parsed once at start, the message
//! built with correct headers, and one delivery attempt classified as sent,
//! transient (retry) or permanent (fail).

use std::time::{Duration, SystemTime};

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use time::OffsetDateTime;

use crate::capabilities::notify::{Addressee, Content};

/// Why the relay configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// `--smtp-url` is not a relay URL this host speaks.
    #[error("--smtp-url: {0}")]
    Url(String),
    /// `--mail-from` is not a mailbox.
    #[error("--mail-from: {0}")]
    From(String),
}

/// How a relay is reached, for messages: the URL without its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// `smtp`, `smtps` or `smtp+starttls`.
    pub scheme: String,
    /// The relay's host.
    pub host: String,
    /// The relay's port, if the URL gives one.
    pub port: Option<u16>,
}

impl std::fmt::Display for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}", self.scheme, self.host),
        }
    }
}

/// The relay mail is sent through: a transport and the sender.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    target: RelayTarget,
    from: Mailbox,
    /// The domain of `Message-ID`s: the sender's.
    id_domain: String,
    send_timeout: Duration,
}

/// Parses `url` into the URL `lettre` reads and what may be shown of it.
/// `smtp://` is plain SMTP (a local relay), `smtps://` TLS from the first
/// byte (port 465 by default), `smtp+starttls://` plain then STARTTLS,
/// required (port 587 by default). `user:pass@` are the relay's
/// credentials (percent-encoded).
///
/// # Errors
/// [`RelayError::Url`] for another scheme, a missing host or a query.
pub fn parse_url(url: &str) -> Result<(String, RelayTarget), RelayError> {
    let parsed = url::Url::parse(url).map_err(|e| RelayError::Url(e.to_string()))?;
    let scheme = parsed.scheme().to_owned();
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| RelayError::Url("the URL names no host".to_owned()))?
        .to_owned();
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(RelayError::Url(
            "the URL takes no query or fragment (pick TLS with the scheme: smtp, smtps, smtp+starttls)"
                .to_owned(),
        ));
    }
    let target = RelayTarget {
        scheme: scheme.clone(),
        host,
        port: parsed.port(),
    };
    let for_lettre = match scheme.as_str() {
        "smtp" | "smtps" => url.to_owned(),
        "smtp+starttls" => {
            let rest = url
                .split_once("://")
                .map(|(_, rest)| rest)
                .ok_or_else(|| RelayError::Url("the URL has no `://`".to_owned()))?;
            format!("smtp://{rest}?tls=required")
        }
        other => {
            return Err(RelayError::Url(format!(
                "scheme `{other}` is not one of smtp, smtps, smtp+starttls"
            )));
        }
    };
    Ok((for_lettre, target))
}

/// Parses the sender (`--mail-from`): `Name <local@domain>` or an address.
///
/// # Errors
/// [`RelayError::From`] for control characters or a non-mailbox.
pub fn check_from(from: &str) -> Result<Mailbox, RelayError> {
    if from.chars().any(char::is_control) {
        return Err(RelayError::From(
            "control characters are refused".to_owned(),
        ));
    }
    from.parse()
        .map_err(|_| RelayError::From("not a mailbox (`Name <local@domain>`)".to_owned()))
}

impl Relay {
    /// The relay at `url` (see [`parse_url`]), sending as `from` (`Name
    /// <address>` or an address). `connect_timeout` bounds the connection
    /// and each SMTP command; `send_timeout` one whole message.
    ///
    /// # Errors
    /// [`RelayError`] naming the flag.
    pub fn new(
        url: &str,
        from: &str,
        connect_timeout: Duration,
        send_timeout: Duration,
    ) -> Result<Self, RelayError> {
        let (for_lettre, target) = parse_url(url)?;
        let from = check_from(from)?;
        let id_domain = from.email.domain().to_owned();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&for_lettre)
            .map_err(|e| RelayError::Url(e.to_string()))?
            .timeout(Some(connect_timeout))
            .build();
        Ok(Relay {
            transport,
            target,
            from,
            id_domain,
            send_timeout,
        })
    }

    /// The relay, without credentials (for logs and the delivery state).
    pub fn target(&self) -> &RelayTarget {
        &self.target
    }

    /// Builds the message `id` for `to`: From, To (with the display name,
    /// RFC 2047-encoded when not ASCII), Subject (encoded likewise),
    /// Message-ID `<id@sender-domain>`, Date `at`, and a
    /// `multipart/alternative` body when there is HTML.
    ///
    /// # Errors
    /// When the message cannot be built (an address `lettre` refuses): a
    /// permanent failure.
    pub fn build(
        &self,
        id: &str,
        to: &Addressee,
        content: &Content,
        at: OffsetDateTime,
    ) -> Result<Message, String> {
        let address: lettre::Address = to
            .address()
            .parse()
            .map_err(|e| format!("recipient address refused: {e}"))?;
        let name = (!to.name().is_empty()).then(|| to.name().to_owned());
        let builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(name, address))
            .subject(content.subject())
            .message_id(Some(format!("<{id}@{}>", self.id_domain)))
            .date(SystemTime::from(at));
        let built = match content.html() {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                content.text().to_owned(),
                html.to_owned(),
            )),
            None => builder.singlepart(SinglePart::plain(content.text().to_owned())),
        };
        built.map_err(|e| format!("message refused: {e}"))
    }

    /// Sends `message` once.
    pub async fn send(&self, message: Message) -> Sent {
        match tokio::time::timeout(self.send_timeout, self.transport.send(message)).await {
            Err(_) => Sent::Transient(format!(
                "the relay did not take the message within {:?}",
                self.send_timeout
            )),
            Ok(Ok(response)) => {
                let text: Vec<&str> = response.message().collect();
                Sent::Accepted(format!("{} {}", response.code(), text.join(" ")))
            }
            Ok(Err(error)) => {
                // lettre's message names the code (`451 transient error
                // (451): ...`) or the connection failure.
                let reason = error.to_string();
                if error.is_permanent() {
                    Sent::Permanent(reason)
                } else {
                    // 4xx answers, connection and TLS failures, timeouts:
                    // the relay may take it later.
                    Sent::Transient(reason)
                }
            }
        }
    }
}

/// What one attempt to send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The relay accepted it; its answer.
    Accepted(String),
    /// A failure worth retrying (4xx, connection, timeout).
    Transient(String),
    /// A failure that will not change (5xx).
    Permanent(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_pick_tls_by_scheme_and_hide_credentials() {
        let (lettre, target) = parse_url("smtp+starttls://u:p%40ss@mail.example:587").unwrap();
        assert_eq!(lettre, "smtp://u:p%40ss@mail.example:587?tls=required");
        assert_eq!(target.to_string(), "smtp+starttls://mail.example:587");
        let (lettre, target) = parse_url("smtps://mail.example").unwrap();
        assert_eq!(lettre, "smtps://mail.example");
        assert_eq!(target.to_string(), "smtps://mail.example");
        assert!(parse_url("http://mail.example").is_err());
        assert!(parse_url("smtp://mail.example?tls=none").is_err());
        assert!(parse_url("smtp://").is_err());
    }

    #[tokio::test]
    async fn messages_carry_encoded_headers_and_alternative_parts() {
        let relay = Relay::new(
            "smtp://127.0.0.1:1",
            "Souk <souk@example.org>",
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let to = Addressee::parse("ana@example.com", "Ana Müller").unwrap();
        let content = Content::parse(
            "Grüße",
            "Hello",
            Some("<p>Hello</p>"),
            crate::capabilities::notify::MessageLimits::default(),
        )
        .unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let message = relay.build("m_1", &to, &content, at).unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("Message-ID: <m_1@example.org>"), "{text}");
        assert!(text.contains("From: Souk <souk@example.org>"), "{text}");
        assert!(text.contains("To: =?utf-8?"), "{text}");
        assert!(text.contains("Subject: =?utf-8?"), "{text}");
        assert!(text.contains("Date: Fri, 15 Jan 2027"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(
            Relay::new(
                "smtp://h",
                "a\r\nBcc: x@y.z",
                Duration::ZERO,
                Duration::ZERO
            )
            .is_err()
        );
    }
}
