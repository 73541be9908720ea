//! One SQLite value as an archive keeps it: its storage class and its exact
//! bytes, the JSON form a row line carries, and the canonical bytes a table
//! checksum covers.
//!
//! JSON alone cannot carry every SQLite value: its numbers have no ±Inf or
//! NaN, readers round some doubles, and its strings must be UTF-8 while a
//! SQLite TEXT value may hold any bytes. So only the values JSON represents
//! exactly are written bare (NULL, integers, UTF-8 text); the others are
//! one-key objects:
//!
//! | SQLite value | JSON |
//! | --- | --- |
//! | NULL | `null` |
//! | INTEGER | a number (`-9223372036854775808`) |
//! | TEXT that is UTF-8 | a string |
//! | TEXT that is not UTF-8 | `{"text_bytes": "<base64>"}` |
//! | REAL | `{"real": "<16 hex digits>"}`: the IEEE 754 bit pattern, big-endian |
//! | BLOB | `{"blob": "<base64>"}` |

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A value exactly as SQLite stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL, as its IEEE 754 bit pattern: -0.0, subnormals, ±Inf and every
    /// NaN payload survive (a `f64` compared with `==` would not).
    Real(u64),
    /// TEXT, as the bytes SQLite holds: UTF-8 as a rule, but SQLite does
    /// not check, so any bytes.
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

/// Tags of the canonical encoding, one per storage class.
const TAG_NULL: u8 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

impl StoredValue {
    /// A REAL from a double (its bits, unchanged).
    pub fn real(value: f64) -> Self {
        StoredValue::Real(value.to_bits())
    }

    /// Feeds the value's canonical encoding to `hasher`: a tag byte for the
    /// storage class, then the 8 big-endian bytes of an integer or of a
    /// double's bit pattern, or the big-endian u64 length and the bytes of
    /// a text or blob. How the value was spelled in JSON (a UTF-8 text
    /// written as `text_bytes`, say) does not change it.
    pub fn digest_into(&self, hasher: &mut Sha256) {
        match self {
            StoredValue::Null => hasher.update([TAG_NULL]),
            StoredValue::Integer(v) => {
                hasher.update([TAG_INTEGER]);
                hasher.update(v.to_be_bytes());
            }
            StoredValue::Real(bits) => {
                hasher.update([TAG_REAL]);
                hasher.update(bits.to_be_bytes());
            }
            StoredValue::Text(bytes) => {
                hasher.update([TAG_TEXT]);
                digest_bytes(hasher, bytes);
            }
            StoredValue::Blob(bytes) => {
                hasher.update([TAG_BLOB]);
                digest_bytes(hasher, bytes);
            }
        }
    }
}

/// Feeds `bytes` to `hasher`, length first, so that no two sequences of
/// fields encode alike.
pub fn digest_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

impl Serialize for StoredValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StoredValue::Null => serializer.serialize_unit(),
            StoredValue::Integer(v) => serializer.serialize_i64(*v),
            StoredValue::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => serializer.serialize_str(text),
                Err(_) => tagged(serializer, "text_bytes", &STANDARD.encode(bytes)),
            },
            StoredValue::Real(bits) => tagged(serializer, "real", &format!("{bits:016x}")),
            StoredValue::Blob(bytes) => tagged(serializer, "blob", &STANDARD.encode(bytes)),
        }
    }
}

fn tagged<S: Serializer>(serializer: S, key: &str, value: &str) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
}

impl<'de> Deserialize<'de> for StoredValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StoredValueVisitor)
    }
}

struct StoredValueVisitor;

