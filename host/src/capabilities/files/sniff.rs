//! What a file is, from its bytes alone, and what it may be called.
//!
//! The host never takes a module's word for a content type: [`sniff`]
//! recognises each type of [`FileType`] by its magic number (SVG by
//! parsing the start of the text), and [`check_type`] refuses a declared
//! type the bytes contradict, a type the manifest does not allow, and any
//! bytes that look like HTML or script — whatever they were declared as.

use souk_module_registry::{FileType, FilesDecl};

/// How far into a text file the markup check and the SVG parser look.
const SNIFF_WINDOW: usize = 4096;

/// Longest file name kept, in bytes (most file systems' limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a put's bytes were refused as a type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypeRefusal {
    /// The declared type is not one the host recognises.
    #[error("{0}")]
    UnknownDeclared(String),
    /// The bytes are no type the host recognises (or look like HTML or
    /// script).
    #[error("the bytes are not a type the host can store ({0}); declared {1}")]
    Unrecognised(&'static str, FileType),
    /// The bytes are another type than the one declared.
    #[error("the bytes are {sniffed}, not the declared {declared}")]
    Contradicted {
        /// What the bytes are.
        sniffed: FileType,
        /// What the module said.
        declared: FileType,
    },
    /// The type is not under the manifest's `files.types`.
    #[error("{0} is not a type this module's manifest allows (files.types: {1})")]
    NotAllowed(FileType, String),
}

/// The type of `bytes`, or why none: binary formats by magic number, SVG
/// by its first element, text as valid UTF-8 without NUL that shows no
/// markup. HTML (and XML that is not SVG) is never recognised.
pub fn sniff(bytes: &[u8]) -> Result<FileType, &'static str> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG) {
        return Ok(FileType::Png);
    }
    if bytes.starts_with(b"\xff\xd8\xff") {
        return Ok(FileType::Jpeg);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(FileType::Gif);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(FileType::Webp);
    }
    if bytes.starts_with(b"%PDF-") {
        return Ok(FileType::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(FileType::Zip);
    }
    // Text must be UTF-8 throughout, without NUL; the whole of it is
    // checked for markup, not only its start.
    let text = std::str::from_utf8(bytes).map_err(|_| "binary data")?;
    if text.contains('\0') {
        return Err("binary data");
    }
    let mut window = text.len().min(SNIFF_WINDOW);
    while !text.is_char_boundary(window) {
        window -= 1;
    }
    let start = text[..window].trim_start_matches('\u{feff}').trim_start();
    let normalised = normalise(text);
    if start.starts_with('<') {
        return match first_element(start) {
            Some(name) if name.eq_ignore_ascii_case("svg") => {
                if has_html_elements(&normalised) || has_active_content(&normalised) {
                    Err("markup with HTML or script in it")
                } else {
                    Ok(FileType::Svg)
                }
            }
            _ => Err("markup (HTML or XML)"),
        };
    }
    if has_html_elements(&normalised) {
        return Err("text with HTML or script in it");
    }
    Ok(FileType::Text)
}

