//! Images a tenant uploads — a card holder's photo, the organisation's
//! logo: the size and type checks both share, and the swap of the file
//! they replace.

use souk_sdk::{Problem, Request, files};

/// The request's body as an image of at most `max_bytes`, with its type
/// read from its first bytes (PNG or JPEG). `what` names the image in the
/// problem (`photo`, `logo`): a 413 `.../{what}-size` or a 415
/// `.../{what}-type`.
pub fn image_body<'a>(
    request: &'a Request,
    what: &str,
    max_bytes: usize,
) -> Result<(&'a [u8], &'static str), Problem> {
    let bytes = request.body();
    let title = |aspect: &str| {
        let mut letters = what.chars();
        let first = letters.next().map(|c| c.to_ascii_uppercase());
        format!("{}{} {aspect}", first.unwrap_or_default(), letters.as_str())
    };
    if bytes.is_empty() || bytes.len() > max_bytes {
        return Err(Problem::new(
            413,
            format!("https://souk.dev/problems/digital-card/{what}-size"),
            title("size"),
        )
        .with_detail(format!("a {what} is 1 to {max_bytes} bytes")));
    }
    let content_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else {
        return Err(Problem::new(
            415,
            format!("https://souk.dev/problems/digital-card/{what}-type"),
            title("type"),
        )
        .with_detail(format!("a {what} is a PNG or JPEG image")));
    };
    Ok((bytes, content_type))
}

/// Deletes the file a new upload replaced; one already gone is fine.
pub fn delete_replaced(old: Option<&str>) -> Result<(), Problem> {
    match old.map(files::delete) {
        None | Some(Ok(())) | Some(Err(files::FileError::NotFound)) => Ok(()),
        Some(Err(error)) => Err(error.into()),
    }
}
