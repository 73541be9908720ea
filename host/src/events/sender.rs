//! One webhook POST: the SSRF guard's address check, a connection pinned
//! to the checked address, bounded time, no redirects, no proxy, and a
//! bounded read of the answer.
//!
//! What the delivery log says about a failure is one of the fixed texts of
//! [`SendError`]: never an address the host resolved, never an error chain
//! from the network stack (which can name addresses and the host's own
//! setup).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use super::guard::NetworkPolicy;
use crate::capabilities::log::printable;

/// Most bytes of an answer the host reads (the rest is not read at all).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most bytes of an answer kept in the delivery log, made printable.
pub const EXCERPT_BYTES: usize = 256;

/// Why a URL is not one deliveries may go to (checked when an endpoint is
/// registered, and again at every delivery).
///
/// # Errors
/// A message for the tenant saying what is wrong.
pub fn check_url(text: &str, policy: &NetworkPolicy) -> Result<Url, String> {
    if text.len() > 2048 {
        return Err("the URL is longer than 2048 bytes".to_owned());
    }
    let url = Url::parse(text).map_err(|e| format!("the URL does not parse: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(
                "the URL must use https (this host does not deliver over plain http)".to_owned(),
            );
        }
        other => return Err(format!("the URL's scheme `{other}` is not https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry a user name or password".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment (#...)".to_owned());
    }
    Ok(url)
}

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The receiver's status.
    pub status: u16,
    /// A short printable excerpt of its answer.
    pub excerpt: String,
}

/// Why a POST did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The URL is no longer acceptable (scheme, form).
    #[error("{0}")]
    Url(String),
    /// The host name did not resolve.
    #[error("the URL's host name did not resolve")]
    Resolve,
    /// Every address of the host is one the guard refuses.
    #[error(
        "refused: the URL's host resolves only to addresses this host does not deliver to \
         (private, loopback, link-local or otherwise not public); the operator can allow them"
    )]
    Refused,
    /// The connection could not be made.
    #[error("could not connect to the receiver")]
    Connect,
    /// No answer within the time allowed.
    #[error("the receiver did not answer within {0} s")]
    Timeout(u64),
    /// Any other failure of the request.
    #[error("the request to the receiver failed")]
    Request,
}

/// A POST to make.
pub struct Post<'a> {
    /// Where to.
    pub url: &'a str,
    /// The headers besides `Content-Type` and `User-Agent`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
}

/// Picks the address to connect to: the first of `host`'s addresses the
/// policy allows.
async fn pick_address(
    url: &Url,
    policy: &NetworkPolicy,
    timeout: Duration,
) -> Result<SocketAddr, SendError> {
    let port = url.port_or_known_default().ok_or(SendError::Request)?;
    let host = url.host_str().ok_or(SendError::Resolve)?;
    // An IP literal (IPv6 in brackets) is checked as it is.
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if policy.allows(ip) {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(SendError::Refused)
        };
    }
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| SendError::Resolve)?
        .map_err(|_| SendError::Resolve)?;
    let mut any = false;
    for address in found {
        any = true;
        if policy.allows(address.ip()) {
            return Ok(address);
        }
    }
    Err(if any {
        SendError::Refused
    } else {
        SendError::Resolve
    })
}

/// POSTs `post`, connecting only to an address the policy allows (the one
/// checked: the client is given it, so no second lookup can change it),
/// within `timeout` for the connection and again for the whole exchange.
///
/// # Errors
/// See [`SendError`].
pub async fn send(
    post: Post<'_>,
    policy: &NetworkPolicy,
    timeout: Duration,
) -> Result<Sent, SendError> {
    let url = check_url(post.url, policy).map_err(SendError::Url)?;
    let address = pick_address(&url, policy, timeout).await?;
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent("Souk-Webhooks/1");
    if let Some(host) = url.host_str() {
        client = client.resolve(host, address);
    }
    let client = client.build().map_err(|_| SendError::Request)?;
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (name, value) in post.headers {
        request = request.header(name, value);
    }
    let classify = |e: reqwest::Error| {
        if e.is_timeout() {
            SendError::Timeout(timeout.as_secs().max(1))
        } else if e.is_connect() {
            SendError::Connect
        } else {
            SendError::Request
        }
    };
    let mut response = request.body(post.body).send().await.map_err(classify)?;
    let status = response.status().as_u16();
    let mut read = Vec::new();
    while read.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            // The status decides; a body cut short or slow is not read further.
            Ok(None) | Err(_) => break,
        }
    }
    read.truncate(EXCERPT_BYTES);
    let excerpt = printable(&String::from_utf8_lossy(&read), EXCERPT_BYTES);
    Ok(Sent { status, excerpt })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_without_credentials_unless_http_is_allowed() {
        let strict = NetworkPolicy::default();
        assert!(check_url("https://example.com/hook", &strict).is_ok());
        for bad in [
            "http://example.com/hook",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad, &strict).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(check_url(&long, &strict).is_err());
        let lax = NetworkPolicy {
            allow_http: true,
            ..NetworkPolicy::default()
        };
        assert!(check_url("http://example.com/hook", &lax).is_ok());
    }

    #[tokio::test]
    async fn loopback_is_refused_before_any_connection() {
        let strict = NetworkPolicy {
            allow_http: true,
            ..NetworkPolicy::default()
        };
        for url in [
            "http://127.0.0.1:9/hook",
            "http://[::1]:9/hook",
            "http://localhost:9/hook",
            "http://[::ffff:127.0.0.1]:9/",
        ] {
            let refused = send(
                Post {
                    url,
                    headers: Vec::new(),
                    body: "{}".into(),
                },
                &strict,
                Duration::from_secs(2),
            )
            .await
            .unwrap_err();
            assert_eq!(refused, SendError::Refused, "{url}");
            assert!(!refused.to_string().contains("127.0.0.1"));
        }
    }
}