/// `text` as a browser would read markers in it: lower case, numeric
/// character references (`&#106;`, `&#x6A;`) decoded, and tabs and line
/// breaks removed (a browser drops them inside a URL, so `java\tscript:`
/// is `javascript:`).
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("&#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let (digits, radix) = match after.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (after, 10),
        };
        let len = digits
            .find(|c: char| !c.is_digit(radix))
            .unwrap_or(digits.len());
        let decoded = u32::from_str_radix(&digits[..len], radix)
            .ok()
            .and_then(char::from_u32);
        match decoded {
            Some(c) if len > 0 => {
                out.push(c);
                let consumed = after.len() - digits.len() + len;
                rest = &after[consumed..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            _ => {
                out.push_str("&#");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.retain(|c| !matches!(c, '\t' | '\n' | '\r'));
    out.to_lowercase()
}

/// The name of the first element of XML text, after any declaration,
/// processing instructions, comments and DOCTYPE; `None` when the text
/// is not shaped like that.
fn first_element(mut text: &str) -> Option<&str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("<?") {
            text = &rest[rest.find("?>")? + 2..];
        } else if let Some(rest) = text.strip_prefix("<!--") {
            text = &rest[rest.find("-->")? + 3..];
        } else if let Some(rest) = text.strip_prefix("<!") {
            // DOCTYPE, possibly with an internal subset in brackets.
            let end = match (rest.find('['), rest.find('>')) {
                (Some(open), Some(close)) if open < close => {
                    let after = &rest[open..];
                    open + after.find("]>")? + 1
                }
                (_, Some(close)) => close,
                _ => return None,
            };
            text = &rest[end + 1..];
        } else {
            let rest = text.strip_prefix('<')?;
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(rest.len());
            let name = &rest[..end];
            // `svg:svg` and `svg` alike.
            return Some(name.rsplit(':').next().unwrap_or(name));
        }
    }
}

/// Whether (normalised) text holds elements that make a browser render a
/// document or run script: script, HTML documents, frames, plugins, HTML
/// inside SVG.
fn has_html_elements(normalised: &str) -> bool {
    const ELEMENTS: [&str; 11] = [
        "<script",
        "<html",
        "<body",
        "<iframe",
        "<frame",
        "<object",
        "<embed",
        "<foreignobject",
        "<!doctype html",
        "<meta ",
        "<meta/",
    ];
    ELEMENTS.iter().any(|m| normalised.contains(m))
}

/// Whether (normalised) markup carries active content in attributes:
/// `javascript:` or HTML `data:` URLs, event-handler attributes (`
/// on<letters>=`), or entity declarations (which could assemble either).
fn has_active_content(normalised: &str) -> bool {
    const MARKERS: [&str; 4] = ["javascript:", "vbscript:", "data:text/html", "<!entity"];
    if MARKERS.iter().any(|m| normalised.contains(m)) {
        return true;
    }
    let bytes = normalised.as_bytes();
    bytes.windows(3).enumerate().any(|(i, w)| {
        (w[0].is_ascii_whitespace() || w[0] == b'/' || w[0] == b'"' || w[0] == b'\'')
            && w[1] == b'o'
            && w[2] == b'n'
            && bytes[i + 3..]
                .iter()
                .position(|b| !b.is_ascii_alphabetic())
                .is_some_and(|n| n > 0 && bytes[i + 3 + n..].trim_ascii_start().starts_with(b"="))
    })
}

/// The type a put stores: `declared` parsed, `bytes` sniffed, the two
/// agreeing (text declared as CSV is CSV), and the manifest allowing it.
///
/// # Errors
/// [`TypeRefusal`] saying which rule failed.
pub fn check_type(
    declared: &str,
    bytes: &[u8],
    files: &FilesDecl,
) -> Result<FileType, TypeRefusal> {
    let declared = FileType::parse(declared).map_err(TypeRefusal::UnknownDeclared)?;
    let sniffed = sniff(bytes).map_err(|what| TypeRefusal::Unrecognised(what, declared))?;
    let stored = match (sniffed, declared) {
        (FileType::Text, FileType::Csv) => FileType::Csv,
        (s, d) if s == d => s,
        (sniffed, declared) => return Err(TypeRefusal::Contradicted { sniffed, declared }),
    };
    if !files.allows(stored) {
        let allowed = files
            .types
            .iter()
            .map(|t| t.mime())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TypeRefusal::NotAllowed(stored, allowed));
    }
    Ok(stored)
}

