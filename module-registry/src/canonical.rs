//! Canonical bytes: what exactly gets signed and hashed.
//!
//! A signed document is serialised to JSON and then re-encoded
//! canonically:
//!
//! - objects have their keys sorted by their UTF-8 bytes, arrays keep their
//!   order;
//! - no whitespace anywhere;
//! - numbers are integers only (a float is refused, because its text form is
//!   not unique);
//! - strings are UTF-8; `"` and `\` are escaped as `\"` and `\\`, control
//!   characters below U+0020 as `\u00xx` (lowercase hex), everything else is
//!   written as is.
//!
//! The JSON is preceded by a domain-separation line,
//! `souk-sig-v1:<kind>\n` (see [`SignatureDomain`]), so a signature made over
//! one kind of document can never verify as another kind, even if the JSON
//! happened to parse as both.
//!
//! The module also holds the serde adapters for the manifest's types
//! (`Slug`, `Digest`, `ApiVersion`) so that every signed document writes
//! them the same way.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The value could not be turned into JSON at all.
    #[error("cannot encode the document as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The value contains a floating-point number.
    #[error("canonical documents hold integers only, found the number {0}")]
    Float(String),
}

/// The kinds of signed document. Each has its own prefix in the signed
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureDomain {
    /// A trust root ([`crate::trust::TrustRoot`]).
    TrustRoot,
    /// A registry snapshot ([`crate::snapshot::Snapshot`]).
    Snapshot,
    /// A module log entry that publishes a version.
    Publish,
    /// A module log entry that yanks a version.
    Yank,
    /// A module log entry that deprecates a version or a module.
    Deprecate,
    /// A module log entry that revokes a version.
    Revoke,
}

impl SignatureDomain {
    /// The line that precedes the canonical JSON of this kind of document.
    pub fn prefix(self) -> &'static str {
        match self {
            SignatureDomain::TrustRoot => "souk-sig-v1:trust-root\n",
            SignatureDomain::Snapshot => "souk-sig-v1:snapshot\n",
            SignatureDomain::Publish => "souk-sig-v1:publish\n",
            SignatureDomain::Yank => "souk-sig-v1:yank\n",
            SignatureDomain::Deprecate => "souk-sig-v1:deprecate\n",
            SignatureDomain::Revoke => "souk-sig-v1:revoke\n",
        }
    }
}

/// The bytes a signature covers: the domain prefix followed by the
/// canonical JSON of `value`.
///
/// # Errors
/// [`CanonicalError`] when `value` cannot be serialised or holds a float.
pub fn signing_bytes<T: Serialize>(
    domain: SignatureDomain,
    value: &T,
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = domain.prefix().as_bytes().to_vec();
    write_value(&mut out, &serde_json::to_value(value)?)?;
    Ok(out)
}

/// The canonical JSON of `value`, without a domain prefix.
///
/// # Errors
/// [`CanonicalError`] when `value` cannot be serialised or holds a float.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write_value(&mut out, &serde_json::to_value(value)?)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float(n.to_string()));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature, if any crate in the build enables it,
            // would otherwise keep insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Serde adapters that write the manifest's types as text, the same way in
/// every signed document.
pub(crate) mod text {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::manifest::{ApiVersion, Slug};
    use crate::package::Digest;

    /// `Slug` as its text.
    pub mod slug {
        use super::*;

        pub fn serialize<S: Serializer>(slug: &Slug, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(slug.as_str())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Slug, D::Error> {
            Slug::deserialize(d)
        }
    }

    /// `Option<Slug>` as its text or null.
    pub mod opt_slug {
        use super::*;

        pub fn serialize<S: Serializer>(slug: &Option<Slug>, s: S) -> Result<S::Ok, S::Error> {
            slug.as_ref().map(Slug::as_str).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Slug>, D::Error> {
            Option::<Slug>::deserialize(d)
        }
    }

    /// `Digest` as `sha256:<hex>`.
    pub mod digest {
        use super::*;

