//! `GET /f/{token}` (and `HEAD`): a module file through a signed URL.
//!
//! The answer carries what keeps a stored file from acting with the host's
//! authority in a browser (issue 15): `X-Content-Type-Options: nosniff`,
//! the sniffed `Content-Type`, `Content-Disposition: attachment` unless
//! the type is inline-safe (PNG, JPEG, GIF, WebP, PDF — never SVG, never
//! HTML, which the host does not store at all), and a sandboxing
//! `Content-Security-Policy` on everything but PDF. It is
//! `Cache-Control: private` (a link is a credential), has the sha256 as its
//! `ETag`, and answers one `Range: bytes=` range with a 206 (416 when it
//! cannot be satisfied; several ranges get the whole file). The bytes are
//! streamed from disk in 64 KiB chunks, never held whole.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{ApiResult, Problem};
use crate::souk::Souk;

/// Bytes read from disk per chunk of the body.
const CHUNK: usize = 64 * 1024;

/// Types a browser may show in place: images that run no script, and PDF.
const INLINE_SAFE: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
];

/// What a `Range` header asks for, against a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// The whole file (no header, several ranges, or a header this server
    /// ignores, as RFC 9110 allows).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range past the end: 416.
    Unsatisfiable,
}

fn wanted(range: Option<&HeaderValue>, size: u64) -> Wanted {
    let Some(spec) = range
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |t: &str| t.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(n) if size > 0 => Wanted::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::Whole,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return Wanted::Whole;
            };
            let end = if last.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(last) {
                    Some(end) if end >= start => end.min(size.saturating_sub(1)),
                    _ => return Wanted::Whole,
                }
            };
            if start >= size {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part { start, end }
            }
        }
        (true, true) => Wanted::Whole,
    }
}

/// `attachment` or `inline`, with the name as RFC 6266 and RFC 8187 have
/// it: an ASCII fallback and the exact UTF-8 name percent-encoded.
fn disposition(content_type: &str, name: &str) -> String {
    let kind = if INLINE_SAFE.contains(&content_type) {
        "inline"
    } else {
        "attachment"
    };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// `GET|HEAD /f/{token}`.
pub(super) async fn download(
    State(souk): State<Arc<Souk>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let download = souk.downloads().open(&token).await.map_err(Problem::from)?;
    let file = download.file;
    let size = file.size;
    let mut body = download.body;
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, header_value(&file.content_type));
    response_headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&disposition(&file.content_type, &file.name)),
    );
    response_headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response_headers.insert(header::ETAG, header_value(&format!("\"{}\"", file.sha256)));
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if file.content_type != "application/pdf" {
        response_headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
        );
    }
    let (status, start, length) = match wanted(headers.get(header::RANGE), size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => {
            response_headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Wanted::Unsatisfiable => {
            response_headers.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response());
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, header_value(&length.to_string()));
    if start > 0 {
        body.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| Problem::from(crate::error::SoukError::Internal(e.into())))?;
    }
    let stream = futures_util::stream::unfold((body, length), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(buf)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Ok((status, response_headers, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Wanted {
        wanted(Some(&HeaderValue::from_str(text).unwrap()), size)
    }

    #[test]
    fn single_byte_ranges_are_served_and_others_ignored_or_refused() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(range("bytes=0-3", 10), Wanted::Part { start: 0, end: 3 });
        assert_eq!(range("bytes=4-", 10), Wanted::Part { start: 4, end: 9 });
        assert_eq!(range("bytes=-3", 10), Wanted::Part { start: 7, end: 9 });
        assert_eq!(range("bytes=-30", 10), Wanted::Part { start: 0, end: 9 });
        assert_eq!(range("bytes=8-100", 10), Wanted::Part { start: 8, end: 9 });
        assert_eq!(range("bytes=10-", 10), Wanted::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), Wanted::Unsatisfiable);
        assert_eq!(range("bytes=0-1,4-5", 10), Wanted::Whole);
        assert_eq!(range("bytes=5-2", 10), Wanted::Whole);
        assert_eq!(range("items=0-1", 10), Wanted::Whole);
        assert_eq!(range("bytes=x-1", 10), Wanted::Whole);
    }

    #[test]
    fn only_inline_safe_types_are_inline_and_names_are_encoded() {
        assert_eq!(
            disposition("image/png", "logo.png"),
            "inline; filename=\"logo.png\"; filename*=UTF-8''logo.png"
        );
        let svg = disposition("image/svg+xml", "a \"b\".svg");
        assert!(
            svg.starts_with("attachment; filename=\"a _b_.svg\""),
            "{svg}"
        );
        assert!(svg.ends_with("UTF-8''a%20%22b%22.svg"), "{svg}");
        let pdf = disposition("application/pdf", "résumé.pdf");
        assert!(
            pdf.starts_with("inline;") && pdf.contains("r%C3%A9sum%C3%A9.pdf"),
            "{pdf}"
        );
        assert!(disposition("text/plain", "a.txt").starts_with("attachment;"));
    }
}