/// A file name safe to keep and to offer in a download: the part after
/// the last `/` or `\`, without control characters, trimmed, at most
/// [`MAX_NAME_BYTES`] bytes (cut on a character boundary). `None` when
/// nothing is left, or only `.` or `..`.
pub fn sanitise_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let trimmed = cleaned.trim();
    let mut end = trimmed.len().min(MAX_NAME_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let kept = trimmed[..end].trim_end();
    if kept.is_empty() || kept == "." || kept == ".." {
        return None;
    }
    Some(kept.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn decl(types: &[FileType]) -> FilesDecl {
        FilesDecl {
            types: types.to_vec(),
            limit: None,
        }
    }

    #[test]
    fn magic_numbers_are_recognised() {
        assert_eq!(sniff(PNG), Ok(FileType::Png));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Ok(FileType::Jpeg));
        assert_eq!(sniff(b"GIF89a...."), Ok(FileType::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok(FileType::Webp));
        assert_eq!(sniff(b"%PDF-1.7\n%...."), Ok(FileType::Pdf));
        assert_eq!(sniff(b"PK\x03\x04...."), Ok(FileType::Zip));
        assert_eq!(sniff(b"a,b\n1,2\n"), Ok(FileType::Text));
        assert!(sniff(b"\x00\x01\x02binary").is_err());
        assert!(sniff(b"RIFF\0\0\0\0WAVEfmt ").is_err());
    }

    #[test]
    fn svg_is_recognised_by_its_first_element() {
        let svg = br#"<?xml version="1.0"?>
<!-- a logo -->
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd">
<svg xmlns="http://www.w3.org/2000/svg" width="10"><rect/></svg>"#;
        assert_eq!(sniff(svg), Ok(FileType::Svg));
        assert_eq!(sniff(b"\xef\xbb\xbf  <svg/>"), Ok(FileType::Svg));
        assert!(sniff(b"<note><svg/></note>").is_err());
        assert!(sniff(b"<!DOCTYPE html><html><body>hi</body></html>").is_err());
        assert!(sniff(b"<p>hello</p>").is_err());
    }

    #[test]
    fn script_bearing_text_is_never_recognised() {
        for hostile in [
            &b"<svg><script>alert(1)</script></svg>"[..],
            b"<svg onload=\"alert(1)\"/>",
            b"<svg><a href=\"javascript:alert(1)\">x</a></svg>",
            b"<svg><foreignObject><body/></foreignObject></svg>",
            b"hello <script>alert(1)</script>",
            b"plain text then <HTML>",
            b"<svg/onload =alert(1)>",
            b"<svg><a href=\"&#106;avascript:alert(1)\">x</a></svg>",
            b"<svg><a href=\"&#x6A;ava&#9;script:alert(1)\">x</a></svg>",
            b"<svg><a href=\"java\tscript:alert(1)\">x</a></svg>",
            b"<!DOCTYPE svg [<!ENTITY a \"java\">]><svg><a href=\"&a;script:x\"/></svg>",
            b"<svg><a href=\"data:text/html,<b>x</b>\"/></svg>",
        ] {
            assert!(
                sniff(hostile).is_err(),
                "{}",
                String::from_utf8_lossy(hostile)
            );
        }
        // Words that merely start with "on" are fine.
        assert_eq!(
            sniff(b"<svg><text> once only</text></svg>"),
            Ok(FileType::Svg)
        );
        // Markup far past the start of a text is still seen.
        let mut late = "a,b\n".repeat(5_000).into_bytes();
        late.extend_from_slice(b"<script>alert(1)</script>");
        assert!(sniff(&late).is_err());
        let mut late_svg = b"<svg>".to_vec();
        late_svg.extend("<rect/>".repeat(2_000).into_bytes());
        late_svg.extend_from_slice(b"<a href=\"javascript:x\"/></svg>");
        assert!(sniff(&late_svg).is_err());
        // Text that talks about handlers or URLs is still text.
        assert_eq!(
            sniff(b"status, onboarding=done, see javascript: docs"),
            Ok(FileType::Text)
        );
        assert_eq!(
            sniff("caf\u{e9} &#169; 2026".as_bytes()),
            Ok(FileType::Text)
        );
    }

    #[test]
    fn declared_types_must_match_the_bytes_and_the_manifest() {
        let all = decl(&[FileType::Png, FileType::Pdf, FileType::Csv]);
        assert_eq!(check_type("image/png", PNG, &all), Ok(FileType::Png));
        assert_eq!(
            check_type("application/pdf", PNG, &all),
            Err(TypeRefusal::Contradicted {
                sniffed: FileType::Png,
                declared: FileType::Pdf
            })
        );
        assert_eq!(check_type("text/csv", b"a,b\n", &all), Ok(FileType::Csv));
        assert!(matches!(
            check_type("text/plain", b"a,b\n", &all),
            Err(TypeRefusal::NotAllowed(FileType::Text, _))
        ));
        assert!(matches!(
            check_type("text/html", b"<html></html>", &all),
            Err(TypeRefusal::UnknownDeclared(_))
        ));
        assert!(matches!(
            check_type("text/csv", b"<script>x</script>", &all),
            Err(TypeRefusal::Unrecognised(..))
        ));
    }

    #[test]
    fn names_lose_paths_control_characters_and_length() {
        assert_eq!(sanitise_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            sanitise_name("C:\\x\\report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            sanitise_name("a\r\nb\u{0}c\u{202e}gpj.exe").as_deref(),
            Some("abcgpj.exe")
        );
        assert_eq!(sanitise_name(" .. "), None);
        assert_eq!(sanitise_name("dir/"), None);
        let long = "é".repeat(200);
        let kept = sanitise_name(&long).unwrap();
        assert!(kept.len() <= MAX_NAME_BYTES && kept.chars().all(|c| c == 'é'));
    }
}