        pub fn serialize<S: Serializer>(digest: &Digest, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&digest.to_string())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
            let text = String::deserialize(d)?;
            if !text.starts_with("sha256:") {
                return Err(serde::de::Error::custom(format!(
                    "digest {text:?} must start with \"sha256:\""
                )));
            }
            Digest::parse(&text).map_err(serde::de::Error::custom)
        }
    }

    /// `ApiVersion` as `major.minor.patch`.
    pub mod api_version {
        use super::*;

        pub fn serialize<S: Serializer>(api: &ApiVersion, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&api.to_string())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ApiVersion, D::Error> {
            let text = String::deserialize(d)?;
            ApiVersion::parse(&text).map_err(serde::de::Error::custom)
        }
    }

    /// A map keyed by `Slug`, as a JSON object keyed by slug text.
    pub mod slug_map {
        use super::*;

        pub fn serialize<V: Serialize, S: Serializer>(
            map: &BTreeMap<Slug, V>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_map(map.iter().map(|(k, v)| (k.as_str(), v)))
        }

        pub fn deserialize<'de, V: Deserialize<'de>, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<Slug, V>, D::Error> {
            let raw = BTreeMap::<String, V>::deserialize(d)?;
            raw.into_iter()
                .map(|(k, v)| {
                    Slug::parse(&k)
                        .map(|slug| (slug, v))
                        .map_err(|e| serde::de::Error::custom(format!("slug {k:?} {e}")))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Serialize)]
    struct Sample {
        zebra: u64,
        apple: &'static str,
        nested: BTreeMap<&'static str, i64>,
        list: Vec<u8>,
        nothing: Option<u8>,
    }

    fn sample() -> Sample {
        Sample {
            zebra: 18_446_744_073_709_551_615,
            apple: "a\"b\\c\nd é",
            nested: BTreeMap::from([("b", -1), ("a", 2)]),
            list: vec![3, 1, 2],
            nothing: None,
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let bytes = canonical_json(&sample()).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"apple":"a\"b\\c\u000ad é","list":[3,1,2],"nested":{"a":2,"b":-1},"nothing":null,"zebra":18446744073709551615}"#
        );
    }

    #[test]
    fn canonical_bytes_are_stable_across_calls_and_field_order() {
        #[derive(Serialize)]
        struct Reordered {
            nothing: Option<u8>,
            list: Vec<u8>,
            zebra: u64,
            nested: BTreeMap<&'static str, i64>,
            apple: &'static str,
        }
        let s = sample();
        let reordered = Reordered {
            nothing: s.nothing,
            list: s.list.clone(),
            zebra: s.zebra,
            nested: s.nested.clone(),
            apple: s.apple,
        };
        let a = signing_bytes(SignatureDomain::Publish, &s).unwrap();
        let b = signing_bytes(SignatureDomain::Publish, &sample()).unwrap();
        let c = signing_bytes(SignatureDomain::Publish, &reordered).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn signing_bytes_are_domain_separated() {
        let s = sample();
        let domains = [
            SignatureDomain::TrustRoot,
            SignatureDomain::Snapshot,
            SignatureDomain::Publish,
            SignatureDomain::Yank,
            SignatureDomain::Deprecate,
            SignatureDomain::Revoke,
        ];
        let all: Vec<Vec<u8>> = domains
            .iter()
            .map(|d| signing_bytes(*d, &s).unwrap())
            .collect();
        for (i, a) in all.iter().enumerate() {
            assert!(a.starts_with(domains[i].prefix().as_bytes()));
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // No prefix is a prefix of another, so the boundary is unambiguous.
        for a in domains {
            for b in domains {
                if a != b {
                    assert!(!a.prefix().starts_with(b.prefix()));
                }
            }
        }
        assert!(
            signing_bytes(SignatureDomain::Yank, &s)
                .unwrap()
                .starts_with(b"souk-sig-v1:yank\n{")
        );
    }

    #[test]
    fn floats_have_no_canonical_form() {
        let err = canonical_json(&serde_json::json!({"price": 1.5})).unwrap_err();
        assert!(matches!(err, CanonicalError::Float(_)), "{err}");
    }
}