impl<'de> Visitor<'de> for StoredValueVisitor {
    type Value = StoredValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "null, an integer, a string, or one of {\"real\": hex}, {\"blob\": base64}, \
             {\"text_bytes\": base64}",
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<StoredValue, E> {
        Ok(StoredValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<StoredValue, E> {
        Ok(StoredValue::Null)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StoredValue, E> {
        Ok(StoredValue::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StoredValue, E> {
        i64::try_from(v)
            .map(StoredValue::Integer)
            .map_err(|_| E::custom(format!("integer {v} is larger than SQLite's largest")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StoredValue, E> {
        Err(E::custom(format!(
            "bare number {v} is not an archive value: a REAL is written as {{\"real\": \"<bits>\"}}"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StoredValue, E> {
        Ok(StoredValue::Text(v.as_bytes().to_vec()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StoredValue, E> {
        Ok(StoredValue::Text(v.into_bytes()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StoredValue, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom("an empty object is not an archive value"));
        };
        let text: String = map.next_value()?;
        let value = match key.as_str() {
            "real" => StoredValue::Real(parse_bits(&text).map_err(de::Error::custom)?),
            "blob" => StoredValue::Blob(decode_base64(&text).map_err(de::Error::custom)?),
            "text_bytes" => StoredValue::Text(decode_base64(&text).map_err(de::Error::custom)?),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown value kind {other:?} (expected real, blob or text_bytes)"
                )));
            }
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(
                "an archive value object has exactly one key",
            ));
        }
        Ok(value)
    }
}

/// The bit pattern of a REAL: exactly 16 lowercase hex digits.
fn parse_bits(text: &str) -> Result<u64, String> {
    let well_formed = text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(format!(
            "real {text:?} is not 16 lowercase hex digits (a double's bit pattern)"
        ));
    }
    u64::from_str_radix(text, 16).map_err(|e| format!("real {text:?}: {e}"))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|e| format!("bytes are not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: &StoredValue) -> StoredValue {
        let json = serde_json::to_string(value).expect("serialize");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn edge_values() -> Vec<StoredValue> {
        let mut values = vec![
            StoredValue::Null,
            StoredValue::Integer(0),
            StoredValue::Integer(i64::MIN),
            StoredValue::Integer(i64::MAX),
            StoredValue::Integer(-1),
            StoredValue::Text(Vec::new()),
            StoredValue::Text("plain".into()),
            StoredValue::Text("नमस्ते \u{0} \"quoted\" \\ \n\t\u{1F600}".into()),
            StoredValue::Text(vec![0xff, 0xfe, 0x00, 0x41]),
            StoredValue::Text(vec![0xc3]),
            StoredValue::Text(vec![0xed, 0xa0, 0x80]),
            StoredValue::Blob(Vec::new()),
            StoredValue::Blob(vec![0]),
            StoredValue::Blob((0..=255).collect()),
            StoredValue::Blob(vec![0xab; 1 << 20]),
        ];
        for real in [
            0.0,
            -0.0,
            1.5,
            -1.5e-300,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 2.0,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::EPSILON,
            0.1,
            1e308,
        ] {
            values.push(StoredValue::real(real));
        }
        // Quiet, signalling, negative and payload-carrying NaNs.
        for bits in [
            0x7ff8_0000_0000_0000,
            0xfff8_0000_0000_0000,
            0x7ff0_0000_0000_0001,
            0x7ff4_dead_beef_0001,
            0xffff_ffff_ffff_ffff,
        ] {
            values.push(StoredValue::Real(bits));
        }
        values
    }

    #[test]
    fn every_edge_value_round_trips_through_json_bit_exactly() {
        for value in edge_values() {
            assert_eq!(round_trip(&value), value);
        }
    }

    #[test]
    fn reals_are_written_as_their_bit_pattern() {
        assert_eq!(
            serde_json::to_string(&StoredValue::real(-1.5e-300)).unwrap(),
            format!("{{\"real\":\"{:016x}\"}}", (-1.5e-300f64).to_bits())
        );
        assert_eq!(
            serde_json::to_string(&StoredValue::real(-0.0)).unwrap(),
            r#"{"real":"8000000000000000"}"#
        );
        assert_eq!(
            serde_json::to_string(&StoredValue::real(f64::INFINITY)).unwrap(),
            r#"{"real":"7ff0000000000000"}"#
        );
    }

    #[test]
    fn text_is_a_string_when_utf8_and_bytes_otherwise() {
        assert_eq!(
            serde_json::to_string(&StoredValue::Text("é".into())).unwrap(),
            "\"é\""
        );
        assert_eq!(
            serde_json::to_string(&StoredValue::Text(vec![0xff, 0x00])).unwrap(),
            r#"{"text_bytes":"/wA="}"#
        );
        // Either spelling of a UTF-8 text is the same value, with the same digest.
        let spelled_as_bytes: StoredValue =
            serde_json::from_str(r#"{"text_bytes":"w6k="}"#).unwrap();
        assert_eq!(spelled_as_bytes, StoredValue::Text("é".into()));
    }

    #[test]
    fn malformed_values_are_refused() {
        for json in [
            "1.5",
            "1e3",
            "-0.0",
            "18446744073709551615",
            "9223372036854775808",
            "true",
            "[]",
            "[1]",
            "{}",
            r#"{"real":"3ff8"}"#,
            r#"{"real":"3FF8000000000000"}"#,
            r#"{"real":"+ff8000000000000"}"#,
            r#"{"real":"3ff80000000000000"}"#,
            r#"{"real":1.5}"#,
            r#"{"blob":"not base64!"}"#,
            r#"{"blob":"AA="}"#,
            r#"{"text_bytes":"%%%"}"#,
            r#"{"blob":"AA==","real":"3ff8000000000000"}"#,
            r#"{"integer":"1"}"#,
            r#"{"blob":null}"#,
        ] {
            assert!(
                serde_json::from_str::<StoredValue>(json).is_err(),
                "{json} was accepted"
            );
        }
    }

    #[test]
    fn the_digest_tells_every_storage_class_and_bit_apart() {
        let values = edge_values();
        let digests: Vec<Vec<u8>> = values
            .iter()
            .map(|v| {
                let mut hasher = Sha256::new();
                v.digest_into(&mut hasher);
                hasher.finalize().to_vec()
            })
            .collect();
        for (i, a) in digests.iter().enumerate() {
            for (j, b) in digests.iter().enumerate() {
                assert_eq!(i == j, a == b, "{:?} vs {:?}", values[i], values[j]);
            }
        }
        // Same bytes, different class.
        let mut text = Sha256::new();
        StoredValue::Text(b"ab".to_vec()).digest_into(&mut text);
        let mut blob = Sha256::new();
        StoredValue::Blob(b"ab".to_vec()).digest_into(&mut blob);
        assert_ne!(text.finalize(), blob.finalize());
        // Integer 1 and the REAL whose bits are 1.
        let mut integer = Sha256::new();
        StoredValue::Integer(1).digest_into(&mut integer);
        let mut real = Sha256::new();
        StoredValue::Real(1).digest_into(&mut real);
        assert_ne!(integer.finalize(), real.finalize());
    }
}
