//! The manifest's `files:` section (API 0.3.0): which content types the
//! module may store through the host's `files` interface, and which
//! `kind: storage` limit counts the bytes it keeps.
//!
//! ```yaml
//! files:
//!   types: [image/png, image/jpeg, application/pdf]
//!   limit: attachment_bytes
//! ```
//!
//! The types are a closed list: each is one the host recognises from the
//! bytes themselves ([`FileType`]), so a declared type is never taken on
//! trust. HTML, scripts and other types a browser would run are not on it.

use std::fmt;

use serde::Deserialize;

/// A content type the host can recognise from a file's bytes, and so the
/// only types a module may declare under `files.types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileType {
    /// `image/png`: starts with the 8-byte PNG signature.
    Png,
    /// `image/jpeg`: starts with `FF D8 FF`.
    Jpeg,
    /// `image/gif`: starts with `GIF87a` or `GIF89a`.
    Gif,
    /// `image/webp`: a RIFF container of form `WEBP`.
    Webp,
    /// `image/svg+xml`: XML text whose first element is `<svg>`.
    Svg,
    /// `application/pdf`: starts with `%PDF-`.
    Pdf,
    /// `application/zip`: a local file header `PK\x03\x04` (or an empty
    /// archive's end record).
    Zip,
    /// `text/plain`: valid UTF-8 without NUL bytes that is none of the
    /// above and does not look like markup.
    Text,
    /// `text/csv`: as `text/plain` (CSV cannot be told apart from text by
    /// its bytes; a module declaring it gets text files labelled as CSV).
    Csv,
}

impl FileType {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [FileType; 9] = [
        FileType::Png,
        FileType::Jpeg,
        FileType::Gif,
        FileType::Webp,
        FileType::Svg,
        FileType::Pdf,
        FileType::Zip,
        FileType::Text,
        FileType::Csv,
    ];

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            FileType::Png => "image/png",
            FileType::Jpeg => "image/jpeg",
            FileType::Gif => "image/gif",
            FileType::Webp => "image/webp",
            FileType::Svg => "image/svg+xml",
            FileType::Pdf => "application/pdf",
            FileType::Zip => "application/zip",
            FileType::Text => "text/plain",
            FileType::Csv => "text/csv",
        }
    }

    /// Parses a MIME type (case-insensitive, parameters such as
    /// `; charset=utf-8` ignored).
    ///
    /// # Errors
    /// A message naming the type and the ones that are accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let essence = text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        FileType::ALL
            .into_iter()
            .find(|t| t.mime() == essence)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a type the host can recognise from a file's bytes (one of: {})",
                    FileType::ALL.map(FileType::mime).join(", ")
                )
            })
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// The parsed `files:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesDecl {
    /// The types the module may store, sorted, each once.
    pub types: Vec<FileType>,
    /// The `kind: storage` limit that counts the bytes the module keeps;
    /// `None` when no plan limits them (each file is still bounded by the
    /// host's per-file limit).
    pub limit: Option<String>,
}

impl FilesDecl {
    /// Whether the module may store files of type `t`.
    pub fn allows(&self, t: FileType) -> bool {
        self.types.contains(&t)
    }
}

/// `files:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFiles {
    types: Vec<String>,
    #[serde(default)]
    limit: Option<String>,
}

impl RawFiles {
    /// Checks the section against the manifest's `limits` (`storage` is
    /// the set of `kind: storage` keys declared). Answers the field path
    /// and the reason on failure.
    pub(super) fn parse(self, storage: &[&str]) -> Result<FilesDecl, (String, String)> {
        if self.types.is_empty() {
            return Err((
                "files.types".into(),
                "must list at least one content type".into(),
            ));
        }
        let mut types = Vec::new();
        for (i, text) in self.types.iter().enumerate() {
            let t = FileType::parse(text).map_err(|e| (format!("files.types[{i}]"), e))?;
            if types.contains(&t) {
                return Err((format!("files.types[{i}]"), format!("{t} is listed twice")));
            }
            types.push(t);
        }
        types.sort();
        if let Some(key) = &self.limit
            && !storage.contains(&key.as_str())
        {
            return Err((
                "files.limit".into(),
                format!("{key:?} is not declared under `limits` with `kind: storage`"),
            ));
        }
        if self.limit.is_none() && !storage.is_empty() {
            return Err((
                "files.limit".into(),
                format!(
                    "the module declares a `kind: storage` limit ({}); name it here",
                    storage.join(", ")
                ),
            ));
        }
        Ok(FilesDecl {
            types,
            limit: self.limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_case_insensitively_without_parameters() {
        assert_eq!(FileType::parse("IMAGE/PNG").unwrap(), FileType::Png);
        assert_eq!(
            FileType::parse("text/plain; charset=utf-8").unwrap(),
            FileType::Text
        );
        for refused in ["text/html", "application/javascript", "image/x-icon", ""] {
            let e = FileType::parse(refused).unwrap_err();
            assert!(e.contains("image/png"), "{e}");
        }
    }
}
